"""Dense ids for keys seen in a stream, in first-seen order, without holding the keys' texts.

Texts are hashed to 64 bits with polars (two independent seeds: one is the key, the other is checked on
every hit, so a collision of the first is detected, not silently merged). :class:`HashIndex` keeps the
keys in a few sorted runs merged geometrically (as a log-structured merge tree): adding ``n`` keys costs
``O(n log n)`` and memory is 24 bytes per distinct key."""

from __future__ import annotations

import numpy as np
import polars as pl

SEED_KEY, SEED_CHECK = 0x6D6C62, 0x6D696E65


def text_hashes(texts: pl.Series | list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(key, check) uint64 hashes of each text (stable within one process)."""
    s = texts if isinstance(texts, pl.Series) else pl.Series(texts, dtype=pl.Utf8)
    s = s.cast(pl.Utf8)
    return s.hash(seed=SEED_KEY).to_numpy(), s.hash(seed=SEED_CHECK).to_numpy()


class HashCollision(RuntimeError):
    pass


class HashIndex:
    """uint64 key -> dense id (0, 1, ... in first-seen order)."""

    def __init__(self) -> None:
        self.runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (sorted keys, ids, checks)
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, checks) of ``keys``; -1 for keys never added."""
        keys = np.asarray(keys, dtype=np.uint64)
        ids = np.full(len(keys), -1, dtype=np.int64)
        checks = np.zeros(len(keys), dtype=np.uint64)
        for rk, ri, rc in self.runs:
            pos = np.minimum(np.searchsorted(rk, keys), len(rk) - 1)
            hit = (rk[pos] == keys) & (ids < 0)
            ids[hit] = ri[pos[hit]]
            checks[hit] = rc[pos[hit]]
        return ids, checks

    def add(self, keys: np.ndarray, checks: np.ndarray | None = None) -> np.ndarray:
        """Ids of ``keys``; unseen keys get the next ids in the order of their first occurrence."""
        keys = np.asarray(keys, dtype=np.uint64)
        checks = np.zeros(len(keys), np.uint64) if checks is None else np.asarray(checks, dtype=np.uint64)
        ids, found = self.lookup(keys)
        old = ids >= 0
        if (found[old] != checks[old]).any():
            raise HashCollision("two different texts share a 64-bit hash; rerun with other seeds")
        new = ~old
        if not new.any():
            return ids
        nk, nc = keys[new], checks[new]
        uniq, first, inv = np.unique(nk, return_index=True, return_inverse=True)
        if (nc != nc[first][inv]).any():
            raise HashCollision("two different texts share a 64-bit hash; rerun with other seeds")
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
        new_ids = self.n + rank
        ids[new] = new_ids[inv.reshape(-1)]
        self.runs.append((uniq, new_ids, nc[first]))
        self.n += len(uniq)
        while len(self.runs) > 1 and len(self.runs[-2][0]) <= 2 * len(self.runs[-1][0]):
            (ak, ai, ac), (bk, bi, bc) = self.runs.pop(-2), self.runs.pop()
            k = np.concatenate([ak, bk])
            order = np.argsort(k, kind="stable")
            self.runs.append((k[order], np.concatenate([ai, bi])[order], np.concatenate([ac, bc])[order]))
        return ids


def first_positions(ids: np.ndarray, start: int) -> np.ndarray:
    """Positions of the first occurrence of each id >= ``start`` in ``ids``, in id order (new ids are
    dense and numbered by first occurrence, so this is also the order of appearance)."""
    new = np.flatnonzero(ids >= start)
    _, first = np.unique(ids[new], return_index=True)
    return new[first]
