"""``hf.v1``: read a Hugging Face dataset (a Hub id for users with the Hub, or a local folder such as
an mlbuild output) with ``datasets.load_dataset``. Remote code stays off unless the recipe asks.

Output columns: ``row_id`` plus the dataset's columns. The same row checks as ``jsonl.v1``.

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

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..errors import InputError
from ..pipeline.base import Source, StepOutput
from ..pipeline.params import param
from ..pipeline.registry import register
from ._common import check_frame


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

    def read(self) -> StepOutput:
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
        except Exception as e:  # noqa: BLE001 - datasets raises many kinds
            raise InputError(where, f"cannot load dataset: {type(e).__name__}: {e}") from e
        df = pl.from_arrow(ds.data.table)
        return check_frame(
            df,
            where,
            required=self.params.required,
            text_columns=self.params.text_columns,
            id_column=self.params.id_column,
            keep=self.params.columns,
        )
