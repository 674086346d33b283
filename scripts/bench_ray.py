"""Wall time of the demo recipe (and N-times larger copies of it) on the local executor and on Ray with
1 and 2 CPU workers, with where Ray's time goes.

    python scripts/bench_ray.py                      # demo size and 10x, shards of 256 and 64 rows
    python scripts/bench_ray.py --sizes 1,10,100 --shard-rows 256 --repeats 3 --json out/bench_ray.json

Every run starts from an empty out dir (no checkpoint reuse). Ray is started once (``ray.init`` is timed
on its own) with ``--num-cpus`` CPUs and a 500 MB object store, and shut down at the end. For each Ray
stage the executor records the time to start the actors and load the model in each of them
(``start``), the time from then to the last shard done (``run``), and the seconds spent inside the
actors' ``run_shard`` calls (``in shards``): the gap between those and the local run's step seconds is
Ray's overhead. Each run's fingerprint is checked against the local run's.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_recipe(root: Path, factor: int) -> Path:
    """The demo recipe over ``factor`` copies of its passages (each copy with new ids and its copy number
    in every sentence, so that no translation or embedding of one copy serves another)."""
    src = REPO / "recipes" / "data" / "demo" / "passages.jsonl"
    rows = [json.loads(line) for line in src.read_text(encoding="utf-8").splitlines() if line.strip()]
    data = root / f"passages-x{factor}.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        for j in range(factor):
            for r in rows:
                r2 = dict(r)
                if r2.get("doc_id") is not None:
                    r2["doc_id"] = f"{r2['doc_id']}-{j}"
                if j:  # a copy number in every sentence: copies are new work for translation and mining
                    for col in ("passage", "query"):
                        r2[col] = re.sub(r"([.!?])(\s|$)", rf" ({j})\1\2", r2[col])
                f.write(json.dumps(r2, ensure_ascii=False) + "\n")
    text = (REPO / "recipes" / "demo.toml").read_text(encoding="utf-8")
    old = 'path = "data/demo/passages.jsonl"'
    if old not in text:
        raise SystemExit("recipes/demo.toml changed: update make_recipe()")
    recipe = root / f"demo-x{factor}.toml"
    recipe.write_text(text.replace(old, f"path = {json.dumps(str(data))}"), encoding="utf-8")
    return recipe


def run_once(recipe: Path, out: Path, executor: str, workers: int | None, shard_rows: int) -> dict:
    from mlbuild.pipeline.runner import Runner
    from mlbuild.recipe import load_recipe

    opts = {"num_workers": workers} if executor == "ray" else {}
    t0 = time.perf_counter()
    runner = Runner(
        load_recipe(recipe), out, quiet=True, executor=executor, executor_options=opts, shard_rows=shard_rows
    )
    res = runner.run()
    wall = time.perf_counter() - t0
    steps = res.manifest["steps"]
    rec = {
        "wall": wall,
        "fingerprint": res.fingerprint,
        "rows": res.manifest["rows"],
        "rows_in": steps[0]["rows_out"],
        "step_seconds": sum(s["seconds"] for s in steps[1:]),
        "shards": -(-steps[0]["rows_out"] // shard_rows),
    }
    if executor == "ray":
        t = runner.executor.timings
        rec["ray_start"] = sum(x.start_seconds for x in t)
        rec["ray_run"] = sum(x.run_seconds for x in t)
        rec["ray_in_shards"] = sum(sum(x.shard_seconds) for x in t)
        rec["ray_model_load"] = sum(max(x.setup_seconds or [0.0]) for x in t)
        rec["ray_stages"] = sum(x.total_seconds for x in t)
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,10", help="multiples of the demo's 42 rows (default 1,10)")
    ap.add_argument("--shard-rows", default="256,64", help="shard sizes to try (default 256,64)")
    ap.add_argument("--workers", default="1,2", help="Ray worker counts (default 1,2)")
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray (default 2)")
    ap.add_argument("--repeats", type=int, default=1, help="runs per cell; the median is reported")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    logging.basicConfig(level=logging.WARNING)
    import ray

    sizes = [int(x) for x in args.sizes.split(",")]
    shard_sizes = [int(x) for x in args.shard_rows.split(",")]
    workers = [int(x) for x in args.workers.split(",")]
    t0 = time.perf_counter()
    ray.init(
        num_cpus=args.num_cpus,
        object_store_memory=500 * 1024**2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="warning",
    )
    ray_init = time.perf_counter() - t0
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench_ray_") as tmp:
            root = Path(tmp)
            # warm-up (imports, fastText load from disk cache) so the first cell is not penalized
            run_once(make_recipe(root, 1), root / "warm", "local", None, 256)
            n = 0
            for factor in sizes:
                recipe = make_recipe(root, factor)
                for shard_rows in shard_sizes:
                    cells = [("local", None)] + [("ray", w) for w in workers]
                    ref_fp = None
                    for executor, w in cells:
                        recs = []
                        for _ in range(args.repeats):
                            n += 1
                            recs.append(run_once(recipe, root / f"out{n}", executor, w, shard_rows))
                        rec = {
                            k: statistics.median(r[k] for r in recs) if isinstance(recs[0][k], float) else recs[0][k]
                            for k in recs[0]
                        }
                        ref_fp = ref_fp or rec["fingerprint"]
                        rec.update(
                            size=factor,
                            shard_rows=shard_rows,
                            executor=executor,
                            workers=w,
                            same_fingerprint=rec["fingerprint"] == ref_fp,
                        )
                        results.append(rec)
                        print(_line(rec), flush=True)
    finally:
        ray.shutdown()
    print(f"\nray.init (local, {args.num_cpus} CPUs): {ray_init:.2f}s, paid once per `mlbuild run --executor ray`")
    print(_table(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({"ray_init": ray_init, "cpus": os.cpu_count(), "results": results}, indent=1)
        )
    return 0 if all(r["same_fingerprint"] for r in results) else 1


def _line(r: dict) -> str:
    who = "local" if r["executor"] == "local" else f"ray x{r['workers']}"
    return (
        f"x{r['size']:<4} rows={r['rows_in']:<6} shard={r['shard_rows']:<4} {who:8s} wall={r['wall']:.2f}s "
        f"fingerprint_same={r['same_fingerprint']}"
    )


def _table(results: list[dict]) -> str:
    head = (
        "| size | rows | shards | executor | wall s | vs local | in steps s | ray start s | model load s "
        "| ray run s | in shards s |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    local = {}
    for r in results:
        key = (r["size"], r["shard_rows"])
        if r["executor"] == "local":
            local[key] = r["wall"]
        who = "local" if r["executor"] == "local" else f"ray, {r['workers']} worker{'s' * (r['workers'] > 1)}"
        ratio = r["wall"] / local[key] if key in local else float("nan")
        ray_cols = (
            (f"{r['ray_start']:.2f} | {r['ray_model_load']:.2f} | {r['ray_run']:.2f} | {r['ray_in_shards']:.2f}")
            if r["executor"] == "ray"
            else "- | - | - | -"
        )
        lines.append(
            f"| x{r['size']} | {r['rows_in']} | {r['shards']} | {who} | {r['wall']:.2f} | {ratio:.1f}x | "
            f"{r['step_seconds']:.2f} | {ray_cols} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
