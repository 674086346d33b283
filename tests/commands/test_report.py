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
    assert (out / "language_similarity_layers.png").exists() and (out / "language_similarity.md").exists()
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
