"""Projection scores: exact-match span precision/recall/F1, and word-alignment error rate (AER)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from ..spans import Span


def span_counts(pred: Iterable[Span] | None, gold: Iterable[Span] | None, labels: bool = True) -> dict[str, int]:
    """True positives, false positives and false negatives of one row (exact offsets, and labels unless
    ``labels=False``); summable over rows."""
    key = (lambda s: (s.start, s.end, s.label)) if labels else (lambda s: (s.start, s.end))
    p = Counter(key(s) for s in (pred or []))
    g = Counter(key(s) for s in (gold or []))
    tp = sum((p & g).values())
    return {"tp": tp, "fp": sum(p.values()) - tp, "fn": sum(g.values()) - tp}


def prf(counts: dict[str, Any]) -> dict[str, float]:
    tp, fp, fn = counts.get("tp", 0), counts.get("fp", 0), counts.get("fn", 0)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f}


def span_prf(
    pred: Sequence[Iterable[Span] | None], gold: Sequence[Iterable[Span] | None], labels: bool = True
) -> dict[str, float]:
    total = {"tp": 0, "fp": 0, "fn": 0}
    for p, g in zip(pred, gold):
        for k, v in span_counts(p, g, labels).items():
            total[k] += v
    return {**prf(total), **total}


def aer(
    pred: Sequence[set[tuple[int, int]]],
    sure: Sequence[set[tuple[int, int]]],
    possible: Sequence[set[tuple[int, int]]] | None = None,
) -> float:
    """Alignment error rate (Och & Ney 2003): 1 - (|A&S| + |A&P|) / (|A| + |S|); P defaults to S
    (gold sets without a sure/possible distinction, such as XL-WA)."""
    possible = possible if possible is not None else sure
    a_s = a_p = n_a = n_s = 0
    for a, s, p in zip(pred, sure, possible):
        p = p | s
        a_s += len(a & s)
        a_p += len(a & p)
        n_a += len(a)
        n_s += len(s)
    return 1.0 - (a_s + a_p) / (n_a + n_s) if n_a + n_s else 0.0


def alignment_prf(pred: Sequence[set[tuple[int, int]]], gold: Sequence[set[tuple[int, int]]]) -> dict[str, float]:
    tp = sum(len(a & g) for a, g in zip(pred, gold))
    return prf({"tp": tp, "fp": sum(len(a) for a in pred) - tp, "fn": sum(len(g) for g in gold) - tp})
