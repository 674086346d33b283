"""Put a finished version folder in place of the old one without a moment where neither exists.

On Linux, ``renameat2(RENAME_EXCHANGE)`` swaps the two folders in one atomic step. Elsewhere the old
folder is renamed aside first (``.<version>.old``), the new one renamed in, then the old one deleted;
a kill between the two renames leaves the old version aside, and :func:`recover` (called before the
next write, and by readers) puts it back."""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the system cannot."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(str(a)), _AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    log.debug("renameat2 exchange of %s and %s failed: %s", a, b, os.strerror(err))
    return False


def aside(target: Path) -> Path:
    return target.parent / f".{target.name}.old"


def recover(target: Path) -> None:
    """Finish an interrupted swap: the old version back in place when no version is there."""
    old = aside(target)
    if old.exists() and not target.exists():
        log.warning("%s: restoring the previous version left aside by an interrupted run", target)
        old.rename(target)
    elif old.exists():
        shutil.rmtree(old)


def swap_into_place(new: Path, target: Path) -> None:
    """Make ``new`` the folder at ``target``; the previous ``target`` (if any) is deleted afterwards."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        new.rename(target)
        return
    if _exchange(new, target):
        shutil.rmtree(new)  # now holds the previous version
        return
    old = aside(target)
    if old.exists():
        shutil.rmtree(old)
    target.rename(old)
    new.rename(target)
    shutil.rmtree(old)
