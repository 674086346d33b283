"""Metrics come from ir-measures (trec_eval's code through pytrec_eval): they must equal trec_eval's own
test output and pytrec_eval called directly."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mlbuild.evaluation.metrics import Evaluator, evaluate, parse_metric
from mlbuild.evaluation.trec import read_qrels, read_run

DATA = Path(__file__).parent / "data" / "trec_eval"
TREC_NAMES = {"map": "AP", "P_10": "P@10", "recip_rank": "RR", "recall_100": "R@100", "ndcg_cut_10": "nDCG@10"}


def _trec_eval_output() -> dict[str, dict[str, float]]:
    """trec_eval -q -a on its test files: measure -> query (or 'all') -> value."""
    out: dict[str, dict[str, float]] = {}
    for line in (DATA / "out.test.aq").read_text().splitlines():
        name, q, v = line.split()
        if name in TREC_NAMES:
            out.setdefault(name, {})[q] = float(v)
    return out


def test_equals_trec_eval_on_its_own_test_files():
    qrels, run = read_qrels(DATA / "qrels.test"), read_run(DATA / "results.test")
    expected = _trec_eval_output()
    ev = Evaluator(qrels, list(TREC_NAMES), missing="skip")
    got = ev.aggregate(run)
    for trec, ours in TREC_NAMES.items():
        assert round(got[ours], 4) == pytest.approx(expected[trec]["all"], abs=1e-9), trec
    per_q = ev.per_query(run)
    for trec, ours in TREC_NAMES.items():
        for q, v in expected[trec].items():
            if q != "all":
                assert round(per_q[q][ours], 4) == pytest.approx(v, abs=1e-9), (trec, q)


def _crafted(seed: int):
    rnd = random.Random(seed)
    qrels, run = {}, {}
    for q in range(12):
        qid = f"q{q}"
        docs = [f"d{i}" for i in range(60)]
        judged = rnd.sample(docs, 15)
        qrels[qid] = {d: rnd.choice([0, 1, 1, 2, 3]) for d in judged}
        if q == 11:
            continue  # a judged query the run lacks
        ranked = rnd.sample(docs, 40)
        # ties on purpose: scores on a coarse grid
        run[qid] = {d: float(rnd.randint(0, 9)) for d in ranked}
    qrels["q_only_nonrel"] = {"d1": 0}
    run["q_unjudged"] = {"d1": 1.0}
    return qrels, run


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_pytrec_eval_called_directly_on_crafted_runs(seed):
    import pytrec_eval

    qrels, run = _crafted(seed)
    measures = {"map", "P_10", "recip_rank", "recall_100", "ndcg_cut_10", "ndcg_cut_5", "P_5"}
    direct = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    ours = Evaluator(qrels, ["AP", "P@10", "RR", "R@100", "nDCG@10", "nDCG@5", "P@5"], missing="skip").per_query(run)
    names = {"map": "AP", "P_10": "P@10", "recip_rank": "RR", "recall_100": "R@100", "ndcg_cut_10": "nDCG@10"}
    names |= {"ndcg_cut_5": "nDCG@5", "P_5": "P@5"}
    assert set(ours) == set(direct)
    for q, vals in direct.items():
        for trec, v in vals.items():
            assert ours[q][names[trec]] == pytest.approx(v, abs=1e-12), (q, trec)


def test_missing_queries_count_zero_or_are_skipped():
    qrels = {"a": {"d1": 1}, "b": {"d2": 1}}
    run = {"a": {"d1": 1.0, "d3": 0.5}}  # nothing for b
    assert evaluate(qrels, run, ["nDCG@10"], missing="skip") == {"nDCG@10": 1.0}
    assert evaluate(qrels, run, ["nDCG@10"], missing="zero") == {"nDCG@10": 0.5}
    assert evaluate(qrels, {"a": {}, "b": {}}, ["RR"], missing="zero") == {"RR": 0.0}


@pytest.mark.parametrize(
    "name, canon",
    [
        ("ndcg@10", "nDCG@10"),
        ("recall@100", "R@100"),
        ("mrr@10", "RR@10"),
        ("map", "AP"),
        ("p@10", "P@10"),
        ("MRR", "RR"),
        ("nDCG@10", "nDCG@10"),
        ("ndcg_cut_10", "nDCG@10"),
        ("recip_rank", "RR"),
        ("recall_100", "R@100"),
    ],
)
def test_metric_names_follow_ir_measures(name, canon):
    assert parse_metric(name)[0] == canon


def test_unknown_metric_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match="nDCG@10"):
        parse_metric("accuracy-of-vibes@3")
