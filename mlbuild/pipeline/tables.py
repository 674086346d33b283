"""A table that stays on disk: the shards of a finished stage, read batch by batch.

Steps and writers see upstream data and side tables (``ctx.tables["corpus"]``) as a
:class:`TableRef`: its size and columns are known without reading it; :meth:`TableRef.iter_batches`
reads one shard at a time (optionally a few columns); :meth:`TableRef.read` materialises the whole
table and is meant for small tables only (qrels, a query set)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from . import checkpoint as ck
from .base import ROW_ID
from .store import parquet_schema


@dataclass(frozen=True)
class TableRef:
    """The ordered shards of one finished stage folder. Picklable (Ray workers read it themselves)."""

    dir: Any  # Path | RemotePath
    shards: tuple[str, ...]
    rows: int
    name: str = ""
    _schema: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of_stage(cls, stage_dir: Any, name: str = "") -> TableRef:
        done = ck.stage_done(stage_dir)
        if done is None:
            raise RuntimeError(f"stage {stage_dir} is not finished")
        shards = tuple(done["shards"])
        rows = done.get("rows")
        if rows is None:
            rows = sum(ck.shard_rows(stage_dir, s) for s in shards)
        return cls(stage_dir, shards, int(rows), name)

    @property
    def height(self) -> int:
        return self.rows

    def schema(self) -> dict[str, pl.DataType]:
        """Column -> dtype over all shards (a column missing or all-null in some shards takes the type
        the others give it), from the parquet footers only."""
        if not self._schema:
            frames = [pl.DataFrame(schema=parquet_schema(self.dir / f"{s}.parquet")) for s in self.shards]
            merged = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame(schema={ROW_ID: pl.Utf8})
            self._schema.update(merged.schema)
        return dict(self._schema)

    @property
    def columns(self) -> list[str]:
        return list(self.schema())

    def iter_batches(self, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
        """One shard at a time, in order, cast to the table's schema (so every batch has every column)."""
        schema = self.schema()
        want = columns if columns is not None else list(schema)
        for s in self.shards:
            have = set(pl.DataFrame(schema=parquet_schema(self.dir / f"{s}.parquet")).columns)
            df = ck.read_shard(self.dir, s, columns=[c for c in want if c in have])
            yield conform(df, {c: schema[c] for c in want if c in schema})

    def read(self, columns: list[str] | None = None) -> pl.DataFrame:
        """The whole table in memory: for small tables (qrels, queries) only."""
        frames = list(self.iter_batches(columns))
        if not frames:
            return pl.DataFrame(schema=self.schema())
        return pl.concat(frames, how="vertical")


def conform(df: pl.DataFrame, schema: dict[str, Any]) -> pl.DataFrame:
    """``df`` with exactly ``schema``'s columns in its order and types (missing columns as nulls)."""
    cols = []
    for name, dtype in schema.items():
        if name in df.columns:
            c = pl.col(name)
            cols.append(c if df.schema[name] == dtype else c.cast(dtype, strict=False))
        else:
            cols.append(pl.lit(None, dtype).alias(name))
    return df.select(cols)


def empty(schema: dict[str, Any] | None = None) -> pl.DataFrame:
    return pl.DataFrame(schema=schema or {ROW_ID: pl.Utf8})


def as_frame(table: Any, columns: list[str] | None = None) -> pl.DataFrame:
    """A side table in memory: a TableRef read whole, or a DataFrame as it is (tests build those)."""
    if isinstance(table, pl.DataFrame):
        return table if columns is None else table.select(columns)
    return table.read(columns)
