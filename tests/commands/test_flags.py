"""Flags generated from declared params: every type gets a flag, unset flags keep the param's default, and
problems name the parameter and its flag."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal

import pytest

from mlbuild.commands._flags import add_param_flags, params_from_args
from mlbuild.pipeline.params import param


@dataclass
class DemoParams:
    name: str = param(doc="a name")
    count: int = param(3, doc="how many (100% of them)", ge=1, le=10)
    ratio: float | None = param(None, doc="a share", ge=0.0, le=1.0)
    mode: Literal["a", "b"] = param("a", doc="which")
    modes: list[Literal["x", "y"]] = param(["x"], doc="several", min_items=1)
    langs: list[str] = param([], doc="codes", kind="langs")
    table: dict[str, str] = param({}, doc="pairs")
    nested: list[list[str]] = param([], doc="groups")
    on: bool = param(True, doc="on by default")
    off: bool = param(False, doc="off by default")


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_param_flags(parser, DemoParams, exclude=("nested",) if "--nested" not in argv else ())
    return params_from_args(parser.parse_args(argv), DemoParams, "demo")


def test_unset_flags_keep_defaults_and_set_ones_convert():
    params, problems = _parse(["--name", "n"])
    assert problems == [] and params == DemoParams(name="n")
    params, problems = _parse(
        ["--name", "n", "--count", "4", "--ratio", "0.5", "--mode", "b", "--modes", "y", "--modes", "x"]
        + ["--langs", "pt", "fr", "--table", "a=1", "b=c=d", "--no-on", "--off", "--nested", '[["en", "pt"]]']
    )
    assert problems == []
    assert (params.count, params.ratio, params.mode, params.modes) == (4, 0.5, "b", ["y", "x"])
    assert params.langs == ["por_Latn", "fra_Latn"] and params.table == {"a": "1", "b": "c=d"}
    assert params.on is False and params.off is True and params.nested == [["en", "pt"]]


def test_problems_name_param_and_flag():
    params, problems = _parse(["--count", "11", "--table", "oops", "--nested", "[unclosed"])
    where = dict(problems)
    assert where["demo -> count (--count)"] == "expected between 1 and 10, got 11"
    assert "expected KEY=VALUE" in where["demo -> table (--table)"]
    assert "expected a TOML value" in where["demo -> nested (--nested)"]
    assert "missing required parameter" in where["demo -> name (--name)"] and params is None


def test_help_shows_default_bounds_and_escapes_percent(capsys):
    parser = argparse.ArgumentParser()
    add_param_flags(parser, DemoParams)
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    out = capsys.readouterr().out
    assert "how many (100% of them) (default: 3; between 1 and 10)" in " ".join(out.split())
    assert "--on, --no-on" in out and "KEY=VALUE" in out and "repeatable" in out
