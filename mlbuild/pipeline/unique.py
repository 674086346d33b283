"""Row ids taken from the data (an ``id_column``) must be unique across the whole input; a row whose id
an earlier row already has goes to its shard's rejects as ``duplicate_id``.

Memory stays flat as rows grow: each shard's ids are hashed (64 bits) and the (hash, shard, row)
records are spread over 256 bucket files on local disk by the hash's top byte; each bucket is then
sorted alone. Hash collisions are told apart from real duplicates by reading the colliding ids."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from . import checkpoint as ck
from .base import ROW_ID
from .store import write_parquet

_REC = np.dtype([("h", "<u8"), ("shard", "<u4"), ("row", "<u4")])
BUCKETS = 256


def _candidates(sdir: ck.Loc, shards: list[str], tmp: Path) -> list[tuple[int, int]]:
    """(shard, row) of every row whose id hash another row shares, in input order within each hash."""
    files = [open(tmp / f"b{b:03d}", "wb") for b in range(BUCKETS)]
    try:
        for k, s in enumerate(shards):
            ids = ck.read_shard(sdir, s, columns=[ROW_ID])[ROW_ID]
            rec = np.empty(len(ids), dtype=_REC)
            rec["h"] = ids.hash(seed=0).to_numpy()
            rec["shard"] = k
            rec["row"] = np.arange(len(ids), dtype=np.uint32)
            bucket = (rec["h"] >> np.uint64(56)).astype(np.int64)
            order = np.argsort(bucket, kind="stable")
            cuts = np.searchsorted(bucket[order], np.arange(BUCKETS + 1))
            for b in range(BUCKETS):
                if cuts[b + 1] > cuts[b]:
                    files[b].write(rec[order[cuts[b] : cuts[b + 1]]].tobytes())
    finally:
        for f in files:
            f.close()
    out: list[tuple[int, int]] = []
    for b in range(BUCKETS):
        rec = np.fromfile(tmp / f"b{b:03d}", dtype=_REC)
        if len(rec) < 2:
            continue
        rec = rec[np.argsort(rec["h"], kind="stable")]  # equal hashes keep input order
        same = np.flatnonzero(rec["h"][1:] == rec["h"][:-1])
        if same.size:
            for r in rec[np.unique(np.concatenate([same, same + 1]))]:
                out.append((int(r["shard"]), int(r["row"])))
    return out


def reject_duplicate_ids(sdir: ck.Loc, shards: list[str], label: str, scratch: Path) -> int:
    """Move every later row with an already used id to its shard's rejects; return how many moved."""
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix=".ids-") as tmp:
        cand = _candidates(sdir, shards, Path(tmp))
    if not cand:
        return 0
    ids_of: dict[tuple[int, int], str] = {}
    for k in sorted({k for k, _ in cand}):
        ids = ck.read_shard(sdir, shards[k], columns=[ROW_ID])[ROW_ID]
        for kk, r in cand:
            if kk == k:
                ids_of[(k, r)] = ids[r]
    seen: set[str] = set()
    drop: dict[int, list[int]] = {}
    for k, r in sorted(ids_of):  # input order: shard, then row
        rid = ids_of[(k, r)]
        if rid in seen:
            drop.setdefault(k, []).append(r)
        seen.add(rid)
    for k, rows in drop.items():
        _move_to_rejects(sdir, shards[k], rows, label)
    return sum(len(v) for v in drop.values())


def _move_to_rejects(sdir: ck.Loc, name: str, rows: list[int], label: str) -> None:
    df = ck.read_shard(sdir, name)
    mask = np.zeros(df.height, dtype=bool)
    mask[rows] = True
    keep = pl.Series(~mask)
    dup = df.filter(~keep).with_columns(
        pl.lit("duplicate_id").alias("reason"),
        pl.format("id '{}' already used by an earlier row", pl.col(ROW_ID)).alias("detail"),
    )
    stats = ck.read_stats(sdir, name)
    stats["rows_out"] = stats.get("rows_out", 0) - dup.height
    stats.setdefault("dropped", {})["duplicate_id"] = stats.get("dropped", {}).get("duplicate_id", 0) + dup.height
    old = ck.read_rejects(sdir, name)
    write_parquet(sdir / f"{name}.parquet", df.filter(keep))
    ck.write_jsonl(sdir / f"{name}.rejects.jsonl", old + ck.rejects_to_records(dup, label))
    ck.write_json(sdir / f"{name}.stats.json", stats)
    ck.write_json(sdir / f"{name}.done", {"rows": df.height - dup.height})
