"""Pooled candidates: the documented order (best rank, then retriever, then corpus index), one slot per
passage with every retriever that found it, dense scores for passages only BM25 found, and the dense
window unchanged when dense is the only retriever."""

from __future__ import annotations

import numpy as np

from mlbuild.mining.pool import labels, pool
from mlbuild.mining.select import Candidates, Exclusions, Rules, select


def test_labels_name_every_combination():
    assert labels(["dense"]) == ("dense",)
    assert labels(["dense", "bm25"]) == ("dense", "bm25", "dense+bm25")


def test_pool_interleaves_by_rank_dedups_and_tags():
    dense = (np.array([[0.9, 0.8, 0.7], [0.5, -np.inf, -np.inf]], np.float32), np.array([[4, 7, 2], [1, -1, -1]]))
    bm25 = (np.array([[12.0, 9.0, 3.0], [5.0, 4.0, -np.inf]], np.float32), np.array([[7, 5, 4], [3, 1, -1]]))
    asked = []

    def dense_scores(rows, idx):
        asked.append((rows.tolist(), idx.tolist()))
        return (0.1 * idx).astype(np.float32)

    c = pool([dense, bm25], ["dense", "bm25"], dense_scores)
    # row 0: dense#0=4, bm25#0=7 (also dense#1: best rank 0 via bm25), dense#2... -> 4 (r0 dense), 7 (r0 bm25),
    # then rank 1: 5 (bm25; 7 already placed), rank 2: 2 (dense); 4 also bm25#2 (already placed)
    assert c.index[0].tolist() == [4, 7, 5, 2]
    assert [c.retrievers[t] for t in c.retriever[0]] == ["dense+bm25", "dense+bm25", "bm25", "dense"]
    assert c.score[0].tolist() == np.array([0.9, 0.8, 0.5, 0.7], np.float32).tolist()  # 5: computed 0.1 * 5
    # row 1: dense#0=1 (also bm25#1), bm25#0=3 -> tie at rank 0: dense first
    assert c.index[1].tolist()[:2] == [1, 3] and c.index[1, 2:].tolist() == [-1, -1]
    assert [c.retrievers[t] for t in c.retriever[1, :2]] == ["dense+bm25", "bm25"]
    assert sorted(asked[0][1]) == [3, 5]  # only passages no dense window held are scored


def test_dense_alone_is_the_dense_window():
    s = np.array([[0.9, 0.8]], np.float32)
    i = np.array([[3, 1]])
    c = pool([(s, i)], ["dense"], lambda r, x: None)
    assert c.index is i and c.score is s and c.retriever is None


def test_exclusions_apply_to_bm25_candidates_and_tags_follow_the_selection():
    dense = (np.array([[0.9, 0.8]], np.float32), np.array([[0, 1]]))
    bm25 = (np.array([[8.0, 7.0, 6.0]], np.float32), np.array([[2, 0, 3]]))
    c = pool([dense, bm25], ["dense", "bm25"], lambda r, x: np.full(len(x), 0.5, np.float32))
    assert c.index[0].tolist() == [0, 2, 1, 3]
    # passage 0 is the positive, passage 2 shares its parallel_id: both out, whoever found them
    sel = select(c, Exclusions.of([0], [0], [0], [2]), np.array([0.9], np.float32), Rules(num_negatives=2), 10, None)
    assert sel.index[0].tolist() == [1, 3] and sel.skipped == {"positive": 1, "exclude_same": 1}
    assert [c.retrievers[t] for t in sel.retriever[0]] == ["dense", "bm25"]
    assert isinstance(c, Candidates)
