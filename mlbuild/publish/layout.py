"""The Hub layout of the rows: ``data/<config>/<split>-NNNNN-of-NNNNN.parquet``, written shard by shard.

Rows stream from the final stage; each row gets its split (from ``split_column``, or a seeded hash of
``parallel_id`` so translations of one row stay together) and its config (``config_by``), and is
appended to that (config, split)'s current file, which is closed when it reaches the output's row or
byte bound. Peak memory: one shard plus one row group per open file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from .. import langs
from ..errors import RecipeError
from ..pipeline.base import ROW_ID
from ..pipeline.tables import TableRef, conform

SPLIT, CONFIG = "__split", "__config"


def split_of(key: str, seed: int, cuts: list[tuple[float, str]]) -> str:
    h = hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=8).digest()
    u = int.from_bytes(h, "big") / 2**64
    for cut, name in cuts:
        if u < cut:
            return name
    return cuts[-1][1]


def assign_splits(df: pl.DataFrame, output) -> pl.DataFrame:
    """``df`` with a ``__split`` column (deterministic per row; rows of one ``parallel_id`` together)."""
    if output.split_column:
        col = pl.col(output.split_column).cast(pl.Utf8)
        allowed = output.declared_splits
        bad = df.filter(col.is_null() | (~col.is_in(allowed) if allowed is not None else pl.lit(False)))
        if bad.height:
            vals = sorted(set(bad[output.split_column].cast(pl.Utf8).fill_null("<missing>").to_list()))[:5]
            raise RecipeError(
                [
                    (
                        "output -> split_column",
                        f"values {vals} (first at row {bad[ROW_ID][0]}) are not splits"
                        + (f" {allowed}" if allowed is not None else ": every row needs one"),
                    )
                ]
            )
        return df.with_columns(col.alias(SPLIT))
    fractions = output.fractions
    names = list(fractions)
    if len(names) == 1:
        return df.with_columns(pl.lit(names[0]).alias(SPLIT))
    cuts, acc = [], 0.0
    for name in names:
        acc += fractions[name]
        cuts.append((acc, name))
    key = "parallel_id" if "parallel_id" in df.columns else ROW_ID
    keys = df.select(pl.coalesce(pl.col(key).cast(pl.Utf8), pl.col(ROW_ID)).alias("k"))["k"]
    uniq = keys.unique().to_list()
    mapping = {k: split_of(k, output.split_seed, cuts) for k in uniq}
    return df.with_columns(keys.replace_strict(mapping, return_dtype=pl.Utf8).alias(SPLIT))


def config_name(v: Any) -> str:
    if v is None:
        return "und"
    s = str(v)
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in s) or "und"


def assign_configs(df: pl.DataFrame, config_by: str | None) -> pl.DataFrame:
    if not config_by:
        return df.with_columns(pl.lit("default").alias(CONFIG))
    vals = df[config_by]
    mapping = {v: config_name(v) for v in vals.unique().to_list()}
    names = [mapping[v] for v in vals.to_list()] if None in mapping else None
    if names is not None:
        return df.with_columns(pl.Series(CONFIG, names, dtype=pl.Utf8))
    return df.with_columns(vals.replace_strict(mapping, return_dtype=pl.Utf8).alias(CONFIG))


def language_columns(columns: list[str], schema: dict[str, Any], config_by: str | None) -> list[str]:
    """Where the languages of the rows are: ``lang``, else ``config_by`` when it holds codes, else every
    ``*_lang`` column."""
    if "lang" in columns:
        cols = ["lang"]
    elif config_by and config_by.endswith("lang"):
        cols = [config_by]
    else:
        cols = [c for c in columns if c.endswith("_lang")]
    return [c for c in cols if schema.get(c) == pl.Utf8]


class ParquetSeries:
    """The parquet files of one config and split, in the Hub's naming (``train-00000-of-00003.parquet``),
    each bounded in rows and (in-memory) bytes. Rows are written as they come, cast to ``schema``
    (column -> polars dtype; missing columns become nulls)."""

    def __init__(self, folder: Path, split: str, schema: dict[str, Any], max_rows: int, max_bytes: int = 256 << 20):
        self.folder, self.split, self.schema = folder, split, dict(schema)
        self.max_rows, self.max_bytes = max_rows, max_bytes
        self.arrow = pl.DataFrame(schema=self.schema).to_arrow(compat_level=pl.CompatLevel.oldest()).schema
        self.files: list[Path] = []
        self.rows = 0
        self._writer = None
        self._rows_in_file = 0
        self._bytes_in_file = 0

    def write(self, df: pl.DataFrame) -> None:
        import pyarrow.parquet as pq

        df = conform(df, self.schema)
        width = max(1, df.estimated_size() // max(1, df.height))
        offset = 0
        while offset < df.height:
            if self._writer is None:
                path = self.folder / f".{self.split}-{len(self.files):05d}.partial.parquet"
                self.folder.mkdir(parents=True, exist_ok=True)
                self._writer = pq.ParquetWriter(path, self.arrow, compression="zstd")
                self.files.append(path)
            room = min(self.max_rows - self._rows_in_file, max(1, (self.max_bytes - self._bytes_in_file) // width))
            part = df.slice(offset, room)
            self._writer.write_table(part.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(self.arrow))
            offset += part.height
            self.rows += part.height
            self._rows_in_file += part.height
            self._bytes_in_file += part.height * width
            if self._rows_in_file >= self.max_rows or self._bytes_in_file >= self.max_bytes:
                self._close_file()

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._rows_in_file = self._bytes_in_file = 0

    def finish(self, write_empty: bool = False) -> list[str]:
        """Close and give the files their Hub names; with ``write_empty``, a series that got no rows
        still gets one (empty) file, so its config exists."""
        self._close_file()
        if not self.files and write_empty:
            self.folder.mkdir(parents=True, exist_ok=True)
            pl.DataFrame(schema=self.schema).write_parquet(self.folder / f"{self.split}-00000-of-00001.parquet")
            return [f"{self.split}-00000-of-00001.parquet"]
        n = len(self.files)
        names = []
        for i, p in enumerate(self.files):
            final = p.with_name(f"{self.split}-{i:05d}-of-{n:05d}.parquet")
            p.rename(final)
            names.append(final.name)
        return names


@dataclass
class DataSummary:
    configs: dict[str, dict[str, int]] = field(default_factory=dict)  # config -> split -> rows
    files: dict[str, list[str]] = field(default_factory=dict)  # config/split -> file names
    languages: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows: int = 0


def write_data(final: TableRef, output, data_dir: Path) -> DataSummary:
    """Stream the final table into ``data_dir`` in the Hub layout; return counts per config and split."""
    schema = final.schema()
    drop = {output.split_column} if output.split_column else set()
    out_schema = {c: t for c, t in schema.items() if c not in drop}
    lang_cols = language_columns(list(schema), schema, output.config_by)
    found: set[str] = set()
    series: dict[tuple[str, str], ParquetSeries] = {}
    max_bytes = output.max_file_mb << 20
    for df in final.iter_batches():
        if not df.height:
            continue
        for c in lang_cols:
            found.update(v for v in df[c].drop_nulls().unique().to_list() if langs.is_valid(v))
        df = assign_configs(assign_splits(df, output), output.config_by)
        for (cfg, split), part in df.partition_by([CONFIG, SPLIT], as_dict=True, maintain_order=True).items():
            key = (str(cfg), str(split))
            if key not in series:
                series[key] = ParquetSeries(data_dir / key[0], key[1], out_schema, output.max_rows_per_file, max_bytes)
            series[key].write(part)
    summary = DataSummary(columns=list(out_schema), languages=sorted({langs.normalize(v) for v in found}))
    for (cfg, split), f in sorted(series.items()):
        summary.files[f"{cfg}/{split}"] = f.finish()
        summary.configs.setdefault(cfg, {})[split] = f.rows
        summary.rows += f.rows
    return summary
