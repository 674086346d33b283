"""``parquet.v1``: read one parquet file or every ``*.parquet`` in a folder (sorted by name).

Output columns: ``row_id`` plus the file's columns (or ``columns``), with their types. Files are
streamed in record batches (each file is a part a cluster may read on its own). The same checks as
``jsonl.v1``, with row numbers (counted across the files, in name order) instead of lines; a column
the recipe names that the files lack, or a ``text_columns`` column that does not hold text, is an
input error naming the file and the column.

Parameters: ``path``, ``text_columns``, ``required``, ``id_column``, ``columns``.

Example::

    [source]
    uses = "parquet.v1"
    path = "data/train.parquet"
    text_columns = ["text"]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ..errors import InputError
from ..pipeline.base import Source, StepOutput
from ..pipeline.params import param
from ..pipeline.registry import register
from ._common import RowRules, check_frame

BATCH_ROWS = 65_536


@dataclass
class ParquetParams:
    path: str = param(doc="a parquet file or a folder of them", kind="path")
    text_columns: list[str] = param([], doc="columns that must hold non-empty text; other rows are rejected")
    required: list[str] = param([], doc="columns that must exist and be non-null")
    id_column: str | None = param(None, doc="column whose value becomes row_id (default: the row number)")
    columns: list[str] | None = param(None, doc="keep only these columns")


def open_parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as e:  # arrow raises several kinds for files that are not parquet
        raise InputError(str(path), f"not a readable parquet file: {type(e).__name__}: {e}") from e


def check_schema(path: Path, schema: dict[str, Any], rules: RowRules) -> None:
    """Columns named by the recipe must exist, and text columns must hold text: input errors, not guesses."""
    for f, param_name in rules.named_fields():
        if f not in schema:
            raise InputError(
                str(path), f"no such column, which {param_name} names (columns: {', '.join(schema)})", field=f
            )
    for f in rules.text_columns:
        if schema[f] not in (pl.Utf8, pl.Null):
            raise InputError(str(path), f"text_columns names a column of {schema[f]}, not text", field=f)


@register("source")
class ParquetSource(Source):
    __doc__ = __doc__
    name = "parquet.v1"
    Params = ParquetParams

    def input_files(self) -> list[Path]:
        p = Path(self.params.path)
        return sorted(p.glob("*.parquet")) if p.is_dir() else [p]

    def _rules(self, file: Path) -> RowRules:
        p = self.params
        return RowRules(str(file), p.text_columns, p.required, p.id_column, p.columns, what="row")

    def columns(self) -> list[str] | None:
        files = self.input_files()
        if not files or not files[0].exists():
            raise InputError(
                self.params.path, "input file not found" if not files or files[0].suffix else "no parquet files found"
            )
        if self.params.columns is not None:
            return list(self.params.columns)
        return list(pl.from_arrow(open_parquet(files[0]).schema_arrow.empty_table()).schema)

    def parts(self) -> list[Any]:
        files = self.input_files()
        if not files:
            raise InputError(self.params.path, "no parquet files found")
        out, first = [], 1
        for f in files:
            out.append((str(f), first))
            first += open_parquet(f).metadata.num_rows
        return out

    def read(self, part: Any = None, limit: int | None = None) -> Iterator[StepOutput]:
        parts = [part] if part is not None else self.parts()
        taken = 0
        for name, first in parts:
            path = Path(name)
            pf = open_parquet(path)
            rules = self._rules(path)
            check_schema(path, dict(pl.from_arrow(pf.schema_arrow.empty_table()).schema), rules)
            row = first
            for batch in pf.iter_batches(batch_size=BATCH_ROWS):
                df = pl.from_arrow(batch)
                if limit is not None:
                    df = df.head(limit - taken)
                positions = np.arange(row, row + df.height, dtype=np.int64)
                row += df.height
                taken += df.height
                yield check_frame(df, positions, rules)
                if limit is not None and taken >= limit:
                    return

    def check_unique_ids(self) -> bool:
        return self.params.id_column is not None
