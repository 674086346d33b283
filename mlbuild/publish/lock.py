"""``recipe.lock.toml``: the resolved recipe that built a version, runnable where it sits.

``--set`` overrides and ``${vars}`` are applied; every local file or folder a parameter points to is
written relative to the version folder, so ``mlbuild run OUT/<name>/<version>/recipe.lock.toml``
reads the same inputs from there and reproduces the fingerprint (fingerprints hash files by content,
not by where they are)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import tomli_w

from ..pipeline import params as P
from ..pipeline.build import BuildRecord
from ..redact import redact

CARD_COPY = "card.md.j2"


def _relative(value: Any, raw: Any, kind: str, recipe_dir: Path, target: Path) -> Any:
    if isinstance(value, list):
        raws = raw if isinstance(raw, list) and len(raw) == len(value) else [None] * len(value)
        return [_relative(v, r, kind, recipe_dir, target) for v, r in zip(value, raws)]
    if not isinstance(value, str) or "://" in value or not Path(value).is_absolute() or not Path(value).exists():
        return raw if raw is not None else value
    if kind == "file" and isinstance(raw, str) and not (recipe_dir / raw).exists() and not Path(raw).is_absolute():
        return raw  # a file mlbuild ships, by name
    return os.path.relpath(value, target)


def _rewrite(table: dict[str, Any], spec, recipe_dir: Path, target: Path) -> None:
    for f in P.fields(type(spec.params)):
        kind = f.metadata.get("kind")
        if kind in ("path", "file") and f.name in table:
            table[f.name] = _relative(getattr(spec.params, f.name), table[f.name], kind, recipe_dir, target)


def lock_table(build: BuildRecord, target: Path) -> dict[str, Any]:
    rc = build.recipe
    lock = copy.deepcopy({k: v for k, v in rc.resolved.items() if k != "vars"})
    base = rc.dir
    if isinstance(lock.get("source"), dict):
        _rewrite(lock["source"], rc.source, base, target)
    for name, spec in rc.tables.items():
        _rewrite(lock["sources"][name], spec, base, target)
    for spec in rc.steps:
        _rewrite(lock["steps"][spec.index], spec, base, target)
    for spec in rc.reports:
        _rewrite(lock["reports"][spec.index], spec, base, target)
    card = lock.get("dataset", {}).get("card")
    if isinstance(card, str) and (base / card).is_file():
        lock["dataset"]["card"] = CARD_COPY  # the writer keeps a copy of a recipe's own card template
    return lock


def write_lock(build: BuildRecord, path: Path, target: Path) -> None:
    ds = build.recipe.dataset
    header = (
        f"# Resolved recipe of {ds.name} {ds.version} (fingerprint {build.fingerprint}).\n"
        "# --set overrides and ${vars} are applied and file paths point from this folder: run it again\n"
        f"# with `mlbuild run {path.name}` here, or `mlbuild run <this folder>/{path.name}` from anywhere.\n"
    )
    path.write_text(header + tomli_w.dumps(_toml_safe(lock_table(build, target))), encoding="utf-8")


def _toml_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _toml_safe(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_toml_safe(v) for v in obj if v is not None]
    if isinstance(obj, str):  # the lock is published: credentials in a URL (user:pass@, ?key=) are masked
        return redact(obj)
    return obj
