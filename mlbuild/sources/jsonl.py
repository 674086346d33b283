"""``jsonl.v1``: read a JSON Lines file, one object per line.

Output columns: ``row_id`` plus every field of the objects (or the ``columns`` you list).
Bad files raise an error naming the file, line and field (malformed JSON, non-UTF-8 bytes, a
missing ``required`` field); bad rows in a good file (empty or non-text ``text_columns``, a
duplicate id) go to ``rejects/`` with the reason.

Parameters: ``path``, ``text_columns``, ``required``, ``id_column``, ``columns``.

Example::

    [source]
    uses = "jsonl.v1"
    path = "data/passages.jsonl"
    text_columns = ["passage", "query"]
    id_column = "doc_id"
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..pipeline.base import Source, StepOutput
from ..pipeline.params import param
from ..pipeline.registry import register
from ._common import existing, rows_from_records


@dataclass
class JsonlParams:
    path: str = param(doc="JSON Lines file", kind="path")
    text_columns: list[str] = param([], doc="fields that must hold non-empty text; other rows are rejected")
    required: list[str] = param([], doc="fields every line must have; a line without one is an input error")
    id_column: str | None = param(None, doc="field whose value becomes row_id (default: the line number)")
    columns: list[str] | None = param(None, doc="keep only these fields")


def read_jsonl(path: Path) -> tuple[list[dict], list[int]]:
    records, lines = [], []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(
                    str(path), f"not UTF-8 (byte {e.start}: {raw[e.start : e.start + 1]!r})", line=n
                ) from None
            if n == 1 and text.startswith("\ufeff"):
                text = text[1:]
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise InputError(str(path), f"malformed JSON ({e.msg} at column {e.colno})", line=n) from None
            if not isinstance(obj, dict):
                raise InputError(str(path), f"expected a JSON object, got {type(obj).__name__}", line=n)
            records.append(obj)
            lines.append(n)
    return records, lines


@register("source")
class JsonlSource(Source):
    __doc__ = __doc__
    name = "jsonl.v1"
    Params = JsonlParams

    def input_files(self) -> list[Path]:
        return [Path(self.params.path)]

    def columns(self) -> list[str] | None:
        p = existing(self.params.path)
        if self.params.columns is not None:
            return list(self.params.columns)
        keys: dict[str, None] = {}
        with open(p, "rb") as f:
            for n, raw in enumerate(f, start=1):
                if n > 200:
                    break
                try:
                    obj = json.loads(raw.decode("utf-8", errors="replace"))
                except json.JSONDecodeError:
                    continue
                if isinstance(obj, dict):
                    keys.update(dict.fromkeys(obj))
        return list(keys)

    def read(self) -> StepOutput:
        p = existing(self.params.path)
        records, lines = read_jsonl(p)
        return rows_from_records(
            records,
            lines,
            str(p),
            required=self.params.required,
            text_columns=self.params.text_columns,
            id_column=self.params.id_column,
            keep=self.params.columns,
        )
