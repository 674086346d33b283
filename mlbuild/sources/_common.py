"""Shared checks for sources: required fields (an error naming file, line and field), text fields
that are empty or of the wrong type (a reject with a reason), duplicate ids, stable row ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from ..errors import InputError
from ..pipeline.base import ROW_ID, StepOutput


def existing(path: str | Path) -> Path:
    """The input file at ``path``, or an InputError naming it."""
    p = Path(path)
    if not p.exists():
        raise InputError(str(path), "input file not found")
    return p


def rows_from_records(
    records: list[dict[str, Any]],
    lines: list[int],
    file: str,
    *,
    required: list[str],
    text_columns: list[str],
    id_column: str | None,
    keep: list[str] | None,
) -> StepOutput:
    """Turn parsed records into rows. ``lines`` gives each record's 1-based line (or row) number."""
    good: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    seen_ids: set[str] = set()
    for rec, line in zip(records, lines):
        for f in required:
            if f not in rec or rec[f] is None:
                raise InputError(file, "missing required field", line=line, field=f)
        rid = str(rec[id_column]) if id_column and rec.get(id_column) is not None else f"{line:09d}"
        if keep is not None:
            rec = {k: rec.get(k) for k in keep}
        rec = {ROW_ID: rid, **{k: v for k, v in rec.items() if k != ROW_ID}}
        reason = None
        for f in text_columns:
            v = rec.get(f)
            if v is None:
                reason, detail = "missing_text", f"field '{f}' is missing (line {line})"
            elif not isinstance(v, str):
                reason, detail = "wrong_type", f"field '{f}' is {type(v).__name__}, not text (line {line})"
            elif not v.strip():
                reason, detail = "empty_text", f"field '{f}' is empty (line {line})"
            if reason:
                break
        if reason is None and id_column:
            if rec.get(ROW_ID) in seen_ids:
                reason, detail = "duplicate_id", f"{id_column} {rid!r} seen before (line {line})"
        if reason is None:
            seen_ids.add(rid)
            good.append(rec)
        else:
            bad.append(
                {
                    **{
                        k: (v if isinstance(v, (str, int, float, bool)) or v is None else str(v))
                        for k, v in rec.items()
                    },
                    "reason": reason,
                    "detail": detail,
                }
            )
    rows = _frame(good, file)
    rejects = pl.DataFrame(bad, infer_schema_length=None, strict=False) if bad else None
    return StepOutput(rows, rejects, {})


def _frame(records: list[dict[str, Any]], file: str) -> pl.DataFrame:
    if not records:
        return pl.DataFrame({ROW_ID: []}, schema={ROW_ID: pl.Utf8})
    try:
        return pl.DataFrame(records, infer_schema_length=None, strict=False)
    except Exception as e:  # noqa: BLE001 - polars raises several kinds for mixed types
        raise InputError(file, f"rows do not share one schema: {e}") from e


def check_frame(
    df: pl.DataFrame,
    file: str,
    *,
    required: list[str],
    text_columns: list[str],
    id_column: str | None,
    keep: list[str] | None,
) -> StepOutput:
    """The same checks for tabular inputs (parquet, datasets): row numbers instead of lines."""
    for f in required:
        if f not in df.columns:
            raise InputError(file, "missing required column", field=f)
        nulls = df[f].is_null()
        if nulls.any():
            row = int(nulls.arg_true()[0]) + 1
            raise InputError(file, "missing required field (null)", line=row, field=f)
    return rows_from_records(
        df.to_dicts(),
        list(range(1, df.height + 1)),
        file,
        required=[],
        text_columns=text_columns,
        id_column=id_column,
        keep=keep,
    )
