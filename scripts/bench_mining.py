"""Benchmark: mlbuild's mine_negatives.v1 against sentence-transformers' ``util.mine_hard_negatives``
(exact, non-faiss path) on the same embeddings and options.

    python scripts/bench_mining.py check                  # identical negatives on clustered data
    python scripts/bench_mining.py speed --queries 10000 --passages 200000 --dim 384 --threads 2
    python scripts/bench_mining.py scale --passages 100000 1000000   # mlbuild peak RSS as the corpus grows
    python scripts/bench_mining.py gpu                    # search on CUDA: exactness and scores/s (no polars)
    python scripts/bench_mining.py all --json bench.json  # check + speed + scale

Each timed run is a separate subprocess (``worker``), so peak RSS (``ru_maxrss``) is that run's own.
Every worker builds the same data from the same seed: clustered unit vectors (queries close to their
positive, passages around shared topics), texts ``q<i>`` / ``p<i>`` / ``c<i>``. sentence-transformers
gets a stub model that returns those vectors, so neither side embeds anything: the time is search,
filtering and building the output. ``floor`` is a plain fp32 matmul + ``torch.topk`` over the same
sizes in query chunks (the least any exact search can do on these threads).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = {  # same options for both (sentence-transformers' names)
    "nv-retriever": {"num_negatives": 5, "relative_margin": 0.05},
    "plain": {"num_negatives": 5},
    "window": {"num_negatives": 3, "range_min": 5, "range_max": 40, "max_score": 0.9},
    "absolute": {"num_negatives": 4, "absolute_margin": 0.02, "min_score": 0.1},
}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so the next reading covers only what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_data(nq: int, nc: int, d: int, seed: int = 0, topics: int = 200):
    """Queries, their positives and extra corpus passages: float32 unit vectors, built in chunks."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((topics, d)).astype(np.float32)
    pos = unit(centers[rng.integers(0, topics, nq)] + 0.9 * rng.standard_normal((nq, d), dtype=np.float32))
    qs = unit(pos + float(1.0 / np.sqrt(d)) * rng.standard_normal((nq, d), dtype=np.float32))
    extra = np.empty((nc, d), dtype=np.float32)
    for s in range(0, nc, 100_000):
        n = min(100_000, nc - s)
        extra[s : s + n] = unit(
            centers[rng.integers(0, topics, n)] + 0.9 * rng.standard_normal((n, d), dtype=np.float32)
        )
    return qs, pos, extra


# ------------------------------------------------------------------------------------------ runners
def run_st(qs, pos, extra, opts: dict, fmt: str):
    """sentence-transformers with a stub model holding the vectors."""
    import torch
    from datasets import Dataset
    from sentence_transformers.util import cos_sim, mine_hard_negatives, pairwise_cos_sim

    nq, nc = len(qs), len(extra)
    qt, pt, ct = [f"q{i}" for i in range(nq)], [f"p{i}" for i in range(nq)], [f"c{i}" for i in range(nc)]

    class Stub:
        device = torch.device("cpu")

        def __init__(self):
            self.row = {
                **{t: ("q", i) for i, t in enumerate(qt)},
                **{t: ("p", i) for i, t in enumerate(pt)},
                **{t: ("c", i) for i, t in enumerate(ct)},
            }
            self.mats = {"q": qs, "p": pos, "c": extra}

        def _encode(self, texts, **kw):
            out = np.empty((len(texts), qs.shape[1]), dtype=np.float32)
            kinds = [self.row[t] for t in texts]
            for k, m in self.mats.items():
                sel = [j for j, (kk, _) in enumerate(kinds) if kk == k]
                out[sel] = m[[kinds[j][1] for j in sel]]
            return out

        encode_document = encode_query = _encode

        def similarity(self, a, b):
            return cos_sim(a, b)

        def similarity_pairwise(self, a, b):
            return pairwise_cos_sim(a, b)

    ds = Dataset.from_dict({"query": qt, "positive": pt})
    t0 = time.perf_counter()
    out = mine_hard_negatives(ds, Stub(), corpus=ct, output_format=fmt, verbose=False, batch_size=65536, **opts)
    return out, time.perf_counter() - t0


