"""Input rows as the miner sees them, one batch at a time (the same function in every pass, so the
passes agree on row numbers): a list of positives is split into rows (ids ``<row_id>/p<i>``, with a
list of vectors split alike), and rows with an empty query or positive become rejects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl

from ..errors import StepError
from ..pipeline.base import ROW_ID, reject

DEFAULT_BATCH_ROWS = 50_000  # a DataFrame input is read in slices of this many rows


def batches(table: Any, columns: list[str] | None = None, rows: int | None = None) -> Iterator[pl.DataFrame]:
    """Batches of a :class:`~mlbuild.pipeline.tables.TableRef` (its shards) or of a DataFrame (slices)."""
    if isinstance(table, pl.DataFrame):
        df = table if columns is None else table.select([c for c in columns if c in table.columns])
        step = max(1, rows or DEFAULT_BATCH_ROWS)
        for s in range(0, df.height, step):
            yield df.slice(s, step)
        return
    have = set(table.columns)
    yield from table.iter_batches(None if columns is None else [c for c in columns if c in have])


def split_positives(batch: pl.DataFrame, pc: str, embedding: str | None) -> pl.DataFrame:
    """One row per positive when ``pc`` holds lists (and ``embedding``, if given, one vector per item)."""
    if not isinstance(batch.schema[pc], pl.List):
        return batch
    multi = batch[pc].list.len() > 1
    cols = [pc]
    if embedding and embedding in batch.columns:
        dt = batch.schema[embedding]
        if isinstance(dt, pl.List) and isinstance(dt.inner, (pl.List, pl.Array)):
            cols.append(embedding)
    return (
        batch.with_columns(pl.Series("__multi", multi))
        .explode(cols)
        .with_columns(
            pl.when(pl.col("__multi"))
            .then(pl.col(ROW_ID) + "/p" + (pl.int_range(pl.len()).over(ROW_ID) + 1).cast(pl.Utf8))
            .otherwise(pl.col(ROW_ID))
            .alias(ROW_ID)
        )
        .drop("__multi")
    )


def prepare(
    batch: pl.DataFrame, qc: str, pc: str, embedding: str | None = None
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """(rows to mine, rejects) of one input batch."""
    batch = split_positives(batch, pc, embedding)
    empty = (
        pl.col(qc).is_null()
        | (pl.col(qc).cast(pl.Utf8).str.strip_chars() == "")
        | pl.col(pc).is_null()
        | (pl.col(pc).cast(pl.Utf8).str.strip_chars() == "")
    )
    mask = batch.select(empty.alias("m"))["m"]
    if not mask.any():
        return batch, None
    return batch.filter(~mask), reject(batch.filter(mask), "empty_query_or_positive")


def matrix(col: pl.Series, step: str) -> np.ndarray:
    """A vectors column (Array or List of floats) as a float32 [n, d] array (no copy for Array columns)."""
    if col.null_count():
        raise StepError(step, f"column {col.name!r} has rows without a vector")
    if isinstance(col.dtype, pl.List):
        if isinstance(col.dtype.inner, (pl.List, pl.Array)):
            raise StepError(step, f"column {col.name!r} holds lists of vectors; one vector per row expected")
        width = col.list.len().unique()
        if width.len() > 1:
            raise StepError(step, f"column {col.name!r} holds vectors of different widths")
        col = col.cast(pl.Array(pl.Float32, int(width[0]) if width.len() else 0))
    if not isinstance(col.dtype, pl.Array):
        raise StepError(step, f"column {col.name!r} is not a vector column ({col.dtype})")
    m = col.to_numpy()
    return m if m.dtype == np.float32 else m.astype(np.float32)


def unit_rows(m: np.ndarray, what: str, step: str) -> np.ndarray:
    """Vectors for cosine similarity: rows whose norm is not 1 (within 1e-4) are divided by it (zero rows
    are left as they are); non-finite values are an error naming ``what``."""
    m = np.asarray(m, dtype=np.float32)
    if not np.isfinite(m).all():
        raise StepError(step, f"{what} holds NaN or infinite values")
    norms = np.sqrt(np.einsum("ij,ij->i", m, m))
    off = np.abs(norms - 1) > 1e-4
    if off.any():
        m = m.copy()
        scale = np.where(norms[off] == 0, 1.0, norms[off]).astype(np.float32)
        m[off] = m[off] / scale[:, None]
    return m
