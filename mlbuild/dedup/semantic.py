"""Semantic duplicates by blocked exact search: each block of query vectors is searched against the
whole candidate matrix with :func:`mlbuild.models.search.exact_topk` (running top-k per query, one
score block at a time; never a ``rows x rows`` matrix), and pairs above the threshold that pass a
pair rule (other node; other language, or same language) become duplicate pairs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def topk(queries: np.ndarray, corpus: np.ndarray, k: int, search: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(scores, indices) of the ``k`` best corpus rows per query (``-inf`` / ``-1`` padding)."""
    from ..models.search import exact_topk

    return exact_topk(queries, corpus, k, **search)


def semantic_pairs(
    vectors: np.ndarray,
    rows: np.ndarray,
    k: int,
    threshold: float,
    allow: Callable[[np.ndarray, np.ndarray], np.ndarray],
    search: dict[str, Any],
    block: int = 16384,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``(u, v, cosine)`` of rows (``rows[i]`` is the row of ``vectors[i]``; vectors L2-normalised,
    possibly memory-mapped) whose cosine is at least ``threshold`` among each row's ``k`` nearest others,
    and that ``allow(u_rows, v_rows)`` accepts. Each pair is reported once, ``u < v``."""
    us, vs, ss = [], [], []
    n = len(rows)
    kk = min(k + 1, n)  # the row itself is among its neighbours
    for q0 in range(0, n, block):
        q1 = min(n, q0 + block)
        scores, idx = topk(np.asarray(vectors[q0:q1]), vectors, kk, search)
        qi = np.repeat(np.arange(q0, q1, dtype=np.int64), kk)
        ci, sc = idx.reshape(-1), scores.reshape(-1)
        ok = (ci >= 0) & (ci != qi) & (sc >= threshold)
        qi, ci, sc = qi[ok], ci[ok], sc[ok]
        ur, vr = rows[qi], rows[ci]
        ok = allow(ur, vr)
        us.append(ur[ok])
        vs.append(vr[ok])
        ss.append(sc[ok])
        if progress is not None:
            progress(q1 - q0)
    if not us:
        z = np.zeros(0, dtype=np.int64)
        return z, z, np.zeros(0, np.float32)
    u, v, s = np.concatenate(us), np.concatenate(vs), np.concatenate(ss)
    lo, hi = np.minimum(u, v), np.maximum(u, v)
    # a pair found from both sides once; keep the higher score when the two sides' scores differ by rounding
    order = np.lexsort((-s, hi, lo))
    lo, hi, s = lo[order], hi[order], s[order]
    first = np.ones(len(lo), dtype=bool)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    return lo[first], hi[first], s[first]
