"""Throughput of mlbuild's langid.v1 against raw fastText ``predict`` on the same lines, same run.

Lines: 100k sentences from ../shared/data/tatoeba_laser (many languages) when present, else a
synthetic mix. Reports lines/s of each and the ratio (mlbuild time / raw time); the target is <= 1.25.

    .venv/bin/python scripts/bench_langid.py [--lines 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import polars as pl

from mlbuild.models.lid import FastTextLID
from mlbuild.pipeline.base import RunContext
from mlbuild.steps.langid import LangId, LangIdParams

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "tatoeba_laser"


def load_lines(n: int) -> tuple[list[str], str]:
    lines: list[str] = []
    if SHARED.is_dir():
        for f in sorted(SHARED.glob("tatoeba.*-eng.*")):
            lines.extend(x for x in f.read_text(encoding="utf-8", errors="replace").splitlines() if x.strip())
        where = str(SHARED)
    else:
        words = "the a river house water sky o rio casa água céu дарыя үй суу асман".split()
        rng = random.Random(0)
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(n)]
        where = "synthetic"
    random.Random(0).shuffle(lines)
    lines = (lines * (n // max(1, len(lines)) + 1))[:n]
    return lines, where


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    lines, where = load_lines(args.lines)
    lid = FastTextLID("lid.176")
    clean = [t.replace("\n", " ") for t in lines]
    raw = best(lambda: lid.model.predict(clean, k=1), args.repeats)
    df = pl.DataFrame({"row_id": [str(i) for i in range(len(lines))], "text": lines})
    print(f"{len(lines)} lines from {where}")
    print(f"raw fastText predict(k=1): {raw:.3f}s  ({len(lines) / raw:,.0f} lines/s)")
    for label, kw in [
        ("labels only", {}),
        ("expect='en', on_fail='flag'", {"expect": "en", "on_fail": "flag"}),
    ]:
        step = LangId(LangIdParams(column="text", **kw), RunContext())
        step.setup()
        t = best(lambda s=step: s.process(df), args.repeats)
        print(f"mlbuild langid.v1 ({label}): {t:.3f}s  ({len(lines) / t:,.0f} lines/s)  ratio {t / raw:.2f}x raw")
    # the usual case for a gate: a corpus mostly in the expected language (the English sides of Tatoeba)
    eng = [x for x in lines if x and len(x) > 0]
    if SHARED.is_dir():
        eng = []
        for f in sorted(SHARED.glob("tatoeba.*-eng.eng")):
            eng.extend(x for x in f.read_text(encoding="utf-8", errors="replace").splitlines() if x.strip())
        eng = (eng * (args.lines // max(1, len(eng)) + 1))[: args.lines]
        raw_en = best(lambda: lid.model.predict([t.replace("\n", " ") for t in eng], k=1), args.repeats)
        step = LangId(LangIdParams(column="text", expect="en", on_fail="flag"), RunContext())
        step.setup()
        dfe = pl.DataFrame({"row_id": [str(i) for i in range(len(eng))], "text": eng})
        t = best(lambda: step.process(dfe), args.repeats)
        print(
            f"English lines: raw {raw_en:.3f}s; mlbuild langid.v1 (expect='en', flag): {t:.3f}s  "
            f"ratio {t / raw_en:.2f}x raw"
        )


if __name__ == "__main__":
    main()
