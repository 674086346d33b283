"""One cache interface for every model result: JSON values and vectors, in sqlite (a local work dir),
segment files (a URL shared by machines) or nowhere (NullCache), with the same answers."""

from __future__ import annotations

import numpy as np
import pytest

from mlbuild.pipeline.cache import CallCache, NullCache, SegmentCache, cached_map
from mlbuild.pipeline.store import work_path


def embed(calls: list[str]):
    def fn(batch: list[str]) -> np.ndarray:
        calls.extend(batch)
        # exact float32 values that a lossy store would change
        return np.stack([np.array([len(t), 1 / 3, np.pi, -0.0], dtype=np.float32) / len(t) for t in batch])

    return fn


@pytest.mark.parametrize("store", ["null", "sqlite", "segments"])
def test_vectors_are_computed_once_and_kept_exactly(tmp_path, store):
    def make(name: str):
        if store == "null":
            return NullCache()
        if store == "sqlite":
            return CallCache(tmp_path / "c.sqlite")
        return SegmentCache(work_path(f"file://{tmp_path}/seg"), mirror=tmp_path / f"{name}.sqlite")

    ns = {"model": "toy", "revision": "1"}
    calls: list[str] = []
    texts = ["a", "bb", "a", "ccc"]
    first = make("a").map_vectors(ns, texts, embed(calls), batch_size=2)
    assert first.shape == (4, 4) and first.dtype == np.float32
    assert np.array_equal(first[0], first[2])
    again = make("b").map_vectors(ns, ["ccc", "a", "dd"], embed(calls), batch_size=2)
    assert np.array_equal(again[0], first[3]) and np.array_equal(again[1], first[0])
    if store == "null":
        assert calls == ["a", "bb", "ccc", "ccc", "a", "dd"]
    else:  # another process (or machine, for segments) finds what the first stored
        assert calls == ["a", "bb", "ccc", "dd"]


def test_values_and_vectors_live_side_by_side(tmp_path):
    cache = CallCache(tmp_path / "c.sqlite")
    ns = {"m": 1}
    assert cache.map(ns, ["x"], lambda b: [t.upper() for t in b]) == ["X"]
    vec = cache.map_vectors(ns, ["x"], lambda b: np.ones((len(b), 2), dtype=np.float32))
    assert vec.tolist() == [[1.0, 1.0]]
    assert cache.map(ns, ["x"], lambda b: 1 / 0) == ["X"]  # stored, not recomputed
    assert cached_map(None, ns, ["y", "y"], lambda b: [t * 2 for t in b]) == ["yy", "yy"]