def mlbuild_tables(qs, pos, extra):
    import polars as pl

    nq, nc = len(qs), len(extra)
    table = pl.DataFrame(
        {
            "row_id": [str(i) for i in range(nq)],
            "query": [f"q{i}" for i in range(nq)],
            "positive": [f"p{i}" for i in range(nq)],
            "query_embedding": pl.Series(qs),
            "positive_embedding": pl.Series(pos),
        }
    )
    corpus = pl.DataFrame({"text": [f"c{i}" for i in range(nc)], "embedding": pl.Series(extra)})
    return table, corpus


def run_mlbuild(table, corpus, opts: dict, fmt: str, **extra_params):
    from mlbuild.pipeline.base import RunContext
    from mlbuild.steps.mine_negatives import MineNegatives, MineNegativesParams

    names = {"sampling_strategy": "sampling"}
    params = {names.get(k, k): v for k, v in opts.items()}
    p = MineNegativesParams(
        engine="precomputed", corpus="corpus", output_format=fmt, widen_limit=0, device="cpu", **params, **extra_params
    )
    step = MineNegatives(p, RunContext(tables={"corpus": corpus}))
    step.setup()
    t0 = time.perf_counter()
    out = step.process_table(table)
    return out, time.perf_counter() - t0


def negative_sets(rows: dict, n: int, fmt: str) -> dict:
    if fmt == "n-tuple":
        return {
            (q, p): frozenset(rows[f"negative_{j}"][i] for j in range(1, n + 1))
            for i, (q, p) in enumerate(zip(rows["query"], rows["positive"]))
        }
    out: dict = {}
    for q, p, neg in zip(rows["query"], rows["positive"], rows["negative"]):
        out.setdefault((q, p), set()).add(neg)
    return {k: frozenset(v) for k, v in out.items()}


# ------------------------------------------------------------------------------------------ workers
def worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    qs, pos, extra = make_data(args.queries, args.passages, args.dim, args.seed)
    res: dict = {
        "what": args.what,
        "queries": args.queries,
        "passages": args.passages,
        "dim": args.dim,
        "threads": args.threads,
    }
    opts = OPTIONS[args.options]
    if args.what == "st":
        res["rss_data_mb"] = current_rss_mb()
        res["peak_reset"] = reset_peak()
        out, secs = run_st(qs, pos, extra, opts, args.format)
        res["rows"] = len(out)
    elif args.what == "mlbuild":
        table, corpus = mlbuild_tables(qs, pos, extra)
        del qs, pos, extra  # the tables hold the vectors now (as a pipeline would)
        res["rss_data_mb"] = current_rss_mb()
        res["peak_reset"] = reset_peak()
        out, secs = run_mlbuild(table, corpus, opts, args.format)
        res["rows"] = out.rows.height
        res["short_queries"] = out.stats["short_queries"]
    elif args.what == "search":
        from mlbuild.models.search import exact_topk

        res["rss_data_mb"] = current_rss_mb()
        res["peak_reset"] = reset_peak()
        corpus = np.concatenate([extra, pos])
        t0 = time.perf_counter()
        exact_topk(qs, corpus, args.k, device="cpu", query_block=args.query_block, corpus_block=args.corpus_block)
        secs = time.perf_counter() - t0
    elif args.what == "floor":
        res["rss_data_mb"] = current_rss_mb()
        res["peak_reset"] = reset_peak()
        corpus = torch.from_numpy(np.concatenate([extra, pos]))
        q = torch.from_numpy(qs)
        chunk = 512  # one preallocated [512, n_corpus] score buffer (no page faults after the first chunk)
        buf = torch.empty(chunk, corpus.shape[0])
        t0 = time.perf_counter()
        for s in range(0, len(q), chunk):
            n = len(q[s : s + chunk])
            torch.mm(q[s : s + chunk], corpus.T, out=buf[:n])
        res["matmul_s"] = time.perf_counter() - t0
        res["matmul_gflops"] = 2 * len(q) * corpus.shape[0] * corpus.shape[1] / res["matmul_s"] / 1e9
        t0 = time.perf_counter()
        for s in range(0, len(q), chunk):
            n = len(q[s : s + chunk])
            torch.mm(q[s : s + chunk], corpus.T, out=buf[:n])
            torch.topk(buf[:n], args.k, dim=1)
        secs = time.perf_counter() - t0
    else:
        raise SystemExit(f"unknown worker {args.what}")
    res["seconds"] = round(secs, 3)
    res["peak_run_mb"] = round(hwm_mb(), 1)  # peak RSS while mining (data included), since the reset
    res["peak_rss_mb"] = round(rss_mb(), 1)  # peak of the whole process, data generation included
    res["rss_data_mb"] = round(res["rss_data_mb"], 1)
    return res


