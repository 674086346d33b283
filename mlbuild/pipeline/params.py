"""Declared parameters of steps, sources, reports and the recipe's own tables: dataclasses checked
against a recipe table.

A component declares ``Params`` as a dataclass; :func:`param` adds documentation, flags and
constraints, so a rule lives next to the parameter it constrains and every error names it:

- ``runtime=True``: a setting that does not change results (batch size, device, workers); kept out
  of fingerprints and cache keys.
- ``kind="lang"`` / ``kind="langs"``: language codes, normalized to ``xxx_Scrp`` at validation.
- ``kind="path"``: a path resolved against the recipe's folder (unless it is a packaged model name
  or a Hub id). Fingerprints hash the file's content, never where it sits.
- ``kind="file"``: a file the package ships by name (``prompts/summarize-then-ask.v1.j2``) or a
  path under the recipe's folder; a name that is neither is an error at validation.
- ``kind="decoding"``: a free-form table passed to a model's decoding call; keys that change how a
  model is *loaded* (``trust_remote_code``, ``revision``, ``token``...) are refused there.
- ``ge`` / ``gt`` / ``le`` / ``lt``: bounds of a number (of each number in a list); ``None`` passes.
- ``choices``: allowed values of each item of a list of strings; ``min_items``: a list's least length.
- ``pattern``: a regular expression a string must match whole (``re.fullmatch``).
- ``omit_default=True``: a parameter added to a released version (``mine_negatives.v1``'s
  ``retrievers``): left out of fingerprints while it holds its default, so recipes that do not use it
  keep their fingerprints, checkpoints and caches.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from .. import langs

MISSING = dataclasses.MISSING

# Keys of model *loading*, never accepted in a free-form decoding table: remote code, other weights,
# credentials and placement are chosen by the step's own, documented parameters.
LOADER_KEYS = frozenset(
    {
        "trust_remote_code",
        "revision",
        "code_revision",
        "token",
        "use_auth_token",
        "cache_dir",
        "local_files_only",
        "force_download",
        "proxies",
        "device_map",
        "torch_dtype",
        "dtype",
        "quantization_config",
        "attn_implementation",
        "gguf_file",
        "subfolder",
        "from_tf",
        "from_flax",
        "use_safetensors",
        "low_cpu_mem_usage",
        "offload_folder",
        "pretrained_model_name_or_path",
        "_from_pipeline",
    }
)

_CONSTRAINTS = ("ge", "gt", "le", "lt", "choices", "min_items", "pattern")


def param(
    default: Any = MISSING,
    *,
    doc: str = "",
    runtime: bool = False,
    kind: str | None = None,
    default_factory: Any = MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[str, ...] | list[str] | None = None,
    min_items: int | None = None,
    pattern: str | None = None,
    omit_default: bool = False,
) -> Any:
    meta = {
        "doc": doc,
        "runtime": runtime,
        "omit_default": omit_default,
        "kind": kind,
        "ge": ge,
        "gt": gt,
        "le": le,
        "lt": lt,
        "choices": tuple(choices) if choices is not None else None,
        "min_items": min_items,
        "pattern": pattern,
    }
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


def is_numeric(tp: Any) -> bool:
    """Whether a type hint holds numbers (int, float, optional ones, lists of them)."""
    if tp in (int, float):
        return True
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType, list, tuple):
        return any(is_numeric(a) for a in typing.get_args(tp) if a is not type(None))
    return False


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


def _num(v: float) -> str:
    return repr(int(v)) if float(v).is_integer() else repr(v)


def bounds_text(meta: Any) -> str:
    """The declared bounds of a number in words ('at least 1', 'between 0 and 1'), or ''."""
    ge, gt, le, lt = (meta.get(k) for k in ("ge", "gt", "le", "lt"))
    if ge is not None and le is not None:
        return f"between {_num(ge)} and {_num(le)}"
    parts = []
    if ge is not None:
        parts.append(f"at least {_num(ge)}")
    if gt is not None:
        parts.append(f"more than {_num(gt)}")
    if le is not None:
        parts.append(f"at most {_num(le)}")
    if lt is not None:
        parts.append(f"less than {_num(lt)}")
    return " and ".join(parts)


def _bound_problem(v: Any, meta: Any) -> str | None:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return None
    ge, gt, le, lt = (meta.get(k) for k in ("ge", "gt", "le", "lt"))
    if (
        (ge is not None and v < ge)
        or (gt is not None and v <= gt)
        or (le is not None and v > le)
        or (lt is not None and v >= lt)
    ):
        return f"expected {bounds_text(meta)}, got {v!r}"
    return None


def constraint_problems(value: Any, meta: Any) -> list[str]:
    """Problems of an already type-checked value against the constraints declared with :func:`param`."""
    out: list[str] = []
    items = value if isinstance(value, list) else [value]
    for v in items:
        msg = _bound_problem(v, meta)
        if msg:
            out.append(msg)
            break
    choices = meta.get("choices")
    if choices is not None:
        for v in items:
            if isinstance(v, str) and v not in choices:
                out.append(f"unknown value {v!r}{suggest(v, list(choices))} (known: {', '.join(choices)})")
    if meta.get("min_items") is not None and isinstance(value, list) and len(value) < meta["min_items"]:
        n = meta["min_items"]
        out.append(f"list at least {n} item{'s' if n != 1 else ''}")
    if meta.get("pattern") is not None and isinstance(value, str) and not re.fullmatch(meta["pattern"], value):
        out.append(f"{value!r} does not match {meta['pattern']}")
    if meta.get("kind") == "decoding" and isinstance(value, dict):
        bad = sorted(k for k in value if k in LOADER_KEYS)
        if bad:
            out.append(
                f"{', '.join(repr(k) for k in bad)}: model loading settings are not decoding settings; "
                "use the step's own parameters (remote code stays off unless trust_remote_code = true)"
            )
    return out


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
    """Check ``raw`` against ``params_cls``; return (instance, problems).

    Every problem is reported, not only the first. The instance is built from the valid values (a
    bad value falls back to its default) so that cross-parameter checks can still run; it is
    ``None`` only when a required parameter is missing or invalid."""
    problems: list[tuple[str, str]] = []
    th = hints(params_cls)
    fs = {f.name: f for f in fields(params_cls)}
    values: dict[str, Any] = {}
    invalid: set[str] = set()
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
            invalid.add(key)
            continue
        msgs = constraint_problems(conv, f.metadata)
        if msgs:
            problems.extend((f"{loc} -> {key}", m) for m in msgs)
            invalid.add(key)
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
                    invalid.add(key)
            if key in invalid:
                continue
            conv = normed if isinstance(conv, list) else normed[0]
        if kind == "file" and isinstance(conv, str):
            from ..resources import find_file

            found = find_file(conv, base_dir)
            if found is None:
                problems.append(
                    (
                        f"{loc} -> {key}",
                        f"file not found: {conv!r} (looked under the recipe's folder and in mlbuild's own files)",
                    )
                )
                invalid.add(key)
                continue
            conv = str(found)
        if kind == "path" and base_dir is not None:
            conv = (
                [resolve_path(v, base_dir) for v in conv] if isinstance(conv, list) else resolve_path(conv, base_dir)
            )
        values[key] = conv
    complete = True
    for name, f in fs.items():
        if name not in values and f.default is MISSING and f.default_factory is MISSING:
            complete = False
            if name not in invalid:
                problems.append((f"{loc} -> {name}", f"missing required parameter ({type_name(th[name])})"))
    return (params_cls(**values) if complete else None), problems


def resolve_path(value: Any, base_dir: Path) -> Any:
    """Resolve a relative path against the recipe folder when it exists there (else keep it: it may be a
    packaged model name or a Hub id)."""
    if not isinstance(value, str) or "://" in value:
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
    """The params that define results (runtime-only ones removed), for fingerprints and cache keys.

    A path that exists on this machine is represented by what it holds, not where it is: a file by
    its content hash (up to 64 MiB), a folder or a larger file by its name. So a recipe, and the
    ``recipe.lock.toml`` written next to its output (whose paths point back from there), hash alike
    on every machine and from every folder."""
    from .hashing import path_token

    out = {}
    for f in fields(type(params)):
        if f.metadata.get("runtime"):
            continue
        v = getattr(params, f.name)
        if f.metadata.get("omit_default") and v == _default(f):
            continue  # added to a released version: recipes that leave it unset keep their fingerprints
        if f.metadata.get("kind") in ("path", "file"):
            v = [path_token(x) for x in v] if isinstance(v, list) else path_token(v)
        out[f.name] = v
    return out


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def as_dict(params: Any) -> dict[str, Any]:
    return {f.name: getattr(params, f.name) for f in fields(type(params))}


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def describe(params_cls: type) -> list[dict[str, Any]]:
    th = hints(params_cls)
    rows = []
    for f in fields(params_cls):
        default = default_of(f)
        m = f.metadata
        rows.append(
            {
                "name": f.name,
                "type": type_name(th[f.name]),
                "hint": th[f.name],
                "required": default is MISSING,
                "default": None if default is MISSING else default,
                "runtime": m.get("runtime", False),
                "doc": m.get("doc", ""),
                "kind": m.get("kind"),
                "bounds": bounds_text(m),
                "choices": m.get("choices"),
            }
        )
    return rows
