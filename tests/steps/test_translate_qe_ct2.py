"""translate.v1 with the qe gate (a TEST STAND-IN encoder, see helpers_qe) and with the ctranslate2 engine
(a tiny OPUS-MT-layout Marian converted in the test), through the step and through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from helpers_mt import LookupMT, build_tiny_opus_mt, fake_mt_engine
from helpers_qe import PAIRS, use_words_embedder

import mlbuild.steps.translate as tr
from mlbuild import qe
from mlbuild.pipeline.base import RunContext
from mlbuild.pipeline.cache import CallCache
from mlbuild.pipeline.params import parse

SOURCES = [s for s, _ in PAIRS]


def step_for(tmp_path, **raw):
    raw = {"columns": ["query"], "source_lang": "en", "target_langs": ["pt"], "engine": "fake", **raw}
    params, problems = parse(tr.TranslateParams, raw, "steps[0]", tmp_path)
    assert not problems, problems
    assert not tr.Translate.check(params, ["row_id", "query"])
    step = tr.Translate(params, RunContext(recipe_dir=tmp_path, cache=CallCache(tmp_path / "c.sqlite")))
    step.setup()
    return step


@pytest.fixture
def lost_mt():
    """Translates each source by the table, except row 2, which gets row 5's translation (fluent, wrong)."""
    table = {("por", s): t for s, t in PAIRS} | {("por", SOURCES[2]): PAIRS[5][1]}
    with fake_mt_engine(LookupMT(table)) as mt:
        yield mt


def batch() -> pl.DataFrame:
    return pl.DataFrame({"row_id": [f"r{i}" for i in range(len(SOURCES))], "query": SOURCES})


def test_qe_gate_drops_the_wrong_translation_and_keeps_scores(tmp_path, lost_mt, monkeypatch):
    emb = use_words_embedder(monkeypatch)
    step = step_for(tmp_path, gates=["qe"])
    assert step.ctx.models["qe"]["id"] == "test-words"
    out = step.process(batch())
    assert out.rejects["reason"].to_list() == ["qe_margin_low"] and out.rejects["row_id"].to_list() == ["r2/por_Latn"]
    assert "query: QE margin" in out.rejects["detail"][0]
    assert {"query_qe", "query_qe_margin"} <= set(out.rows.columns) and out.rows.height == 9
    assert (
        out.rows["query_qe"].null_count() == 0 and min(out.rows["query_qe_margin"].to_list()) >= qe.DEFAULT_MIN_MARGIN
    )
    assert set(step.output_columns(["row_id", "query"])) >= {"query_qe", "query_qe_margin"}
    # the report and card: distribution per language and the rejected example
    rep = step.finalize(out.stats)
    q = rep.data["per_lang"]["por_Latn"]["qe"]["query"]
    assert q["score"]["n"] == 10 and q["failed"] == {"qe_margin_low": 1}
    assert q["examples"][0]["source"] == SOURCES[2] and q["examples"][0]["target"] == PAIRS[5][1]
    assert "Quality estimation (`embedding`)" in rep.markdown and SOURCES[2] in rep.summary
    # vectors came through the run's cache: a second pass embeds nothing
    calls = emb.calls
    step.process(batch())
    assert emb.calls == calls


def test_qe_absolute_threshold_per_target_and_flag(tmp_path, lost_mt, monkeypatch):
    use_words_embedder(monkeypatch)
    step = step_for(tmp_path, gates=["qe"], qe_min_scores={"pt": 0.99}, qe_min_margin=None, on_fail="flag")
    out = step.process(batch())
    assert out.rejects is None and out.rows.height == 10
    reasons = out.rows["mt_reason"].to_list()
    assert set(reasons) - {None} == {"qe_low"} and reasons.count("qe_low") >= 1
    assert out.rows["query_qe_margin"].null_count() == 0


def test_keep_source_rows_get_empty_qe_columns(tmp_path, lost_mt, monkeypatch):
    use_words_embedder(monkeypatch)
    out = step_for(tmp_path, gates=["qe"], keep_source=True).process(batch())
    src = out.rows.filter(pl.col("lang") == "eng_Latn")
    assert src.height == 10 and src["query_qe"].null_count() == 10


# ------------------------------------------------------------------------------------------- ctranslate2
RECIPE = """
[dataset]
name = "ct2-test"
version = "0.1.0"

[source]
uses = "jsonl.v1"
path = "rows.jsonl"
id_column = "id"

[[steps]]
uses = "translate.v1"
columns = ["text"]
source_lang = "en"
target_langs = ["pt"]
engine = "ctranslate2"
model = "{model}"
compute_type = "{ct}"
segment = "none"
gates = []
max_new_tokens = 8
"""


def test_recipe_with_ctranslate2_through_the_cli(tmp_path, write_recipe):
    pytest.importorskip("ctranslate2")
    model = build_tiny_opus_mt(tmp_path / "opus", eos_bias=4.8)
    rows = [{"id": f"t{i}", "text": s} for i, s in enumerate(SOURCES)]
    recipe = RECIPE.replace("{model}", str(model))
    path = write_recipe(recipe.replace("{ct}", "float32"), {"rows.jsonl": "\n".join(json.dumps(r) for r in rows)})
    env = {**os.environ, "MLBUILD_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(Path(tr.__file__).parents[2])}
    cmd = [sys.executable, "-m", "mlbuild.cli", "run", str(path), "--out", str(tmp_path / "out"), "--quiet"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    ds = tmp_path / "out" / "ct2-test"
    manifest = json.loads(next(ds.rglob("manifest.json")).read_text())
    assert next(v for k, v in manifest["models"].items() if k.endswith(".mt"))["engine"] == "ctranslate2"
    got = pl.concat([pl.read_parquet(f) for f in sorted(ds.rglob("data/**/*.parquet"))])
    rejected = [json.loads(x) for f in ds.rglob("rejects/*.jsonl") for x in f.read_text().splitlines()]
    rejects = len(rejected)
    assert {r["reason"] for r in rejected} <= {"empty_output"}
    assert got.height + rejects == len(SOURCES)
    # float32 greedy: the same outputs as the transformers engine on the same model
    from mlbuild.models.mt import load_mt

    hf = load_mt("transformers", str(model), device="cpu", max_new_tokens=8).translate_detailed(
        SOURCES, "eng_Latn", "por_Latn"
    )
    want = {f"t{i}": h.text for i, h in enumerate(hf) if h.text}  # empty outputs are always rejected
    assert dict(zip(got["parallel_id"].to_list(), got["text"].to_list())) == want
    assert 0 < len(want) < len(SOURCES) and rejects == len(SOURCES) - len(want)
    assert list((tmp_path / "cache" / "models" / "ct2").glob("*-*"))  # converted once into the cache
    # a bad compute type is a recipe error (exit 2) naming the field
    bad = write_recipe(recipe.replace("{ct}", "int4"), name="bad.toml")
    res = subprocess.run([*cmd[:4], str(bad), *cmd[5:]], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 2 and "compute_type" in res.stderr
