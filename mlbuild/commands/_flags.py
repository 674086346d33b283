"""Command-line flags made from a component's declared params (:func:`mlbuild.pipeline.params.describe`),
so a new parameter is a new flag with its type, default, bounds, choices and doc as help, and a value out
of bounds is the same error (exit 2, naming the parameter and its flag) as in a recipe.

Flag = ``--`` + the parameter's name with dashes. By type: ``bool`` -> a switch (``--x``, or ``--x`` /
``--no-x`` when it defaults to true); ``int`` / ``float`` / ``str`` -> one value; a ``Literal`` -> one of
its choices; a list of choices -> a repeatable flag (``--pooling mean --pooling last_token``); another list
-> several values (``--langs fr de``); a table -> ``KEY=VALUE`` pairs (``--columns eng_Latn=en
por_Latn=pt``); anything else -> one TOML value."""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import tomllib

from ..pipeline import params as P

DEST = "param__"  # argparse dest prefix: keeps params apart from the command's own options


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _optional_inner(hint: Any) -> Any:
    """``X`` for ``X | None``, else the hint itself."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _help(row: dict[str, Any], extra: str = "") -> str:
    notes = [extra] if extra else []
    if not row["required"]:
        notes.append(f"default: {row['default']!r}")
    if row["bounds"]:
        notes.append(row["bounds"])
    text = row["doc"] + (f" ({'; '.join(notes)})" if notes else "")
    return text.replace("%", "%%")


def _kwargs(row: dict[str, Any]) -> dict[str, Any]:
    """argparse keyword arguments for one described parameter (values left unset default to None, so the
    parameter's own default applies)."""
    hint = _optional_inner(row["hint"])
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    meta = row["name"].upper()
    if hint is bool:
        if row["default"] is True:
            return {"action": argparse.BooleanOptionalAction, "default": None, "help": _help(row)}
        return {"action": "store_true", "default": None, "help": _help(row)}
    if hint in (int, float, str):
        return {"type": hint, "default": None, "metavar": meta, "help": _help(row)}
    if origin is Literal:
        return {"type": type(args[0]), "choices": list(args), "default": None, "help": _help(row)}
    if origin in (list, tuple) and args:
        inner = args[0]
        if typing.get_origin(inner) is Literal:
            choices = list(typing.get_args(inner))
            return {"action": "append", "choices": choices, "default": None, "help": _help(row, "repeatable")}
        if inner in (int, float, str):
            return {"nargs": "*", "type": inner, "default": None, "metavar": meta, "help": _help(row)}
    if origin is dict or hint is dict:
        return {"nargs": "*", "default": None, "metavar": "KEY=VALUE", "help": _help(row)}
    return {"default": None, "metavar": "TOML", "help": _help(row, "a TOML value")}


def add_param_flags(parser: argparse.ArgumentParser, params_cls: type, exclude: tuple[str, ...] = ()) -> None:
    """One flag per parameter of ``params_cls`` (except ``exclude``), in declaration order."""
    for row in P.describe(params_cls):
        if row["name"] not in exclude:
            parser.add_argument(flag(row["name"]), dest=DEST + row["name"], **_kwargs(row))


def _convert(row: dict[str, Any], value: Any) -> tuple[Any, str | None]:
    """A flag's value as the parameter's (value, problem)."""
    kw = _kwargs(row)
    if kw.get("metavar") == "KEY=VALUE":
        out = {}
        for item in value:
            key, sep, v = item.partition("=")
            if not sep or not key:
                return None, f"expected KEY=VALUE pairs, got {item!r}"
            out[key] = v
        return out, None
    if kw.get("metavar") == "TOML":
        try:
            return tomllib.loads(f"v = {value}")["v"], None
        except tomllib.TOMLDecodeError as e:
            return None, f"expected a TOML value, got {value!r} ({e})"
    return value, None


def params_from_args(
    args: argparse.Namespace, params_cls: type, loc: str, base_dir: Path | None = None
) -> tuple[Any | None, list[tuple[str, str]]]:
    """The params the flags give (a parameter without its flag keeps its default), checked like a recipe
    table; every problem's location names the parameter and its flag (``... -> min_sentences
    (--min-sentences)``)."""
    raw: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    rows = {r["name"]: r for r in P.describe(params_cls)}
    for name, row in rows.items():
        value = getattr(args, DEST + name, None)
        if value is None:
            continue
        value, problem = _convert(row, value)
        if problem:
            problems.append((f"{loc} -> {name}", problem))
        else:
            raw[name] = value
    params, more = P.parse(params_cls, raw, loc, base_dir)
    return params, [named(where, rows) for where in problems + more]


def named(problem: tuple[str, str], rows: dict[str, Any]) -> tuple[str, str]:
    """``(loc -> name, msg)`` with the parameter's flag added to its location."""
    where, msg = problem
    name = where.rsplit(" -> ", 1)[-1]
    return (f"{where} ({flag(name)})" if name in rows else where), msg
