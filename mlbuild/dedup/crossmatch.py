"""Embedding matches of rows against the items of an evaluation set, for ``decontaminate.v1``.

A row matches an item when their cosine is at least a threshold and, optionally, their ratio margin is
at least another (the score of LASER's bitext mining, Artetxe & Schwenk 2019): the cosine divided by the
mean cosine of both sides' ``k`` nearest neighbours, ``cos(x, y) / ((knn(x) + knn(y)) / 2)``, where
``knn(x)`` is the mean over the row's ``k`` nearest items and ``knn(y)`` the mean over the item's ``k``
nearest other items of its set. Small multilingual embedders score many unrelated pairs of short
sentences high; the margin asks a match to stand out of both neighbourhoods. Rows are searched against
a set with :func:`mlbuild.dedup.semantic.topk` (blocked exact search), one shard at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .semantic import topk

CROSS_K = 16  # nearest items examined for one the language rule allows


def item_knn(items: np.ndarray, k: int, search: dict[str, Any]) -> np.ndarray:
    """Per item: the mean cosine of its ``k`` nearest other items (fewer in a small set; 0 when alone)."""
    n = len(items)
    if n < 2:
        return np.zeros(n, dtype=np.float32)
    s, i = topk(items, items, min(n, k + 1), search)
    ok = (i >= 0) & (i != np.arange(n)[:, None])
    ok &= np.cumsum(ok, axis=1) <= k
    return (np.where(ok, s, 0.0).sum(axis=1) / np.maximum(ok.sum(axis=1), 1)).astype(np.float32)


def best_matches(
    vec: np.ndarray,
    items: np.ndarray,
    knn_items: np.ndarray,
    margin_k: int | None,
    allowed: Any,
    search: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: (cosine, margin, item) of its best allowed item, by margin when ``margin_k`` is set, else
    by cosine (margin NaN); ``-inf`` / ``-1`` when no item is allowed among the nearest. ``allowed(i)``
    takes the item indices [rows, k] and returns a boolean mask, or is None (any item)."""
    n = len(vec)
    want = max(1 if allowed is None else CROSS_K, margin_k or 1)
    s, i = topk(vec, items, min(len(items), want), search)
    ok = i >= 0
    if allowed is not None:
        ok &= allowed(np.maximum(i, 0))
    margin = np.full(s.shape, np.nan, dtype=np.float32)
    key = s
    if margin_k:
        knn_row = s[:, : min(margin_k, s.shape[1])].mean(axis=1)
        margin = s / ((knn_row[:, None] + knn_items[np.maximum(i, 0)]) / 2)
        key = margin
    key = np.where(ok, key, -np.inf)
    best = key.argmax(axis=1)
    rows = np.arange(n)
    found = ok[rows, best]
    cos = np.where(found, s[rows, best], -np.inf).astype(np.float32)
    return cos, np.where(found, margin[rows, best], np.nan).astype(np.float32), np.where(found, i[rows, best], -1)
