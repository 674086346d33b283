"""What every tabular source shares: streaming in batches, the row checks, and their errors.

- ``required`` fields: a record without one is an input error naming file, line and field;
- ``text_columns``: a missing, non-text or empty value sends the row to ``rejects/`` with a reason
  (``missing_text``, ``wrong_type``, ``empty_text``) and the line in the detail;
- ``id_column``: its value becomes ``row_id`` (a row without one is rejected as ``missing_id``;
  duplicates are found across the whole input by the runner); else ``row_id`` is the line or row
  number, zero-padded;
- ``columns``: keep only these fields.
A field named in these parameters that no record has at all is an input error naming the field:
nothing is made up (no null column, no line-number ids in place of a missing id column).

Values keep their types: nothing is converted to text on the way."""

from __future__ import annotations

import io
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ..errors import InputError
from ..pipeline.base import ROW_ID, Source, StepOutput

LINE = "__line"
_REASON, _DETAIL = "__reason", "__detail"
BATCH_BYTES = 16 << 20  # a JSONL block parsed at once


def existing(path: str | Path) -> Path:
    """The input file at ``path``, or an InputError naming it."""
    p = Path(path)
    if not p.exists():
        raise InputError(str(path), "input file not found")
    return p


@dataclass
class RowRules:
    """The checks a source applies to each batch (see the module doc)."""

    file: str
    text_columns: list[str] = field(default_factory=list)
    required: list[str] = field(default_factory=list)
    id_column: str | None = None
    columns: list[str] | None = None
    what: str = "line"  # how positions are named in messages: line (text files) or row (tables)
    seen: set[str] = field(default_factory=set)  # fields seen so far (for the end-of-input check)

    def named_fields(self) -> list[tuple[str, str]]:
        out = [(f, "required") for f in self.required] + [(f, "text_columns") for f in self.text_columns]
        if self.id_column:
            out.append((self.id_column, "id_column"))
        out += [(f, "columns") for f in self.columns or []]
        return out

    def seen_stats(self) -> StepOutput:
        """An empty batch whose stats carry the fields seen (merged across parts by the runner)."""
        return StepOutput(pl.DataFrame(schema={ROW_ID: pl.Utf8}), None, {"fields_seen": dict.fromkeys(self.seen, 1)})

    def check_all_seen(self, seen: set[str] | dict[str, Any]) -> None:
        """After the whole input: every field the recipe names must exist somewhere in it."""
        seen = set(seen)
        for f, param in self.named_fields():
            if f not in seen:
                raise InputError(
                    self.file,
                    f"no {self.what} has this field, which {param} names"
                    + (f" (fields: {', '.join(sorted(seen)[:20])})" if seen else ""),
                    field=f,
                )


