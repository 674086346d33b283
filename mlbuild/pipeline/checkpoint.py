"""Checkpoint files of one stage (source, side table or step): parquet shards, rejects, stats, and a
completion marker written last. A shard whose marker exists is finished; anything else is redone.

A stage folder holds, per shard, ``<shard>.parquet`` (the rows), ``<shard>.rejects.jsonl`` (rows
dropped there, with reason), ``<shard>.stats.json`` (summable numbers) and ``<shard>.done`` (its row
count, written last); a whole stage also ``stage.stats.json`` (numbers about the stage as a whole,
e.g. the rows a global step read) and ``_SUCCESS.json`` (the ordered shard list, written last).

Shards are sized by rows and bytes (:class:`ShardTarget`), never by a constant count: a source or a
global step streams its output through a :class:`ShardWriter`, which cuts a shard when either bound
is reached. Results never depend on where shards are cut."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import polars as pl

from .base import ROW_ID, StepOutput, merge_stats
from .store import RemotePath, read_parquet, rmtree, write_bytes_atomic, write_parquet

SUCCESS = "_SUCCESS.json"
STAGE_STATS = "stage.stats.json"
Loc = Any  # a stage folder: a local Path, or a RemotePath on any fsspec filesystem (see .store)


@dataclass(frozen=True)
class ShardTarget:
    """How big a shard may grow: whichever comes first, rows or (estimated in-memory) bytes."""

    rows: int = 50_000
    bytes: int = 64 << 20

    def __post_init__(self) -> None:
        if self.rows < 1 or self.bytes < 1:
            raise ValueError(f"shard sizes must be positive, got {self.rows} rows / {self.bytes} bytes")


def write_json(path: Loc, obj: Any) -> None:
    write_bytes_atomic(path, json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True, default=str).encode())


def read_json(path: Loc) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def rejects_to_records(rejects: pl.DataFrame | None, step: str) -> list[dict[str, Any]]:
    if rejects is None or rejects.height == 0:
        return []
    out = []
    for rec in rejects.to_dicts():
        out.append(
            {
                "row_id": rec.pop(ROW_ID, None),
                "step": step,
                "reason": rec.pop("reason", "unknown"),
                "detail": rec.pop("detail", None),
                "row": rec,
            }
        )
    return out


def jsonl_bytes(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records).encode("utf-8")


def write_jsonl(path: Loc, records: list[dict[str, Any]]) -> None:
    write_bytes_atomic(path, jsonl_bytes(records))


def shard_name(i: int, prefix: str = "shard") -> str:
    return f"{prefix}-{i:05d}"


def is_done(stage_dir: Loc, shard: str) -> bool:
    return (stage_dir / f"{shard}.done").exists()


def done_shards(stage_dir: Loc) -> set[str]:
    """The shards of a stage that have their marker, from one listing of its folder (one request on an
    object store, instead of one per shard)."""
    if isinstance(stage_dir, RemotePath):
        names = [p.name for p in stage_dir.iterdir()]
    else:
        names = [p.name for p in stage_dir.iterdir()] if stage_dir.is_dir() else []
    return {n[: -len(".done")] for n in names if n.endswith(".done") and not n.startswith(".")}


def shard_rows(stage_dir: Loc, shard: str) -> int:
    return int(read_json(stage_dir / f"{shard}.done")["rows"])


def write_shard(stage_dir: Loc, shard: str, out: StepOutput, step: str) -> None:
    """Write a finished shard: rows, rejects, stats, then the marker (last)."""
    write_parquet(stage_dir / f"{shard}.parquet", out.rows)
    write_jsonl(stage_dir / f"{shard}.rejects.jsonl", rejects_to_records(out.rejects, step))
    write_json(stage_dir / f"{shard}.stats.json", out.stats)
    write_json(stage_dir / f"{shard}.done", {"rows": out.rows.height})


def read_shard(stage_dir: Loc, shard: str, columns: list[str] | None = None) -> pl.DataFrame:
    return read_parquet(stage_dir / f"{shard}.parquet", columns=columns)


def read_stats(stage_dir: Loc, shard: str) -> dict[str, Any]:
    return read_json(stage_dir / f"{shard}.stats.json")


def iter_rejects(stage_dir: Loc, shard: str):
    """The reject records of one shard, one at a time."""
    p = stage_dir / f"{shard}.rejects.jsonl"
    if not p.exists():
        return
    if isinstance(p, RemotePath):
        lines = p.read_text(encoding="utf-8").splitlines()
        yield from (json.loads(line) for line in lines if line)
        return
    with open(p, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def read_rejects(stage_dir: Loc, shard: str) -> list[dict[str, Any]]:
    return list(iter_rejects(stage_dir, shard))


def read_jsonl(p: Loc) -> list[dict[str, Any]]:
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line]


def stage_done(stage_dir: Loc) -> dict[str, Any] | None:
    p = stage_dir / SUCCESS
    return read_json(p) if p.exists() else None


def mark_stage_done(stage_dir: Loc, shards: list[str], meta: dict[str, Any]) -> None:
    write_json(stage_dir / SUCCESS, {"shards": shards, **meta})


def clear_stage(stage_dir: Loc) -> None:
    """Remove what an unfinished run of a whole-stage writer (source, global step) left behind."""
    rmtree(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)


def stage_stats(stage_dir: Loc, shards: list[str]) -> dict[str, Any]:
    """The stage's numbers: its own (``stage.stats.json``) merged with every shard's."""
    p = stage_dir / STAGE_STATS
    stats: dict[str, Any] = read_json(p) if p.exists() else {}
    for s in shards:
        stats = merge_stats(stats, read_stats(stage_dir, s))
    return stats


def count_rejects(rejects: pl.DataFrame | None) -> dict[str, int]:
    if rejects is None or not rejects.height:
        return {}
    if "reason" not in rejects.columns:
        raise RuntimeError("rejects without a 'reason' column")
    return {str(r): int(n) for r, n in sorted(rejects.group_by("reason").len().iter_rows())}


def lang_counts(rows: pl.DataFrame, rejects: pl.DataFrame | None) -> dict[str, Any]:
    """Per-language counts of kept and rejected rows, when the rows carry a ``lang`` column."""
    out: dict[str, Any] = {}
    if "lang" in rows.columns and rows.height:
        for lang, n in rows.group_by("lang").len().iter_rows():
            out.setdefault(str(lang), {})["rows_out"] = int(n)
    if rejects is not None and rejects.height and "lang" in rejects.columns:
        for lang, reason, n in rejects.group_by(["lang", "reason"]).len().iter_rows():
            d = out.setdefault(str(lang), {}).setdefault("dropped", {})
            d[str(reason)] = d.get(str(reason), 0) + int(n)
    return out


class ShardWriter:
    """Cuts a stream of :class:`StepOutput` batches into shards of bounded rows and bytes.

    Each shard gets its rejects and stats beside it and its marker last; :meth:`close` returns the
    ordered shard names. Batches larger than a shard are cut; rejects go with the shard being filled.
    Peak memory: one shard's rows (plus the batch being added)."""

    def __init__(
        self, stage_dir: Loc, label: str, target: ShardTarget, prefix: str = "shard", require_row_id: bool = True
    ):
        self.stage_dir, self.label, self.target, self.prefix = stage_dir, label, target, prefix
        self.require_row_id = require_row_id
        self.shards: list[str] = []
        self.rows = 0
        self._rows: list[pl.DataFrame] = []
        self._rejects: list[pl.DataFrame] = []
        self._stats: dict[str, Any] = {}
        self._n = 0
        self._bytes = 0

    def emit(self, out: StepOutput) -> None:
        rows = out.rows
        if out.rejects is not None and out.rejects.height:
            self._rejects.append(out.rejects)
        if out.stats:
            self._stats = merge_stats(self._stats, out.stats)
        if self.require_row_id and ROW_ID not in rows.columns and (rows.width or rows.height):
            raise RuntimeError(f"{self.label} returned rows without a '{ROW_ID}' column")
        offset = 0
        width = max(1, rows.estimated_size() // max(1, rows.height)) if rows.height else 1
        while offset < rows.height:
            room_rows = self.target.rows - self._n
            room_bytes = max(1, (self.target.bytes - self._bytes) // width)
            take = min(room_rows, room_bytes, rows.height - offset)
            part = rows.slice(offset, take)
            self._rows.append(part)
            self._n += take
            self._bytes += take * width
            offset += take
            if self._n >= self.target.rows or self._bytes >= self.target.bytes:
                self._flush()

    def _flush(self) -> None:
        frames = [f for f in self._rows if f.width]
        empty = pl.DataFrame(schema={ROW_ID: pl.Utf8}) if self.require_row_id else pl.DataFrame()
        rows = pl.concat(frames, how="diagonal_relaxed") if frames else empty
        rejects = pl.concat(self._rejects, how="diagonal_relaxed") if self._rejects else None
        stats = {
            **self._stats,
            "rows_out": rows.height,
            "dropped": merge_stats(self._stats.get("dropped", {}), count_rejects(rejects)),
        }
        by_lang = lang_counts(rows, rejects)
        if by_lang:
            stats["by_lang"] = merge_stats(stats.get("by_lang", {}), by_lang)
        name = shard_name(len(self.shards), self.prefix)
        write_shard(self.stage_dir, name, StepOutput(rows, rejects, stats), self.label)
        self.shards.append(name)
        self.rows += rows.height
        self._rows, self._rejects, self._stats, self._n, self._bytes = [], [], {}, 0, 0

    def close(self) -> list[str]:
        """Write what is left: a last shard, or, when only stats are left, add them to the last shard."""
        if not self._n and not self._rejects and self.shards:
            if self._stats:
                p = self.stage_dir / f"{self.shards[-1]}.stats.json"
                write_json(p, merge_stats(read_json(p), self._stats))
                self._stats = {}
            return list(self.shards)
        self._flush()
        return list(self.shards)
