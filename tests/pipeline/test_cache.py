"""One cache interface for every model result: JSON values and vectors, in sqlite (a local work dir),
segment files (a URL shared by machines) or nowhere (NullCache), with the same answers."""

from __future__ import annotations

import numpy as np
import pytest

from mlbuild.pipeline.cache import CallCache, NullCache, SegmentCache, cached_map
from mlbuild.pipeline.store import work_path
from mlbuild.pipeline.vector_cache import VectorShardCache, vector_cache


def embed(calls: list[str]):
    def fn(batch: list[str]) -> np.ndarray:
        calls.extend(batch)
        # exact float32 values that a lossy store would change
        return np.stack([np.array([len(t), 1 / 3, np.pi, -0.0], dtype=np.float32) / len(t) for t in batch])

    return fn


@pytest.mark.parametrize("store", ["null", "sqlite", "segments", "shards"])
def test_vectors_are_computed_once_and_kept_exactly(tmp_path, store):
    def make(name: str):
        if store == "null":
            return NullCache()
        if store == "sqlite":
            return CallCache(tmp_path / "c.sqlite")
        if store == "shards":
            return VectorShardCache(tmp_path / "vec")
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


def test_a_step_gets_the_shared_segment_cache_on_a_url_work_dir_and_local_shards_otherwise(tmp_path):
    from types import SimpleNamespace

    seg = SegmentCache(work_path(f"file://{tmp_path}/seg"), mirror=tmp_path / "m.sqlite")
    assert vector_cache(SimpleNamespace(cache=seg, work_dir=tmp_path / "scratch")) is seg
    local = vector_cache(SimpleNamespace(cache=CallCache(tmp_path / "w" / "cache.sqlite"), work_dir=tmp_path))
    assert isinstance(local, VectorShardCache) and local.location == tmp_path / "w" / "embeddings"
    assert vector_cache(SimpleNamespace(cache=None, work_dir=tmp_path)).location == tmp_path / "embeddings"
    assert vector_cache(SimpleNamespace(cache=None, work_dir=None)) is None


def test_the_embedder_goes_through_the_cache_interface(tmp_path):
    from mlbuild.models.embed import Embedder

    class Toy(Embedder):
        engine, id, revision, dim = "toy", "toy", "1", 4

        def _encode(self, texts, kind):
            return embed(self.calls)(texts)

    seg = SegmentCache(work_path(f"file://{tmp_path}/seg"), mirror=tmp_path / "a.sqlite")
    a = Toy(cache=seg, batch_size=2)
    a.calls = []
    first = a.embed(["a", "bb", "a"], kind="passage")
    assert a.calls == ["a", "bb"] and (a.hits, a.misses) == (0, 2)
    # another machine on the same URL finds the vectors (L2-normalised, identical)
    b = Toy(cache=SegmentCache(work_path(f"file://{tmp_path}/seg"), mirror=tmp_path / "b.sqlite"), batch_size=2)
    b.calls = []
    again = b.embed(["bb", "a"], kind="passage")
    assert b.calls == [] and (b.hits, b.misses) == (2, 0)
    assert np.array_equal(again, first[[1, 0]])
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0)