def check_frame(df: pl.DataFrame, positions: np.ndarray, rules: RowRules) -> StepOutput:
    """Apply ``rules`` to a typed batch whose records sit at ``positions`` (1-based lines or rows)."""
    rules.seen.update(df.columns)
    n = df.height
    for f in rules.required:
        if f not in df.columns:
            raise InputError(rules.file, "missing required field", line=int(positions[0]) if n else None, field=f)
        nulls = df[f].is_null()
        if nulls.any():
            raise InputError(
                rules.file, "missing required field", line=int(positions[int(nulls.arg_true()[0])]), field=f
            )
    df = df.with_columns(pl.Series(LINE, positions, dtype=pl.Int64))
    reason = pl.lit(None, pl.Utf8)
    detail = pl.lit(None, pl.Utf8)
    checks: list[tuple[pl.Expr, str, pl.Expr]] = []
    what = rules.what
    for f in rules.text_columns:
        at = pl.format(f"({what} {{}})", pl.col(LINE))
        if f not in df.columns:
            checks.append(
                (pl.lit(True), "missing_text", pl.format(f"field '{f}' is missing ({what} {{}})", pl.col(LINE)))
            )
            continue
        dtype = df.schema[f]
        checks.append((pl.col(f).is_null(), "missing_text", pl.concat_str(pl.lit(f"field '{f}' is missing "), at)))
        if dtype != pl.Utf8:
            if dtype != pl.Null:
                kind = _type_word(dtype)
                checks.append(
                    (pl.lit(True), "wrong_type", pl.concat_str(pl.lit(f"field '{f}' is {kind}, not text "), at))
                )
            continue
        checks.append(
            (pl.col(f).str.strip_chars() == "", "empty_text", pl.concat_str(pl.lit(f"field '{f}' is empty "), at))
        )
    idc = rules.id_column
    if idc:
        if idc in df.columns:
            checks.append((pl.col(idc).is_null(), "missing_id", pl.format(f"no '{idc}' ({what} {{}})", pl.col(LINE))))
        else:
            checks.append((pl.lit(True), "missing_id", pl.format(f"no '{idc}' ({what} {{}})", pl.col(LINE))))
    for cond, why, text in reversed(checks):  # the first failing check names the reason
        reason = pl.when(cond).then(pl.lit(why)).otherwise(reason)
        detail = pl.when(cond).then(text).otherwise(detail)
    df = df.with_columns(reason.alias(_REASON), detail.alias(_DETAIL))
    if idc and idc in df.columns:
        rid = _id_text(df, idc, rules)
    else:
        rid = pl.col(LINE).cast(pl.Utf8).str.zfill(9)
    df = df.with_columns(rid.alias(ROW_ID))
    internal = (ROW_ID, LINE, _REASON, _DETAIL)
    keep = [c for c in (rules.columns if rules.columns is not None else df.columns) if c not in internal]
    missing = [c for c in keep if c not in df.columns]
    if missing:  # fields named in ``columns`` that this batch lacks (the whole input is checked at the end)
        df = df.with_columns([pl.lit(None).alias(c) for c in missing])
    ok = df[_REASON].is_null()
    rows = df.filter(ok).select([ROW_ID, *keep])
    bad = df.filter(~ok)
    rejects = None
    if bad.height:
        rejects = bad.select([ROW_ID, *keep, pl.col(_REASON).alias("reason"), pl.col(_DETAIL).alias("detail")])
    return StepOutput(rows, rejects, {"rows_in": n})


def _type_word(dtype: pl.DataType) -> str:
    if dtype.is_integer():
        return "a number (int)"
    if dtype.is_float():
        return "a number (float)"
    if dtype == pl.Boolean:
        return "true/false"
    if isinstance(dtype, (pl.List, pl.Array)):
        return "a list"
    if isinstance(dtype, pl.Struct):
        return "an object"
    return str(dtype)


def _id_text(df: pl.DataFrame, idc: str, rules: RowRules) -> pl.Expr:
    dtype = df.schema[idc]
    if dtype == pl.Utf8 or dtype.is_integer() or dtype == pl.Null:
        return pl.col(idc).cast(pl.Utf8)
    raise InputError(rules.file, f"ids must be text or whole numbers, got {_type_word(dtype)}", field=idc)


# ------------------------------------------------------------------------------------------ JSON Lines
def line_blocks(
    path: Path, start: int, end: int, first_line: int, size: int | None = None
) -> Iterator[tuple[int, bytes]]:
    """``(number of the block's first line, bytes)`` blocks of whole lines of ``path[start:end)``."""
    size = size or BATCH_BYTES
    with open(path, "rb") as f:
        f.seek(start)
        pos, line = start, first_line
        carry = b""
        while pos < end:
            chunk = f.read(min(size, end - pos))
            if not chunk:
                break
            pos += len(chunk)
            chunk = carry + chunk
            cut = chunk.rfind(b"\n") + 1 if pos < end else len(chunk)
            if cut == 0:
                carry = chunk
                continue
            block, carry = chunk[:cut], chunk[cut:]
            yield line, block
            line += block.count(b"\n")
        if carry:
            yield line, carry


