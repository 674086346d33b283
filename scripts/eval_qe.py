"""Evaluate the embedding QE gate (``qe = "embedding"``) on real parallel data: Tatoeba xx-eng pairs from
``../shared/data/tatoeba_laser`` (LASER's test sets; English side as the source, xx as the translation).

For each language pair, the pairs are shuffled (seeded) and split in two: a *dev* half, on which the
default relative margin is tuned (the margin under which the most pairs meet both targets, keep >= 97%
and reject >= 90%), and a *test* half, on which the numbers are reported. Rows are scored in
batches of ``--batch`` rows, as the gate sees a shard:

- genuine: every row is a source with its own translation; keep rate = rows passing the gate;
- mismatched: in each batch, ``--swap`` of the rows get another pair's translation (a sentence of the same
  split outside that row), the rest stay genuine; reject rate = swapped rows failing the gate. Rounds with
  different swapped rows repeat until every row was swapped once.

Scoring goes through :class:`mlbuild.qe.embedding.EmbeddingQE` (the library's code) with the packaged
multilingual-e5-small, vectors cached in a sqlite call cache (``--cache``), so re-running is fast.
Prints one JSON object: the tuned margin, and per pair and split the keep and reject rates at the tuned
margin and at the library's default (``mlbuild.qe.DEFAULT_MIN_MARGIN``).

    python scripts/eval_qe.py --langs deu fra tur cmn --pairs 600
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path

# ../shared/data beside the project root (the main checkout: /work/main -> /work/shared)
DATA = (
    next(
        (
            p
            for p in (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared"))
            if (p / "data" / "tatoeba_laser").is_dir()
        ),
        Path(__file__).resolve().parents[2] / "shared",
    )
    / "data"
    / "tatoeba_laser"
)
LANGS = ["deu", "fra", "spa", "rus", "tur", "cmn", "ara", "kaz"]
KEEP_TARGET, REJECT_TARGET = 0.97, 0.90


def load_pairs(data: Path, lang: str, n: int, seed: int) -> list[tuple[str, str]]:
    src = (data / f"tatoeba.{lang}-eng.eng").read_text(encoding="utf-8").splitlines()
    tgt = (data / f"tatoeba.{lang}-eng.{lang}").read_text(encoding="utf-8").splitlines()
    pairs = [(s, t) for s, t in zip(src, tgt) if s.strip() and t.strip()]
    random.Random(seed).shuffle(pairs)
    return pairs[:n]


def score_split(scorer, pairs: list[tuple[str, str]], batch: int, swap: float, seed: int) -> dict[str, list]:
    """Margins and cosines of genuine rows (all-genuine batches) and of swapped rows (batches with ``swap`` of
    their rows mismatched), from the library scorer."""
    rng = random.Random(seed)
    n = len(pairs)
    out: dict[str, list] = {"genuine_margin": [], "genuine_cos": [], "swapped_margin": [], "swapped_cos": []}
    for s in range(0, n, batch):
        idx = list(range(s, min(n, s + batch)))
        sc = scorer.score([pairs[i][0] for i in idx], [pairs[i][1] for i in idx])
        out["genuine_margin"] += sc.margin
        out["genuine_cos"] += sc.score
        order = idx[:]
        rng.shuffle(order)
        k = max(1, round(swap * len(idx)))
        for r in range(0, len(order), k):  # rounds: each row swapped once
            swapped = set(order[r : r + k])
            tgt = []
            for i in idx:
                if i in swapped:
                    j = rng.randrange(n - 1)
                    j = j + 1 if j >= i else j  # another pair's translation
                    tgt.append(pairs[j][1])
                else:
                    tgt.append(pairs[i][1])
            sc = scorer.score([pairs[i][0] for i in idx], tgt)
            for pos, i in enumerate(idx):
                if i in swapped:
                    out["swapped_margin"].append(sc.margin[pos])
                    out["swapped_cos"].append(sc.score[pos])
    return out


def rates(res: dict[str, list], margin: float) -> dict[str, float]:
    gm = [m for m in res["genuine_margin"] if m is not None]
    sm = [m for m in res["swapped_margin"] if m is not None]
    return {
        "keep_genuine": round(sum(m >= margin for m in gm) / len(gm), 4),
        "reject_mismatched": round(sum(m < margin for m in sm) / len(sm), 4),
        "genuine_n": len(gm),
        "mismatched_n": len(sm),
    }


def tune(dev: dict[str, dict[str, list]]) -> tuple[float, list[dict]]:
    """The margin (grid of 0.0025) under which the most language pairs meet both targets on dev (keep >=
    KEEP_TARGET, reject >= REJECT_TARGET); ties go to the best mean of keep and reject rates."""
    grid = [round(0.0025 * i, 4) for i in range(0, 41)]
    table = []
    for m in grid:
        rs = [rates(r, m) for r in dev.values()]
        table.append(
            {
                "margin": m,
                "pairs_meeting_both": sum(
                    r["keep_genuine"] >= KEEP_TARGET and r["reject_mismatched"] >= REJECT_TARGET for r in rs
                ),
                "min_keep": min(r["keep_genuine"] for r in rs),
                "mean_keep": round(sum(r["keep_genuine"] for r in rs) / len(rs), 4),
                "mean_reject": round(sum(r["reject_mismatched"] for r in rs) / len(rs), 4),
            }
        )
    best = max(table, key=lambda t: (t["pairs_meeting_both"], t["mean_keep"] + t["mean_reject"], -t["margin"]))
    return best["margin"], table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--langs", nargs="+", default=LANGS)
    ap.add_argument("--pairs", type=int, default=600, help="pairs per language (half dev, half test)")
    ap.add_argument("--batch", type=int, default=64, help="rows per scored batch (a shard of the gate)")
    ap.add_argument("--swap", type=float, default=0.1, help="share of a batch's rows mismatched at a time")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/mlbuild-eval-qe.sqlite"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not args.data.is_dir():
        print(json.dumps({"skipped": f"no data at {args.data}"}))
        return 0
    from mlbuild import qe
    from mlbuild.pipeline.cache import CallCache

    scorer = qe.load_scorer("embedding", cache=CallCache(args.cache), batch_size=64, min_batch=8)
    t0 = time.perf_counter()
    dev: dict[str, dict[str, list]] = {}
    test: dict[str, dict[str, list]] = {}
    for lang in args.langs:
        pairs = load_pairs(args.data, lang, args.pairs, args.seed)
        half = len(pairs) // 2
        dev[lang] = score_split(scorer, pairs[:half], args.batch, args.swap, args.seed)
        test[lang] = score_split(scorer, pairs[half:], args.batch, args.swap, args.seed + 1)
        logging.warning("%s: %d pairs scored (%.0f s so far)", lang, len(pairs), time.perf_counter() - t0)
    tuned, table = tune(dev)
    result = {
        "data": "tatoeba_laser (LASER Tatoeba v1), English source -> xx translation",
        "encoder": scorer.id,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "tuned_margin_on_dev": tuned,
        "library_default_margin": qe.DEFAULT_MIN_MARGIN,
        "targets": {"keep_genuine": KEEP_TARGET, "reject_mismatched": REJECT_TARGET},
        "test_at_default": {lang: rates(r, qe.DEFAULT_MIN_MARGIN) for lang, r in test.items()},
        "test_at_tuned": {lang: rates(r, tuned) for lang, r in test.items()},
        "dev_at_default": {lang: rates(r, qe.DEFAULT_MIN_MARGIN) for lang, r in dev.items()},
        "tuning_grid_dev": [t for t in table if t["margin"] in {0.0, 0.02, 0.03, 0.035, 0.04, 0.045, 0.05, 0.06}],
        "test_pairs_meeting_both_at_default": sum(
            r["keep_genuine"] >= KEEP_TARGET and r["reject_mismatched"] >= REJECT_TARGET
            for r in (rates(x, qe.DEFAULT_MIN_MARGIN) for x in test.values())
        ),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
