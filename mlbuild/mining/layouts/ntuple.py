"""``n-tuple``: one row per input row with ``negative_1`` .. ``negative_<n>`` [``positive_score``,
``negative_scores``] [``teacher_positive_score``, ``teacher_negative_scores``] [``negative_retrievers``]; rows with fewer than ``n``
negatives are rejected (``too_few_negatives``), as sentence-transformers drops them."""

from __future__ import annotations

import polars as pl

from .base import Layout, Mined, register


@register
class NTuple(Layout):
    name = "n-tuple"
    score_columns = ("positive_score", "negative_scores")
    teacher_columns = ("teacher_positive_score", "teacher_negative_scores")
    retriever_columns = ("negative_retrievers",)

    def columns(self, num_negatives: int) -> list[str]:
        return [f"negative_{i}" for i in range(1, num_negatives + 1)]

    def needs(self, num_negatives: int) -> int:
        return num_negatives

    def reject_reason(self) -> str:
        return "too_few_negatives"

    def build(self, m: Mined, num_negatives: int, include_scores: bool) -> pl.DataFrame:
        n = num_negatives
        cols = [pl.Series(f"negative_{j + 1}", [ts[j] for ts in m.negatives], dtype=pl.Utf8) for j in range(n)]
        if include_scores:
            cols += [
                pl.Series("positive_score", m.pos_score, dtype=pl.Float32),
                pl.Series("negative_scores", [s[:n] for s in m.neg_scores], dtype=pl.List(pl.Float32)),
            ]
        if m.teacher_pos is not None:
            cols += [
                pl.Series("teacher_positive_score", m.teacher_pos, dtype=pl.Float32),
                pl.Series("teacher_negative_scores", [s[:n] for s in m.teacher_neg], dtype=pl.List(pl.Float32)),
            ]
        if m.neg_retrievers is not None:
            cols.append(pl.Series("negative_retrievers", [t[:n] for t in m.neg_retrievers], dtype=pl.List(pl.Utf8)))
        return m.base.with_columns(cols)
