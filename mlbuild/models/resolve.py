"""Resolve a model reference: a local path, a packaged short name, or a Hub id (through the HF
cache, for users who have the Hub). Gives a revision for cache keys and the manifest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .packaged import PACKAGED, packaged_path

_FULL_HASH_LIMIT = 64 << 20


@dataclass(frozen=True)
class ModelRef:
    ref: str  # what the recipe said
    path: Path | None  # local file or folder, when there is one
    revision: str  # content hash of local files, or the Hub revision asked for
    kind: str  # "path" | "packaged" | "hub"

    @property
    def id(self) -> str:
        return self.ref


def content_revision(path: Path) -> str:
    """A short content hash of a model file or folder: full hash for small files, size + head/tail
    chunks for large ones (weights of several GB)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        rel = f.name if path.is_file() else str(f.relative_to(path))
        size = f.stat().st_size
        h.update(f"{rel}\x1f{size}\x1f".encode())
        with open(f, "rb") as fh:
            if size <= _FULL_HASH_LIMIT:
                h.update(fh.read())
            else:
                h.update(fh.read(1 << 20))
                fh.seek(size - (1 << 20))
                h.update(fh.read())
    return "sha256:" + h.hexdigest()[:16]


def resolve_model(ref: str, base_dir: Path | None = None, revision: str | None = None) -> ModelRef:
    p = Path(ref).expanduser()
    if not p.is_absolute() and base_dir is not None and (base_dir / p).exists():
        p = base_dir / p
    if p.exists():
        return ModelRef(ref, p.resolve(), revision or content_revision(p), "path")
    if ref in PACKAGED:
        path = packaged_path(ref)
        return ModelRef(ref, path, revision or content_revision(path), "packaged")
    return ModelRef(ref, None, revision or "main", "hub")
