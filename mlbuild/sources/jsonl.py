"""``jsonl.v1``: read a JSON Lines file, one object per line.

Output columns: ``row_id`` plus every field of the objects (or the ``columns`` you list), with
their JSON types. The file is streamed in blocks (Arrow's JSON reader; line by line where lines do
not share one schema), split into parts a cluster reads in parallel. Bad files raise an error naming
the file, line and field (malformed JSON, non-UTF-8 bytes, a missing ``required`` field, a field the
recipe names that no line has); bad rows in a good file (empty or non-text ``text_columns``, no id,
a duplicate id) go to ``rejects/`` with the reason and line.

Parameters: ``path``, ``text_columns``, ``required``, ``id_column``, ``columns``.

Example::

    [source]
    uses = "jsonl.v1"
    path = "data/passages.jsonl"
    text_columns = ["passage", "query"]
    id_column = "doc_id"
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..pipeline.base import Source, StepOutput
from ..pipeline.params import param
from ..pipeline.registry import register
from ._common import RowRules, existing, line_parts, parse_json_lines, read_json_lines, split_lines

SAMPLE_BYTES = 1 << 20  # columns are inferred from this much of the file at validation


@dataclass
class JsonlParams:
    path: str = param(doc="JSON Lines file", kind="path")
    text_columns: list[str] = param([], doc="fields that must hold non-empty text; other rows are rejected")
    required: list[str] = param([], doc="fields every line must have; a line without one is an input error")
    id_column: str | None = param(None, doc="field whose value becomes row_id (default: the line number)")
    columns: list[str] | None = param(None, doc="keep only these fields")


@functools.lru_cache(maxsize=16)
def _sample_keys(path: str, size: int, mtime_ns: int, sample: int) -> tuple[list[str], bool]:
    """Keys of the objects in the first ``sample`` bytes, and whether that was the whole file."""
    with open(path, "rb") as f:
        data = f.read(sample + 1)
    complete = len(data) <= sample
    if not complete:
        data = data[: data.rfind(b"\n") + 1]
    texts, nums = split_lines(data, 1)
    keys: dict[str, None] = {}
    try:
        df, records = parse_json_lines(texts, nums, path)
    except InputError:  # a malformed line: reported with its number when the file is read
        df, records = None, []
        for raw in texts:
            try:
                obj = json.loads(raw.decode("utf-8", errors="replace"))
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                records.append(obj)
    for rec in [] if df is not None else records:
        keys.update(dict.fromkeys(rec))
    cols = df.columns if df is not None else list(keys)
    return cols, complete


@register("source")
class JsonlSource(Source):
    __doc__ = __doc__
    name = "jsonl.v1"
    Params = JsonlParams

    def input_files(self) -> list[Path]:
        return [Path(self.params.path)]

    def _rules(self) -> RowRules:
        p = self.params
        return RowRules(str(p.path), p.text_columns, p.required, p.id_column, p.columns)

    def _sample(self) -> tuple[list[str], bool]:
        p = existing(self.params.path)
        st = p.stat()
        return _sample_keys(str(p), st.st_size, st.st_mtime_ns, SAMPLE_BYTES)

    def columns(self) -> list[str] | None:
        if self.params.columns is not None:
            existing(self.params.path)
            return list(self.params.columns)
        return self._sample()[0]

    def columns_complete(self) -> bool:
        # a key first seen after the sample is no reason to refuse a recipe: checked after reading
        return self.params.columns is not None or self._sample()[1]

    def parts(self) -> list[Any]:
        return line_parts(existing(self.params.path))

    def read(self, part: Any = None, limit: int | None = None) -> Iterator[StepOutput]:
        yield from read_json_lines(existing(self.params.path), self._rules(), part, limit)

    def check_read(self, stats: dict[str, Any]) -> None:
        self._rules().check_all_seen(stats.get("fields_seen", {}))

    def check_unique_ids(self) -> bool:
        return self.params.id_column is not None


def read_jsonl(path: Path) -> tuple[list[dict], list[int]]:
    """All objects of a small JSON Lines file with their line numbers (BEIR queries, exemplars)."""
    from ._common import line_blocks, parse_json_lines, split_lines

    records, lines = [], []
    for line0, block in line_blocks(path, 0, path.stat().st_size, 1):
        texts, nums = split_lines(block, line0)
        df, recs = parse_json_lines(texts, nums, str(path))
        records += df.to_dicts() if df is not None else recs
        lines += nums
    return records, lines
