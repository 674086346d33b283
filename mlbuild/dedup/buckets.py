"""Equal keys among many rows, found with flat memory: records ``(k1, k2, row)`` are spread over
``n`` files on local disk by the top byte of ``k1`` (a hash), and each file is then sorted alone, so
memory holds one bucket (``1/n`` of the records) at a time. A run of equal ``(k1, k2)`` is a group of
rows with the same key (an exact-duplicate text, a shared LSH band); rows in a run are in input order."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

REC = np.dtype([("k1", "<u8"), ("k2", "<u8"), ("row", "<i8")])


class Buckets:
    """Append records batch by batch (:meth:`add`), then read the runs of equal keys (:meth:`runs`)."""

    def __init__(self, folder: Path, name: str, n: int = 256):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.paths = [self.folder / f"{name}-{b:03d}.bin" for b in range(n)]
        self.files = [open(p, "wb") for p in self.paths]
        self.n = n
        self.records = 0

    def add(self, k1: np.ndarray, k2: np.ndarray | None, rows: np.ndarray) -> None:
        rec = np.empty(len(rows), dtype=REC)
        rec["k1"], rec["k2"], rec["row"] = k1, 0 if k2 is None else k2, rows
        bucket = (rec["k1"] >> np.uint64(56)).astype(np.int64) % self.n
        order = np.argsort(bucket, kind="stable")
        cuts = np.searchsorted(bucket[order], np.arange(self.n + 1))
        for b in np.flatnonzero(cuts[1:] > cuts[:-1]):
            self.files[b].write(rec[order[cuts[b] : cuts[b + 1]]].tobytes())
        self.records += len(rows)

    def close(self) -> None:
        for f in self.files:
            if not f.closed:
                f.close()

    def runs(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Per bucket with a repeated key: (rows sorted by key then row, run id of each row), only rows in
        runs of two or more. Buckets are read in order and removed once read."""
        self.close()
        for p in self.paths:
            rec = np.fromfile(p, dtype=REC)
            p.unlink()
            if len(rec) < 2:
                continue
            rec = rec[np.lexsort((rec["row"], rec["k2"], rec["k1"]))]
            new = np.ones(len(rec), dtype=bool)
            new[1:] = (rec["k1"][1:] != rec["k1"][:-1]) | (rec["k2"][1:] != rec["k2"][:-1])
            run = np.cumsum(new) - 1
            size = np.bincount(run)
            keep = size[run] >= 2
            if keep.any():
                yield rec["row"][keep], run[keep]


@lru_cache(maxsize=64)
def _triu(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n, k=2)


def run_pairs(rows: np.ndarray, run: np.ndarray, all_pairs_upto: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row pairs ``(u, v)``, ``u < v``, within runs (``rows`` sorted within each run, runs contiguous): each
    row with the first of its run and with the row before it; every pair in runs of at most
    ``all_pairs_upto`` rows. Pairs may repeat."""
    if not len(rows):
        z = np.zeros(0, dtype=np.int64)
        return z, z
    start = np.ones(len(rows), dtype=bool)
    start[1:] = run[1:] != run[:-1]
    first_idx = np.maximum.accumulate(np.where(start, np.arange(len(rows)), 0))
    later = ~start
    us = [rows[first_idx[later]], rows[np.flatnonzero(later) - 1]]
    vs = [rows[later], rows[later]]
    if all_pairs_upto > 2:
        size = np.bincount(run)
        starts = np.flatnonzero(start)
        for s in starts[(size[run[starts]] > 2) & (size[run[starts]] <= all_pairs_upto)]:
            r = rows[s : s + size[run[s]]]
            i, j = _triu(len(r))  # neighbours and the first row are already in
            us.append(r[i])
            vs.append(r[j])
    return np.concatenate(us), np.concatenate(vs)
