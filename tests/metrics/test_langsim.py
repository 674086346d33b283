"""Language-similarity scores on hand-made vectors with answers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlbuild.metrics import langsim

R2 = 1 / math.sqrt(2)

# pivot rows p0, p1 and language rows x0, x1; C[i, j] = cos(p_i, x_j) = [[1/sqrt2, 0], [1/sqrt2, 1]]
P = np.array([[1.0, 0.0], [0.0, 1.0]])
X = np.array([[1.0, 1.0], [0.0, 3.0]])


def test_cosine_matrix_and_pairs():
    c = langsim.cosine_matrix(P, X)
    np.testing.assert_allclose(c, [[R2, 0.0], [R2, 1.0]])
    np.testing.assert_allclose(langsim.pair_cosines(P, X), [R2, 1.0])
    with pytest.raises(ValueError, match="same shape"):
        langsim.pair_cosines(P, X[:1])


def test_ranker_and_nonparallel():
    assert langsim.ranker(P, X) == pytest.approx((R2 + 1) / 2)
    assert langsim.nonparallel(P, X) == pytest.approx((0 + R2) / 2)  # C[0,1] and C[1,0]
    assert math.isnan(langsim.nonparallel(P[:1], X[:1]))
    assert langsim.offdiag_mean(np.array([[9.0, 1.0, 2.0], [3.0, 9.0, 4.0], [5.0, 6.0, 9.0]])) == pytest.approx(3.5)


def test_mexa_is_strict_on_ties():
    # pair 0: row 0 = [0.707, 0] ok, but column 0 = [0.707, 0.707] is a tie -> not aligned; pair 1 aligned
    np.testing.assert_array_equal(langsim.mexa_aligned(langsim.cosine_matrix(P, X)), [False, True])
    assert langsim.mexa(P, X) == 0.5
    assert langsim.mexa(P, P) == 1.0
    # identical vectors everywhere: every pair ties with every other -> 0
    same = np.ones((3, 4))
    assert langsim.mexa(same, same) == 0.0
    # pair 0 wins its row but loses its column (0.95 > 0.9); pair 1 loses its row; pair 2 wins both
    c = np.array([[0.9, 0.1, 0.0], [0.95, 0.5, 0.2], [0.0, 0.4, 0.8]])
    np.testing.assert_array_equal(langsim.mexa_aligned(c), [False, False, True])
    assert langsim.mexa_aligned(np.array([[0.3]])).tolist() == [True]


def test_auc_counts_ties_half():
    # diagonal [0.707, 1], off-diagonal [0, 0.707]: 0.707 beats one and ties one (1.5/2), 1 beats both
    assert langsim.auc(langsim.cosine_matrix(P, X)) == pytest.approx((0.75 + 1.0) / 2)
    assert langsim.auc(np.eye(3)) == 1.0
    assert langsim.auc(np.ones((3, 3))) == 0.5


def test_centering_weighs_each_language_the_same():
    a = np.array([[1.0, 0.0], [3.0, 0.0]])  # mean (2, 0)
    b = np.array([[0.0, 2.0]])  # mean (0, 2)
    np.testing.assert_allclose(langsim.centering_mean([a, b]), [1.0, 1.0])
    np.testing.assert_allclose(langsim.center(b, [1.0, 1.0]), [[-1.0, 1.0]])


def test_centering_removes_anisotropy():
    """A large shared offset makes every raw cosine ~1 (parallel or not); centring recovers the signal."""
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(50, 16))
    offset = np.full(16, 40.0)
    p = offset + signal + 0.3 * rng.normal(size=signal.shape)
    x = offset + signal + 0.3 * rng.normal(size=signal.shape)
    assert langsim.nonparallel(p, x) > 0.97 and langsim.ranker(p, x) - langsim.nonparallel(p, x) < 0.03
    mu = langsim.centering_mean([p, x])
    s = langsim.layer_scores(p, x, mu)
    assert s["ranker_centered"] > 0.8 and abs(s["nonparallel_centered"]) < 0.1
    assert s["margin_centered"] == pytest.approx(s["ranker_centered"] - s["nonparallel_centered"])
    assert s["auc_centered"] > 0.99 and s["mexa_centered"] > 0.9
    assert set(s["per_pair"]) == {"ranker", "mexa", "ranker_centered", "mexa_centered"}
    assert s["per_pair"]["mexa"].mean() == pytest.approx(s["mexa"])
    assert s["per_pair"]["ranker_centered"].mean() == pytest.approx(s["ranker_centered"])


def test_layer_scores_by_hand():
    s = langsim.layer_scores(P, X)
    assert s["ranker"] == pytest.approx((R2 + 1) / 2)
    assert s["nonparallel"] == pytest.approx(R2 / 2)
    assert s["margin"] == pytest.approx(0.5)
    assert s["mexa"] == 0.5 and "ranker_centered" not in s


def test_aggregate_over_layers():
    assert langsim.aggregate([0.2, 0.6, 0.4]) == {"mean": pytest.approx(0.4), "max": 0.6, "argmax": 2}
    assert langsim.aggregate([float("nan"), 0.5])["mean"] == 0.5


def test_bootstrap_and_ci():
    idx = langsim.bootstrap_indices(4, 3, seed=1)
    assert idx.shape == (3, 4) and idx.min() >= 0 and idx.max() < 4
    np.testing.assert_array_equal(idx, langsim.bootstrap_indices(4, 3, seed=1))
    v = np.array([0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(langsim.bootstrap_means(v, np.array([[0, 0, 0, 0], [1, 2, 3, 3]])), [0.0, 2.25])
    assert langsim.percentile_ci(np.arange(101), 0.95) == pytest.approx((2.5, 97.5))
    with pytest.raises(ValueError):
        langsim.percentile_ci(np.arange(3), 1.0)


def test_rank_languages_marks_indistinguishable():
    rng = np.random.default_rng(0)
    draws = {
        "fra": 0.80 + 0.02 * rng.normal(size=500),
        "deu": 0.79 + 0.02 * rng.normal(size=500),
        "swh": 0.30 + 0.02 * rng.normal(size=500),
    }
    scores = {"fra": 0.80, "deu": 0.79, "swh": 0.30}
    r = langsim.rank_languages(scores, draws)
    assert r["ranking"] == ["fra", "deu", "swh"]
    assert r["rank_range"] == {"fra": [1, 2], "deu": [1, 2], "swh": [3, 3]}
    assert r["indistinguishable"] == {"fra": ["deu"], "deu": ["fra"], "swh": []}
    # far apart: strict order
    r2 = langsim.rank_languages({"a": 0.9, "b": 0.5}, {"a": np.full(10, 0.9), "b": np.full(10, 0.5)})
    assert r2["rank_range"] == {"a": [1, 1], "b": [2, 2]}
