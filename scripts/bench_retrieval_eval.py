"""Speed of the retrieval evaluation pieces, as ratios against their anchors in the same run.

    python scripts/bench_retrieval_eval.py [--docs 20000] [--queries 500]

1. BM25: ``mlbuild.models.bm25.BM25`` (bm25s sparse matrices) against ``rank_bm25.BM25Okapi`` on the
   same tokens (both get the analyzer's output, so only indexing and top-k querying are compared).
   Target: at least 10x faster.
2. Metrics: ``mlbuild.evaluation.metrics.Evaluator`` (ir-measures) against ``pytrec_eval`` called
   directly (RelevanceEvaluator + mean), on the same qrels and run, measures AP, P@10, RR, R@100,
   nDCG@10. Target: overhead at most 1.2x.

The corpus is synthetic text with a Zipf-like vocabulary (seeded), so the run needs no data.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np


def corpus(n_docs: int, n_queries: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rnd = random.Random(seed)
    vocab = [f"w{i}" for i in range(50_000)]
    weights = [1.0 / (i + 1) for i in range(len(vocab))]
    docs = [" ".join(rnd.choices(vocab, weights, k=rnd.randint(20, 80))) for _ in range(n_docs)]
    queries = [" ".join(rnd.sample(docs[rnd.randrange(n_docs)].split(), 5)) for _ in range(n_queries)]
    return docs, queries


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_bm25(n_docs: int, n_queries: int, k: int) -> dict[str, float]:
    from rank_bm25 import BM25Okapi

    from mlbuild.models.bm25 import BM25, Analyzer

    docs, queries = corpus(n_docs, n_queries)
    an = Analyzer(None)
    dtok, qtok = an(docs), an(queries)

    ours = BM25(lang=None)

    def ours_index():
        ours.index(" ".join(t) for t in dtok)

    def ours_search():
        ours.search([" ".join(t) for t in qtok], k)

    holder = {}

    def anchor_index():
        holder["m"] = BM25Okapi(dtok)

    def anchor_search():
        m = holder["m"]
        for q in qtok:
            s = m.get_scores(q)
            top = np.argpartition(-s, k)[:k]
            top[np.argsort(-s[top], kind="stable")]

    t_oi, t_ai = best(ours_index, 2), best(anchor_index, 2)
    t_os, t_as = best(ours_search, 2), best(anchor_search, 1)
    return {
        "bm25s index s": t_oi,
        "rank_bm25 index s": t_ai,
        "bm25s search s": t_os,
        "rank_bm25 search s": t_as,
        "speedup index+search": (t_ai + t_as) / (t_oi + t_os),
    }


def bench_metrics(n_queries: int, depth: int) -> dict[str, float]:
    import pytrec_eval

    from mlbuild.evaluation.metrics import Evaluator

    rnd = random.Random(1)
    qrels, run = {}, {}
    for q in range(n_queries):
        qid = f"q{q}"
        qrels[qid] = {f"d{rnd.randrange(100_000)}": rnd.choice([1, 2]) for _ in range(rnd.randint(1, 20))}
        run[qid] = {f"d{rnd.randrange(100_000)}": rnd.random() for _ in range(depth)}
        for d in list(qrels[qid])[:3]:
            run[qid][d] = rnd.random()
    trec = {"map", "P_10", "recip_rank", "recall_100", "ndcg_cut_10"}
    names = ["AP", "P@10", "RR", "R@100", "nDCG@10"]

    def direct():
        res = pytrec_eval.RelevanceEvaluator(qrels, trec).evaluate(run)
        return {m: sum(v[m] for v in res.values()) / len(res) for m in trec}

    def ours():
        return Evaluator(qrels, names, missing="skip").aggregate(run)

    a, b = direct(), ours()
    same = all(
        abs(a[t] - b[n]) < 1e-12 for t, n in zip(["map", "P_10", "recip_rank", "recall_100", "ndcg_cut_10"], names)
    )
    t_d, t_o = best(direct), best(ours)
    return {"pytrec_eval direct s": t_d, "mlbuild Evaluator s": t_o, "overhead x": t_o / t_d, "identical values": same}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--metric-queries", type=int, default=5_000)
    ap.add_argument("--depth", type=int, default=1000)
    args = ap.parse_args()
    print(f"BM25: {args.docs} documents, {args.queries} queries, top {args.k}")
    for k, v in bench_bm25(args.docs, args.queries, args.k).items():
        print(f"  {k:24s} {v:.3f}")
    print(f"metrics: {args.metric_queries} queries x {args.depth} documents, 5 measures")
    for k, v in bench_metrics(args.metric_queries, args.depth).items():
        print(f"  {k:24s} {v if isinstance(v, bool) else round(v, 3)}")


if __name__ == "__main__":
    main()
