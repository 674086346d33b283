"""Scores of a language-similarity report: every distinct sentence encoded once (through the vector
cache), then per language and layer the metrics of :mod:`mlbuild.metrics.langsim`, aggregated over layers,
with a bootstrap interval and a ranking that lets languages the bootstrap cannot order share ranks."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import langs
from ..metrics import langsim
from .inputs import ParallelSet

SCORES = ("mexa", "mexa_centered", "ranker_centered", "ranker")
PER_LAYER = (
    "ranker",
    "nonparallel",
    "margin",
    "ranker_centered",
    "nonparallel_centered",
    "margin_centered",
    "mexa",
    "mexa_centered",
    "auc",
    "auc_centered",
)


def checksum(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x1f")
    return "sha256:" + h.hexdigest()


# ---------------------------------------------------------------------------------------------- scores


def _r(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)


def score_languages(
    vectors: dict[str, np.ndarray],
    sets: dict[str, ParallelSet],
    pivot: str,
    *,
    score: str = "mexa",
    aggregate: str = "mean",
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Every number for one pooling. ``vectors`` maps each distinct text to its (layers, dim) array."""
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r} (known: {', '.join(SCORES)})")
    codes = sorted(sets)
    pivot_texts = list(dict.fromkeys(t for c in codes for t in sets[c].pivot))
    groups = [np.stack([vectors[t] for t in pivot_texts])] + [
        np.stack([vectors[t] for t in sets[c].texts]) for c in codes
    ]
    n_layers = groups[0].shape[1]
    mus = [langsim.centering_mean([g[:, layer] for g in groups]) for layer in range(n_layers)]
    shared = len({tuple(sets[c].pivot) for c in codes}) == 1  # same pivot sentences: paired bootstrap
    out: dict[str, Any] = {}
    draws: dict[str, np.ndarray] = {}
    for k, code in enumerate(codes):
        s = sets[code]
        P = np.stack([vectors[t] for t in s.pivot])
        X = np.stack([vectors[t] for t in s.texts])
        per_layer: dict[str, list[float]] = {m: [] for m in PER_LAYER}
        per_pair = np.zeros((len(s), n_layers))
        for layer in range(n_layers):
            sc = langsim.layer_scores(P[:, layer], X[:, layer], mus[layer])
            for m in PER_LAYER:
                per_layer[m].append(sc[m])
            per_pair[:, layer] = sc["per_pair"][score]
        idx = langsim.bootstrap_indices(len(s), bootstrap, seed if shared else seed + 1000003 * (k + 1))
        layer_draws = np.stack([langsim.bootstrap_means(per_pair[:, layer], idx) for layer in range(n_layers)], axis=1)
        d = layer_draws.mean(axis=1) if aggregate == "mean" else layer_draws.max(axis=1)
        draws[code] = d
        agg = {
            m: {k2: (_r(v) if k2 != "argmax" else v) for k2, v in langsim.aggregate(per_layer[m]).items()}
            for m in PER_LAYER
        }
        value = agg[score][aggregate]
        lo, hi = langsim.percentile_ci(d, confidence)
        out[code] = {
            "name": langs.display_name(code),
            "n": len(s),
            "source": s.origin,
            "dropped": s.dropped,
            "checksums": {"pivot": checksum(s.pivot), "lang": checksum(s.texts)},
            **{m: [_r(v) for v in per_layer[m]] for m in PER_LAYER},
            "aggregate": agg,
            "score": value,
            "ci": [_r(lo), _r(hi)],
        }
    ranked = (
        langsim.rank_languages({c: out[c]["score"] for c in codes}, draws, confidence)
        if codes
        else {"ranking": [], "rank_range": {}, "indistinguishable": {}}
    )
    for i, c in enumerate(ranked["ranking"]):
        out[c]["rank"] = i + 1
        out[c]["rank_range"] = ranked["rank_range"][c]
        out[c]["indistinguishable_from"] = ranked["indistinguishable"][c]
    return {"languages": out, "ranking": ranked["ranking"], "paired_bootstrap": shared, "layers": n_layers}


def build_report(
    sets: dict[str, ParallelSet],
    encoder: Any,
    *,
    pivot: str,
    poolings: Sequence[str] = ("mean",),
    score: str = "mexa",
    aggregate: str = "mean",
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    cache: Any = None,
    quiet: bool = True,
    skipped: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Encode every distinct sentence once (per-sentence cache) and score every pooling. ``encoder`` is a
    :class:`~mlbuild.models.hidden.HiddenStates` (or anything with ``encode`` and ``info``)."""

    pivot = langs.normalize(pivot)
    texts = list(dict.fromkeys(t for s in sets.values() for t in (*s.pivot, *s.texts)))
    t0 = time.perf_counter()
    enc = encoder.encode(texts, list(poolings), cache=cache, quiet=quiet) if texts else {}
    seconds = time.perf_counter() - t0
    info = encoder.info()
    by_pooling = {}
    for p in poolings:
        vecs = {t: enc[p][i] for i, t in enumerate(texts)}
        by_pooling[p] = (
            score_languages(
                vecs,
                sets,
                pivot,
                score=score,
                aggregate=aggregate,
                bootstrap=bootstrap,
                confidence=confidence,
                seed=seed,
            )
            if sets
            else {"languages": {}, "ranking": [], "paired_bootstrap": False, "layers": info.get("layers", 0)}
        )
    main = by_pooling[poolings[0]]
    n_layers = main["layers"]
    return {
        "report": "language_similarity.v1",
        "model": info["id"],
        "revision": info["revision"],
        "model_info": info,
        "pivot": pivot,
        "pooling": poolings[0],
        "score": {
            "metric": score,
            "aggregate": aggregate,
            "over": "layers",
            "bootstrap": bootstrap,
            "confidence": confidence,
            "seed": seed,
            "paired_bootstrap": main["paired_bootstrap"],
        },
        "layers": list(range(1, n_layers + 1)),
        "languages": main["languages"],
        "ranking": main["ranking"],
        "skipped": dict(skipped or {}),
        "other_poolings": {
            p: {"languages": by_pooling[p]["languages"], "ranking": by_pooling[p]["ranking"]} for p in poolings[1:]
        },
        "sentences": {
            "distinct": len(texts),
            "encoded": getattr(encoder, "computed", None),
            "from_cache": getattr(encoder, "cached", None),
            "seconds": round(seconds, 3),
        },
        **(extra or {}),
    }