def spawn(what: str, a, **over) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "worker",
        what,
        "--queries",
        str(over.get("queries", a.queries)),
        "--passages",
        str(over.get("passages", a.passages)),
        "--dim",
        str(a.dim),
        "--threads",
        str(a.threads),
        "--options",
        a.options,
        "--format",
        a.format,
        "--k",
        str(over.get("k", 32)),
        "--seed",
        str(a.seed),
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(a.threads),
        "MKL_NUM_THREADS": str(a.threads),
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(ROOT),
    }
    print("$", " ".join(cmd[1:]), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        print(p.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"worker {what} failed")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    print("  ", res, flush=True)
    return res


# ------------------------------------------------------------------------------------------ commands
def cmd_check(a) -> dict:
    """Identical negatives on clustered data, every option set, triplet and n-tuple."""
    import torch

    torch.set_num_threads(a.threads)
    qs, pos, extra = make_data(a.check_queries, a.check_passages, a.dim, a.seed + 1)
    table, corpus = mlbuild_tables(qs, pos, extra)
    results = {}
    for name, opts in OPTIONS.items():
        for fmt in ("triplet", "n-tuple"):
            st_out, st_s = run_st(qs, pos, extra, opts, fmt)
            ml_out, ml_s = run_mlbuild(table, corpus, opts, fmt)
            n = opts["num_negatives"]
            a_sets = negative_sets(st_out.to_dict(), n, fmt)
            b_sets = negative_sets(ml_out.rows.to_dict(as_series=False), n, fmt)
            diff = [k for k in set(a_sets) | set(b_sets) if a_sets.get(k) != b_sets.get(k)]
            results[f"{name}/{fmt}"] = {
                "queries_compared": len(set(a_sets) | set(b_sets)),
                "different": len(diff),
                "rows_st": len(st_out),
                "rows_mlbuild": ml_out.rows.height,
                "st_s": round(st_s, 2),
                "mlbuild_s": round(ml_s, 2),
                "examples": [str(k) for k in diff[:3]],
            }
            print(
                f"check {name:12s} {fmt:8s}: {len(diff)} of {len(set(a_sets) | set(b_sets))} queries differ "
                f"(rows {len(st_out)} vs {ml_out.rows.height})",
                flush=True,
            )
    return {"sizes": {"queries": a.check_queries, "passages": a.check_passages, "dim": a.dim}, "results": results}


def cmd_speed(a) -> dict:
    from mlbuild.steps.mine_negatives import MineNegativesParams, derived_range_max

    opts = OPTIONS[a.options]
    p = MineNegativesParams(**{k: v for k, v in opts.items()})
    k = (p.range_max or derived_range_max(p, 1)) + 1  # what both search for (range_max + max positives)
    floor = spawn("floor", a, k=k)
    search = spawn("search", a, k=k)
    ml = spawn("mlbuild", a)
    st = spawn("st", a)
    out = {
        "options": opts,
        "format": a.format,
        "k": k,
        "floor": floor,
        "search": search,
        "mlbuild": ml,
        "st": st,
        "speedup_end_to_end": round(st["seconds"] / ml["seconds"], 2),
        "search_vs_floor": round(search["seconds"] / floor["seconds"], 2),
        "peak_rss_ratio": round(st["peak_run_mb"] / ml["peak_run_mb"], 2),
        "added_rss_ratio": round(
            (st["peak_run_mb"] - st["rss_data_mb"]) / max(1.0, ml["peak_run_mb"] - ml["rss_data_mb"]), 2
        ),
    }
    print(json.dumps({k: v for k, v in out.items() if not isinstance(v, dict)}, indent=1), flush=True)
    return out


def cmd_scale(a) -> dict:
    rows = [spawn("mlbuild", a, passages=n, queries=a.scale_queries) for n in a.scale_passages]
    return {"queries": a.scale_queries, "runs": rows}


def cmd_gpu(a) -> dict:
    """CUDA: exactness of fp32/fp16/bf16 search against CPU fp32, and query-passage scores per second."""
    import torch

    from mlbuild.models.search import exact_topk

    assert torch.cuda.is_available(), "no CUDA device"
    name = torch.cuda.get_device_name()
    out: dict = {"device": name}
    qs, pos, extra = make_data(2000, 200_000, a.dim, a.seed)
    corpus = np.concatenate([extra, pos])
    ref_s, ref_i = exact_topk(qs, corpus, 32, device="cpu")
    for prec in ("fp32", "fp16", "bf16"):
        s, i = exact_topk(qs, corpus, 32, device="cuda", precision=prec)
        out[f"exact_{prec}_rows_differing"] = int((i != ref_i).any(1).sum())
        out[f"exact_{prec}_max_score_err"] = float(np.abs(s - ref_s).max())
    qs, pos, extra = make_data(a.gpu_queries, a.gpu_passages, a.dim, a.seed)
    corpus = np.concatenate([extra, pos])
    for prec in ("fp16", "fp32"):
        exact_topk(qs[:1000], corpus, 32, device="cuda", precision=prec)  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        exact_topk(qs, corpus, 32, device="cuda", precision=prec)
        torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        out[f"{prec}_seconds"] = round(secs, 3)
        out[f"{prec}_scores_per_s"] = len(qs) * len(corpus) / secs
        out[f"{prec}_tflops"] = 2 * len(qs) * len(corpus) * a.dim / secs / 1e12
    # the card's fp16 matmul rate measured here (dense, large square)
    x = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    for _ in range(3):
        x @ x
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        x @ x
    torch.cuda.synchronize()
    out["fp16_matmul_tflops_8192"] = 2 * 8192**3 * 10 / (time.perf_counter() - t0) / 1e12
    out["sizes"] = {"queries": a.gpu_queries, "passages": len(corpus), "dim": a.dim}
    print(json.dumps(out, indent=1), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["check", "speed", "scale", "gpu", "all", "worker"])
    ap.add_argument("what", nargs="?", help="worker: st | mlbuild | search | floor")
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--passages", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--options", choices=list(OPTIONS), default="nv-retriever")
    ap.add_argument("--format", choices=["triplet", "n-tuple"], default="triplet")
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--query-block", type=int, default=None)
    ap.add_argument("--corpus-block", type=int, default=None)
    ap.add_argument("--check-queries", type=int, default=2000)
    ap.add_argument("--check-passages", type=int, default=30_000)
    ap.add_argument("--scale-passages", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--scale-queries", type=int, default=10_000)
    ap.add_argument("--gpu-queries", type=int, default=100_000)
    ap.add_argument("--gpu-passages", type=int, default=1_000_000)
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if a.command == "worker":
        print(json.dumps(worker(argparse.Namespace(**{**vars(a), "what": a.what}))))
        return
    res: dict = {"cpu_count": os.cpu_count(), "load_avg_at_start": os.getloadavg()}
    if a.command in ("check", "all"):
        res["check"] = cmd_check(a)
    if a.command in ("speed", "all"):
        res["speed"] = cmd_speed(a)
    if a.command in ("scale", "all"):
        res["scale"] = cmd_scale(a)
    if a.command == "gpu":
        res["gpu"] = cmd_gpu(a)
    res["load_avg_at_end"] = os.getloadavg()
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
