"""Memory of the language-similarity report's input as the table grows: the two-pass sample
(``mlbuild.similarity.sample.sample_sets`` over a dataset folder, batch by batch) against reading the
needed columns whole first (what the report did before: ``TableRef.read(columns)``), at the same sample.

    python scripts/bench_langsim_memory.py --rows 50000 200000 800000 --text-chars 300

For each size a dataset folder is written (long form: ``parallel_id``, ``lang``, ``text``; English plus
two languages, 1/3 of the rows each, in parquet files of 100,000 rows), then each way runs in a fresh
process and reports its peak resident memory (``VmHWM``) above the process's memory after imports, and
its seconds. Both must choose the same sentences (checked). The rows of one size give the growth per row
of each way; the texts held are those of the sample (``--max-sentences`` per language) in the two-pass
way, and every text in the other.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER = r"""
import json, sys, time
from pathlib import Path
import polars as pl
from mlbuild.similarity import inputs, sample

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

folder, way, max_sentences = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
base = rss()
t0 = time.perf_counter()
if way == "two_pass":
    source = inputs.file_source(folder)
else:  # the table's needed columns read whole, then sampled in memory
    files = sorted((folder / "data").rglob("*.parquet"))
    source = inputs.table_source(pl.concat([pl.read_parquet(f, columns=["parallel_id", "text", "lang"]) for f in files]))
sets, skipped = sample.sample_sets(source, "en", max_sentences=max_sentences, min_sentences=2)
seconds = time.perf_counter() - t0
print(json.dumps({"peak_above_start": hwm() - base, "seconds": seconds,
                  "ids": {c: s.ids for c, s in sets.items()}}))
"""


def write_dataset(folder: Path, rows: int, text_chars: int) -> None:
    import polars as pl

    units = rows // 3
    data = folder / "data" / "default"
    data.mkdir(parents=True)
    part, start = 0, 0
    while start < units:
        n = min(100_000 // 3, units - start)
        ids = [f"u{i:09d}" for i in range(start, start + n)]
        frames = []
        for lang in ("en", "pt", "ky"):
            texts = [(f"{lang} {i} " * (text_chars // 8 + 1))[:text_chars] for i in range(start, start + n)]
            frames.append(pl.DataFrame({"parallel_id": ids, "lang": [lang] * n, "text": texts}))
        pl.concat(frames).write_parquet(data / f"train-{part:05d}.parquet")
        part += 1
        start += n


def run(folder: Path, way: str, max_sentences: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(folder), way, str(max_sentences)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="*", default=[50_000, 200_000, 800_000])
    ap.add_argument("--text-chars", type=int, default=300)
    ap.add_argument("--max-sentences", type=int, default=200)
    ap.add_argument("--out", default=None, help="write the numbers here as JSON")
    args = ap.parse_args()
    results = []
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as d:
            folder = Path(d) / "ds"
            t0 = time.perf_counter()
            write_dataset(folder, rows, args.text_chars)
            made = time.perf_counter() - t0
            two, whole = run(folder, "two_pass", args.max_sentences), run(folder, "read_whole", args.max_sentences)
            assert two["ids"] == whole["ids"], "the two ways chose different sentences"
            res = {
                "rows": rows,
                "text_chars": args.text_chars,
                "two_pass_peak_mb": round(two["peak_above_start"] / 2**20, 1),
                "read_whole_peak_mb": round(whole["peak_above_start"] / 2**20, 1),
                "two_pass_s": round(two["seconds"], 2),
                "read_whole_s": round(whole["seconds"], 2),
                "seconds_ratio": round(two["seconds"] / whole["seconds"], 2),
                "dataset_written_s": round(made, 1),
            }
            results.append(res)
            print(json.dumps(res), flush=True)
    for a, b in zip(results, results[1:]):
        grow = b["rows"] - a["rows"]
        print(
            f"{a['rows']} -> {b['rows']} rows: two-pass +{(b['two_pass_peak_mb'] - a['two_pass_peak_mb']) * 2**20 / grow:.0f}"
            f" bytes/row, read-whole +{(b['read_whole_peak_mb'] - a['read_whole_peak_mb']) * 2**20 / grow:.0f} bytes/row"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
