"""A store for large sets of vectors (corpus embeddings) on this machine's disk, behind the one cache
interface (``map_vectors``, as :class:`~mlbuild.pipeline.cache.CallCache` and
:class:`~mlbuild.pipeline.cache.SegmentCache` offer it).

Millions of vectors do not belong in one sqlite file as blobs: this store writes them as ``.npy`` shards
with a sqlite index (text key -> shard, row) beside them, so a lookup is one indexed query per batch of
keys and reads only the rows it needs (memory-mapped). :func:`vector_cache` picks the store a step uses:
the run's segment cache when the work dir is a URL (Ray workers on several machines share it), else this
store under the local work dir.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .cache import SEP, SegmentCache, hash_text, stable_json


class VectorShardCache:
    """Per-text vectors on this machine's disk: ``<dir>/<namespace>/<shard>.npy`` + ``<shard>.keys`` (written
    last: a shard counts once its keys exist) and ``index.sqlite`` (text key -> shard, row), so a lookup
    costs one indexed query per batch of keys however large the cache grows. Shards whose keys file exists
    but which are not indexed yet (a run killed between the two, or a cache from before the index) are
    indexed on first use."""

    def __init__(self, cache_dir: str | Path):
        self.dir = Path(cache_dir)
        self._dbs: dict[str, sqlite3.Connection] = {}

    def __getstate__(self) -> dict[str, Any]:  # connections stay in the process that opened them
        return {"dir": self.dir, "_dbs": {}}

    @staticmethod
    def namespace_id(namespace: dict[str, Any]) -> str:
        return hash_text(stable_json(namespace))[:32]

    @staticmethod
    def text_key(ns_id: str, text: str) -> str:
        return hash_text(ns_id, text)[:32]

    def _ns_dir(self, ns_id: str) -> Path:
        return self.dir / ns_id

    def _db(self, ns_id: str) -> sqlite3.Connection:
        db = self._dbs.get(ns_id)
        if db is None:
            d = self._ns_dir(ns_id)
            d.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(d / "index.sqlite", timeout=60, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY, shard TEXT NOT NULL, row INTEGER NOT NULL)"
            )
            db.execute("CREATE TABLE IF NOT EXISTS shards (name TEXT PRIMARY KEY)")
            self._dbs[ns_id] = db
            self._index_missing(ns_id, db)
        return db

    def _index_missing(self, ns_id: str, db: sqlite3.Connection) -> None:
        known = {r[0] for r in db.execute("SELECT name FROM shards")}
        for kf in sorted(self._ns_dir(ns_id).glob("*.keys")):
            if kf.stem not in known and kf.with_suffix(".npy").exists():
                self._index_shard(db, kf.stem, kf.read_text(encoding="ascii").split())

    @staticmethod
    def _index_shard(db: sqlite3.Connection, name: str, keys: list[str]) -> None:
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR IGNORE INTO keys VALUES (?, ?, ?)", [(k, name, i) for i, k in enumerate(keys)])
            db.execute("INSERT OR IGNORE INTO shards VALUES (?)", (name,))

    def lookup(self, ns_id: str, keys: list[str]) -> dict[str, np.ndarray]:
        if not self._ns_dir(ns_id).is_dir():
            return {}
        db = self._db(ns_id)
        where: dict[str, list[tuple[int, str]]] = {}
        uniq = list(dict.fromkeys(keys))
        for s in range(0, len(uniq), 500):
            part = uniq[s : s + 500]
            q = f"SELECT key, shard, row FROM keys WHERE key IN ({','.join('?' * len(part))})"
            for key, shard, row in db.execute(q, part):
                where.setdefault(shard, []).append((row, key))
        found: dict[str, np.ndarray] = {}
        for shard, rows in where.items():
            arr = np.load(self._ns_dir(ns_id) / f"{shard}.npy", mmap_mode="r")
            idx = np.array([r for r, _ in rows], dtype=np.int64)
            vals = np.asarray(arr[idx], dtype=np.float32)
            for (_, k), v in zip(rows, vals):
                found[k] = v
            del arr
        return found

    def store(self, ns_id: str, namespace: dict[str, Any], keys: list[str], vectors: np.ndarray) -> None:
        d = self._ns_dir(ns_id)
        d.mkdir(parents=True, exist_ok=True)
        meta = d / "namespace.json"
        if not meta.exists():
            meta.write_text(stable_json(namespace), encoding="utf-8")
        name = hashlib.sha256(SEP.join(keys).encode()).hexdigest()[:20]
        tmp = d / f".{name}.{os.getpid()}.tmp.npy"
        np.save(tmp, np.ascontiguousarray(vectors, dtype=np.float32))
        os.replace(tmp, d / f"{name}.npy")
        ktmp = d / f".{name}.{os.getpid()}.tmp.keys"
        ktmp.write_text("\n".join(keys), encoding="ascii")
        os.replace(ktmp, d / f"{name}.keys")  # the marker: a shard counts once its keys exist
        self._index_shard(self._db(ns_id), name, keys)

    hits = 0
    misses = 0

    @property
    def location(self) -> Path:
        return self.dir

    def map_vectors(
        self,
        namespace: dict[str, Any],
        texts: Sequence[str],
        fn: Callable[[list[str]], np.ndarray],
        batch_size: int = 1024,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """``fn`` (texts -> float32 [n, d]) over every text as one array in the order of ``texts``; each
        distinct uncached text is computed once, ``batch_size`` texts per call and per stored shard (a killed
        run loses at most one batch)."""
        texts = list(texts)
        uniq = list(dict.fromkeys(texts))
        ns_id = self.namespace_id(namespace)
        keys = [self.text_key(ns_id, t) for t in uniq]
        found = self.lookup(ns_id, keys)
        todo = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(uniq) - len(todo)
        self.misses += len(todo)
        for s in range(0, len(todo), batch_size):
            idx = todo[s : s + batch_size]
            out = np.asarray(fn([uniq[i] for i in idx]), dtype=np.float32)
            if len(out) != len(idx):
                raise RuntimeError(f"model call returned {len(out)} vectors for {len(idx)} inputs")
            part = [keys[i] for i in idx]
            self.store(ns_id, namespace, part, out)
            found.update(zip(part, out))
            if progress is not None:
                progress(len(idx))
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        pos = {t: found[k] for t, k in zip(uniq, keys)}
        return np.stack([pos[t] for t in texts])

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()
        self._dbs.clear()


def vector_cache(ctx: Any) -> Any:
    """The vector store a step's embedder uses: the run's segment cache when the work dir is a URL (machines
    of a cluster share it), else a :class:`VectorShardCache` under the local work dir; None without either."""
    cache = getattr(ctx, "cache", None)
    if isinstance(cache, SegmentCache):
        return cache
    if cache is not None and getattr(cache, "path", None) is not None:
        return VectorShardCache(Path(cache.path).parent / "embeddings")
    work = getattr(ctx, "work_dir", None)
    if work is not None and "://" not in str(work):
        return VectorShardCache(Path(work) / "embeddings")
    return None
