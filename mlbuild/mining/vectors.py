"""Vectors of a mining run on disk: texts embedded chunk by chunk into float32 files, and the corpus laid
out by group for the search (one contiguous slice per group)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .index import MiningIndex
from .store import TextStore, VectorFile

EMBED_CHUNK = 16_384  # texts per embedding call (the embedder batches and caches inside)


def embed_texts(
    embedder: Any,
    texts: TextStore,
    out: VectorFile,
    kind: str,
    chunk: int = EMBED_CHUNK,
    progress: Callable | None = None,
) -> None:
    """Embed every text of ``texts`` (in order) into ``out``; memory: one chunk of texts and vectors."""
    n = len(texts)
    for s in range(0, n, chunk):
        vecs = embedder.embed(texts.get(np.arange(s, min(n, s + chunk))), kind)
        out.append(vecs)
        if progress is not None:
            progress(len(vecs))
    if out.dim is None:
        out.dim = int(getattr(embedder, "dim", 0))


def grouped_corpus(index: MiningIndex, passages: VectorFile, out: VectorFile, chunk: int = EMBED_CHUNK) -> VectorFile:
    """The search array: entry vectors in grouped order (``index.order``). Without ``group_by`` entries are
    the distinct texts in order, so the passage file itself is returned."""
    if not index.grouped:
        return passages
    text_of = index.entry_text.array()
    out.dim = passages.dim
    for s in range(0, index.n_entries, chunk):
        out.append(passages.take(text_of[index.order[s : s + chunk]]))
    return out
