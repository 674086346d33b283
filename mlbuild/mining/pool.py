"""Pooled candidates from several retrievers (``retrievers = ["dense", "bm25"]``).

Each retriever returns, per query, its top ``k`` corpus rows of the group (dense: exact cosine search;
``bm25``: :class:`mlbuild.models.bm25.BM25` over the same rows in the same order, so an index means the
same passage for both). The pool is their union, one slot per passage, in a fixed order:

1. the passage's best rank over the retrievers that found it (rank 0 = a retriever's top hit), so the
   lists are interleaved: dense #1, BM25 #1, dense #2, BM25 #2, ...;
2. then the position in ``retrievers`` of the retriever that gave that best rank;
3. then the corpus index.

Every pooled passage carries its **dense cosine score** (the dense search's own score, or an exact
pair score for passages only another retriever found), so ``max_score`` / ``min_score`` and the margins
keep working on one scale, and a tag naming every retriever that found it (``dense``, ``bm25``,
``dense+bm25``). With ``retrievers = ["dense"]`` the pool is the dense window unchanged (rank order =
score desc, index asc). The positives and ``exclude_same`` exclusions are applied to the pool afterwards
by :func:`~mlbuild.mining.select.select`, so they hold for every retriever's candidates."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from .select import CODE, Candidates

RETRIEVERS = ("dense", "bm25")


def labels(retrievers: Sequence[str]) -> tuple[str, ...]:
    """Tag names by bit set: position ``b - 1`` names the retrievers whose bits are set in ``b``."""
    n = len(retrievers)
    return tuple("+".join(r for j, r in enumerate(retrievers) if b >> j & 1) for b in range(1, 1 << n))


def pool(
    lists: Sequence[tuple[np.ndarray, np.ndarray]],
    retrievers: Sequence[str],
    dense_scores: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> Candidates:
    """Pool the retrievers' windows (``lists[j] = (scores, indices)`` of ``retrievers[j]``, [nq, k_j],
    index -1 = none; the first is the dense search) in the order of the module docstring.
    ``dense_scores(rows, indices)`` gives exact dense scores of the passages no dense window holds."""
    if len(lists) == 1:
        s, i = lists[0]
        return Candidates(i, s)
    nq = lists[0][1].shape[0]
    rows, idx, rank, src, score = [], [], [], [], []
    for j, (s, i) in enumerate(lists):
        r, c = np.nonzero(i >= 0)
        rows.append(r)
        idx.append(i[r, c])
        rank.append(c)
        src.append(np.full(len(r), j, np.int64))
        score.append(s[r, c] if j == 0 else np.full(len(r), np.nan, np.float32))
    rows, idx, rank, src = (np.concatenate(x).astype(np.int64) for x in (rows, idx, rank, src))
    score = np.concatenate(score).astype(np.float32)
    code = rows * CODE + idx
    order = np.lexsort((src, rank, code))  # per passage: its best (rank, retriever) first
    code_s = code[order]
    first = np.flatnonzero(np.r_[True, code_s[1:] != code_s[:-1]]) if len(code_s) else np.zeros(0, np.int64)
    bits = np.bitwise_or.reduceat(np.left_shift(1, src[order]), first) if len(first) else np.zeros(0, np.int64)
    dense_found = (bits & 1).astype(bool)
    best = order[first]
    # the dense score of a passage the dense window holds (found by dense: its entry has src 0)
    dense_pos = np.flatnonzero(src == 0)
    dscore = np.full(len(best), np.nan, np.float32)
    if dense_found.any():
        sorter = np.argsort(code[dense_pos], kind="stable")
        pos_in = np.searchsorted(code[dense_pos][sorter], code[best[dense_found]])
        dscore[dense_found] = score[dense_pos[sorter[pos_in]]]
    missing = ~dense_found
    if missing.any():
        dscore[missing] = dense_scores(rows[best[missing]], idx[best[missing]])
    # the pool, per row in (best rank, retriever, index) order
    b_rows, b_rank, b_src, b_idx = rows[best], rank[best], src[best], idx[best]
    o = np.lexsort((b_idx, b_src, b_rank, b_rows))
    counts = np.bincount(b_rows, minlength=nq)
    width = int(counts.max(initial=0))
    out_i = np.full((nq, width), -1, np.int64)
    out_s = np.full((nq, width), -np.inf, np.float32)
    out_t = np.zeros((nq, width), np.int8)
    starts = np.cumsum(counts) - counts
    col = np.arange(len(o)) - np.repeat(starts, counts)
    r_o = b_rows[o]
    out_i[r_o, col] = b_idx[o]
    out_s[r_o, col] = dscore[o]
    out_t[r_o, col] = bits[o] - 1
    return Candidates(out_i, out_s, retriever=out_t, retrievers=labels(retrievers))


def texts_in_blocks(get: Callable[[np.ndarray], list[str]], n: int, block: int = 16_384) -> Iterator[str]:
    """Texts 0..n-1 fetched ``block`` at a time (what :meth:`BM25.index` streams)."""
    for s in range(0, n, block):
        yield from get(np.arange(s, min(n, s + block)))


def bm25_index(texts: Iterator[str], lang: str | None):
    """A :class:`~mlbuild.models.bm25.BM25` over ``texts`` (one group's corpus, in search order)."""
    from ..models.bm25 import BM25

    return BM25(lang=lang).index(texts)
