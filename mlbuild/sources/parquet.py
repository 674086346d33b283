"""``parquet.v1``: read one parquet file or every ``*.parquet`` in a folder (sorted by name).

Output columns: ``row_id`` plus the file's columns (or ``columns``). The same checks as
``jsonl.v1``, with row numbers instead of lines.

Parameters: ``path``, ``text_columns``, ``required``, ``id_column``, ``columns``.

Example::

    [source]
    uses = "parquet.v1"
    path = "data/train.parquet"
    text_columns = ["text"]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..errors import InputError
from ..pipeline.base import Source, StepOutput
from ..pipeline.params import param
from ..pipeline.registry import register
from ._common import check_frame


@dataclass
class ParquetParams:
    path: str = param(doc="a parquet file or a folder of them", kind="path")
    text_columns: list[str] = param([], doc="columns that must hold non-empty text; other rows are rejected")
    required: list[str] = param([], doc="columns that must exist and be non-null")
    id_column: str | None = param(None, doc="column whose value becomes row_id (default: the row number)")
    columns: list[str] | None = param(None, doc="keep only these columns")


@register("source")
class ParquetSource(Source):
    __doc__ = __doc__
    name = "parquet.v1"
    Params = ParquetParams

    def input_files(self) -> list[Path]:
        p = Path(self.params.path)
        return sorted(p.glob("*.parquet")) if p.is_dir() else [p]

    def columns(self) -> list[str] | None:
        files = self.input_files()
        if not files or not files[0].exists():
            raise InputError(self.params.path, "input file not found")
        if self.params.columns is not None:
            return list(self.params.columns)
        return list(pl.read_parquet_schema(files[0]))

    def read(self) -> StepOutput:
        files = self.input_files()
        if not files:
            raise InputError(self.params.path, "no parquet files found")
        frames = []
        for f in files:
            try:
                frames.append(pl.read_parquet(f))
            except Exception as e:  # noqa: BLE001 - polars/arrow raise many kinds
                raise InputError(str(f), f"cannot read parquet: {e}") from e
        df = pl.concat(frames, how="diagonal_relaxed")
        return check_frame(
            df,
            str(self.params.path),
            required=self.params.required,
            text_columns=self.params.text_columns,
            id_column=self.params.id_column,
            keep=self.params.columns,
        )
