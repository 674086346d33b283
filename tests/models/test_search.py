"""Exact blocked top-k: agrees with a brute-force sort (score desc, index asc) for every block shape,
including exact ties across block boundaries; half precision gives the fp32 answer; memory stays
at one score block; a memory-mapped corpus streamed in blocks, a corpus sharded over several
"devices" (simulated on the CPU) and adversarial near-ties give the same lists.

The reference scores are float64 dot products rounded to float32: a float32 BLAS matmul (numpy's or
torch's) gives identical vectors scores that differ in the last bit depending on their position in
the kernel's block, so it cannot be the reference for "ties broken by the lowest index"."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from mlbuild.models import search  # noqa: E402
from mlbuild.models.search import exact_topk  # noqa: E402


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute(q: np.ndarray, c: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = (q.astype(np.float64) @ c.astype(np.float64).T).astype(np.float32)
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

    def spy(torch, scores, run_v, run_i, offset):
        shapes.append(tuple(scores.shape))
        return real(torch, scores, run_v, run_i, offset)

    real = search.search_block
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
def test_cuda_matches_cpu(data, precision, resident):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    q, c = data
    bs, bi = brute(q, c, 7)
    # resident=False: the corpus is streamed from pinned host memory (double-buffered) instead of held
    cs = search.CorpusSearch(
        c, device="cuda", precision=precision, corpus_block=500, query_block=50, resident=resident
    )
    s, i = cs.search(q, 7)
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


def test_memory_mapped_corpus_streamed_in_blocks_equals_in_memory(data, tmp_path):
    q, c = data
    path = tmp_path / "corpus.f32"
    c.tofile(path)
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=c.shape)
    ref = exact_topk(q, c, 8, corpus_block=512)
    for cb in (97, 512, 5000):
        got = exact_topk(q, mm, 8, corpus_block=cb, query_block=33)
        assert (got[1] == ref[1]).all() and (got[0] == ref[0]).all()
    # a search object keeps serving query chunks: chunked queries give the same lists
    cs = search.CorpusSearch(mm, device="cpu", corpus_block=700)
    parts = [cs.search(q[s : s + 17], 8) for s in range(0, len(q), 17)]
    assert (np.concatenate([p[1] for p in parts]) == ref[1]).all()


@pytest.mark.parametrize("n_devices", [2, 3, 7])
def test_sharded_over_simulated_devices_equals_one_search(data, n_devices):
    q, c = data
    ref = exact_topk(q, c, 9, corpus_block=256)
    got = exact_topk(q, c, 9, devices=["cpu"] * n_devices, corpus_block=256)
    assert (got[1] == ref[1]).all() and (got[0] == ref[0]).all()
    # the duplicates of c[5] sit in different shards: the merge keeps index order among equal scores
    assert got[1][0][:6].tolist() == [5, 10, 700, 701, 1500, 2999]
    # per-shard exact lists merged by hand (what Ray actors with one GPU each would return)
    cuts = [0, 1000, 2200, 3000]
    lists = [
        search.ShardSearch(c[a:b], offset=a, device="cpu", corpus_block=300).search(q, 9)
        for a, b in zip(cuts, cuts[1:])
    ]
    mv, mi = search.merge_exact(lists, 9)
    assert (mi == ref[1]).all() and (mv == ref[0]).all()


def test_proof_widens_only_rows_with_near_ties_at_the_cut(caplog):
    """Adversarial: many items within the half-precision error of the k-th score, and exact duplicates
    straddling the cut; every precision and window still gives the exact lists."""
    rng = np.random.default_rng(7)
    d = 32
    base = unit(rng.standard_normal((1, d)))
    near = unit(base + 1e-4 * rng.standard_normal((300, d)))  # 300 items within ~1e-4 of each other
    c = np.concatenate([unit(rng.standard_normal((2000, d))), near, np.repeat(near[:1], 40, axis=0)])
    c = c[rng.permutation(len(c))]
    q = np.concatenate([np.repeat(base, 4, axis=0), unit(rng.standard_normal((20, d)))])
    bs, bi = brute(q, c, 10)
    for precision in ("fp32", "bf16", "fp16"):
        for extra in (0, 3, None):
            s, i = exact_topk(q, c, 10, precision=precision, extra=extra, corpus_block=301)
            assert (i == bi).all(), (precision, extra)
            assert (s == bs).all()
    with caplog.at_level("INFO", logger="mlbuild.models.search"):
        exact_topk(q, c, 10, precision="bf16", extra=4, corpus_block=301)
    assert "not proven" in caplog.text


def test_threshold_prefilter_keeps_every_entrant():
    """Blocks one row wide and sorted ascending: every block enters every list (the sparse path), then
    sorted descending: nothing after the first blocks enters."""
    rng = np.random.default_rng(3)
    q = unit(rng.standard_normal((5, 6)))
    c = unit(rng.standard_normal((400, 6)))
    ref = brute(q, c, 4)
    order = np.argsort(q[0] @ c.T)
    for perm in (order, order[::-1]):
        s, i = exact_topk(q, c[perm], 4, corpus_block=1, extra=2)
        assert (perm[i] == ref[1]).all()


def test_exact_pair_scores_are_position_independent():
    rng = np.random.default_rng(2)
    q = unit(rng.standard_normal((1, 384)))
    c = unit(rng.standard_normal((50, 384)))
    c[[3, 17, 49]] = c[0]
    s = search.exact_pair_scores(np.repeat(q, 50, axis=0), c)
    assert s[0] == s[3] == s[17] == s[49]
    assert s[0] == np.float32(q[0].astype(np.float64) @ c[0].astype(np.float64))


@pytest.mark.gpu
def test_cuda_sharded_and_streamed_match_cpu(data):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    q, c = data
    _, bi = brute(q, c, 7)
    devs = [f"cuda:{j}" for j in range(torch.cuda.device_count())] * 2  # two shards per GPU
    s, i = exact_topk(q, c, 7, devices=devs, corpus_block=300, query_block=40)
    assert (i == bi).all()
