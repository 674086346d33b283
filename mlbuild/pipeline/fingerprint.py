"""Fingerprints: hash(upstream fingerprint, component name+version, declared params). Runtime-only
params (batch size, device) are left out, so changing them never invalidates a checkpoint."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from . import params as P
from .cache import hash_text, stable_json


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def component_fingerprint(upstream: str, name: str, params: Any, extra: dict[str, Any] | None = None) -> str:
    return hash_text(upstream, name, stable_json(P.declared(params)), stable_json(extra or {}))


def source_fingerprint(name: str, params: Any, checksums: dict[str, str], limit: int | None) -> str:
    # paths differ between machines; the content is what counts
    kinds = {f.name: f.metadata.get("kind") for f in P.fields(type(params))}
    decl = {k: v for k, v in P.declared(params).items() if kinds.get(k) != "path"}
    return hash_text("source", name, stable_json(decl), stable_json(sorted(checksums.values())), str(limit))


_SMALL_FILE = 64 << 20


def path_contents(params: Any) -> dict[str, str]:
    """Content hashes of the files that ``kind="path"`` params point to (prompt templates, exemplar
    files, small models), so editing such a file in place changes the fingerprint. Folders and files
    over 64 MiB are left to their names (models there carry their own revision in cache keys)."""
    out: dict[str, str] = {}
    for f in P.fields(type(params)):
        if f.metadata.get("kind") != "path" or f.metadata.get("runtime"):
            continue
        value = getattr(params, f.name)
        for i, v in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(v, str) and "://" not in v:
                p = Path(v)
                if p.is_file() and p.stat().st_size <= _SMALL_FILE:
                    out[f"{f.name}[{i}]"] = file_sha256(p)
    return out
