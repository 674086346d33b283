"""Benchmark: mlbuild's exact hard-negative search at corpus scale, and the mine_negatives.v1 step's memory.

    # search: 2M passages from an on-disk array, checked against an in-memory fp32 search
    python scripts/bench_mining.py --device cpu --queries 2000 --passages 2000000 --dim 384 --on-disk
    # memory as rows grow (each size in its own process): the peak must stay flat
    python scripts/bench_mining.py --device cpu --scale 250000 500000 1000000 2000000 --on-disk --no-check
    # the step end to end (precomputed vectors in parquet shards), rows growing
    python scripts/bench_mining.py --step --scale 50000 100000 200000
    # CUDA: also the dense fp16 matmul rate, sentence-transformers' mine_hard_negatives on the same vectors
    python scripts/bench_mining.py --device cuda --queries 100000 --passages 10000000 --dim 384 --on-disk

The last line printed is one JSON object: ``peak_rss_mb`` (this process; with ``--on-disk`` the corpus is
generated chunk by chunk into a file and never held), ``identical`` (every list equals an in-memory fp32
search of the same corpus, run in a separate process, and, for a sample of queries, a float64 brute-force
sort by (score desc, index asc); null with ``--no-check``), ``scores_per_s`` (query-passage scores per
second of the exact search), ``seconds``; on CUDA also ``matmul_fp16_tflops`` (dense 8192^3 in the same
run), ``search_tflops`` and ``fraction_of_matmul``, ``st`` (sentence-transformers on a subset, with and
without faiss when installed) and ``peak_device_mb``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CHUNK = 20_000  # rows generated at a time


def rss_mb() -> float:
    """Peak resident set of this process (VmHWM), MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_corpus(n: int, d: int, seed: int, path: Path | None) -> np.ndarray:
    """Clustered unit vectors, generated ``CHUNK`` rows at a time: into ``path`` (then memory-mapped) or
    into memory."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(1, n // 2000), d)).astype(np.float32)
    out = np.empty((n, d), np.float32) if path is None else None
    with open(path, "wb") if path is not None else open(os.devnull, "wb") as f:
        for s in range(0, n, CHUNK):
            m = min(CHUNK, n - s)
            c = unit(centers[rng.integers(0, len(centers), m)] + 0.9 * rng.standard_normal((m, d), dtype=np.float32))
            if out is not None:
                out[s : s + m] = c
            else:
                f.write(c.tobytes())
    return out if out is not None else np.memmap(path, dtype=np.float32, mode="r", shape=(n, d))


def make_queries(corpus: np.ndarray, nq: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    pick = np.sort(rng.choice(len(corpus), size=nq, replace=False))
    from mlbuild.models.search import HostCorpus

    q = HostCorpus([corpus]).take(pick)  # from a file: pages released as it goes
    return unit(q + (1.0 / np.sqrt(q.shape[1])) * rng.standard_normal(q.shape, dtype=np.float32))


def search(q: np.ndarray, corpus: np.ndarray, a) -> tuple[np.ndarray, np.ndarray, float]:
    from mlbuild.models.search import CorpusSearch, visible_devices

    devs = visible_devices(a.device)
    cs = CorpusSearch(
        corpus, devices=devs, precision=a.precision, corpus_block=a.corpus_block, query_block=a.query_block
    )
    t0 = time.perf_counter()
    parts = [cs.search(q[s : s + a.query_chunk], a.k) for s in range(0, len(q), a.query_chunk)]
    secs = time.perf_counter() - t0
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), secs


# ------------------------------------------------------------------------------------------ workers
def worker_reference(a) -> None:
    """In a separate process: the corpus read whole into memory, searched in fp32 on the CPU; and a float64
    brute force for a sample of queries. Writes the lists next to the corpus file."""
    import torch

    torch.set_num_threads(a.threads)
    d = Path(a.data)
    q = np.load(d / "queries.npy")[: a.check_queries]
    corpus = np.fromfile(d / "corpus.f32", dtype=np.float32).reshape(-1, q.shape[1])
    a.device, a.precision = "cpu", "fp32"
    s, i, _ = search(q, corpus, a)
    np.save(d / "ref_s.npy", s)
    np.save(d / "ref_i.npy", i)
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(len(q), size=min(len(q), a.brute), replace=False))
    sc = np.empty((len(sample), len(corpus)), np.float32)  # float64 dot products rounded to float32
    qs64 = q[sample].astype(np.float64).T
    for c0 in range(0, len(corpus), 1 << 16):
        sc[:, c0 : c0 + (1 << 16)] = (corpus[c0 : c0 + (1 << 16)].astype(np.float64) @ qs64).T
    bi = [np.lexsort((np.arange(sc.shape[1]), -row))[: a.k] for row in sc]
    np.save(d / "brute_rows.npy", sample)
    np.save(d / "brute_i.npy", np.array(bi))


def run_search(a) -> dict:
    import torch

    torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-mining-", dir=a.tmp))
    try:
        t0 = time.perf_counter()
        corpus = make_corpus(a.passages, a.dim, a.seed, tmp / "corpus.f32" if a.on_disk else None)
        q = make_queries(corpus, a.queries, a.seed)
        gen_s = time.perf_counter() - t0
        if a.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        s, i, secs = search(q, corpus, a)
        res = {
            "device": a.device,
            "precision": a.precision,
            "queries": a.queries,
            "passages": a.passages,
            "dim": a.dim,
            "k": a.k,
            "on_disk": a.on_disk,
            "threads": a.threads,
            "seconds": round(secs, 3),
            "data_seconds": round(gen_s, 3),
            "scores_per_s": a.queries * a.passages / secs,
            "search_tflops": 2 * a.queries * a.passages * a.dim / secs / 1e12,
            "peak_rss_mb": round(rss_mb(), 1),
            "corpus_file_mb": round(a.passages * a.dim * 4 / 2**20, 1) if a.on_disk else None,
            "identical": None,
        }
        if a.device.startswith("cuda"):
            res.update(cuda_extras(a, q, corpus))
            res["fraction_of_matmul"] = round(res["search_tflops"] / res["matmul_fp16_tflops"], 4)
        if not a.no_check:
            res.update(check(a, tmp, q, corpus, s, i))
        return res
    finally:
        for f in tmp.glob("*"):
            f.unlink()
        tmp.rmdir()


def check(a, tmp: Path, q: np.ndarray, corpus: np.ndarray, s: np.ndarray, i: np.ndarray) -> dict:
    """Compare with an in-memory fp32 search (another process) and a float64 brute force on a sample."""
    if not a.on_disk:
        corpus.tofile(tmp / "corpus.f32")
    np.save(tmp / "queries.npy", q)
    cmd = [sys.executable, __file__, "--worker", "reference", "--data", str(tmp), "--k", str(a.k)]
    cmd += ["--threads", str(a.threads), "--brute", str(a.brute), "--query-chunk", str(a.query_chunk)]
    cmd += ["--check-queries", str(a.check_queries)]
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    ref_s, ref_i = np.load(tmp / "ref_s.npy"), np.load(tmp / "ref_i.npy")
    s, i = s[: len(ref_i)], i[: len(ref_i)]
    rows, bi = np.load(tmp / "brute_rows.npy"), np.load(tmp / "brute_i.npy")
    same = bool((ref_i == i).all() and (ref_s == s).all())
    brute_same = bool((i[rows] == bi).all())
    return {
        "identical": same and brute_same,
        "rows_checked": len(ref_i),
        "rows_differing_from_in_memory": int((ref_i != i).any(1).sum()),
        "brute_force_rows_checked": len(rows),
        "brute_force_rows_differing": int((i[rows] != bi).any(1).sum()),
    }


def cuda_extras(a, q, corpus) -> dict:
    import torch

    x = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    for _ in range(3):
        x @ x
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(20):
        x @ x
    torch.cuda.synchronize()
    mm = 2 * 8192**3 * 20 / (time.perf_counter() - t0) / 1e12
    del x
    out = {
        "gpu": torch.cuda.get_device_name(),
        "gpus": torch.cuda.device_count(),
        "matmul_fp16_tflops": round(mm, 1),
        "peak_device_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
    }
    if a.st:
        out["st"] = st_compare(a, q, corpus)
    return out


def st_compare(a, q: np.ndarray, corpus: np.ndarray) -> dict:
    """sentence-transformers' mine_hard_negatives on a subset (its own search), with/without faiss, and
    mlbuild's search on the same subset, as scores per second."""
    import torch
    from datasets import Dataset
    from sentence_transformers.util import cos_sim, mine_hard_negatives, pairwise_cos_sim

    nq, nc = min(len(q), a.st_queries), min(len(corpus), a.st_passages)
    qs, cs = q[:nq], np.asarray(corpus[:nc])
    rows = {f"q{j}": ("q", j) for j in range(nq)} | {f"c{j}": ("c", j) for j in range(nc)}
    mats = {"q": qs, "c": cs}

    class Stub:
        device = torch.device("cuda")

        def _encode(self, texts, **kw):
            kinds = [rows[t] for t in texts]
            return np.stack([mats[k][j] for k, j in kinds])

        encode_document = encode_query = _encode

        def similarity(self, x, y):
            return cos_sim(x, y)

        def similarity_pairwise(self, x, y):
            return pairwise_cos_sim(x, y)

    ds = Dataset.from_dict({"query": [f"q{j}" for j in range(nq)], "positive": [f"c{j}" for j in range(nq)]})
    ct = [f"c{j}" for j in range(nc)]
    out: dict = {"queries": nq, "passages": nc}
    for faiss in (False, True):
        if faiss:
            try:
                import faiss as _  # noqa: F401
            except ImportError:
                out["faiss"] = "not installed"
                continue
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        mine_hard_negatives(
            ds, Stub(), corpus=ct, num_negatives=a.k - 1, use_faiss=faiss, verbose=False, batch_size=65536
        )
        secs = time.perf_counter() - t0
        key = "st_faiss" if faiss else "st"
        out[key] = {"seconds": round(secs, 3), "scores_per_s": nq * nc / secs}
        out[key]["peak_device_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    _, _, secs = search(qs, cs, a)
    out["mlbuild"] = {"seconds": round(secs, 3), "scores_per_s": nq * nc / secs}
    return out


# ------------------------------------------------------------------------------------------ the step
def run_step(a) -> dict:
    """mine_negatives.v1 end to end: ``passages`` rows (query, positive, vectors) in parquet shards of 50k
    rows, read back batch by batch; the output counted, not kept."""
    import polars as pl
    import torch

    from mlbuild.pipeline.base import RunContext
    from mlbuild.steps.mine_negatives import MineNegatives, MineNegativesParams

    torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-step-", dir=a.tmp))
    n, d = a.passages, a.dim
    rng = np.random.default_rng(a.seed)
    shards = []
    for s in range(0, n, 50_000):
        m = min(50_000, n - s)
        pos = unit(rng.standard_normal((m, d), dtype=np.float32))
        qs = unit(pos + 0.5 * rng.standard_normal((m, d), dtype=np.float32))
        df = pl.DataFrame(
            {
                "row_id": [str(j) for j in range(s, s + m)],
                "query": [f"q{j}" for j in range(s, s + m)],
                "positive": [f"p{j}" for j in range(s, s + m)],
                "query_embedding": pl.Series(qs),
                "positive_embedding": pl.Series(pos),
            }
        )
        shards.append(tmp / f"{len(shards):05d}.parquet")
        df.write_parquet(shards[-1])
        del df, pos, qs

    class Table:  # what a TableRef offers a global step: its shards one at a time
        rows = n
        columns = ["row_id", "query", "positive", "query_embedding", "positive_embedding"]

        def iter_batches(self, columns=None):
            for f in shards:
                yield pl.read_parquet(f, columns=columns)

    p = MineNegativesParams(engine="precomputed", num_negatives=5, relative_margin=0.05, device=a.device)
    step = MineNegatives(p, RunContext(work_dir=tmp))
    step.setup()
    out = {"rows": 0}
    t0 = time.perf_counter()
    stats = step.run_global(Table(), lambda o: out.__setitem__("rows", out["rows"] + o.rows.height))
    secs = time.perf_counter() - t0
    for f in shards:
        f.unlink()
    return {
        "what": "step",
        "rows": n,
        "dim": d,
        "output_rows": out["rows"],
        "queries": stats["queries"],
        "seconds": round(secs, 3),
        "peak_rss_mb": round(rss_mb(), 1),
        "scores_per_s": n * n / secs,
        "identical": None,
    }


def scale(a) -> dict:
    runs = []
    for n in a.scale:
        cmd = [sys.executable, __file__, "--device", a.device, "--passages", str(n), "--queries", str(a.queries)]
        cmd += ["--dim", str(a.dim), "--threads", str(a.threads), "--k", str(a.k), "--no-check"]
        cmd += ["--on-disk"] if a.on_disk else []
        cmd += ["--step"] if a.step else []
        p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if p.returncode:
            print(p.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"run with {n} rows failed")
        r = json.loads(p.stdout.strip().splitlines()[-1])
        print(json.dumps(r), flush=True)
        runs.append(r)
    peaks = [r["peak_rss_mb"] for r in runs]
    return {
        "scale": runs,
        "peak_rss_mb": max(peaks),
        "peak_growth": round(max(peaks) / min(peaks), 3),
        "rows_growth": round(max(a.scale) / min(a.scale), 1),
        "identical": None,
        "scores_per_s": runs[-1]["scores_per_s"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--passages", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--on-disk", action="store_true", help="corpus generated into a file and memory-mapped")
    ap.add_argument("--no-check", action="store_true", help="skip the comparison with an in-memory search")
    ap.add_argument("--brute", type=int, default=50, help="queries checked against a float64 brute force")
    ap.add_argument("--check-queries", type=int, default=1_000_000_000, help="queries compared (the first N)")
    ap.add_argument("--step", action="store_true", help="the mine_negatives.v1 step end to end (rows = passages)")
    ap.add_argument("--scale", type=int, nargs="+", help="sizes, each in its own process (peak RSS as rows grow)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--query-chunk", type=int, default=65_536)
    ap.add_argument("--query-block", type=int, default=None)
    ap.add_argument("--corpus-block", type=int, default=None)
    ap.add_argument("--st", action=argparse.BooleanOptionalAction, default=True, help="CUDA: sentence-transformers")
    ap.add_argument("--st-queries", type=int, default=10_000)
    ap.add_argument("--st-passages", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tmp", default=None, help="folder for the on-disk corpus (default: the system's)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker == "reference":
        worker_reference(a)
        return
    if a.scale:
        res = scale(a)
    elif a.step:
        res = run_step(a)
    else:
        res = run_search(a)
    res["load_avg"] = os.getloadavg()
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
