"""Pooled dense + BM25 mining: time and peak memory against dense alone, as rows grow.

Each run is its own process (peak RSS is that run's): ``n`` synthetic rows (query and positive texts of
Zipf-distributed words, precomputed 64-d vectors), ``mine_negatives.v1`` with ``retrievers = ["dense"]``
or ``["dense", "bm25"]``, 5 negatives, triplets, the table read in shards of 10,000 rows.

    python scripts/bench_mining_bm25.py --sizes 20000 80000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(n: int, retrievers: list[str], dim: int = 64, words: int = 50_000) -> dict:
    import numpy as np
    import polars as pl

    from mlbuild.pipeline.base import RunContext
    from mlbuild.steps.mine_negatives import MineNegatives, MineNegativesParams

    rng = np.random.default_rng(0)
    vocab = np.array([f"w{j}" for j in range(words)])
    tmp = Path(tempfile.mkdtemp(prefix="bench-bm25-"))
    shards = []
    for s in range(0, n, 10_000):
        m = min(10_000, n - s)
        ptoks = vocab[np.minimum(rng.zipf(1.3, (m, 30)), words) - 1]
        pos = rng.standard_normal((m, dim)).astype(np.float32)
        qs = pos + 0.5 * rng.standard_normal((m, dim)).astype(np.float32)
        df = pl.DataFrame(
            {
                "row_id": [f"r{j}" for j in range(s, s + m)],
                "query": [f"q{s + j} " + " ".join(t[:6]) for j, t in enumerate(ptoks)],
                "positive": [f"p{s + j} " + " ".join(t) for j, t in enumerate(ptoks)],
                "query_embedding": pl.Series(qs.tolist(), dtype=pl.Array(pl.Float32, dim)),
                "positive_embedding": pl.Series(pos.tolist(), dtype=pl.Array(pl.Float32, dim)),
            }
        )
        shards.append(tmp / f"{len(shards):05d}.parquet")
        df.write_parquet(shards[-1])
        del df, pos, qs, ptoks

    class Table:
        rows = n
        columns = ["row_id", "query", "positive", "query_embedding", "positive_embedding"]

        def iter_batches(self, columns=None):
            for f in shards:
                yield pl.read_parquet(f, columns=columns)

    p = MineNegativesParams(engine="precomputed", num_negatives=5, retrievers=retrievers, device="cpu")
    step = MineNegatives(p, RunContext(work_dir=tmp))
    step.setup()
    base = rss_mb()
    count = {"rows": 0}
    t0 = time.perf_counter()
    stats = step.run_global(Table(), lambda o: count.__setitem__("rows", count["rows"] + o.rows.height))
    secs = time.perf_counter() - t0
    for f in shards:
        f.unlink()
    return {
        "rows": n,
        "retrievers": "+".join(retrievers),
        "seconds": round(secs, 2),
        "peak_rss_mb": round(rss_mb(), 1),
        "rss_before_step_mb": round(base, 1),
        "output_rows": count["rows"],
        "negatives_by_retriever": stats.get("negatives_by_retriever"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 80_000])
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--retrievers", nargs="+", default=["dense"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.retrievers)))
        return
    runs = []
    for n in a.sizes:
        for r in (["dense"], ["dense", "bm25"]):
            cmd = [sys.executable, __file__, "--one", str(n), "--retrievers", *r]
            p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if p.returncode:
                raise SystemExit(p.stderr[-3000:])
            runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[-1]), flush=True)
    for n in a.sizes:
        d, b = (next(x for x in runs if x["rows"] == n and x["retrievers"] == k) for k in ("dense", "dense+bm25"))
        print(
            json.dumps(
                {
                    "rows": n,
                    "time_ratio_bm25_vs_dense": round(b["seconds"] / d["seconds"], 2),
                    "extra_peak_mb": round(b["peak_rss_mb"] - d["peak_rss_mb"], 1),
                }
            )
        )


if __name__ == "__main__":
    main()
