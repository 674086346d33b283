"""Checkpoint files of one stage (source or step): parquet shards, rejects, stats, and a completion
marker written last. A shard whose marker exists is finished; anything else is redone."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl

from .base import ROW_ID, StepOutput

SUCCESS = "_SUCCESS.json"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    _atomic_write_bytes(path, json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True, default=str).encode())


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_parquet(path: Path, df: pl.DataFrame) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    df.write_parquet(tmp, compression="zstd", statistics=False)
    os.replace(tmp, path)


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


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    data = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
    _atomic_write_bytes(path, data.encode("utf-8"))


def shard_name(i: int) -> str:
    return f"shard-{i:05d}"


def is_done(stage_dir: Path, shard: str) -> bool:
    return (stage_dir / f"{shard}.done").exists()


def write_shard(stage_dir: Path, shard: str, out: StepOutput, step: str) -> None:
    """Write a finished shard: rows, rejects, stats, then the marker (last)."""
    write_parquet(stage_dir / f"{shard}.parquet", out.rows)
    write_jsonl(stage_dir / f"{shard}.rejects.jsonl", rejects_to_records(out.rejects, step))
    write_json(stage_dir / f"{shard}.stats.json", out.stats)
    write_json(stage_dir / f"{shard}.done", {"rows": out.rows.height})


def read_shard(stage_dir: Path, shard: str) -> pl.DataFrame:
    return pl.read_parquet(stage_dir / f"{shard}.parquet")


def read_stats(stage_dir: Path, shard: str) -> dict[str, Any]:
    return read_json(stage_dir / f"{shard}.stats.json")


def read_rejects(stage_dir: Path, shard: str) -> list[dict[str, Any]]:
    return read_jsonl(stage_dir / f"{shard}.rejects.jsonl")


def read_jsonl(p: Path) -> list[dict[str, Any]]:
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line]


def stage_done(stage_dir: Path) -> dict[str, Any] | None:
    p = stage_dir / SUCCESS
    return read_json(p) if p.exists() else None


def mark_stage_done(stage_dir: Path, shards: list[str], meta: dict[str, Any]) -> None:
    write_json(stage_dir / SUCCESS, {"shards": shards, **meta})
