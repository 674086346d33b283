"""The command line's one display: mlbuild's log lines, the libraries' warnings and progress bars.

:func:`configure` (called once by :mod:`mlbuild.cli`) sets up logging to stderr and folds the libraries'
own output into it:

- Python warnings (``warnings.warn``: a GGUF dtype notice, a deprecation in a model library) become log
  records of the ``py.warnings`` logger: one ``WARNING py.warnings: ...`` line each, none under ``--quiet``;
- transformers' own handler (``[transformers] ...`` on stderr, whatever mlbuild's level) is removed and
  its records propagate to mlbuild's handler at mlbuild's level (WARNING, ERROR under ``--quiet``,
  everything under ``--debug``); the same for huggingface_hub and datasets;
- library progress bars (transformers' ``Loading weights``, huggingface_hub's downloads) are off unless
  ``--debug``: mlbuild logs what it loads and draws its own bars for long loops; ``--quiet`` turns off
  every bar, mlbuild's included (``TQDM_DISABLE``);
- every record has URL credentials and secrets masked (:class:`mlbuild.redact.RedactingFilter`).

transformers is not imported for this (1 s on a command that may never need it): a post-import hook
applies its settings when anything imports it.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import os
import sys
from collections.abc import Callable
from types import ModuleType

from .redact import RedactingFilter

FORMAT = "%(levelname)s %(name)s: %(message)s"
# libraries whose INFO lines are noise for a dataset build (one line per HTTP request, per file lock)
NOISY = ("httpx", "httpx2", "httpcore", "urllib3", "filelock", "datasets", "huggingface_hub", "fsspec")


def configure(*, quiet: bool = False, debug: bool = False) -> None:
    """Set up the CLI's logging (see the module docstring). Safe to call more than once."""
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    if quiet:  # every tqdm bar, ours and the libraries', honours this
        os.environ["TQDM_DISABLE"] = "1"
    if not debug:  # huggingface_hub's download bars: mlbuild logs what it loads instead
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    lib_level = logging.DEBUG if debug else (logging.ERROR if quiet else logging.WARNING)
    # transformers reads its level from here when it configures itself (no import needed)
    os.environ["TRANSFORMERS_VERBOSITY"] = {logging.DEBUG: "debug", logging.WARNING: "warning"}.get(lib_level, "error")
    logging.basicConfig(level=level, format=FORMAT, stream=sys.stderr)  # no-op when the host set up logging
    for h in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in h.filters):
            h.addFilter(RedactingFilter())
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(lib_level)
    for name in NOISY:
        logging.getLogger(name).setLevel(lib_level)
    after_import("transformers.utils.logging", lambda mod: _route_transformers(mod, lib_level, bars=debug))


def _route_transformers(tf_logging: ModuleType, level: int, bars: bool) -> None:
    """transformers' records through mlbuild's handler at ``level``; its progress bars only with ``bars``."""
    tf_logging.disable_default_handler()
    tf_logging.enable_propagation()
    tf_logging.set_verbosity(level)
    if not bars:
        tf_logging.disable_progress_bar()


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs ``callback(module)`` right after ``name`` is first imported (a one-shot post-import hook)."""

    def __init__(self, name: str, callback: Callable[[ModuleType], None]):
        self.name = name
        self.callback = callback

    def find_spec(self, fullname, path, target=None):  # importlib's signature
        if fullname != self.name:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module, callback = spec.loader.exec_module, self.callback

        def exec_then_call(module: ModuleType) -> None:
            exec_module(module)
            _safely(callback, module)

        spec.loader.exec_module = exec_then_call  # type: ignore[method-assign]
        return spec


def _safely(callback: Callable[[ModuleType], None], module: ModuleType) -> None:
    try:
        callback(module)
    except Exception as e:  # display settings must never break an import
        logging.getLogger(__name__).debug("could not apply log settings to %s: %s", module.__name__, e)


def after_import(name: str, callback: Callable[[ModuleType], None]) -> None:
    """Call ``callback(module)`` once ``name`` is imported: now if it already is, else right after its
    first import. A second registration for the same module replaces the first."""
    if name in sys.modules:
        _safely(callback, sys.modules[name])
        return
    sys.meta_path[:] = [f for f in sys.meta_path if not (isinstance(f, _AfterImport) and f.name == name)]
    sys.meta_path.insert(0, _AfterImport(name, callback))
