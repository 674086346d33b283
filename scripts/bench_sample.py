"""Memory and speed of ``sample.v1`` as rows grow: peak RSS of a fresh process that runs the step over a
table on disk (shards of 50k rows, 20 languages with Zipf-like sizes), output discarded, against the same
process reading the table once (the anchor: what any streaming pass costs).

    python scripts/bench_sample.py --rows 100000,400000,1600000

Prints per size: seconds, rows/s, peak RSS of the sampling run (output discarded) and of the anchor, their
difference, and the peak when the output goes into the core's ``ShardWriter`` as in a real run (which holds
rejects until enough kept rows fill a shard).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from mlbuild.pipeline import checkpoint as ck
from mlbuild.pipeline.base import ROW_ID, StepOutput


def build(d: Path, rows: int) -> None:
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    weights = np.array([1 / (k + 1) for k in range(20)])
    w = ck.ShardWriter(d, "bench", ck.ShardTarget(rows=50_000))
    for start in range(0, rows, 100_000):
        n = min(100_000, rows - start)
        lang = rng.choice(20, n, p=weights / weights.sum())
        df = pl.DataFrame(
            {
                ROW_ID: [str(i) for i in range(start, start + n)],
                "lang": [f"l{k:02d}" for k in lang],
                "text": ["some text of about eighty characters, as a short passage would have."] * n,
            }
        )
        w.emit(StepOutput(df))
    ck.mark_stage_done(d, w.close(), {"rows": rows})


def child(d: str, mode: str) -> None:
    from mlbuild.pipeline.base import RunContext
    from mlbuild.pipeline.tables import TableRef
    from mlbuild.steps.sample import Sample, SampleParams

    table = TableRef.of_stage(Path(d))
    t0 = time.perf_counter()
    kept = 0
    if mode == "anchor":
        for b in table.iter_batches():
            kept += b.height
    else:
        step = Sample(
            SampleParams(column="lang", max_per_value=20_000, min_per_value=1_000, fraction=0.2), RunContext()
        )

        def emit(out: StepOutput) -> None:
            nonlocal kept
            kept += out.rows.height

        step.run_global(table, emit)
    secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps({"seconds": secs, "peak_mb": peak, "kept": kept}))


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", default="100000,400000,1600000")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for rows in (int(r) for r in args.rows.split(",")):
            d = Path(tmp) / f"t{rows}"
            build(d, rows)
            res = {}
            for mode in ("anchor", "sample", "writer"):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(d), mode], capture_output=True, text=True, check=True
                )
                res[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            s, a = res["sample"], res["anchor"]
            print(
                f"{rows:>9} rows: sample {s['seconds']:.1f}s ({rows / s['seconds']:,.0f} rows/s), kept {s['kept']}, "
                f"peak {s['peak_mb']} MB; anchor (one read) {a['seconds']:.1f}s, peak {a['peak_mb']} MB; "
                f"difference {s['peak_mb'] - a['peak_mb']} MB; into the core's ShardWriter: peak {res['writer']['peak_mb']} MB"
            )


if __name__ == "__main__":
    main()
