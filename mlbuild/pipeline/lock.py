"""One run per output version: a lock file beside the version folder, and the version's fingerprint.

Two ``mlbuild run`` into the same ``--out`` would otherwise share one half-built folder. The lock is an
advisory ``flock`` on ``OUT/<name>/.<version>.lock`` held for the whole run (released by the OS if the
process dies); the file names its holder, so the second run says who is building."""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from pathlib import Path

from ..errors import MlbuildError


class OutputLock:
    def __init__(self, dataset_dir: Path):
        self.dataset_dir = Path(dataset_dir)
        self.path = self.dataset_dir.parent / f".{self.dataset_dir.name}.lock"
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise MlbuildError(
                f"{self.dataset_dir} is being built by another run ({holder}); wait for it to finish, "
                "or build into another --out"
            ) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "holder unknown"
    return f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}"


def existing_fingerprint(dataset_dir: Path) -> str | None:
    """The fingerprint of the version already at ``dataset_dir`` (None when there is none)."""
    p = Path(dataset_dir) / "manifest.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError):
        return None
