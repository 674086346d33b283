"""On-disk arrays of a mining run: growable numpy columns, float32 vector files and a text store, all in
one scratch folder on the local disk (removed when the step ends).

Peak memory of each is one appended chunk; reads go through memory maps whose pages are released after
use (:func:`mlbuild.models.search.release_pages`), so a file larger than memory never sits in the
process's resident set."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..models.search import HostCorpus, release_pages, release_rows


class Scratch:
    """A private folder for one run (``with Scratch(root) as s``): under ``root`` when given (the run's
    local work dir), else the system's temporary folder."""

    def __init__(self, root: Path | None = None, prefix: str = "mining-"):
        if root is not None:
            Path(root).mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=prefix, dir=root))

    def path(self, name: str) -> Path:
        return self.dir / name

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: Any) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class Column:
    """A growable 1-D numpy column: appended in chunks, joined once (:meth:`array`)."""

    def __init__(self, dtype: Any):
        self.dtype = np.dtype(dtype)
        self.chunks: list[np.ndarray] = []
        self.n = 0

    def append(self, values: Any) -> None:
        a = np.asarray(values, dtype=self.dtype)
        if a.size:
            self.chunks.append(a)
            self.n += a.size

    def array(self) -> np.ndarray:
        if len(self.chunks) != 1:
            self.chunks = [np.concatenate(self.chunks) if self.chunks else np.zeros(0, self.dtype)]
        return self.chunks[0]


class VectorFile:
    """Float32 rows appended to a raw file (``append``) or written at given rows (``write``, after
    :meth:`allocate`); read back as a read-only memory map (:meth:`open`)."""

    def __init__(self, path: Path, dim: int | None = None):
        self.path = Path(path)
        self.dim = dim
        self.rows = 0
        self._mm: np.memmap | None = None

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.ndim != 2:
            raise ValueError(f"expected a 2-D array of vectors, got shape {rows.shape}")
        if self.dim is None:
            self.dim = rows.shape[1]
        elif rows.shape[1] != self.dim:
            raise ValueError(f"vectors of width {rows.shape[1]} after vectors of width {self.dim}")
        with open(self.path, "ab") as f:
            f.write(rows.tobytes())
        self.rows += len(rows)
        self._mm = None

    def allocate(self, rows: int, dim: int) -> None:
        self.dim, self.rows = dim, rows
        with open(self.path, "wb") as f:
            f.truncate(rows * dim * 4)
        self._mm = None

    def write(self, start: int, rows: np.ndarray) -> None:
        mm = np.memmap(self.path, dtype=np.float32, mode="r+", shape=(self.rows, self.dim or 0))
        mm[start : start + len(rows)] = rows
        mm.flush()
        release_pages(mm)
        del mm
        self._mm = None

    def open(self) -> np.ndarray:
        """The vectors [rows, dim] as a read-only memory map (an empty array when there are none)."""
        if not self.rows:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        if self._mm is None:
            self._mm = np.memmap(self.path, dtype=np.float32, mode="r", shape=(self.rows, self.dim or 0))
        return self._mm

    def take(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx``, gathered in file order with the pages released as it goes."""
        return HostCorpus([self.open()]).take(np.asarray(idx, dtype=np.int64))


class TextStore:
    """Strings appended in order and read back by number: UTF-8 bytes in one file plus offsets."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.ends = Column(np.int64)
        self.size = 0
        self.path.write_bytes(b"")
        self._mm: np.memmap | None = None

    def __len__(self) -> int:
        return self.ends.n

    def append(self, texts: list[str]) -> None:
        if not texts:
            return
        data = [t.encode("utf-8", "surrogatepass") for t in texts]
        lens = np.fromiter((len(b) for b in data), dtype=np.int64, count=len(data))
        self.ends.append(self.size + np.cumsum(lens))
        self.size += int(lens.sum())
        with open(self.path, "ab") as f:
            f.write(b"".join(data))
        self._mm = None

    def get(self, ids: Any) -> list[str]:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not ids.size:
            return []
        ends = self.ends.array()
        starts = np.where(ids > 0, ends[np.maximum(ids - 1, 0)], 0)
        stops = ends[ids]
        if self.size == 0:
            return [""] * len(ids)
        if self._mm is None:
            self._mm = np.memmap(self.path, dtype=np.uint8, mode="r", shape=(self.size,))
        mm = self._mm
        out: list[str] = [""] * len(ids)
        order = np.argsort(starts, kind="stable")  # file order, the pages of each few texts released
        for s in range(0, len(order), 64):
            chunk = order[s : s + 64]
            for j in chunk:
                out[j] = bytes(mm[starts[j] : stops[j]]).decode("utf-8", "surrogatepass")
            release_rows(mm, int(starts[chunk[0]]), int(stops[chunk].max()))
        return out


def file_bytes(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