def split_lines(block: bytes, first_line: int) -> tuple[list[bytes], list[int]]:
    """The non-blank lines of a block (stripped) and their numbers; a BOM on line 1 is dropped."""
    texts, nums = [], []
    for i, ln in enumerate(block.split(b"\n")):
        s = ln.strip()
        if s:
            if first_line + i == 1 and s.startswith(b"\xef\xbb\xbf"):
                s = s[3:].strip()
                if not s:
                    continue
            texts.append(s)
            nums.append(first_line + i)
    return texts, nums


_BLANK_LINE = re.compile(rb"(^|\n)[ \t\r\f\v]*(\n|$)(?!\Z)|\A\s*\Z")


def _arrow_block(data: bytes) -> pl.DataFrame | None:
    """A block of JSON lines parsed by Arrow, or None when it cannot be (the careful path takes over)."""
    try:
        import pyarrow.json as pj

        if not data.isascii():
            data.decode("utf-8")
        return pl.from_arrow(pj.read_json(io.BytesIO(data), read_options=pj.ReadOptions(block_size=len(data) + 1)))
    except Exception:  # mixed types, bad bytes, not an object: the careful path says where
        return None


def parse_json_lines(texts: list[bytes], nums: list[int], file: str) -> tuple[pl.DataFrame | None, list[dict]]:
    """A typed frame of JSON objects (Arrow's reader), or, when the lines do not share one schema or one
    is malformed, the records parsed one by one (an error names the bad line)."""
    try:
        import pyarrow.json as pj

        data = b"\n".join(texts)
        if not data.isascii():
            data.decode("utf-8")  # Arrow would pass bad bytes on; the slow path names the line
        table = pj.read_json(io.BytesIO(data), read_options=pj.ReadOptions(block_size=len(data) + 1))
        if table.num_rows == len(texts):
            return pl.from_arrow(table), []
    except Exception:  # mixed types, bad bytes, not an object: the slow path says exactly where
        pass
    records = []
    for raw, n in zip(texts, nums):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(file, f"not UTF-8 (byte {e.start}: {raw[e.start : e.start + 1]!r})", line=n) from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(file, f"malformed JSON ({e.msg} at column {e.colno})", line=n) from None
        if not isinstance(obj, dict):
            raise InputError(file, f"expected a JSON object, got {type(obj).__name__}", line=n)
        records.append(obj)
    return None, records


def check_records(records: list[dict[str, Any]], nums: list[int], rules: RowRules) -> StepOutput:
    """The same checks for records whose fields do not share one type across lines: rows whose text
    fields are fine become a frame (values keep their types; a field that mixes types across good rows
    is an input error naming it); the others become rejects with their values as written."""
    for rec in records:
        rules.seen.update(rec)
    good, good_nums, bad = [], [], []
    for rec, n in zip(records, nums):
        for f in rules.required:
            if rec.get(f) is None:
                raise InputError(rules.file, "missing required field", line=n, field=f)
        why = None
        for f in rules.text_columns:
            v = rec.get(f)
            if v is None:
                why = ("missing_text", f"field '{f}' is missing ({rules.what} {n})")
            elif not isinstance(v, str):
                why = ("wrong_type", f"field '{f}' is {type(v).__name__}, not text ({rules.what} {n})")
            elif not v.strip():
                why = ("empty_text", f"field '{f}' is empty ({rules.what} {n})")
            if why:
                break
        idc = rules.id_column
        if why is None and idc and rec.get(idc) is None:
            why = ("missing_id", f"no '{idc}' ({rules.what} {n})")
        if why is None:
            good.append(rec)
            good_nums.append(n)
        else:
            rid = rec.get(idc) if idc else None
            row = {ROW_ID: str(rid) if rid is not None else f"{n:09d}"}
            keep = rules.columns if rules.columns is not None else list(rec)
            row.update({k: _plain(rec.get(k)) for k in keep if k != ROW_ID})
            bad.append({**row, "reason": why[0], "detail": why[1]})
    try:
        df = pl.DataFrame(good, infer_schema_length=None, strict=True) if good else pl.DataFrame()
    except Exception as e:  # polars raises several kinds for mixed types
        raise InputError(rules.file, f"a field holds values of different types across lines: {e}") from e
    out = (
        check_frame(df, np.asarray(good_nums, dtype=np.int64), rules)
        if good
        else StepOutput(pl.DataFrame(schema={ROW_ID: pl.Utf8}))
    )
    rejects = pl.DataFrame(bad, infer_schema_length=None, strict=False) if bad else None
    if rejects is not None:
        out.rejects = rejects if out.rejects is None else pl.concat([out.rejects, rejects], how="diagonal_relaxed")
    out.stats = {"rows_in": len(records)}
    return out


