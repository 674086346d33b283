"""Content-addressed cache of model calls (sqlite), so a killed run resumes per record.

Key = sha256 over a namespace (model id, revision, decoding params: declared config only, never
callables) and the input text, joined with unit separators so no two different inputs collide.
Each computed batch is committed before the next starts: killing a run loses at most one batch.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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


class CallCache:
    """sqlite-backed map from (namespace, input) to a JSON value. Safe to share between threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS calls (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
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

    def close(self) -> None:
        with self._lock:
            self._db.close()


def cached_map(
    cache: CallCache | None,
    namespace: dict[str, Any],
    texts: Sequence[str],
    fn: Callable[[list[str]], list[Any]],
    batch_size: int = 32,
) -> list[Any]:
    """Like :meth:`CallCache.map`, but without a cache still de-duplicates and batches."""
    if cache is not None:
        return cache.map(namespace, texts, fn, batch_size)
    uniq = list(dict.fromkeys(texts))
    out: dict[str, Any] = {}
    for i in range(0, len(uniq), batch_size):
        batch = uniq[i : i + batch_size]
        out.update(zip(batch, fn(batch)))
    return [out[t] for t in texts]
