"""``labeled-list``: one row per input row; the positive column holds ``[positive, negatives...]``, with
``labels`` [``scores``] [``teacher_scores``] [``retrievers``: null for the positive]."""

from __future__ import annotations

import polars as pl

from .base import Layout, Mined, register


@register
class LabeledList(Layout):
    name = "labeled-list"
    score_columns = ("scores",)
    teacher_columns = ("teacher_scores",)
    retriever_columns = ("retrievers",)

    def columns(self, num_negatives: int) -> list[str]:
        return ["labels"]

    def build(self, m: Mined, num_negatives: int, include_scores: bool) -> pl.DataFrame:
        pc = m.positive_column
        cols = [
            pl.Series(pc, [[p, *ns] for p, ns in zip(m.positive, m.negatives)], dtype=pl.List(pl.Utf8)),
            pl.Series("labels", [[1] + [0] * len(ns) for ns in m.negatives], dtype=pl.List(pl.Int8)),
        ]
        if include_scores:
            cols.append(
                pl.Series(
                    "scores", [[float(p), *s] for p, s in zip(m.pos_score, m.neg_scores)], dtype=pl.List(pl.Float32)
                )
            )
        if m.teacher_pos is not None:
            cols.append(
                pl.Series(
                    "teacher_scores",
                    [[p, *s] for p, s in zip(m.teacher_pos, m.teacher_neg)],
                    dtype=pl.List(pl.Float32),
                )
            )
        if m.neg_retrievers is not None:  # the positive's slot is null
            cols.append(pl.Series("retrievers", [[None, *t] for t in m.neg_retrievers], dtype=pl.List(pl.Utf8)))
        return m.base.with_columns(cols)
