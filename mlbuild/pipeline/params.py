"""Declared parameters of steps, sources and reports: dataclasses checked against a recipe table.

A component declares ``Params`` as a dataclass; :func:`param` adds documentation and flags:

- ``runtime=True``: a setting that does not change results (batch size, device, workers); kept out
  of fingerprints and cache keys.
- ``kind="lang"`` / ``kind="langs"``: language codes, normalized to ``xxx_Scrp`` at validation.
- ``kind="path"``: a path resolved against the recipe's folder (unless it is a packaged model name).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from .. import langs

MISSING = dataclasses.MISSING


def param(
    default: Any = MISSING,
    *,
    doc: str = "",
    runtime: bool = False,
    kind: str | None = None,
    default_factory: Any = MISSING,
) -> Any:
    meta = {"doc": doc, "runtime": runtime, "kind": kind}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass
class NoParams:
    pass


def fields(params_cls: type) -> list[dataclasses.Field]:
    return list(dataclasses.fields(params_cls))


def hints(params_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(params_cls)


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"list[{type_name(args[0])}]" if args else "list"
    if origin is dict:
        return "table"
    if tp is type(None):
        return "none"
    return getattr(tp, "__name__", str(tp))


def _check(value: Any, tp: Any) -> tuple[bool, Any]:
    """Return (ok, converted value) for a TOML value against a type hint."""
    if tp is Any:
        return True, value
    origin = typing.get_origin(tp)
    if origin is Literal:
        return (value in typing.get_args(tp)), value
    if origin in (Union, types.UnionType):
        for a in typing.get_args(tp):
            ok, v = _check(value, a)
            if ok:
                return True, v
        return False, value
    if tp is type(None):
        return value is None, value
    if origin in (list, tuple):
        if not isinstance(value, list):
            return False, value
        (inner,) = typing.get_args(tp)[:1] or (Any,)
        out = []
        for v in value:
            ok, cv = _check(v, inner)
            if not ok:
                return False, value
            out.append(cv)
        return True, out
    if origin is dict or tp is dict:
        return isinstance(value, dict), value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if tp is str:
        return isinstance(value, str), value
    return isinstance(value, tp), value


def suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def parse(
    params_cls: type,
    raw: dict[str, Any],
    loc: str,
    base_dir: Path | None = None,
    ignore: tuple[str, ...] = ("uses", "id"),
) -> tuple[Any | None, list[tuple[str, str]]]:
    """Check ``raw`` against ``params_cls``; return (instance or None, problems)."""
    problems: list[tuple[str, str]] = []
    th = hints(params_cls)
    fs = {f.name: f for f in fields(params_cls)}
    values: dict[str, Any] = {}
    raw_paths: dict[str, str] = {}
    for key, value in raw.items():
        if key in ignore:
            continue
        if key not in fs:
            problems.append(
                (f"{loc} -> {key}", f"unknown parameter{suggest(key, list(fs))} (known: {', '.join(fs) or 'none'})")
            )
            continue
        f = fs[key]
        ok, conv = _check(value, th[key])
        if not ok:
            problems.append((f"{loc} -> {key}", f"expected {type_name(th[key])}, got {value!r}"))
            continue
        kind = f.metadata.get("kind")
        if kind in ("lang", "langs") and conv is not None:
            codes = conv if isinstance(conv, list) else [conv]
            normed = []
            for c in codes:
                try:
                    normed.append(langs.normalize(c))
                except langs.UnknownLanguage as e:
                    problems.append((f"{loc} -> {key}", str(e)))
            conv = normed if isinstance(conv, list) else (normed[0] if normed else conv)
        if kind == "path" and isinstance(conv, str) and base_dir is not None:
            raw_paths[key] = conv
            conv = resolve_path(conv, base_dir)
        values[key] = conv
    for name, f in fs.items():
        if name not in values and f.default is MISSING and f.default_factory is MISSING:
            problems.append((f"{loc} -> {name}", f"missing required parameter ({type_name(th[name])})"))
    if problems:
        return None, problems
    inst = params_cls(**values)
    # fingerprints use paths as the recipe wrote them, so the same recipe hashes alike on every machine
    object.__setattr__(inst, "_raw_paths", raw_paths)
    return inst, []


def resolve_path(value: str, base_dir: Path) -> str:
    """Resolve a relative path against the recipe folder when it exists there (else keep it: it may be a
    packaged model name or a Hub id)."""
    if "://" in value:
        return value
    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    cand = base_dir / p
    if (
        cand.exists()
        or value.startswith((".", "/"))
        or value.endswith(
            (".jsonl", ".json", ".parquet", ".tsv", ".txt", ".toml", ".conll", ".j2", ".bin", ".ftz", ".gz")
        )
    ):
        return str(cand.resolve())
    return value


def declared(params: Any) -> dict[str, Any]:
    """The params that define results (runtime-only ones removed), for fingerprints and cache keys."""
    out = {}
    raw_paths = getattr(params, "_raw_paths", {})
    for f in fields(type(params)):
        if f.metadata.get("runtime"):
            continue
        out[f.name] = raw_paths.get(f.name, getattr(params, f.name))
    return out


def as_dict(params: Any) -> dict[str, Any]:
    return {f.name: getattr(params, f.name) for f in fields(type(params))}


def describe(params_cls: type) -> list[dict[str, Any]]:
    th = hints(params_cls)
    rows = []
    for f in fields(params_cls):
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = MISSING
        rows.append(
            {
                "name": f.name,
                "type": type_name(th[f.name]),
                "required": default is MISSING,
                "default": None if default is MISSING else default,
                "runtime": f.metadata.get("runtime", False),
                "doc": f.metadata.get("doc", ""),
            }
        )
    return rows
