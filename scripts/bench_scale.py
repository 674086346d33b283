"""Scale: wall time and peak memory of a language-ID recipe as rows grow, against a plain script and
datatrove doing the same job in the same run.

The job: N short sentences (Tatoeba lines from ../shared/data/tatoeba_laser, repeated; or any text
file) as JSON Lines -> fastText lid.176 on each line -> parquet. Three contenders, each a separate
process (peak RSS is the process's own, from ``wait4``):

- ``mlbuild``: ``mlbuild run`` on a recipe with a ``jsonl.v1`` source and one ``langid.v1`` step
  (``--executor local``; add ``ray`` with ``--executors local,ray``);
- ``plain``: read the whole file with polars, one fastText ``predict`` over every line, write one
  parquet file (the floor: no checks, no checkpoints, everything in memory);
- ``datatrove``: JsonlReader -> a fastText annotator with the same local lid.176 -> ParquetWriter, when
  datatrove is importable by ``--datatrove-python`` (a separate venv: ``pip install datatrove``).

    .venv/bin/python scripts/bench_scale.py --sizes 300000,3000000 [--sizes ...,30000000]
        [--datatrove-python /tmp/dt/bin/python] [--executors local,ray] [--work /tmp/bench-scale]

Prints one line per run and, last, one JSON object with every number.
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

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "tatoeba_laser"

RECIPE = """
[dataset]
name = "scale"
version = "1.0.0"

[source]
uses = "jsonl.v1"
path = "{data}"
text_columns = ["text"]
id_column = "id"

[[steps]]
uses = "langid.v1"
column = "text"
"""

PLAIN = r"""
import sys, polars as pl, numpy as np, fasttext
from mlbuild.models.packaged import lid_176
model = fasttext.load_model(str(lid_176()))
df = pl.read_ndjson(sys.argv[1])
texts = [t.replace("\n", " ") for t in df["text"].to_list()]
labels, probs = model.predict(texts, k=1)
df = df.with_columns(
    pl.Series("text_lang", [l[0][9:] for l in labels]),
    pl.Series("text_lang_score", np.array([p[0] for p in probs], dtype=np.float32)),
)
df.write_parquet(sys.argv[2])
"""

DATATROVE = r"""
import sys
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import ParquetWriter
from datatrove.pipeline.base import PipelineStep

MODEL = sys.argv[3]

class FastTextLID(PipelineStep):
    name = "fastText LID (local lid.176)"

    def run(self, data, rank=0, world_size=1):
        import fasttext
        model = fasttext.load_model(MODEL)
        batch = []
        def flush():
            labels, probs = model.predict([d.text.replace("\n", " ") for d in batch], k=1)
            for d, l, p in zip(batch, labels, probs):
                d.metadata["lang"] = l[0][9:]
                d.metadata["lang_score"] = float(p[0])
                yield d
        for doc in data:
            batch.append(doc)
            if len(batch) >= 10000:
                yield from flush()
                batch = []
        if batch:
            yield from flush()

LocalPipelineExecutor(
    pipeline=[
        JsonlReader(sys.argv[1], glob_pattern="*.jsonl", text_key="text", id_key="id"),
        FastTextLID(),
        ParquetWriter(sys.argv[2]),
    ],
    tasks=1,
    workers=1,
    logging_dir=sys.argv[2] + "-logs",
).run()
"""


def sentences(source: Path | None) -> list[str]:
    if source is not None:
        return [x for x in source.read_text(encoding="utf-8", errors="replace").splitlines() if x.strip()]
    lines: list[str] = []
    for f in sorted(SHARED.glob("tatoeba.*-eng.*")):
        lines.extend(x for x in f.read_text(encoding="utf-8", errors="replace").splitlines() if x.strip())
    random.Random(0).shuffle(lines)
    return lines


def make_data(path: Path, n: int, lines: list[str]) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"r{i}", "text": lines[i % len(lines)]}, ensure_ascii=False) + "\n")
    tmp.rename(path)


def measure(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``cmd``; its wall time and its own peak RSS (from wait4, not the children's)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... exited {code}: {err[-2000:]}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="300000,3000000")
    ap.add_argument("--text", type=Path, default=None, help="a text file of sentences (default: Tatoeba)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-scale"))
    ap.add_argument("--executors", default="local")
    ap.add_argument("--datatrove-python", default=None)
    ap.add_argument("--skip-plain-above", type=int, default=10_000_000, help="the plain script holds everything")
    args = ap.parse_args()
    lines = sentences(args.text)
    from mlbuild.models.packaged import lid_176

    model = str(lid_176())
    py = sys.executable
    results = []
    for n in [int(x) for x in args.sizes.split(",")]:
        data_dir = args.work / f"data-{n}"
        data = data_dir / "rows.jsonl"
        make_data(data, n, lines)
        row = {"rows": n, "input_mb": round(data.stat().st_size / 2**20, 1)}
        recipe = args.work / f"recipe-{n}.toml"
        recipe.write_text(RECIPE.format(data=data))
        for ex in args.executors.split(","):
            out = args.work / f"out-{ex}-{n}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [py, "-m", "mlbuild.cli", "run", str(recipe), "--out", str(out), "--quiet", "--executor", ex]
            row[f"mlbuild_{ex}"] = measure(cmd)
            print(f"{n:>11,} rows  mlbuild ({ex}): {row[f'mlbuild_{ex}']}", flush=True)
            shutil.rmtree(out, ignore_errors=True)
        if n <= args.skip_plain_above:
            row["plain"] = measure([py, "-c", PLAIN, str(data), str(args.work / f"plain-{n}.parquet")])
            print(f"{n:>11,} rows  plain script: {row['plain']}", flush=True)
        if args.datatrove_python:
            out = args.work / f"dt-{n}"
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(str(out) + "-logs", ignore_errors=True)
            row["datatrove"] = measure([args.datatrove_python, "-c", DATATROVE, str(data_dir), str(out), model])
            print(f"{n:>11,} rows  datatrove: {row['datatrove']}", flush=True)
        if "plain" in row:
            for ex in args.executors.split(","):
                row[f"ratio_{ex}_vs_plain"] = round(row[f"mlbuild_{ex}"]["wall_s"] / row["plain"]["wall_s"], 2)
        results.append(row)
    print(json.dumps({"cpu_count": os.cpu_count(), "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
