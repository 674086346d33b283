"""Exact blocked top-k: agrees with a brute-force sort (score desc, index asc) for every block shape,
including exact ties across block boundaries; half precision gives the fp32 answer; memory stays
at one score block."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from mlbuild.models import search  # noqa: E402
from mlbuild.models.search import exact_topk  # noqa: E402


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute(q: np.ndarray, c: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = q @ c.T
    idx = np.stack([np.lexsort((np.arange(c.shape[0]), -row))[:k] for row in s])
    return np.take_along_axis(s, idx, 1), idx


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    q = unit(rng.standard_normal((120, 24)))
    c = unit(rng.standard_normal((3000, 24)))
    c[[10, 700, 701, 1500, 2999]] = c[5]  # exact duplicates, spread over several blocks
    q[:6] = c[5]  # queries whose best items are all tied
    return q, c


@pytest.mark.parametrize("k", [1, 9])
@pytest.mark.parametrize("blocks", [(None, None), (7, 333), (50, 1), (120, 100)])
def test_matches_brute_force_with_ties(data, k, blocks):
    q, c = data
    bs, bi = brute(q, c, k)
    s, i = exact_topk(q, c, k, query_block=blocks[0], corpus_block=blocks[1])
    assert (i == bi).all()
    np.testing.assert_allclose(s, bs, rtol=1e-5, atol=1e-5)
    assert list(i[0][:6] if k >= 6 else i[0]) == [5, 10, 700, 701, 1500, 2999][: min(k, 6)]


def test_boundary_tie_takes_lowest_indices():
    # 10 identical items, k = 3: exactly the three lowest indices, whatever the block shape
    c = np.tile(unit(np.ones((1, 8))), (10, 1))
    q = unit(np.ones((2, 8)))
    for cb in (None, 3, 4, 7):
        _, i = exact_topk(q, c, 3, corpus_block=cb)
        assert i.tolist() == [[0, 1, 2], [0, 1, 2]]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("extra", [None, 0])
def test_half_precision_gives_the_fp32_answer(data, precision, extra):
    q, c = data
    bs, bi = brute(q, c, 5)
    s, i = exact_topk(q, c, 5, precision=precision, corpus_block=400, extra=extra)
    assert (i == bi).all()
    np.testing.assert_allclose(s, bs, rtol=1e-5, atol=1e-5)


def test_small_corpus_pads_and_empty_inputs():
    rng = np.random.default_rng(1)
    q, c = unit(rng.standard_normal((3, 4))), unit(rng.standard_normal((2, 4)))
    s, i = exact_topk(q, c, 4)
    assert (i[:, 2:] == -1).all() and np.isneginf(s[:, 2:]).all()
    assert sorted(i[0, :2].tolist()) == [0, 1]
    s, i = exact_topk(q[:0], c, 3)
    assert s.shape == (0, 3)
    s, i = exact_topk(q, c[:0], 3)
    assert (i == -1).all()
    with pytest.raises(ValueError):
        exact_topk(q, unit(rng.standard_normal((2, 5))), 1)
    with pytest.raises(ValueError):
        exact_topk(q, c, 1, precision="int8")


def test_score_blocks_never_exceed_block_shape(data, monkeypatch):
    q, c = data
    shapes = []
    real = search.search_block

    def spy(torch, scores, k, offset, exact_ties):
        shapes.append(tuple(scores.shape))
        return real(torch, scores, k, offset, exact_ties)

    monkeypatch.setattr(search, "search_block", spy)
    exact_topk(q, c, 5, query_block=32, corpus_block=256)
    assert shapes and max(a * b for a, b in shapes) <= 32 * 256
    assert sum(b for a, b in shapes if a == 32) // 3 >= c.shape[0]  # every corpus row seen by each query block


def test_progress_counts_corpus_rows(data):
    q, c = data
    seen = []
    exact_topk(q, c, 2, corpus_block=1000, progress=seen.append)
    assert sum(seen) == c.shape[0] and len(seen) == 3


def test_faiss_backend_when_installed(data):
    pytest.importorskip("faiss")
    q, c = data
    s, i = search.faiss_topk(q, c, 5)
    bs, _ = brute(q, c, 5)
    np.testing.assert_allclose(s, bs, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        search.faiss_topk(q, c, search.FAISS_GPU_K_LIMIT + 1, use_gpu=True)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("resident", [True, False])
def test_cuda_matches_cpu(data, precision, resident, monkeypatch):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    if not resident:  # stream the corpus from pinned host memory instead of holding it on the GPU
        monkeypatch.setattr(search, "_upload_corpus", lambda *a, **k: None)
    q, c = data
    bs, bi = brute(q, c, 7)
    s, i = exact_topk(q, c, 7, device="cuda", precision=precision, corpus_block=500, query_block=50)
    assert (i == bi).all()
    np.testing.assert_allclose(s, bs, rtol=1e-5, atol=1e-5)


def test_corpus_in_parts_is_searched_as_one(data):
    q, c = data
    _, bi = brute(q, c, 6)
    for cuts in ([1000], [1, 2999], [700, 701, 2000]):
        parts = np.split(c, cuts)
        s, i = exact_topk(q, parts, 6, corpus_block=512)
        assert (i == bi).all()
    s, i = exact_topk(q, np.split(c, [1500]), 6, precision="bf16", corpus_block=512)
    assert (i == bi).all()
