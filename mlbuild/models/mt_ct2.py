"""The ``ctranslate2`` MT engine: a seq2seq MT model (Marian/OPUS-MT, M2M100, NLLB, T5/MADLAD) by local
path or Hub id, converted once into a cached CTranslate2 folder and run by CTranslate2.

- Conversion (``ctranslate2.converters.TransformersConverter``, never with remote code) happens once per
  (model content or Hub commit, weight quantisation, CTranslate2 major version), into
  ``$MLBUILD_CACHE/models/ct2/<name>-<key>`` (``~/.cache/mlbuild/models`` by default), under a file lock:
  a second worker waits for the first and reuses its folder; a folder counts once its marker is written.
- ``compute_type``: ``auto`` = ``int8`` on CPU, ``int8_float16`` on CUDA; or any of
  :data:`COMPUTE_TYPES` the device supports (``float32`` reproduces the transformers engine's greedy
  output token for token). The weights are stored in that type, so the type is part of the cache key.
- Inputs are tokenized with the model's own tokenizer and the same language-code conventions as the
  transformers engine (:class:`~mlbuild.models.mt.Seq2SeqConventions`: NLLB/M2M100 target tokens as the
  decoder prefix, ``<2xx>`` / ``>>xxx<<`` text tags); CTranslate2 sorts them by length and batches them by
  tokens (``max_batch_tokens`` per batch).
- ``max_new_tokens`` bounds the generated tokens (the forced target token and EOS included, as in the
  transformers engine; models with ``forced_eos_token_id`` keep the last slot for EOS); using all of it
  counts as truncated.

Recipe::

    [[steps]]
    uses = "translate.v1"
    columns = ["text"]
    source_lang = "en"
    target_langs = ["de"]
    engine = "ctranslate2"
    model = "Helsinki-NLP/opus-mt-en-de"
    compute_type = "auto"   # int8 on CPU, int8_float16 on CUDA
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from ..errors import requires
from ..pipeline.cache import hash_text
from .device import resolve_device
from .llm import cache_root, file_lock
from .mt_base import MTBackend, Seq2SeqConventions, Translation, empty_translations, refuse_loader_keys
from .resolve import ModelRef, resolve_model

log = logging.getLogger(__name__)

PIN = "ctranslate2==4.8.5"
COMPUTE_TYPES = (
    "auto",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "float16",
    "bfloat16",
    "float32",
)
# decoding settings passed on to ``Translator.translate_batch`` (the rest is the engine's own)
DECODING_KEYS = (
    "length_penalty",
    "repetition_penalty",
    "no_repeat_ngram_size",
    "patience",
    "coverage_penalty",
    "disable_unk",
    "sampling_topk",
    "sampling_topp",
    "sampling_temperature",
)
_DONE = ".mlbuild-complete"


def _ct2():
    return requires("ctranslate2", f"pip install {PIN}", "the ctranslate2 MT engine")


def resolve_compute_type(compute_type: str, device: str) -> str:
    """``auto`` -> ``int8`` on CPU, ``int8_float16`` on CUDA; others are checked against what the device
    supports (:func:`ctranslate2.get_supported_compute_types`)."""
    if compute_type not in COMPUTE_TYPES:
        raise ValueError(f"unknown compute_type {compute_type!r} (known: {', '.join(COMPUTE_TYPES)})")
    kind = "cuda" if device.startswith("cuda") else "cpu"
    if compute_type == "auto":
        return "int8_float16" if kind == "cuda" else "int8"
    supported = _ct2().get_supported_compute_types(kind)
    if compute_type not in supported:
        raise ValueError(
            f"compute_type {compute_type!r} is not supported on {kind} here (supported: {sorted(supported)})"
        )
    return compute_type


def source_folder(ref: ModelRef) -> tuple[Path, str]:
    """The local folder of a model reference and the revision that names its content: the content hash of a
    local folder, or the commit of a Hub snapshot (downloaded through the HF cache)."""
    if ref.path is not None:
        if not ref.path.is_dir():
            raise ValueError(f"{ref.ref}: the ctranslate2 engine converts a model folder, not a file")
        return ref.path, ref.revision
    hub = requires("huggingface_hub", "pip install huggingface_hub", "ctranslate2 models from the Hub")
    folder = Path(hub.snapshot_download(ref.ref, revision=None if ref.revision == "main" else ref.revision))
    return folder, folder.name  # snapshots are named by their commit hash


def conversion_key(revision: str, quantization: str) -> str:
    """The cache key of a converted folder: the source content/commit, the weight type and CTranslate2's
    major version (its model format)."""
    major = str(getattr(_ct2(), "__version__", "0")).split(".")[0]
    return hash_text("ct2", major, revision, quantization)[:20]


def converted_model(folder: Path, name: str, revision: str, quantization: str) -> Path:
    """Convert ``folder`` (a transformers seq2seq model) once into a CTranslate2 folder with weights in
    ``quantization``; return the cached folder. Safe against concurrent callers (see the module doc)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[-60:] or "model"
    root = cache_root() / "ct2"
    target = root / f"{safe}-{conversion_key(revision, quantization)}"
    if (target / _DONE).exists():
        return target
    with file_lock(root / f".{target.name}.lock"):
        if (target / _DONE).exists():  # another worker converted it while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
        try:
            _convert(folder, tmp / "model", quantization)
            (tmp / "model" / _DONE).write_text(f"converted from {name} ({revision}), weights {quantization}\n")
            if target.exists():  # an interrupted older attempt: no completion marker
                shutil.rmtree(target)
            os.replace(tmp / "model", target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(folder: Path, out: Path, quantization: str) -> None:
    """One conversion (the function tests count calls of)."""
    ct2 = _ct2()
    log.info("converting %s into a CTranslate2 model (%s), once", folder, quantization)
    conv = ct2.converters.TransformersConverter(str(folder), trust_remote_code=False)
    conv.convert(str(out), quantization=None if quantization == "float32" else quantization)


class CTranslate2MT(Seq2SeqConventions, MTBackend):
    engine = "ctranslate2"
    # engine settings taken by the constructor; the other decoding keys must be in DECODING_KEYS
    SETTINGS = (
        "num_beams",
        "max_new_tokens",
        "batch_size",
        "max_batch_tokens",
        "max_input_tokens",
        "compute_type",
        "threads",
    )

    def __init__(
        self,
        model: str,
        base_dir: Path | None = None,
        device: str = "auto",
        *,
        num_beams: int | None = None,
        max_new_tokens: int = 256,
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        max_input_tokens: int = 512,
        compute_type: str = "auto",
        threads: int | None = None,
        revision: str | None = None,
        decoding: dict[str, Any] | None = None,
    ):
        """``batch_size`` is accepted for symmetry with the transformers engine and unused: CTranslate2
        batches by tokens (``max_batch_tokens``, default 4096)."""
        decoding = dict(decoding or {})
        refuse_loader_keys(decoding, "ctranslate2 decoding settings")
        unknown = sorted(set(decoding) - set(DECODING_KEYS))
        if unknown:
            raise ValueError(
                f"unknown ctranslate2 decoding settings {unknown} (known: {', '.join(DECODING_KEYS)}, "
                f"and the engine settings {', '.join(self.SETTINGS)})"
            )
        ct2 = _ct2()
        transformers = requires("transformers", "pip install transformers sentencepiece", "the ctranslate2 MT engine")
        self.device = resolve_device(device)
        self.compute_type = resolve_compute_type(compute_type, self.device)
        self.ref = resolve_model(model, base_dir, revision)
        folder, self._revision = source_folder(self.ref)
        self.tok = transformers.AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
        cfg = transformers.AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
        self.model_type = getattr(cfg, "model_type", "")
        gen = _generation_config(transformers, folder, cfg)
        self.forced_eos = getattr(gen, "forced_eos_token_id", None) is not None
        self.num_beams = num_beams
        self.beam_size = int(num_beams or getattr(gen, "num_beams", None) or 1)
        self.max_new_tokens = max_new_tokens
        self.max_input_tokens = max_input_tokens
        self.max_batch_tokens = int(max_batch_tokens or 4096)
        self.decoding = decoding
        self.path = converted_model(folder, self.ref.ref, self._revision, self.compute_type)
        kind, _, index = self.device.partition(":")
        self.translator = ct2.Translator(
            str(self.path),
            device=kind,
            device_index=int(index or 0),
            compute_type=self.compute_type,
            intra_threads=int(threads or 0),
        )
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        return self.ref.ref

    @property
    def revision(self) -> str | None:
        return self._revision

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "compute_type": self.compute_type,
            "num_beams": self.num_beams,
            "max_new_tokens": self.max_new_tokens,
            "max_input_tokens": self.max_input_tokens,
            "decoding": dict(sorted(self.decoding.items())),
        }

    def translate_detailed(self, texts: list[str], src: str, tgt: str) -> list[Translation]:
        out = empty_translations(texts)
        if all(o is not None for o in out):
            return out  # type: ignore[return-value]
        with self._lock:  # tokenizer src_lang is state; one pair at a time per backend
            todo, ids, forced = self.encode_sources(texts, src, tgt)
        source = [self.tok.convert_ids_to_tokens(x) for x in ids]
        forced_tok = self.tok.convert_ids_to_tokens(forced) if forced is not None else None
        # the forced-EOS slot of models that force EOS at the budget's end stays for EOS (as in generate)
        limit = self.max_new_tokens - 1 if self.forced_eos and self.max_new_tokens > 1 else self.max_new_tokens
        results = self.translator.translate_batch(
            source,
            [[forced_tok]] * len(source) if forced_tok is not None else None,
            max_batch_size=self.max_batch_tokens,
            batch_type="tokens",
            beam_size=self.beam_size,
            max_decoding_length=limit,
            min_decoding_length=0,
            return_end_token=True,
            max_input_length=0,  # inputs were cut to max_input_tokens above
            **self.decoding,
        )
        eos = self.tok.eos_token
        hyps = [r.hypotheses[0] for r in results]
        bodies = [h[1:] if forced_tok is not None and h[:1] == [forced_tok] else h for h in hyps]
        bodies = [b[:-1] if b and b[-1] == eos else b for b in bodies]
        decoded = self.tok.batch_decode(
            [self.tok.convert_tokens_to_ids(b) for b in bodies],
            skip_special_tokens=True,
            clean_up_tokenization_spaces=False,
        )
        for k, (h, text) in enumerate(zip(hyps, decoded)):
            ended = bool(h) and h[-1] == eos
            n = len(h) + (1 if self.forced_eos and not ended and len(h) >= limit else 0)
            cut = n >= self.max_new_tokens or len(ids[k]) >= self.max_input_tokens
            out[todo[k]] = Translation(text.strip(), n, cut)
        return out  # type: ignore[return-value]


def _generation_config(transformers: Any, folder: Path, cfg: Any) -> Any:
    """The model's generation config (from ``generation_config.json``, else from its model config)."""
    try:
        return transformers.GenerationConfig.from_pretrained(str(folder))
    except (OSError, ValueError):
        return transformers.GenerationConfig.from_model_config(cfg)
