"""Where checkpoints live: a local directory, or any fsspec URL (``s3://bucket/prefix``, ``gs://...``,
``file:///mnt/shared/...``) so that a run on one cluster can resume on another.

A local path stays a :class:`pathlib.Path`. A URL becomes a :class:`RemotePath`, which offers the few
``Path`` methods the checkpoint code uses (``/``, ``name``, ``exists``, ``read_bytes``, ``read_text``,
``write_bytes``, ``mkdir``, ``unlink``, ``iterdir``) on top of the fsspec filesystem of its protocol. It
pickles as its URL, so Ray workers rebuild the filesystem on their side. Credentials and endpoints
come from the environment and fsspec's own configuration (``AWS_*``, ``FSSPEC_S3_ENDPOINT_URL``,
``~/.config/fsspec/``), never from the recipe, so no secret reaches a manifest or a log line.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import MlbuildError, requires
from ..redact import redact_url

# fsspec protocols whose writes land in place with no rename: an object appears whole or not at all
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "r2"}


def is_url(location: str | os.PathLike) -> bool:
    return isinstance(location, str) and "://" in location


def work_path(location: str | os.PathLike) -> Path | RemotePath:
    """A local path for plain paths, a :class:`RemotePath` for URLs (``file://`` included: a URL asks
    for the cache that several machines may share, see :mod:`.cache`)."""
    if is_url(location):
        return RemotePath(str(location))
    return Path(location).expanduser().resolve()


class RemotePath:
    """A file or folder on an fsspec filesystem, named by its URL."""

    __slots__ = ("url", "protocol", "_path", "_fs")

    def __init__(self, url: str):
        scheme, rest = url.split("://", 1)
        self.url = f"{scheme}://{rest.rstrip('/') or rest}"
        self.protocol = scheme.lower()
        self._path: str | None = None
        self._fs = None

    # pickled as the URL alone: the filesystem object is rebuilt where it is used
    def __reduce__(self):
        return (RemotePath, (self.url,))

    @property
    def fs(self):
        if self._fs is None:
            fsspec = requires("fsspec", "pip install fsspec", f"a work dir at {self.url}")
            try:
                try:  # no listing cache: other machines write into the same folders
                    self._fs, self._path = fsspec.core.url_to_fs(self.url, use_listings_cache=False)
                except TypeError:
                    self._fs, self._path = fsspec.core.url_to_fs(self.url)
            except ImportError as e:  # s3fs / gcsfs / adlfs missing
                raise MlbuildError(f"work dir {self}: {e}") from e
        return self._fs

    @property
    def path(self) -> str:
        if self._path is None:
            _ = self.fs
        return self._path  # type: ignore[return-value]

    @property
    def atomic_put(self) -> bool:
        """True where a written file appears whole or not at all (object stores)."""
        return self.protocol in _OBJECT_STORES

    def __truediv__(self, name: str) -> RemotePath:
        return RemotePath(f"{self.url}/{name}")

    def __str__(self) -> str:  # for messages and logs; the filesystem is reached through .fs and .path
        return redact_url(self.url)

    def __repr__(self) -> str:
        return f"RemotePath({redact_url(self.url)!r})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, RemotePath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def parent(self) -> RemotePath:
        return RemotePath(self.url.rsplit("/", 1)[0])

    def exists(self) -> bool:
        return self.fs.exists(self.path)

    def read_bytes(self) -> bytes:
        return self.fs.cat_file(self.path)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        """Write the whole file; on a filesystem with real folders, through a temporary name and a move."""
        if self.atomic_put:
            self.fs.pipe_file(self.path, data)
            return
        tmp = f"{self.parent.path}/.{self.name}.tmp{os.getpid()}"
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, self.path)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        if not self.atomic_put:  # object stores have no folders: keys appear with their files
            self.fs.makedirs(self.path, exist_ok=True)

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fs.rm_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def iterdir(self) -> list[RemotePath]:
        try:
            names = self.fs.ls(self.path, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return [RemotePath(f"{self.url}/{n.rstrip('/').rsplit('/', 1)[-1]}") for n in names]


def exists(p: Path | RemotePath) -> bool:
    return p.exists()


def write_bytes_atomic(path: Path | RemotePath, data: bytes) -> None:
    """Write a file so that readers see the old file or the whole new one, never a part."""
    if isinstance(path, RemotePath):
        path.write_bytes(data)
        return
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_parquet(path: Path | RemotePath, columns: list[str] | None = None):
    import polars as pl

    if isinstance(path, RemotePath):
        return pl.read_parquet(io.BytesIO(path.read_bytes()), columns=columns)
    return pl.read_parquet(path, columns=columns)


def parquet_schema(path: Path | RemotePath) -> dict:
    """Column name -> polars dtype of a parquet file, from its footer (no data read)."""
    import polars as pl

    if isinstance(path, RemotePath):
        return dict(pl.read_parquet_schema(io.BytesIO(path.read_bytes())))
    return dict(pl.read_parquet_schema(path))


# checkpoints are written once and read once or twice: a fast codec; the published files use zstd
CHECKPOINT_CODEC = "lz4"


def write_parquet(path: Path | RemotePath, df, compression: str = CHECKPOINT_CODEC) -> None:
    if isinstance(path, RemotePath):
        buf = io.BytesIO()
        df.write_parquet(buf, compression=compression, statistics=False)
        path.write_bytes(buf.getvalue())
        return
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    df.write_parquet(tmp, compression=compression, statistics=False)
    os.replace(tmp, path)


def rmtree(path: Path | RemotePath) -> None:
    if isinstance(path, RemotePath):
        if path.exists():
            path.fs.rm(path.path, recursive=True)
        return
    if path.exists():
        shutil.rmtree(path)
