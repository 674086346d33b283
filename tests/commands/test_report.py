"""``mlbuild report language-similarity`` on a tiny random Gemma3 model: text-file and dataset inputs,
the vector cache on a rerun, and clean errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from helpers_langsim import EN, FR, PT

from mlbuild.cli import main


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    spec = importlib.util.spec_from_file_location(
        "_hidden_test_models", Path(__file__).parents[1] / "models" / "test_hidden.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_tiny_model(tmp_path_factory.mktemp("m") / "gemma", "gemma3")


def _write(d: Path, name: str, lines: list[str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_cli_text_files_and_cache(tiny_model, tmp_path, capsys):
    par = tmp_path / "par"
    _write(par, "dev.eng_Latn", EN)
    _write(par, "dev.por_Latn", PT)
    _write(par, "dev.fra_Latn", FR)
    out = tmp_path / "rep"
    args = [
        "report",
        "language-similarity",
        "--parallel",
        str(par),
        "--model",
        str(tiny_model),
        "--out",
        str(out),
        "--pivot",
        "en",
        "--langs",
        "pt",
        "fr",
        "--pooling",
        "mean",
        "--pooling",
        "weighted_mean",
        "--bootstrap",
        "50",
        "--min-sentences",
        "5",
        "--quiet",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "por_Latn" in printed and "fra_Latn" in printed and "0 from cache" in printed
    data = json.loads((out / "language_similarity.json").read_text())
    assert set(data["languages"]) == {"por_Latn", "fra_Latn"} and data["pivot"] == "eng_Latn"
    assert data["pooling"] == "mean" and list(data["other_poolings"]) == ["weighted_mean"]
    assert data["score"]["paired_bootstrap"] is True and data["input"] == str(par)
    for code in data["languages"]:
        entry = data["languages"][code]
        assert entry["n"] == 12 and len(entry["ranker"]) == 2 and entry["ci"][0] <= entry["score"] <= entry["ci"][1]
    assert (out / "language_similarity.layers.png").exists() and (out / "language_similarity.md").exists()
    assert main(args) == 0  # rerun: every vector from the cache
    assert f"{len(set(EN + PT + FR))} from cache" in capsys.readouterr().out


def test_cli_dataset_input(tiny_model, tmp_path, capsys):
    rows = [{"parallel_id": f"p{i}", "text": t, "lang": "en"} for i, t in enumerate(EN)]
    rows += [{"parallel_id": f"p{i}", "text": t, "lang": "fr"} for i, t in enumerate(FR)]
    f = tmp_path / "rows.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "rep"
    assert (
        main(
            [
                "report",
                "language-similarity",
                "--parallel",
                str(f),
                "--model",
                str(tiny_model),
                "--out",
                str(out),
                "--score",
                "ranker_centered",
                "--max-sentences",
                "8",
                "--min-sentences",
                "5",
                "--bootstrap",
                "20",
                "--no-cache",
                "--quiet",
            ]
        )
        == 0
    )
    data = json.loads((out / "language_similarity.json").read_text())
    assert data["ranking"] == ["fra_Latn"] and data["languages"]["fra_Latn"]["n"] == 8
    assert data["languages"]["fra_Latn"]["dropped"] == {"over_max": 4}
    assert not (out / ".cache").exists()


def test_cli_errors(tiny_model, tmp_path, capsys):
    par = tmp_path / "par"
    _write(par, "dev.eng_Latn", EN)
    _write(par, "dev.por_Latn", PT)
    base = [
        "report",
        "language-similarity",
        "--parallel",
        str(par),
        "--model",
        str(tiny_model),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*base, "--langs", "kir"]) == 2
    assert "no line-aligned files pairing the pivot eng_Latn with kir_Cyrl" in capsys.readouterr().err
    assert main([*base, "--min-sentences", "1"]) == 2
    assert "min_sentences" in capsys.readouterr().err
    assert main(["report", "language-similarity", "--parallel", str(tmp_path / "nope"), "--out", "x"]) == 2
    assert main(["report"]) == 2  # no kind: help
    assert "language-similarity" in capsys.readouterr().out


def _language_similarity_parser():
    import argparse

    from mlbuild.cli import build_parser

    def sub(parser, name):
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return action.choices[name]

    return sub(sub(build_parser(), "report"), "language-similarity")


def test_every_param_has_a_flag_with_its_default_and_bounds():
    from mlbuild.pipeline import params as P
    from mlbuild.reports.language_similarity import LanguageSimilarityParams

    parser = _language_similarity_parser()
    flags = {o: a for a in parser._actions for o in a.option_strings}
    for row in P.describe(LanguageSimilarityParams):
        action = flags["--" + row["name"].replace("_", "-")]
        assert row["doc"].replace("%", "%%") in action.help
        if row["bounds"]:
            assert row["bounds"] in action.help
    # the flags the command had before they were generated keep their names and kinds
    for name in ("--max-sentences", "--min-sentences", "--bootstrap", "--confidence", "--max-length", "--batch-size"):
        assert flags[name].type in (int, float) and flags[name].default is None
    assert flags["--pooling"].choices == ["mean", "last_token", "weighted_mean"] and flags["--pooling"].nargs is None
    assert flags["--score"].choices == ["mexa", "mexa_centered", "ranker_centered", "ranker"]
    assert flags["--langs"].nargs == "*" and flags["--trust-remote-code"].nargs == 0
    assert (
        "default: 200" in flags["--max-sentences"].help and "between 2 and 10000000" in flags["--max-sentences"].help
    )
    parser.format_help()  # every help text formats (a '%' in a doc would break argparse)


@pytest.mark.parametrize(
    "flag,value,name,message",
    [
        ("--bootstrap", "5", "bootstrap", "expected between 10 and 1000000, got 5"),
        ("--confidence", "1.0", "confidence", "at least 0.5 and less than 1"),
        ("--max-length", "0", "max_length", "got 0"),
        ("--name", "a/b", "name", "does not match"),
        ("--columns", "eng_Latn", "columns", "expected KEY=VALUE pairs, got 'eng_Latn'"),
        ("--columns", "xx1=a", "columns", "unknown language code 'xx1'"),
    ],
)
def test_bad_values_exit_2_naming_the_param_and_flag(tmp_path, capsys, flag, value, name, message):
    args = ["report", "language-similarity", "--parallel", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main([*args, flag, value]) == 2
    err = capsys.readouterr().err
    assert f"report language-similarity -> {name} ({flag})" in err and message in err


def test_argparse_errors_exit_2(tmp_path):
    args = ["report", "language-similarity", "--parallel", str(tmp_path), "--out", str(tmp_path / "o")]
    for bad in (["--score", "bleu"], ["--max-sentences", "many"], ["--pooling", "max"]):
        with pytest.raises(SystemExit) as e:
            main([*args, *bad])
        assert e.value.code == 2


def test_cli_wide_table_with_columns(tiny_model, tmp_path, capsys):
    import polars as pl

    f = tmp_path / "wide.parquet"
    pl.DataFrame({"en": EN, "pt": PT, "fr": FR}).write_parquet(f)
    out = tmp_path / "rep"
    args = ["report", "language-similarity", "--parallel", str(f), "--model", str(tiny_model), "--out", str(out)]
    args += [
        "--columns",
        "en=en",
        "por_Latn=pt",
        "fr=fr",
        "--langs",
        "pt",
        "--bootstrap",
        "20",
        "--min-sentences",
        "5",
    ]
    assert main([*args, "--no-cache", "--quiet"]) == 0
    data = json.loads((out / "language_similarity.json").read_text())
    assert data["ranking"] == ["por_Latn"] and data["languages"]["por_Latn"]["source"] == "columns en + pt"
    assert data["languages"]["por_Latn"]["n"] == 12
