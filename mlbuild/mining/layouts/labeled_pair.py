"""``labeled-pair``: each row's positive (id ``<row_id>/p``, ``label`` 1), then, once per query (with its
first row), each negative (id ``<row_id>/n<j>``, ``label`` 0); the positive column holds the document
[``score``] [``teacher_score``] [``retriever``: null on positives]. Rows are never rejected: the positive pair is always written."""

from __future__ import annotations

import numpy as np
import polars as pl

from ...pipeline.base import ROW_ID
from .base import Layout, Mined, register


@register
class LabeledPair(Layout):
    name = "labeled-pair"
    score_columns = ("score",)
    teacher_columns = ("teacher_score",)
    retriever_columns = ("retriever",)

    def columns(self, num_negatives: int) -> list[str]:
        return ["label"]

    def needs(self, num_negatives: int) -> int:
        return 0

    def build(self, m: Mined, num_negatives: int, include_scores: bool) -> pl.DataFrame:
        teacher = m.teacher_pos is not None
        idx, suffix, docs, labels, scores, tscores, tags = [], [], [], [], [], [], []
        for r in range(len(m.positive)):
            idx.append(r)
            suffix.append("/p")
            docs.append(m.positive[r])
            labels.append(1)
            scores.append(float(m.pos_score[r]))
            tags.append(None)
            if teacher:
                tscores.append(m.teacher_pos[r])
            if m.first_of_query[r]:
                for j, t in enumerate(m.negatives[r]):
                    idx.append(r)
                    suffix.append(f"/n{j + 1}")
                    docs.append(t)
                    labels.append(0)
                    scores.append(m.neg_scores[r][j])
                    tags.append(m.neg_retrievers[r][j] if m.neg_retrievers is not None else None)
                    if teacher:
                        tscores.append(m.teacher_neg[r][j])
        cols = [
            (pl.col(ROW_ID) + pl.Series(suffix, dtype=pl.Utf8)).alias(ROW_ID),
            pl.Series(m.positive_column, docs, dtype=pl.Utf8),
            pl.Series("label", labels, dtype=pl.Int8),
        ]
        if include_scores:
            cols.append(pl.Series("score", scores, dtype=pl.Float32))
        if teacher:
            cols.append(pl.Series("teacher_score", tscores, dtype=pl.Float32))
        if m.neg_retrievers is not None:
            cols.append(pl.Series("retriever", tags, dtype=pl.Utf8))
        return m.base[np.asarray(idx, dtype=np.int64)].with_columns(cols)
