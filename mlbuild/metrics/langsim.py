"""Language-similarity scores between a pivot language and other languages, from sentence vectors of
parallel pairs (pure numpy; every function is small enough to check by hand).

Given, for one language and one layer, the pivot's vectors ``P`` (n x d) and the language's vectors
``X`` (n x d), where row ``i`` of both is one parallel pair:

- :func:`ranker`: mean cosine of the parallel pairs, ``mean_i cos(P_i, X_i)`` (the Language Ranker score).
- :func:`nonparallel`: mean cosine of the non-parallel pairs, ``mean_{i != j} cos(P_i, X_j)``: the
  baseline the ranker score must beat. Decoder hidden states are anisotropic (every cosine is near 1),
  so a ranker score alone means little.
- :func:`centering_mean` + :func:`center`: subtract the mean vector over all languages before the
  cosine (each language weighs the same, however many sentences it has).
- :func:`mexa_aligned` / :func:`mexa`: MEXA alignment, the share of pairs ``i`` whose cosine
  ``cos(P_i, X_i)`` is *strictly* the largest of its row ``cos(P_i, X_*)`` and of its column
  ``cos(P_*, X_i)``. A tie is not aligned. It depends on ``n`` (more sentences, harder): compare
  languages at the same ``n``.
- :func:`auc`: the probability that a parallel pair's cosine beats a non-parallel pair's cosine (ties
  count half): 0.5 means parallel and non-parallel pairs do not separate at all, 1.0 fully.

Over layers, per-layer numbers aggregate by ``mean`` and ``max`` (:func:`aggregate`). Over sentences,
:func:`bootstrap_means` + :func:`percentile_ci` give a confidence interval of a per-sentence score,
and :func:`rank_languages` turns scores and bootstrap draws into a ranking where languages that the
bootstrap cannot tell apart share a rank range.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

EPS = 1e-12


def _as2d(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected an (n, d) array, got shape {a.shape}")
    return a


def normalize_rows(a: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    a = _as2d(a)
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.maximum(norms, EPS)


def cosine_matrix(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``C[i, j] = cos(p_i, x_j)`` (float64)."""
    return normalize_rows(p) @ normalize_rows(x).T


