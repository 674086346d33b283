"""Registered components by versioned name (``langid.v1``). Modules under ``mlbuild.sources``,
``mlbuild.steps`` and ``mlbuild.reports`` register themselves when imported; :func:`load_all`
imports them, so a new step is one new file."""

from __future__ import annotations

import importlib
import os
import pkgutil
import re

from .params import suggest

_REGISTRY: dict[str, dict[str, type]] = {"source": {}, "step": {}, "report": {}}
_NAME = re.compile(r"^[a-z][a-z0-9_]*\.v[0-9]+$")
_loaded = False


def register(kind: str):
    def deco(cls):
        if not _NAME.match(cls.name):
            raise ValueError(f"registered name must look like 'name.v1', got {cls.name!r}")
        if cls.name in _REGISTRY[kind] and _REGISTRY[kind][cls.name] is not cls:
            raise ValueError(f"{kind} {cls.name!r} registered twice")
        _REGISTRY[kind][cls.name] = cls
        return cls

    return deco


def load_all() -> None:
    """Import the built-in components, then any plugin modules named in ``MLBUILD_PLUGINS``
    (comma-separated importable module names that register their own steps)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for pkg_name in ("mlbuild.sources", "mlbuild.steps", "mlbuild.reports"):
        pkg = importlib.import_module(pkg_name)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{pkg_name}.{mod.name}")
    for name in filter(None, (m.strip() for m in os.environ.get("MLBUILD_PLUGINS", "").split(","))):
        importlib.import_module(name)


def known(kind: str) -> dict[str, type]:
    load_all()
    return dict(sorted(_REGISTRY[kind].items()))


def lookup(kind: str, name: str) -> type:
    """Return the class registered as ``name`` or raise KeyError with a helpful message."""
    load_all()
    reg = _REGISTRY[kind]
    if name in reg:
        return reg[name]
    names = sorted(reg)
    hint = suggest(name, names)
    if not hint and "." not in name:
        versions = [n for n in names if n.split(".")[0] == name]
        if versions:
            hint = f"; names carry a version: did you mean '{versions[-1]}'?"
    raise KeyError(f"unknown {kind} '{name}'{hint} (known: {', '.join(names) or 'none'})")
