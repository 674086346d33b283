"""The columns ``project_spans.v1`` adds to each row, from the rows' :class:`~.rows.Projected`."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from .. import spans as S
from .rows import Projected

COLUMNS = ["target_spans", "projection_status", "projection_method", "projection_confidence", "projection_detail"]
BIO_COLUMNS = ["target_tokens", "target_tags"]


def columns(rows: Sequence[Projected], bio: bool = False) -> list[pl.Series]:
    """:data:`COLUMNS`, and with ``bio`` the target's tokens and IOB2 tags (tags only for projected rows)."""
    cols = [
        S.spans_series("target_spans", [r.spans for r in rows]),
        pl.Series("projection_status", [r.status for r in rows], dtype=pl.Utf8),
        pl.Series("projection_method", [r.method for r in rows], dtype=pl.Utf8),
        pl.Series("projection_confidence", [float(r.confidence) for r in rows], dtype=pl.Float64),
        pl.Series("projection_detail", [r.detail for r in rows], dtype=pl.Utf8),
    ]
    if not bio:
        return cols
    toks, tags = [], []
    for r in rows:
        offs = S.tokenize(r.text)
        toks.append([r.text[a:b] for a, b in offs])
        try:
            tags.append(S.spans_to_bio(S.snap_to_tokens(r.spans, offs), offs) if r.projected else None)
        except S.SpanError:
            tags.append(None)
    return [
        *cols,
        pl.Series("target_tokens", toks, dtype=pl.List(pl.Utf8)),
        pl.Series("target_tags", tags, dtype=pl.List(pl.Utf8)),
    ]
