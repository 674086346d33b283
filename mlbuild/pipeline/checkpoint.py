"""Checkpoint files of one stage (source or step): parquet shards, rejects, stats, and a completion
marker written last. A shard whose marker exists is finished; anything else is redone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from .base import ROW_ID, StepOutput
from .store import RemotePath, read_parquet, write_bytes_atomic, write_parquet

SUCCESS = "_SUCCESS.json"
Loc = Path | RemotePath  # a stage folder: local, or on any fsspec filesystem (see .store)


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


def write_jsonl(path: Loc, records: list[dict[str, Any]]) -> None:
    data = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
    write_bytes_atomic(path, data.encode("utf-8"))


def shard_name(i: int) -> str:
    return f"shard-{i:05d}"


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


def write_shard(stage_dir: Loc, shard: str, out: StepOutput, step: str) -> None:
    """Write a finished shard: rows, rejects, stats, then the marker (last)."""
    write_parquet(stage_dir / f"{shard}.parquet", out.rows)
    write_jsonl(stage_dir / f"{shard}.rejects.jsonl", rejects_to_records(out.rejects, step))
    write_json(stage_dir / f"{shard}.stats.json", out.stats)
    write_json(stage_dir / f"{shard}.done", {"rows": out.rows.height})


def read_shard(stage_dir: Loc, shard: str) -> pl.DataFrame:
    return read_parquet(stage_dir / f"{shard}.parquet")


def read_stats(stage_dir: Loc, shard: str) -> dict[str, Any]:
    return read_json(stage_dir / f"{shard}.stats.json")


def read_rejects(stage_dir: Loc, shard: str) -> list[dict[str, Any]]:
    return read_jsonl(stage_dir / f"{shard}.rejects.jsonl")


def read_jsonl(p: Loc) -> list[dict[str, Any]]:
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line]


def stage_done(stage_dir: Loc) -> dict[str, Any] | None:
    p = stage_dir / SUCCESS
    return read_json(p) if p.exists() else None


def mark_stage_done(stage_dir: Loc, shards: list[str], meta: dict[str, Any]) -> None:
    write_json(stage_dir / SUCCESS, {"shards": shards, **meta})
