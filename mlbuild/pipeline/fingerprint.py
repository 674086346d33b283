"""Fingerprints: hash(upstream fingerprint, component name+version, declared params). Runtime-only
params (batch size, device) are left out, so changing them never invalidates a checkpoint."""

from __future__ import annotations

from typing import Any

from . import params as P
from .cache import hash_text, stable_json
from .hashing import file_sha256, path_token

__all__ = ["component_fingerprint", "file_sha256", "path_token", "source_fingerprint"]


def component_fingerprint(upstream: str, name: str, params: Any, extra: dict[str, Any] | None = None) -> str:
    return hash_text(upstream, name, stable_json(P.declared(params)), stable_json(extra or {}))


def source_fingerprint(name: str, params: Any, checksums: dict[str, str], limit: int | None) -> str:
    # paths differ between machines; the content is what counts
    kinds = {f.name: f.metadata.get("kind") for f in P.fields(type(params))}
    decl = {k: v for k, v in P.declared(params).items() if kinds.get(k) != "path"}
    return hash_text("source", name, stable_json(decl), stable_json(sorted(checksums.values())), str(limit))
