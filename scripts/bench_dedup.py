"""Near-duplicate removal at scale: ``dedup.v1`` through the recipe path (``mlbuild run`` on a JSON Lines
source) against ``datasketch`` used directly in a plain loop (the anchor), on the same rows, shingles
(character 4-grams of the normalised text), permutations and LSH split, in the same run.

Rows are short synthetic sentences (6-14 words drawn from a Zipf-like vocabulary of 20,000 words), 10%
of them near copies of an earlier row (one word replaced). Each measurement runs in a child process and
reports wall time, rows/s and peak RSS (``ru_maxrss`` of the child). The anchor is the usual datasketch
loop: per row ``MinHash.update_batch`` of its shingles, ``MinHashLSH.query`` and, when nothing is found,
``insert`` (no exact verification, everything in memory). Run::

    PYTHONPATH=. python scripts/bench_dedup.py --sizes 100000,1000000 --anchor-rows 200000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

NUM_PERM, THRESHOLD, SHINGLE = 128, 0.5, 4

RECIPE = """
[dataset]
name = "bench"
version = "1.0.0"
license = "cc-by-4.0"
description = "bench"

[source]
uses = "jsonl.v1"
path = "{rows}"
text_columns = ["text"]
id_column = "id"

[[steps]]
uses = "dedup.v1"
column = "text"
methods = ["near"]
shingle = "char"
shingle_size = {shingle}
near_threshold = {threshold}
num_perm = {num_perm}
"""


def make_rows(path: Path, n: int, seed: int = 0) -> None:
    rnd = random.Random(seed)
    vocab = [
        "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9))) for _ in range(20_000)
    ]
    cum, total = [], 0.0
    for i in range(len(vocab)):
        total += 1 / (i + 10)
        cum.append(total)
    texts: list[str] = []
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            if texts and rnd.random() < 0.1:
                w = texts[rnd.randrange(max(0, len(texts) - 50_000), len(texts))].split()
                w[rnd.randrange(len(w))] = rnd.choice(vocab)
                t = " ".join(w)
            else:
                t = " ".join(rnd.choices(vocab, cum_weights=cum, k=rnd.randint(6, 14)))
            texts.append(t)
            f.write(json.dumps({"id": f"r{i}", "text": t}) + "\n")


def child(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    """Run ``cmd``; wall seconds and the child's peak RSS in MB."""
    # a fresh wrapper process per measurement, so its RUSAGE_CHILDREN covers this command alone
    wrap = "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]).returncode; "
    wrap += "print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r)"
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-c", wrap, *cmd], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    secs = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{cmd}: exit {p.returncode}\n{p.stderr[-3000:]}")
    rss = int(p.stderr.rsplit("MAXRSS", 1)[1].split()[0])
    return {"seconds": round(secs, 1), "peak_rss_mb": round(rss / 1024), "stdout": p.stdout[-2000:]}


def anchor(rows: Path, n: int) -> None:
    """The plain datasketch loop over the first ``n`` rows (run as a child: ``--anchor``)."""
    import polars as pl
    from datasketch import MinHash, MinHashLSH

    from mlbuild.dedup.minhash import lsh_params
    from mlbuild.dedup.text import normalize, shingle_hash

    b, r = lsh_params(THRESHOLD, NUM_PERM)
    lsh = MinHashLSH(num_perm=NUM_PERM, params=(b, r))
    dropped = 0
    t0 = time.perf_counter()
    with rows.open(encoding="utf-8") as f:
        lines = [json.loads(next(f)) for _ in range(n)]
    texts = normalize(pl.Series([x["text"] for x in lines])).to_list()
    t1 = time.perf_counter()
    for i, t in enumerate(texts):
        grams = [t[j : j + SHINGLE] for j in range(max(1, len(t) - SHINGLE + 1))]
        m = MinHash(num_perm=NUM_PERM, seed=1, hashfunc=shingle_hash)
        m.update_batch(grams)
        if lsh.query(m):
            dropped += 1
        else:
            lsh.insert(str(i), m, check_duplication=False)
    print(
        json.dumps({"dropped": dropped, "loop_seconds": round(time.perf_counter() - t1, 1), "read": round(t1 - t0, 1)})
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--anchor-rows", type=int, default=200_000)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-dedup"))
    ap.add_argument("--anchor", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.anchor:
        anchor(a.anchor, a.n)
        return
    a.out.mkdir(parents=True, exist_ok=True)
    sizes = [int(x) for x in a.sizes.split(",")]
    data = a.out / f"rows-{max(sizes)}.jsonl"
    if not data.exists():
        make_rows(data, max(sizes))
    results = []
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for n in sizes:
        recipe = a.out / f"recipe-{n}.toml"
        recipe.write_text(RECIPE.format(rows=data, shingle=SHINGLE, threshold=THRESHOLD, num_perm=NUM_PERM))
        shutil.rmtree(a.out / f"out-{n}", ignore_errors=True)  # a finished build of the same recipe is not redone
        cmd = [sys.executable, "-m", "mlbuild.cli", "run", str(recipe), "--out", str(a.out / f"out-{n}")]
        cmd += ["--limit", str(n), "--no-resume", "--overwrite", "--quiet"]
        res = child(cmd, env)
        ds = a.out / f"out-{n}" / "bench" / "1.0.0"
        rep = json.loads((ds / "reports" / "dedup.json").read_text())
        results.append({"what": "dedup.v1 (mlbuild run)", "rows": n, **res, "dropped": rep["dropped"]})
        results[-1].pop("stdout")
    n = a.anchor_rows
    if n:
        res = child([sys.executable, __file__, "--anchor", str(data), "--n", str(n)], env)
        info = json.loads(res.pop("stdout").strip().splitlines()[-1])
        results.append({"what": "datasketch loop (anchor)", "rows": n, **res, **info})
    for r in results:
        r["rows_per_s"] = round(r["rows"] / r["seconds"])
    (a.out / "bench_dedup.json").write_text(json.dumps(results, indent=1))
    print("| what | rows | seconds | rows/s | peak RSS MB | dropped |\n|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['what']} | {r['rows']} | {r['seconds']} | {r['rows_per_s']} | {r['peak_rss_mb']} | {r['dropped']} |"
        )
    ours = next(r for r in results if r["rows"] == max(sizes) and r["what"].startswith("dedup"))
    if n:
        print(
            f"rows/s ratio (dedup.v1 at {ours['rows']} rows / datasketch at {n}): {ours['rows_per_s'] / results[-1]['rows_per_s']:.2f}"
        )


if __name__ == "__main__":
    main()
