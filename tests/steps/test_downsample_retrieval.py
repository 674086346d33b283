"""downsample_retrieval.v1: judged documents always kept, pools of several retrievers, a stratified and
seeded query sample, a report comparing the systems on the full and the downsampled corpus."""

from __future__ import annotations

import random

import polars as pl
import pytest
from evaluation.tiny_benchmark import QRELS, build
from helpers_tiny_bert import build_tiny_bert

from mlbuild.evaluation.downsample import allocate, stratified_sample
from mlbuild.pipeline.base import RunContext, collect
from mlbuild.pipeline.params import parse
from mlbuild.steps.downsample_retrieval import DownsampleRetrieval, DownsampleRetrievalParams

WORDS = [f"w{i}" for i in range(400)]


@pytest.fixture(scope="module")
def tiny_dense(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("dense") / "tiny-dense"))


def _bench(seed: int = 0):
    rnd = random.Random(seed)
    docs = {f"d{i}": " ".join(rnd.sample(WORDS, 12)) for i in range(200)}
    rows = []
    for q in range(30):
        lang = "eng_Latn" if q < 20 else "por_Latn"
        pos = [f"d{rnd.randrange(200)}" for _ in range(rnd.choice([1, 2]))]
        text = " ".join(rnd.sample(docs[pos[0]].split(), 4))
        rows.append({"row_id": f"q{q}/{lang}", "query_id": f"q{q}", "query": text, "lang": lang, "doc_ids": pos})
    corpus = pl.DataFrame({"doc_id": list(docs), "title": [""] * len(docs), "passage": list(docs.values())})
    return pl.DataFrame(rows), corpus


def _step(corpus, tmp_path, **kw):
    raw = {"retrievers": ["bm25"], "top_k": 5, "max_queries": 12, **kw}
    params, problems = parse(DownsampleRetrievalParams, raw, "steps[0]")
    assert not problems
    return DownsampleRetrieval(params, RunContext(recipe_dir=tmp_path, tables={"corpus": corpus}, seed=7))


def _run(step, rows):
    outs = []
    stats = step.run_global(rows, outs.append)
    return collect(outs), stats


def test_keeps_judged_documents_pools_and_samples_stratified(tmp_path, tiny_dense):
    rows, corpus = _bench()
    step = _step(corpus, tmp_path, retrievers=["bm25", tiny_dense])
    out, stats = _run(step, rows)
    kept = out.rows
    assert kept.height == 12
    assert kept.group_by("lang").len().sort("lang")["len"].to_list() == [8, 4]  # 20:10 kept as 8:4
    assert out.rejects.height == 18 and set(out.rejects["reason"]) == {"not_sampled"}
    ids = set(corpus["doc_id"])
    rep = stats["downsample"]
    keep = set()
    for docs, pool in zip(kept["doc_ids"].to_list(), kept["pool_ids"].to_list()):
        assert not set(docs) & set(pool) and set(pool) <= ids
        assert len(pool) <= 2 * 5  # the union of two retrievers' top 5, judged ones excluded
        keep |= set(docs) | set(pool)
    assert rep["corpus_before"] == 200 and rep["corpus_after"] == len(keep) < 200
    assert rep["queries_before"] == 30 and rep["queries_after"] == 12
    assert rep["by_stratum"] == {"eng_Latn": {"before": 20, "after": 8}, "por_Latn": {"before": 10, "after": 4}}
    cmp = rep["comparison"]
    assert set(cmp["systems"]) == {"bm25", "tiny-dense"} and cmp["metric"] == "nDCG@10"
    for v in cmp["systems"].values():
        assert 0.0 <= v["full"] <= 1.0 and 0.0 <= v["downsampled"] <= 1.0
    # BM25 finds most positives from 4 of their words: downsampling cannot lower its score
    assert cmp["systems"]["bm25"]["full"] > 0.5
    assert cmp["systems"]["bm25"]["downsampled"] >= cmp["systems"]["bm25"]["full"] - 1e-9
    assert cmp["kendall_tau"] is not None or "note" in cmp
    report = step.finalize(stats)
    assert "Downsampled to 12 of 30 queries" in report.summary and "| documents | 200 |" in report.markdown


def test_reproducible_with_a_seed_and_changes_with_another(tmp_path):
    rows, corpus = _bench()
    a, _ = _run(_step(corpus, tmp_path, seed=3), rows)
    b, _ = _run(_step(corpus, tmp_path, seed=3), rows.sample(fraction=1.0, shuffle=True, seed=1))
    c, _ = _run(_step(corpus, tmp_path, seed=4), rows)
    assert a.rows.sort("row_id").equals(b.rows.sort("row_id"))  # same seed, any input order: same sample
    assert set(a.rows["row_id"]) != set(c.rows["row_id"])


def test_allocation_and_sampling():
    assert allocate({"a": 20, "b": 10}, 12) == {"a": 8, "b": 4}
    assert allocate({"a": 100, "b": 1}, 10) == {"a": 9, "b": 1}  # a small stratum keeps one
    assert allocate({"a": 3, "b": 2}, 50) == {"a": 3, "b": 2}
    assert sum(allocate({"a": 7, "b": 7, "c": 7}, 10).values()) == 10
    keys = [f"k{i}" for i in range(50)]
    s = stratified_sample(keys, ["x"] * 25 + ["y"] * 25, 10, seed=1)
    assert len(s) == 10 and s == sorted(s) and sum(i < 25 for i in s) == 5


def test_check_refuses_pooled_check_systems_and_bad_metric():
    params, _ = parse(DownsampleRetrievalParams, {"check_retrievers": ["bm25"], "metric": "vibes"}, "steps[0]")
    problems = dict(DownsampleRetrieval.check(params, ["query_id", "query", "doc_ids"]))
    assert "held out" in problems["check_retrievers"] and "unknown metric" in problems["metric"]


def test_recipe_writes_the_downsampled_corpus_as_mteb(tmp_path, monkeypatch):
    step = """
[[steps]]
uses = "downsample_retrieval.v1"
retrievers = ["bm25"]
top_k = 2
max_queries = 8
corpus_lang = "en"
"""
    ds = build(tmp_path, monkeypatch, extra_steps=step)
    rows = pl.read_parquet(ds / "data" / "*" / "*.parquet")
    assert rows.height == 8 and rows.group_by("lang").len()["len"].to_list() == [4, 4]
    keep = {d for docs in rows["doc_ids"].to_list() for d in docs} | {d for p in rows["pool_ids"].to_list() for d in p}
    corpus = pl.read_parquet(ds / "mteb" / "corpus")
    assert set(corpus["id"]) == keep
    judged = {d for q, d, _ in QRELS if q in set(rows["query_id"])}
    assert judged <= set(corpus["id"])
    assert (ds / "reports" / "downsample_retrieval.md").is_file()
