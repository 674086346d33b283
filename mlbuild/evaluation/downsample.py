"""MMTEB-style downsampling of a retrieval set (the library behind ``downsample_retrieval.v1``).

1. :func:`stratified_sample`: at most ``n`` queries, each stratum (a language) keeping its share of
   the queries (largest remainders; every stratum keeps at least one when ``n`` allows), chosen by a
   seeded hash of the row id, so the sample depends on the seed and the ids, not on the input order.
2. :func:`pool`: every pooling retriever searches the whole corpus; a query keeps its judged documents
   plus the union of each retriever's top ``k``. The downsampled corpus is the union over queries.
3. :func:`compare`: every system (the pooling retrievers and any held-out ``check`` retrievers) is
   indexed again on the downsampled corpus and scored there and on the full corpus; the report gives
   both scores and the rank correlation of the systems (Kendall's tau and Spearman's rho, scipy), since
   the point of downsampling is that the ordering of systems is kept.

Query keys are row ids (translated queries share a query id across languages).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .metrics import Evaluator, Qrels
from .retrievers import make_retriever, system_name, to_run

log = logging.getLogger(__name__)

Batches = Callable[[], Iterator[tuple[list[str], list[str]]]]  # fresh (ids, texts) blocks of the corpus


def _rank_key(seed: int, key: str) -> bytes:
    return hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=8).digest()


def allocate(sizes: dict[str, int], n: int) -> dict[str, int]:
    """Queries per stratum: proportional to its size, summing to min(n, total), at least one per stratum
    when n is at least the number of strata."""
    total = sum(sizes.values())
    if n >= total:
        return dict(sizes)
    exact = {s: n * c / total for s, c in sizes.items()}
    take = {s: min(sizes[s], math.floor(v)) for s, v in exact.items()}
    if n >= len(sizes):
        for s in take:
            take[s] = max(take[s], min(1, sizes[s]))
    left = n - sum(take.values())
    order = sorted(sizes, key=lambda s: (-(exact[s] - math.floor(exact[s])), s))
    while left > 0:
        moved = False
        for s in order:
            if left and take[s] < sizes[s]:
                take[s] += 1
                left -= 1
                moved = True
        if not moved:
            break
    while left < 0:  # the minimum of one per stratum overshot: take back from the largest
        s = max(take, key=lambda x: (take[x], x))
        take[s] -= 1
        left += 1
    return take


def stratified_sample(keys: list[str], strata: list[str], n: int, seed: int) -> list[int]:
    """Indices (in input order) of the sampled rows."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(strata):
        groups.setdefault(s, []).append(i)
    quota = allocate({s: len(ix) for s, ix in groups.items()}, n)
    kept: list[int] = []
    for s, ix in groups.items():
        ranked = sorted(ix, key=lambda i: _rank_key(seed, keys[i]))
        kept.extend(ranked[: quota[s]])
    return sorted(kept)


def _index(spec: str, batches: Batches, size: int, lang: str | None, keep: set[str] | None, **kw: Any):
    """A retriever indexed on the corpus (or on its documents in ``keep``); returns (retriever, ids)."""
    r = make_retriever(spec, lang, **kw)
    ids: list[str] = []

    def texts():
        for b_ids, b_texts in batches():
            if keep is None:
                ids.extend(b_ids)
                yield b_texts
            else:
                sel = [i for i, d in enumerate(b_ids) if d in keep]
                ids.extend(b_ids[i] for i in sel)
                yield [b_texts[i] for i in sel]

    r.index(texts(), lang=lang, size=size if keep is None else len(keep))
    return r, ids


def pool(
    queries: dict[str, str],
    qrels: Qrels,
    batches: Batches,
    corpus_size: int,
    retrievers: list[str],
    top_k: int,
    lang: str | None = None,
    depth: int = 100,
    **kw: Any,
) -> tuple[dict[str, list[str]], dict[str, dict[str, dict[str, float]]]]:
    """(pool per query: the pooled document ids not already judged, in rank order; full-corpus runs per
    retriever to ``max(top_k, depth)``)."""
    keys = list(queries)
    texts = [queries[q] for q in keys]
    pools: dict[str, dict[str, None]] = {q: {} for q in keys}
    runs: dict[str, dict[str, dict[str, float]]] = {}
    for spec in retrievers:
        r, ids = _index(spec, batches, corpus_size, lang, None, **kw)
        scores, idx = r.search(texts, max(top_k, depth))
        runs[system_name(spec)] = to_run(ids, scores, idx, keys)
        for q, row in zip(keys, idx[:, :top_k]):
            judged = qrels.get(q, {})
            for i in row:
                if i >= 0 and ids[i] not in judged:
                    pools[q].setdefault(ids[i], None)
    return {q: list(p) for q, p in pools.items()}, runs


def compare(
    queries: dict[str, str],
    qrels: Qrels,
    batches: Batches,
    corpus_size: int,
    keep: set[str],
    systems: list[str],
    full_runs: dict[str, dict[str, dict[str, float]]],
    metric: str = "nDCG@10",
    lang: str | None = None,
    depth: int = 100,
    **kw: Any,
) -> dict[str, Any]:
    """Each system's ``metric`` on the full and on the downsampled corpus, and the rank correlations."""
    from scipy.stats import kendalltau, spearmanr

    ev = Evaluator(qrels, [metric], missing="zero")
    name = ev.metrics[0][0]
    keys = list(queries)
    texts = [queries[q] for q in keys]
    rows: dict[str, dict[str, float]] = {}
    for spec in systems:
        sys_name = system_name(spec)
        run = full_runs.get(sys_name)
        if run is None:
            r, ids = _index(spec, batches, corpus_size, lang, None, **kw)
            run = to_run(ids, *r.search(texts, depth), keys)
        full = ev.aggregate(run)[name]
        r, ids = _index(spec, batches, corpus_size, lang, keep, **kw)
        down = ev.aggregate(to_run(ids, *r.search(texts, depth), keys))[name]
        rows[sys_name] = {"full": full, "downsampled": down}
    out: dict[str, Any] = {"metric": name, "systems": rows, "kendall_tau": None, "spearman_rho": None}
    if len(rows) >= 2:
        a = np.array([v["full"] for v in rows.values()])
        b = np.array([v["downsampled"] for v in rows.values()])
        if np.ptp(a) > 0 and np.ptp(b) > 0:
            out["kendall_tau"] = float(kendalltau(a, b).statistic)
            out["spearman_rho"] = float(spearmanr(a, b).statistic)
        else:
            out["note"] = "systems tie on one corpus: no rank correlation"
    return out