def pair_cosines(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``cos(p_i, x_i)`` for each row ``i``."""
    p, x = _as2d(p), _as2d(x)
    if p.shape != x.shape:
        raise ValueError(f"parallel arrays must have the same shape, got {p.shape} and {x.shape}")
    return np.einsum("ij,ij->i", normalize_rows(p), normalize_rows(x))


def ranker(p: np.ndarray, x: np.ndarray) -> float:
    """Mean cosine of parallel pairs (row i of ``p`` with row i of ``x``)."""
    return float(pair_cosines(p, x).mean())


def offdiag_mean(c: np.ndarray) -> float:
    """Mean of the off-diagonal entries of a square matrix (nan when n < 2)."""
    n = c.shape[0]
    if c.shape != (n, n):
        raise ValueError(f"expected a square matrix, got {c.shape}")
    if n < 2:
        return float("nan")
    return float((c.sum() - np.trace(c)) / (n * (n - 1)))


def nonparallel(p: np.ndarray, x: np.ndarray) -> float:
    """Mean cosine of non-parallel pairs (row i of ``p`` with row j != i of ``x``)."""
    return offdiag_mean(cosine_matrix(p, x))


def centering_mean(groups: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of the per-group mean vectors (one group per language, pivot included), so each language
    weighs the same however many sentences it brings."""
    if not groups:
        raise ValueError("no groups to centre on")
    return np.mean([_as2d(g).mean(axis=0) for g in groups], axis=0)


def center(a: np.ndarray, mu: np.ndarray) -> np.ndarray:
    return _as2d(a) - np.asarray(mu, dtype=np.float64)[None, :]


def mexa_aligned(c: np.ndarray) -> np.ndarray:
    """Per pair ``i``: True when ``c[i, i]`` is strictly larger than every other entry of row ``i`` and
    of column ``i`` (MEXA's alignment criterion; ties are not aligned). With n = 1 there is nothing to
    beat and the pair counts as aligned."""
    c = np.asarray(c, dtype=np.float64)
    n = c.shape[0]
    if c.shape != (n, n):
        raise ValueError(f"expected a square matrix, got {c.shape}")
    if n < 2:
        return np.ones(n, dtype=bool)
    diag = np.diag(c).copy()
    off = c.copy()
    np.fill_diagonal(off, -np.inf)
    return (diag > off.max(axis=1)) & (diag > off.max(axis=0))


def mexa(p: np.ndarray, x: np.ndarray) -> float:
    """MEXA alignment score: the share of strictly aligned pairs."""
    return float(mexa_aligned(cosine_matrix(p, x)).mean())


def auc(c: np.ndarray) -> float:
    """P(parallel cosine > non-parallel cosine), ties counted half, from a square cosine matrix whose
    diagonal holds the parallel pairs (nan when n < 2)."""
    c = np.asarray(c, dtype=np.float64)
    n = c.shape[0]
    if n < 2:
        return float("nan")
    diag = np.diag(c)
    off = np.sort(c[~np.eye(n, dtype=bool)])
    below = np.searchsorted(off, diag, side="left")
    upto = np.searchsorted(off, diag, side="right")
    return float(((below + 0.5 * (upto - below)) / off.size).mean())


def layer_scores(p: np.ndarray, x: np.ndarray, mu: np.ndarray | None = None) -> dict[str, object]:
    """Every score for one language and one layer. ``mu`` (the centering mean) adds the centred ones.

    Returns floats ``ranker``, ``nonparallel``, ``margin`` (ranker - nonparallel), ``mexa``, ``auc``
    and with ``mu`` also ``ranker_centered``, ``nonparallel_centered``, ``margin_centered``,
    ``mexa_centered``, ``auc_centered``; plus per-pair arrays under ``per_pair`` (``ranker``,
    ``mexa`` and their centred forms) for the bootstrap."""
    c = cosine_matrix(p, x)
    diag = np.diag(c).copy()
    aligned = mexa_aligned(c)
    out: dict[str, object] = {
        "ranker": float(diag.mean()),
        "nonparallel": offdiag_mean(c),
        "mexa": float(aligned.mean()),
        "auc": auc(c),
    }
    out["margin"] = out["ranker"] - out["nonparallel"]
    per_pair = {"ranker": diag, "mexa": aligned.astype(np.float64)}
    if mu is not None:
        cc = cosine_matrix(center(p, mu), center(x, mu))
        dc = np.diag(cc).copy()
        ac = mexa_aligned(cc)
        out.update(
            {
                "ranker_centered": float(dc.mean()),
                "nonparallel_centered": offdiag_mean(cc),
                "mexa_centered": float(ac.mean()),
                "auc_centered": auc(cc),
            }
        )
        out["margin_centered"] = out["ranker_centered"] - out["nonparallel_centered"]
        per_pair.update({"ranker_centered": dc, "mexa_centered": ac.astype(np.float64)})
    out["per_pair"] = per_pair
    return out


def aggregate(per_layer: Sequence[float]) -> dict[str, float | int]:
    """``mean`` and ``max`` over layers, and ``argmax`` (1-based layer number of the max)."""
    a = np.asarray(per_layer, dtype=np.float64)
    if a.size == 0 or np.all(np.isnan(a)):
        return {"mean": float("nan"), "max": float("nan"), "argmax": 0}
    return {"mean": float(np.nanmean(a)), "max": float(np.nanmax(a)), "argmax": int(np.nanargmax(a)) + 1}


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``n_boot`` resamples (with replacement) of ``range(n)``, shape (n_boot, n)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_boot, n))


def bootstrap_means(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Mean of ``values`` under each resample in ``indices`` (n_boot, n)."""
    v = np.asarray(values, dtype=np.float64)
    return v[indices].mean(axis=1)


def percentile_ci(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap draws."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(np.asarray(draws, dtype=np.float64), [a, 1.0 - a])
    return float(lo), float(hi)


def rank_languages(
    scores: Mapping[str, float], draws: Mapping[str, np.ndarray], level: float = 0.95
) -> dict[str, object]:
    """Rank languages by score (best first). Two languages are *distinguishable* when the ``level``
    percentile interval of the difference of their bootstrap draws excludes 0 (draws made with the same
    resample indices give a paired test, independent ones an unpaired test).

    Returns ``ranking`` (codes, best first), ``rank_range`` per code (``[1 + number significantly
    better, n - number significantly worse]``) and ``indistinguishable`` per code (codes it cannot be
    told apart from)."""
    codes = sorted(scores, key=lambda c: (-scores[c], c))
    n = len(codes)
    better = {c: 0 for c in codes}
    worse = {c: 0 for c in codes}
    same: dict[str, list[str]] = {c: [] for c in codes}
    for i, a in enumerate(codes):
        for b in codes[i + 1 :]:
            lo, hi = percentile_ci(np.asarray(draws[a]) - np.asarray(draws[b]), level)
            if lo > 0:
                worse[a] += 1
                better[b] += 1
            elif hi < 0:
                worse[b] += 1
                better[a] += 1
            else:
                same[a].append(b)
                same[b].append(a)
    return {
        "ranking": codes,
        "rank_range": {c: [1 + better[c], n - worse[c]] for c in codes},
        "indistinguishable": {c: sorted(same[c], key=codes.index) for c in codes},
    }
