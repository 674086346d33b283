"""``margin``: Margin-MSE triples, one row per negative (ids ``<row_id>/n<j>``): the positive column,
``negative`` and ``margin`` = teacher(query, positive) - teacher(query, negative), from the cross-encoder
``teacher`` (required; named in the card and the manifest), with ``teacher_positive_score`` and
``teacher_negative_score`` [``positive_score``, ``negative_score``: dense cosine] [``negative_retriever``].
sentence-transformers' ``MarginMSELoss`` reads (query, positive, negative) and a label column: rename
``margin`` to ``label`` and select those four columns."""

from __future__ import annotations

import numpy as np
import polars as pl

from ...pipeline.base import ROW_ID
from .base import Layout, Mined, register


@register
class Margin(Layout):
    name = "margin"
    score_columns = ("positive_score", "negative_score")
    teacher_columns = ("teacher_positive_score", "teacher_negative_score")
    retriever_columns = ("negative_retriever",)
    needs_teacher = True

    def columns(self, num_negatives: int) -> list[str]:
        return ["negative", "margin"]

    def build(self, m: Mined, num_negatives: int, include_scores: bool) -> pl.DataFrame:
        counts = m.counts
        rep = np.repeat(np.arange(len(counts)), counts)
        j = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, np.int64)
        tpos = np.asarray([m.teacher_pos[r] for r in rep], dtype=np.float32)
        tneg = np.asarray([s for ss in m.teacher_neg for s in ss], dtype=np.float32)
        cols = [
            (pl.col(ROW_ID) + pl.Series([f"/n{x + 1}" for x in j], dtype=pl.Utf8)).alias(ROW_ID),
            pl.Series("negative", [t for ts in m.negatives for t in ts], dtype=pl.Utf8),
            pl.Series("margin", tpos - tneg, dtype=pl.Float32),
            pl.Series("teacher_positive_score", tpos, dtype=pl.Float32),
            pl.Series("teacher_negative_score", tneg, dtype=pl.Float32),
        ]
        if include_scores:
            cols += [
                pl.Series("positive_score", m.pos_score[rep], dtype=pl.Float32),
                pl.Series("negative_score", [s for ss in m.neg_scores for s in ss], dtype=pl.Float32),
            ]
        if m.neg_retrievers is not None:
            cols.append(pl.Series("negative_retriever", [t for ts in m.neg_retrievers for t in ts], dtype=pl.Utf8))
        return m.base[rep].with_columns(cols)
