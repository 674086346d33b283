"""Sentence vectors from the hidden states of every layer of a transformers model.

``HiddenStates(model).encode(texts, poolings)`` -> ``{pooling: array (n_texts, n_layers, hidden)}``,
one vector per text and per layer (the embedding layer is left out: layer 1 is the output of the first
transformer block). ``model`` is a Hub id, a local folder, a ``.gguf`` file, or a packaged short name
(``gemma-3-270m``, the default).

What makes it fast:

- The base model runs **without its LM head** (``AutoModel``, not ``AutoModelForCausalLM``): Gemma's
  262k-token output layer costs more than all its transformer blocks and its logits are never used.
- Texts are tokenized once, **sorted by token length** and batched under a token budget (32 texts and 4096
  padded tokens per batch on CPU, 256 and 65536 on CUDA, unless given), so little is spent on padding.
- No KV cache is built (``use_cache=False``), inference mode, and per-text vectors go to a
  **content-addressed cache** (:class:`~mlbuild.pipeline.cache.CallCache`: model id + revision + pooling
  + max length + precision + text), so a rerun or a second report on the same sentences costs nothing;
  the model itself loads only when a vector is missing.

Decoder LMs (GPT-2, Llama, Gemma...) and encoders (BERT...) work the same way; an encoder-decoder model
uses its encoder. Poolings (``POOLINGS``):

- ``last_token``: the vector of the last text token (the Language Ranker paper).
- ``mean``: the mean over text tokens, padding masked and special tokens (BOS, CLS/SEP) dropped.
- ``weighted_mean``: position-weighted mean over text tokens, weight ``k / sum(1..K)`` for the k-th
  text token (MEXA, after SGPT): later tokens of a causal model have seen more of the sentence.

Special tokens are those the tokenizer marks in ``special_tokens_mask``; a text with no other token
(empty text) falls back to all its attended tokens. Padding is on the right, so causal models see the
same positions as for the text alone.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import requires
from .device import resolve_device
from .loading import loader_kwargs
from .resolve import ModelRef, resolve_model

log = logging.getLogger(__name__)

POOLINGS = ("last_token", "mean", "weighted_mean")
CACHE_KIND = "hidden_states.v1"


def _torch():
    return requires("torch", "pip install torch", "hidden states")


def pool(hidden: Any, use: Any, method: str) -> Any:
    """Pool ``hidden`` (batch, tokens, dim) over the tokens where ``use`` (batch, tokens) is true.

    ``last_token`` takes the last used token; ``mean`` averages the used tokens; ``weighted_mean``
    weighs the k-th used token by ``k`` (weights normalised to 1). Rows of ``use`` must not be empty."""
    torch = _torch()
    m = use.to(hidden.dtype)
    if method == "mean":
        return (hidden * m.unsqueeze(-1)).sum(dim=1) / m.sum(dim=1, keepdim=True)
    if method == "weighted_mean":
        w = torch.cumsum(m, dim=1) * m
        w = w / w.sum(dim=1, keepdim=True)
        return (hidden * w.unsqueeze(-1)).sum(dim=1)
    if method == "last_token":
        pos = torch.arange(use.shape[1], device=use.device).unsqueeze(0).expand_as(use)
        last = torch.where(use.bool(), pos, torch.full_like(pos, -1)).max(dim=1).values
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"unknown pooling {method!r} (known: {', '.join(POOLINGS)})")


@dataclass(frozen=True)
class _Source:
    src: str  # what from_pretrained reads: folder or Hub id
    gguf_file: str | None


def _source(ref: ModelRef, gguf_file: str | None) -> _Source:
    if ref.path is None:
        return _Source(ref.ref, gguf_file)
    p = Path(ref.path)
    if p.is_file():
        if p.suffix != ".gguf":
            raise ValueError(f"{p}: a model file must be a .gguf file (or give the model's folder)")
        return _Source(str(p.parent), p.name)
    return _Source(str(p), gguf_file)


class HiddenStates:
    """A transformers model that gives pooled hidden states of every layer."""

    def __init__(
        self,
        model: str = "gemma-3-270m",
        *,
        base_dir: Path | None = None,
        device: str = "auto",
        revision: str | None = None,
        gguf_file: str | None = None,
        max_length: int = 256,
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        dtype: str | None = None,
        trust_remote_code: bool = False,
    ):
        torch = _torch()
        transformers = requires("transformers", "pip install transformers", "hidden states")
        self.ref = resolve_model(model, base_dir, revision)
        self.device = resolve_device(device)
        src = _source(self.ref, gguf_file)
        kw = loader_kwargs(
            trust_remote_code=trust_remote_code,
            revision=revision if self.ref.kind == "hub" else None,
            gguf_file=src.gguf_file,
        )
        if dtype is None:
            tdt = torch.float32
            if self.device.startswith("cuda"):
                tdt = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            tdt = getattr(torch, dtype)
        self.dtype = str(tdt).removeprefix("torch.")
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(src.src, **kw)
        self.tokenizer.padding_side = "right"
        if self.tokenizer.pad_token_id is None:
            for cand in ("eos_token", "unk_token", "bos_token"):
                if getattr(self.tokenizer, cand, None) is not None:
                    self.tokenizer.pad_token = getattr(self.tokenizer, cand)
                    break
        config = transformers.AutoConfig.from_pretrained(src.src, **kw)
        self._load_args = (src.src, tdt, kw, bool(getattr(config, "is_encoder_decoder", False)))
        self._model: Any = None  # loaded on the first forward pass: a fully cached run never loads it
        self.max_length = max_length
        gpu = self.device.startswith("cuda")
        self.batch_size = batch_size or (256 if gpu else 32)
        self.max_batch_tokens = max_batch_tokens or (65536 if gpu else 4096)
        text_cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
        self.n_layers = int(getattr(text_cfg, "num_hidden_layers", 0) or getattr(text_cfg, "n_layer", 0))
        self.hidden_size = int(getattr(text_cfg, "hidden_size", 0) or getattr(text_cfg, "n_embd", 0))
        self.model_type = getattr(config, "model_type", "")
        self.forward_seconds = 0.0
        self.computed = 0
        self.cached = 0

    @property
    def model(self) -> Any:
        """The base model (no LM head), loaded on first use."""
        if self._model is None:
            transformers = requires("transformers", "pip install transformers", "hidden states")
            src, tdt, kw, enc_dec = self._load_args
            model_obj = transformers.AutoModel.from_pretrained(src, dtype=tdt, **kw)
            if enc_dec:
                model_obj = model_obj.get_encoder()
            self._model = model_obj.to(self.device).eval()
            self._takes_use_cache = "use_cache" in inspect.signature(self._model.forward).parameters
        return self._model

    # ------------------------------------------------------------------ identity
    @property
    def id(self) -> str:
        return self.ref.ref

    @property
    def revision(self) -> str:
        return self.ref.revision

    def namespace(self, pooling: str) -> dict[str, Any]:
        """Cache namespace: declared config only (what changes the vectors)."""
        return {
            "kind": CACHE_KIND,
            "model": self.id,
            "revision": self.revision,
            "pooling": pooling,
            "max_length": self.max_length,
            "dtype": self.dtype,
        }

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "revision": self.revision,
            "model_type": self.model_type,
            "layers": self.n_layers,
            "hidden_size": self.hidden_size,
            "dtype": self.dtype,
            "max_length": self.max_length,
        }

    # ------------------------------------------------------------------ compute
    def _tokenize(self, texts: Sequence[str]) -> dict[str, list[list[int]]]:
        """Token ids, attention and special-token masks of each text, unpadded (tokenized once)."""
        return self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.max_length,
            add_special_tokens=True,
            return_special_tokens_mask=True,
        )

    def _lengths(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self._tokenize(texts)["input_ids"]]

    def batches(self, texts: Sequence[str] | None = None, lengths: Sequence[int] | None = None) -> list[list[int]]:
        """Indices of ``texts`` grouped into batches: sorted by token length (longest first, so memory
        peaks at once), at most ``batch_size`` texts and about ``max_batch_tokens`` padded tokens each."""
        lengths = list(lengths) if lengths is not None else self._lengths(texts or [])
        order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
        out: list[list[int]] = []
        cur: list[int] = []
        for i in order:
            width = lengths[cur[0]] if cur else lengths[i]
            if cur and (len(cur) >= self.batch_size or width * (len(cur) + 1) > self.max_batch_tokens):
                out.append(cur)
                cur = []
            cur.append(i)
        if cur:
            out.append(cur)
        return out

    def _pad(self, enc: dict[str, list[list[int]]], idx: list[int]) -> tuple[dict[str, Any], Any]:
        """Right-padded tensors of the texts ``idx`` and the mask of tokens to pool (text tokens; all
        attended tokens for a text that has none)."""
        torch = _torch()
        width = max(len(enc["input_ids"][i]) for i in idx)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        attn = torch.zeros((len(idx), width), dtype=torch.bool)
        use = torch.zeros((len(idx), width), dtype=torch.bool)
        tti = torch.zeros((len(idx), width), dtype=torch.long) if "token_type_ids" in enc else None
        for row, i in enumerate(idx):
            n = len(enc["input_ids"][i])
            ids[row, :n] = torch.tensor(enc["input_ids"][i])
            attn[row, :n] = True
            special = torch.tensor(enc["special_tokens_mask"][i], dtype=torch.bool)
            use[row, :n] = ~special if not bool(special.all()) else True
            if tti is not None:
                tti[row, :n] = torch.tensor(enc["token_type_ids"][i])
        inputs = {"input_ids": ids, "attention_mask": attn.long()}
        if tti is not None:
            inputs["token_type_ids"] = tti
        return inputs, use

    def _forward(self, inputs: dict[str, Any], use: Any, poolings: Sequence[str]) -> dict[str, np.ndarray]:
        torch = _torch()
        model = self.model
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            kw: dict[str, Any] = {"output_hidden_states": True, "return_dict": True}
            if self._takes_use_cache:
                kw["use_cache"] = False  # decoders: no KV cache to build
            out = model(**inputs, **kw)
            hs = out.hidden_states[1:]  # drop the embedding layer
            use_d = use.to(self.device)
            res = {}
            for p in poolings:
                pooled = torch.stack([pool(h.float(), use_d, p) for h in hs], dim=1)  # (batch, layers, dim)
                res[p] = pooled.cpu().numpy().astype(np.float32)
        return res

    def compute(
        self, texts: Sequence[str], poolings: Sequence[str] = ("mean",), progress: Any = None
    ) -> dict[str, np.ndarray]:
        """Pooled vectors of every layer, no cache: ``{pooling: (n, layers, dim)}`` in the order of ``texts``."""
        import time

        for p in poolings:
            if p not in POOLINGS:
                raise ValueError(f"unknown pooling {p!r} (known: {', '.join(POOLINGS)})")
        texts = list(texts)
        res = {p: np.zeros((len(texts), self.n_layers, self.hidden_size), dtype=np.float32) for p in poolings}
        enc = self._tokenize(texts) if texts else {"input_ids": []}
        for idx in self.batches(lengths=[len(x) for x in enc["input_ids"]]):
            t0 = time.perf_counter()
            out = self._forward(*self._pad(enc, idx), poolings)
            self.forward_seconds += time.perf_counter() - t0
            for p in poolings:
                if out[p].shape[1:] != res[p].shape[1:]:  # config said otherwise: trust the model
                    res[p] = np.zeros((len(texts), *out[p].shape[1:]), dtype=np.float32)
                    self.n_layers, self.hidden_size = out[p].shape[1:]
                res[p][idx] = out[p]
            if progress is not None:
                progress(len(idx))
        self.computed += len(texts)
        return res

    def encode(
        self,
        texts: Sequence[str],
        poolings: Sequence[str] = ("mean",),
        cache: Any = None,
        quiet: bool = True,
        chunk: int = 256,
    ) -> dict[str, np.ndarray]:
        """Like :meth:`compute` with the per-text vector cache (a ``CallCache`` or None). Each distinct
        text is computed once; results are stored every ``chunk`` texts, so a killed run keeps its work."""
        from tqdm.auto import tqdm

        from ..pipeline.cache import namespace_key

        texts = list(texts)
        uniq = list(dict.fromkeys(texts))
        found: dict[str, dict[str, np.ndarray]] = {p: {} for p in poolings}
        if cache is not None:
            for p in poolings:
                found[p].update(cache.get_vectors(namespace_key(self.namespace(p)), uniq))
        todo = [t for t in uniq if any(t not in found[p] for p in poolings)]
        self.cached += len(uniq) - len(todo)
        if todo:
            # longest first (by characters) over the whole set, so each chunk is about length-homogeneous;
            # compute() sorts each chunk by tokens
            todo = sorted(todo, key=lambda t: -len(t))
            with tqdm(total=len(todo), desc="hidden states", unit="sent", disable=quiet) as bar:
                for s in range(0, len(todo), chunk):
                    part = todo[s : s + chunk]
                    out = self.compute(part, poolings, progress=bar.update)
                    for p in poolings:
                        for t, v in zip(part, out[p]):
                            found[p][t] = v
                        if cache is not None:
                            cache.put_vectors(namespace_key(self.namespace(p)), list(zip(part, out[p])))
        result = {}
        for p in poolings:
            result[p] = (
                np.stack([found[p][t] for t in texts])
                if texts
                else np.zeros((0, self.n_layers, self.hidden_size), dtype=np.float32)
            )
        return result