def _plain(v: Any) -> Any:
    return v if isinstance(v, (str, int, float, bool)) or v is None else json.dumps(v, ensure_ascii=False)


def part_bytes() -> int:
    """How big a part of a text input a cluster worker reads alone ($MLBUILD_SOURCE_PART_MB, default 256)."""
    import os

    return max(1, int(float(os.environ.get("MLBUILD_SOURCE_PART_MB", "256")) * 2**20))


def line_parts(path: Path, target: int | None = None) -> list[tuple[int, int, int]]:
    """``(start, end, first line)`` byte ranges of about ``target`` bytes, cut at line starts."""
    target = target or part_bytes()
    size = path.stat().st_size
    if size <= target:
        return [(0, size, 1)]
    parts, start, line = [], 0, 1
    with open(path, "rb") as f:
        while start < size:
            end = min(size, start + target)
            if end < size:
                f.seek(end)
                rest = f.readline()
                end += len(rest)
            f.seek(start)
            n, pos = 0, start
            while pos < end:
                chunk = f.read(min(1 << 24, end - pos))
                n += chunk.count(b"\n")
                pos += len(chunk)
            parts.append((start, end, line))
            start, line = end, line + n
    return parts


def read_json_lines(
    path: Path, rules: RowRules, part: tuple[int, int, int] | None, limit: int | None
) -> Iterator[StepOutput]:
    """Stream a JSON Lines file (or one part of it) as checked batches."""
    start, end, first = part if part is not None else (0, path.stat().st_size, 1)
    taken = 0
    for line0, block in line_blocks(path, start, end, first):
        if limit is None and not block.startswith(b"\xef\xbb\xbf") and not _BLANK_LINE.search(block):
            # the common case, no blank line in the block: Arrow parses the block as it is
            df = _arrow_block(block)
            n = block.count(b"\n") + (not block.endswith(b"\n"))
            if df is not None and df.height == n:
                yield check_frame(df, np.arange(line0, line0 + n, dtype=np.int64), rules)
                continue
        texts, nums = split_lines(block, line0)
        if limit is not None:
            texts, nums = texts[: limit - taken], nums[: limit - taken]
        if not texts:
            if limit is not None and taken >= limit:
                break
            continue
        taken += len(texts)
        df, records = parse_json_lines(texts, nums, rules.file)
        if df is not None:
            yield check_frame(df, np.asarray(nums, dtype=np.int64), rules)
        else:
            yield check_records(records, nums, rules)
        if limit is not None and taken >= limit:
            break
    yield rules.seen_stats()


class DuplicateIds:
    """Finds a repeated id in a stream of id columns with 8 bytes per row (hashes, not the ids); a hash
    collision is told apart from a real duplicate by reading the ids at the colliding lines again."""

    def __init__(self, file: str, what: str, field: str = "_id"):
        self.file, self.what, self.field = file, what, field
        self._hashes: list[np.ndarray] = []
        self._lines: list[np.ndarray] = []

    def add(self, ids: pl.Series, lines: list[int]) -> None:
        self._hashes.append(ids.hash(seed=0).to_numpy())
        self._lines.append(np.asarray(lines, dtype=np.int64))

    def finish(self) -> None:
        if not self._hashes:
            return
        h, lines = np.concatenate(self._hashes), np.concatenate(self._lines)
        order = np.argsort(h, kind="stable")
        same = np.flatnonzero(h[order][1:] == h[order][:-1])
        if not same.size:
            return
        cand = set(lines[order[np.unique(np.concatenate([same, same + 1]))]].tolist())
        ids = _ids_at_lines(Path(self.file), cand, self.field)
        seen: dict[str, int] = {}
        for n in sorted(ids):
            if ids[n] in seen:
                raise InputError(
                    self.file,
                    f"duplicate {self.what} id {ids[n]!r} (first at line {seen[ids[n]]})",
                    line=n,
                    field=self.field,
                )
            seen[ids[n]] = n


