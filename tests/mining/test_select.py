"""Candidates, rules and layouts: a teacher reorders a window, a retriever tag travels with its
candidate, exclusions renumber with a subset of queries, and a layout added as a module is used by name."""

from __future__ import annotations

import numpy as np
import polars as pl

from mlbuild.mining import layouts
from mlbuild.mining.select import Candidates, Exclusions, Rules, select


def test_teacher_rescoring_reorders_the_window_and_keeps_tags():
    c = Candidates(
        index=np.array([[4, 2, 9, -1]]),
        score=np.array([[0.9, 0.8, 0.7, -np.inf]], np.float32),
        retriever=np.array([[0, 1, 0, 0]], np.int8),
        retrievers=("dense", "bm25"),
        teacher=np.array([[0.1, 0.5, 0.5, 0.0]], np.float32),
    )
    t = c.rescored_by_teacher()
    assert t.index.tolist() == [[2, 9, 4, -1]]  # teacher desc, ties by corpus index
    assert t.retriever.tolist() == [[1, 0, 0, 0]] and t.score[0, :3].tolist() == [0.5, 0.5, 0.10000000149011612]


def test_select_counts_each_candidate_under_its_first_reason():
    cands = Candidates(np.array([[0, 1, 2, 3, 4, 5]]), np.array([[0.95, 0.9, 0.8, 0.7, 0.6, 0.5]], np.float32))
    excl = Exclusions.of([0], [1], [0], [2])
    rules = Rules(num_negatives=2, max_score=0.92)
    sel = select(cands, excl, np.array([0.9], np.float32), rules, rules.window(1), None)
    assert sel.index[0].tolist() == [3, 4]
    assert sel.skipped == {"positive": 1, "exclude_same": 1, "max_score": 1}
    sub = Exclusions.of([0, 1, 2], [5, 6, 7], [], []).subset(np.array([2, 0]))
    assert sub.positive.tolist() == [0 * (1 << 32) + 7, 1 * (1 << 32) + 5]


def test_a_layout_is_a_registered_module():
    @layouts.register
    class Firsts(layouts.Layout):
        name = "first-negative"
        score_columns = ("first_score",)

        def columns(self, num_negatives):
            return ["first"]

        def build(self, m, num_negatives, include_scores):
            cols = [pl.Series("first", [ns[0] for ns in m.negatives], dtype=pl.Utf8)]
            if include_scores:
                cols.append(pl.Series("first_score", [s[0] for s in m.neg_scores], dtype=pl.Float32))
            return m.base.with_columns(cols)

    try:
        m = layouts.Mined(
            pl.DataFrame({"row_id": ["a", "b"], "q": ["x", "y"]}),
            "p",
            ["p1", "p2"],
            [["n1", "n2"], []],
            [[0.5, 0.4], []],
            np.array([0.9, 0.8], np.float32),
            np.array([True, True]),
        )
        rows, rej = layouts.get("first-negative").apply(m, 2, True)
        assert rows["first"].to_list() == ["n1"] and rej["reason"].to_list() == ["no_negatives"]
        assert layouts.score_columns("first-negative", True, False) == ["first_score"]
    finally:
        layouts.LAYOUTS.pop("first-negative")
    assert set(layouts.NAMES) == {
        *("triplet", "n-tuple", "labeled-pair", "labeled-list", "margin"),
        *("listwise", "st-listwise", "flag-reranker", "rank-permutation"),
    }
