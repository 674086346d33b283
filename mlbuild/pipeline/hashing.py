"""Content hashes of files, and what a path parameter stands for in a fingerprint."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


_SMALL_FILE = 64 << 20


@functools.lru_cache(maxsize=4096)
def _file_token(path: str, size: int, mtime_ns: int) -> str:
    return f"file:sha256:{file_sha256(path)}"


def path_token(value: Any) -> Any:
    """What a ``kind="path"`` value stands for in a fingerprint: a local file up to 64 MiB by its content
    (editing a prompt template in place changes the fingerprint; moving it does not), a folder or a
    larger file by its name (models there carry their own revision in cache keys), anything else
    (a packaged model name, a Hub id, a URL) as written."""
    if not isinstance(value, str) or "://" in value or not Path(value).is_absolute():
        return value
    p = Path(value)
    try:
        st = p.stat()
    except OSError:
        return value
    if p.is_file() and st.st_size <= _SMALL_FILE:
        return _file_token(str(p), st.st_size, st.st_mtime_ns)
    return f"path:{p.name}"