def _ids_at_lines(path: Path, lines: set[int], field: str) -> dict[int, str]:
    out: dict[int, str] = {}
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            if n in lines:
                v = json.loads(raw.decode("utf-8").lstrip("\ufeff")).get(field)
                out[n] = str(v)
    return out


RECORDS_PER_BATCH = 10_000


def json_document(path: Path, key: str | None) -> bool:
    """Whether ``path`` is one JSON document rather than JSON Lines: a top-level list (``key`` None), or
    a first value that is an object with the top-level ``key`` (SQuAD's ``data``). Streamed: reading
    stops at that key or at the end of the first object, so a one-line 100 MB document is not parsed."""
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if key is None:
        return head[:1] == b"["
    if head[:1] != b"{":
        return False
    import ijson

    with open(path, "rb") as f:
        try:
            for prefix, event, value in ijson.parse(f, multiple_values=True):
                if prefix == "" and event == "map_key" and value == key:
                    return True
                if prefix == "" and event == "end_map":
                    return False
        except ijson.JSONError:
            return False
    return False


def iter_json_records(path: Path, array_prefix: str, document: bool) -> Iterator[tuple[int | None, Any]]:
    """The records of a JSON document (items under ``array_prefix``: ``"item"`` for a top-level list,
    ``"data.item"`` for SQuAD's articles, parsed as a stream with ``ijson``) or of a JSON Lines file (one
    per line), one at a time, with their line number (None inside a document). Neither form is held whole."""
    if document:
        import ijson

        with open(path, "rb") as f:
            try:
                yield from ((None, rec) for rec in ijson.items(f, array_prefix, use_float=True))
            except (ijson.JSONError, UnicodeDecodeError) as e:
                raise InputError(str(path), f"malformed JSON ({e})") from None
        return
    with open(path, "rb") as f:
        for n, line in enumerate(f, start=1):
            if n == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except UnicodeDecodeError as e:
                raise InputError(str(path), f"not UTF-8 ({e.reason} at byte {e.start})", line=n) from None
            except json.JSONDecodeError as e:
                raise InputError(str(path), f"malformed JSON ({e.msg})", line=n) from None


def batched(items: Iterator[Any], size: int = RECORDS_PER_BATCH) -> Iterator[list[Any]]:
    """Lists of at most ``size`` items from an iterator."""
    batch: list[Any] = []
    for x in items:
        batch.append(x)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class JsonRecordSource(Source):
    """Base of the sources that read one JSON document or JSON Lines file of examples (``squad.v1``,
    ``tacred.v1``): a subclass gives ``COLUMNS``, :meth:`records` (position, example) and :meth:`frame`
    (examples -> rows); this streams them in batches of 10,000, with ``limit`` counting examples, and
    checks the data's ids for repeats."""

    COLUMNS: tuple[str, ...] = ()

    def input_files(self) -> list[Path]:
        return [Path(self.params.path)]

    def columns(self) -> list[str] | None:
        existing(self.params.path)
        return list(self.COLUMNS)

    def check_unique_ids(self) -> bool:
        return True  # ids come from the data: a repeated id is a reject naming it

    def records(self, path: Path) -> Iterator[tuple[int | None, dict[str, Any]]]:
        raise NotImplementedError

    def frame(self, path: Path, items: list[tuple[int | None, dict[str, Any]]]) -> StepOutput:
        raise NotImplementedError

    def read(self, part: Any = None, limit: int | None = None) -> Iterator[StepOutput]:
        path = existing(self.params.path)
        items = self.records(path)
        if limit is not None:
            items = itertools.islice(items, limit)
        for batch in batched(items):
            yield self.frame(path, batch)
