"""Content-addressed cache of model calls, so a killed run resumes per record: one interface for
every kind of result a model gives (JSON values: translations, generations, scores; vectors:
embeddings, hidden states), three stores behind it (:class:`CallCache`, :class:`SegmentCache`,
:class:`NullCache`), shared by the local and the Ray executors.

Key = sha256 over a namespace (model id, revision, decoding params: declared config only, never
callables) and the input text, joined with unit separators so no two different inputs collide.
Each computed batch is committed before the next starts: killing a run loses at most one batch.

Two stores: :class:`CallCache`, one sqlite file (a local work dir: one machine, any number of
processes); :class:`SegmentCache`, immutable segment files under an fsspec URL (``s3://``, a shared
``file://`` mount) that machines of a cluster, or of the next cluster, share. sqlite is not safe on
network filesystems and cannot live on an object store; segment files need no locking, since each
writer only ever creates new files with names of its own. Each process reads them through a local
sqlite mirror that it brings up to date when it opens and then every ``sync_seconds``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .store import RemotePath

log = logging.getLogger(__name__)

SEP = "\x1f"


def stable_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_default)


def _default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    raise TypeError(f"cannot hash {type(o).__name__} in a cache key; hash declared config only")


def hash_text(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(SEP.encode())
    return h.hexdigest()


def namespace_key(namespace: dict[str, Any]) -> str:
    return hash_text(stable_json(namespace))


def _vector_blob(v: np.ndarray) -> bytes:
    v = np.ascontiguousarray(v, dtype=np.float32)
    head = json.dumps(list(v.shape)).encode()
    return len(head).to_bytes(2, "little") + head + v.tobytes()


def _vector_of(blob: bytes) -> np.ndarray:
    n = int.from_bytes(blob[:2], "little")
    shape = json.loads(blob[2 : 2 + n])
    return np.frombuffer(blob[2 + n :], dtype=np.float32).reshape(shape)


def _stack(vectors: list[np.ndarray]) -> np.ndarray:
    return np.stack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)


class NullCache:
    """The cache interface without storage: every call is computed (de-duplicated and batched)."""

    hits = 0
    misses = 0
    location = None

    def map(
        self,
        namespace: dict[str, Any],
        texts: Sequence[str],
        fn: Callable[[list[str]], list[Any]],
        batch_size: int = 32,
        progress: Callable[[int], None] | None = None,
    ) -> list[Any]:
        uniq = list(dict.fromkeys(texts))
        out: dict[str, Any] = {}
        for i in range(0, len(uniq), batch_size):
            batch = uniq[i : i + batch_size]
            res = fn(batch)
            if len(res) != len(batch):
                raise RuntimeError(f"model call returned {len(res)} results for {len(batch)} inputs")
            out.update(zip(batch, res))
            if progress:
                progress(len(batch))
        return [out[t] for t in texts]

    def map_vectors(
        self,
        namespace: dict[str, Any],
        texts: Sequence[str],
        fn: Callable[[list[str]], np.ndarray],
        batch_size: int = 32,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """``fn`` (texts -> float32 array, one row per text) over every text, as one [n, ...] array."""
        rows = self.map(namespace, texts, lambda b: list(np.asarray(fn(b), dtype=np.float32)), batch_size, progress)
        return _stack(rows)

    def close(self) -> None:
        pass


class CallCache:
    """sqlite-backed map from (namespace, input) to a JSON value or a vector. Safe to share between threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS calls (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (k TEXT PRIMARY KEY, v BLOB NOT NULL)")
        self._db.commit()
        self.hits = 0
        self.misses = 0

    def key(self, ns: str, text: str) -> str:
        return hash_text(ns, text)

    def get_many(self, ns: str, texts: Sequence[str]) -> dict[str, Any]:
        keys = {self.key(ns, t): t for t in dict.fromkeys(texts)}
        found: dict[str, Any] = {}
        items = list(keys)
        with self._lock:
            for i in range(0, len(items), 500):
                chunk = items[i : i + 500]
                q = f"SELECT k, v FROM calls WHERE k IN ({','.join('?' * len(chunk))})"
                for k, v in self._db.execute(q, chunk):
                    found[keys[k]] = json.loads(v)
        return found

    def put_many(self, ns: str, pairs: Sequence[tuple[str, Any]]) -> None:
        rows = [(self.key(ns, t), json.dumps(v, ensure_ascii=False)) for t, v in pairs]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO calls (k, v) VALUES (?, ?)", rows)
            self._db.commit()

    def map(
        self,
        namespace: dict[str, Any],
        texts: Sequence[str],
        fn: Callable[[list[str]], list[Any]],
        batch_size: int = 32,
        progress: Callable[[int], None] | None = None,
    ) -> list[Any]:
        """Return ``fn`` applied to every text, computing each distinct uncached text once, in batches
        of ``batch_size``; each batch is stored as soon as it is done."""
        ns = namespace_key(namespace)
        found = self.get_many(ns, texts)
        todo = [t for t in dict.fromkeys(texts) if t not in found]
        self.hits += len(texts) - len(todo)
        self.misses += len(todo)
        for i in range(0, len(todo), batch_size):
            batch = todo[i : i + batch_size]
            out = fn(batch)
            if len(out) != len(batch):
                raise RuntimeError(f"model call returned {len(out)} results for {len(batch)} inputs")
            self.put_many(ns, list(zip(batch, out)))
            found.update(zip(batch, out))
            if progress:
                progress(len(batch))
        return [found[t] for t in texts]

    def get_vectors(self, ns: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        keys = {self.key(ns, t): t for t in dict.fromkeys(texts)}
        found: dict[str, np.ndarray] = {}
        items = list(keys)
        with self._lock:
            for i in range(0, len(items), 500):
                chunk = items[i : i + 500]
                q = f"SELECT k, v FROM vectors WHERE k IN ({','.join('?' * len(chunk))})"
                for k, v in self._db.execute(q, chunk):
                    found[keys[k]] = _vector_of(v)
        return found

    def put_vectors(self, ns: str, pairs: Sequence[tuple[str, np.ndarray]]) -> None:
        rows = [(self.key(ns, t), _vector_blob(v)) for t, v in pairs]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO vectors (k, v) VALUES (?, ?)", rows)
            self._db.commit()

    def map_vectors(
        self,
        namespace: dict[str, Any],
        texts: Sequence[str],
        fn: Callable[[list[str]], np.ndarray],
        batch_size: int = 32,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Like :meth:`map` for vectors (embeddings, hidden states): ``fn`` returns a float32 array with
        one row per text; the result is one array over ``texts``, stored exactly (float32 bytes)."""
        ns = namespace_key(namespace)
        found = self.get_vectors(ns, texts)
        todo = [t for t in dict.fromkeys(texts) if t not in found]
        self.hits += len(texts) - len(todo)
        self.misses += len(todo)
        for i in range(0, len(todo), batch_size):
            batch = todo[i : i + batch_size]
            out = np.asarray(fn(batch), dtype=np.float32)
            if len(out) != len(batch):
                raise RuntimeError(f"model call returned {len(out)} vectors for {len(batch)} inputs")
            self.put_vectors(ns, list(zip(batch, out)))
            found.update(zip(batch, out))
            if progress:
                progress(len(batch))
        return _stack([found[t] for t in texts])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @property
    def location(self) -> Path | RemotePath:
        """What another process opens with :func:`open_cache` to share this cache."""
        return self.path


def _mirror_path(url: str) -> Path:
    root = Path(os.environ.get("MLBUILD_CACHE") or Path.home() / ".cache" / "mlbuild")
    return root / "call-mirrors" / f"{hashlib.sha256(url.encode()).hexdigest()[:24]}.sqlite"


class SegmentCache(CallCache):
    """The call cache on a URL: every stored batch is one new JSON-lines segment file under ``root``
    (``{"k": key, "v": value}`` per line); lookups go to a local sqlite mirror of all segments seen.

    A segment is written before the batch counts as stored, so a killed worker loses at most the batch
    in flight, and a retry on any machine finds the others after its first sync."""

    def __init__(self, root: RemotePath, mirror: str | Path | None = None, sync_seconds: float = 30.0):
        self.root = root
        super().__init__(mirror or _mirror_path(root.url))
        self._db.execute("CREATE TABLE IF NOT EXISTS segments (name TEXT PRIMARY KEY)")
        self._db.commit()
        self.sync_seconds = sync_seconds
        self._last_sync: float | None = None
        self._counter = itertools.count()
        self._writer = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(4).hex()}"
        root.mkdir()

    @property
    def location(self) -> RemotePath:
        return self.root

    def sync(self) -> int:
        """Copy segments written since the last sync (by any process) into the mirror; return how many."""
        names = {
            p.name for p in self.root.iterdir() if p.name.endswith((".jsonl", ".vec")) and not p.name.startswith(".")
        }
        with self._lock:
            seen = {n for (n,) in self._db.execute("SELECT name FROM segments")}
        new = sorted(names - seen)
        if new:
            fs = self.root.fs
            blobs = fs.cat([f"{self.root.path}/{n}" for n in new], on_error="return")
            rows, vecs, done = [], [], []
            for n in new:
                data = blobs.get(f"{self.root.path}/{n}")
                if isinstance(data, BaseException) or data is None:
                    log.debug("cache segment %s/%s unreadable now: %s", self.root, n, data)
                    continue
                if n.endswith(".vec"):
                    vecs += _vector_segment(data)
                else:
                    for line in data.decode("utf-8").splitlines():
                        if line:
                            rec = json.loads(line)
                            rows.append((rec["k"], json.dumps(rec["v"], ensure_ascii=False)))
                done.append((n,))
            with self._lock:
                self._db.executemany("INSERT OR REPLACE INTO calls (k, v) VALUES (?, ?)", rows)
                self._db.executemany("INSERT OR REPLACE INTO vectors (k, v) VALUES (?, ?)", vecs)
                self._db.executemany("INSERT OR IGNORE INTO segments (name) VALUES (?)", done)
                self._db.commit()
            new = [n for (n,) in done]
        self._last_sync = time.monotonic()
        return len(new)

    def get_many(self, ns: str, texts: Sequence[str]) -> dict[str, Any]:
        if self._last_sync is None or time.monotonic() - self._last_sync > self.sync_seconds:
            self.sync()
        return super().get_many(ns, texts)

    def put_many(self, ns: str, pairs: Sequence[tuple[str, Any]]) -> None:
        if not pairs:
            return
        lines = "".join(
            json.dumps({"k": self.key(ns, t), "v": v}, ensure_ascii=False, separators=(",", ":")) + "\n"
            for t, v in pairs
        )
        name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{self._writer}-{next(self._counter):06d}.jsonl"
        (self.root / name).write_bytes(lines.encode("utf-8"))
        super().put_many(ns, pairs)
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO segments (name) VALUES (?)", (name,))
            self._db.commit()

    def get_vectors(self, ns: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        if self._last_sync is None or time.monotonic() - self._last_sync > self.sync_seconds:
            self.sync()
        return super().get_vectors(ns, texts)

    def put_vectors(self, ns: str, pairs: Sequence[tuple[str, np.ndarray]]) -> None:
        if not pairs:
            return
        keys = [self.key(ns, t) for t, _ in pairs]
        blobs = [_vector_blob(v) for _, v in pairs]
        body = b"".join(
            len(k).to_bytes(2, "little") + k.encode() + len(b).to_bytes(4, "little") + b for k, b in zip(keys, blobs)
        )
        name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{self._writer}-{next(self._counter):06d}.vec"
        (self.root / name).write_bytes(body)
        super().put_vectors(ns, pairs)
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO segments (name) VALUES (?)", (name,))
            self._db.commit()

    def compact(self, max_small: int = 256, small_bytes: int = 1 << 20) -> int:
        """Merge the small segments into one when there are more than ``max_small`` of them (each stored
        batch is one file, so a long run leaves many); return how many were merged.

        Safe while others read and write: the merged file is written before any small one is removed;
        a reader that misses a removed file reads the merged one at its next sync; two compactions at
        once only store some records twice."""
        try:
            infos = self.root.fs.ls(self.root.path, detail=True, refresh=True)
        except FileNotFoundError:
            return 0
        small = sorted(
            i["name"]
            for i in infos
            if i["name"].endswith(".jsonl")
            and not i["name"].rsplit("/", 1)[-1].startswith(".")
            and (i.get("size") or 0) < small_bytes
        )
        if len(small) <= max_small:
            return 0
        blobs = self.root.fs.cat(small, on_error="return")
        parts = [b for b in (blobs.get(n) for n in small) if isinstance(b, bytes)]
        merged = b"".join(p if p.endswith(b"\n") or not p else p + b"\n" for p in parts)
        name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{self._writer}-merged-{next(self._counter):06d}.jsonl"
        (self.root / name).write_bytes(merged)  # read back by the next sync (it may hold unseen records)
        gone = [n for n in small if isinstance(blobs.get(n), bytes)]
        for n in gone:
            try:
                self.root.fs.rm_file(n)
            except FileNotFoundError:  # another compaction took it
                pass
        log.info("call cache %s: merged %d segments into %s", self.root, len(gone), name)
        return len(gone)


def _vector_segment(data: bytes) -> list[tuple[str, bytes]]:
    """(key, vector blob) records of a ``.vec`` segment."""
    out, i = [], 0
    while i < len(data):
        n = int.from_bytes(data[i : i + 2], "little")
        k = data[i + 2 : i + 2 + n].decode()
        i += 2 + n
        m = int.from_bytes(data[i : i + 4], "little")
        out.append((k, data[i + 4 : i + 4 + m]))
        i += 4 + m
    return out


def open_cache(location: str | Path | RemotePath) -> CallCache:
    """The call cache at a location: a sqlite file for a local path, segment files for a URL."""
    if isinstance(location, RemotePath):
        return SegmentCache(location)
    if isinstance(location, str) and "://" in location:
        return SegmentCache(RemotePath(location))
    return CallCache(location)


def cached_map(
    cache: CallCache | None,
    namespace: dict[str, Any],
    texts: Sequence[str],
    fn: Callable[[list[str]], list[Any]],
    batch_size: int = 32,
) -> list[Any]:
    """Like :meth:`CallCache.map`, but without a cache still de-duplicates and batches."""
    return (cache if cache is not None else NullCache()).map(namespace, texts, fn, batch_size)
