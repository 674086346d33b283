"""``hf.v1``: read a Hugging Face dataset (a Hub id for users with the Hub, or a local folder such as
an mlbuild output) with ``datasets.load_dataset``. Remote code stays off unless the recipe asks.

Output columns: ``row_id`` plus the dataset's columns, with their types. The dataset is read in
record batches from its memory-mapped Arrow files. The same row checks as ``parquet.v1``.

Parameters: ``path``, ``config``, ``split``, ``revision``, ``text_columns``, ``required``,
``id_column``, ``columns``, ``trust_remote_code``.

Example::

    [source]
    uses = "hf.v1"
    path = "out/demo/1.0.0"
    config = "eng_Latn"
    split = "train"
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
from .parquet import BATCH_ROWS, check_schema


@dataclass
class HfParams:
    path: str = param(doc="Hub dataset id or local dataset folder")
    split: str = param("train", doc="split to read")
    config: str | None = param(None, doc="configuration name")
    revision: str | None = param(None, doc="Hub revision (branch, tag or commit)")
    text_columns: list[str] = param([], doc="columns that must hold non-empty text")
    required: list[str] = param([], doc="columns that must exist and be non-null")
    id_column: str | None = param(None, doc="column whose value becomes row_id")
    columns: list[str] | None = param(None, doc="keep only these columns")
    trust_remote_code: bool = param(False, doc="run the dataset's own loading script (off by default)")


@register("source")
class HfSource(Source):
    __doc__ = __doc__
    name = "hf.v1"
    Params = HfParams

    def _local(self) -> Path | None:
        p = Path(self.params.path)
        if not p.is_absolute():
            p = self.ctx.recipe_dir / p
        return p if p.exists() else None

    def input_files(self) -> list[Path]:
        local = self._local()
        if local is None:
            return []
        return sorted(
            f
            for f in local.rglob("*")
            if f.is_file() and f.suffix in (".parquet", ".jsonl", ".json", ".csv", ".arrow")
        )

    def source_datasets(self) -> list[str]:
        return [] if self._local() else [f"extended|{self.params.path}"]

    def _load(self):
        import datasets

        local = self._local()
        where = str(local) if local else self.params.path
        kw = {}
        if self.params.trust_remote_code:
            kw["trust_remote_code"] = True
        try:
            ds = datasets.load_dataset(
                where, self.params.config, split=self.params.split, revision=self.params.revision, **kw
            )
        except Exception as e:  # datasets raises many kinds
            raise InputError(where, f"cannot load dataset: {type(e).__name__}: {e}") from e
        return where, ds

    def read(self, part: Any = None, limit: int | None = None) -> Iterator[StepOutput]:
        p = self.params
        where, ds = self._load()
        rules = RowRules(where, p.text_columns, p.required, p.id_column, p.columns, what="row")
        table = ds.data.table
        check_schema(Path(where), dict(pl.from_arrow(table.schema.empty_table()).schema), rules)
        row, taken = 1, 0
        for batch in table.to_batches(max_chunksize=BATCH_ROWS):
            df = pl.from_arrow(batch)
            if limit is not None:
                df = df.head(limit - taken)
            yield check_frame(df, np.arange(row, row + df.height, dtype=np.int64), rules)
            row += df.height
            taken += df.height
            if limit is not None and taken >= limit:
                return

    def check_unique_ids(self) -> bool:
        return self.params.id_column is not None
