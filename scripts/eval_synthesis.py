"""Run ``synthesize_queries.v1`` on a few real passages with a real model and report the filter rates.

Defaults: the packaged Gemma-3-270m base model, 10 English passages of the demo and 10 Spanish ones
(``recipes/data/synthesize/passages_es.jsonl``), monolingual queries, fastText ``lid.176`` for the
language check and the packaged multilingual-e5-small for round-trip consistency (top-k over the
20 passages). Generations are cached in ``OUT/cache.sqlite``, so a rerun only redoes the filters.

    python scripts/eval_synthesis.py --out /tmp/synth-eval            # ~6 s or more per passage on 2 cores

Writes ``OUT/metrics.json`` (kept, language-ID pass and round-trip pass rates per language),
``OUT/kept.jsonl``, ``OUT/rejects.jsonl`` and ``OUT/reports/synthesis.{json,md}``; prints a summary
and two (passage, summary, query) triples.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import polars as pl

from mlbuild import langs
from mlbuild.pipeline.base import RunContext
from mlbuild.pipeline.cache import CallCache
from mlbuild.steps.synthesize import SynthesizeParams, SynthesizeQueries

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


def read_passages(path: Path, lang: str, n: int) -> pl.DataFrame:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()][:n]
    return pl.DataFrame(
        {
            "row_id": [r["doc_id"] for r in rows],
            "doc_id": [r["doc_id"] for r in rows],
            "title": [r.get("title") or "" for r in rows],
            "passage": [r["passage"] for r in rows],
            "passage_lang": [langs.normalize(lang)] * len(rows),
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--en", type=Path, default=RECIPES_DIR / "data/demo/passages.jsonl")
    ap.add_argument("--en-n", type=int, default=10)
    ap.add_argument("--other", type=Path, default=RECIPES_DIR / "data/synthesize/passages_es.jsonl")
    ap.add_argument("--other-lang", default="es")
    ap.add_argument("--other-n", type=int, default=10)
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--embed-model", default="multilingual-e5-small")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--top-k", type=int, default=5)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    table = pl.concat(
        [read_passages(args.en, "en", args.en_n), read_passages(args.other, args.other_lang, args.other_n)]
    )
    params = SynthesizeParams(
        passage_lang="passage_lang",
        title_column="title",
        model=args.model,
        embed_model=args.embed_model or None,
        roundtrip_top_k=args.top_k,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
    )
    cache = CallCache(args.out / "cache.sqlite")
    ctx = RunContext(recipe_dir=RECIPES_DIR, work_dir=args.out / "work", cache=cache, quiet=False)
    step = SynthesizeQueries(params, ctx)
    t0 = time.perf_counter()
    step.setup()
    t_setup = time.perf_counter() - t0
    out = step.process_table(table)
    t_run = time.perf_counter() - t0 - t_setup
    summary = step.finalize(out.stats, args.out / "reports")
    cache.close()
    kept = out.rows
    rejects = out.rejects if out.rejects is not None else pl.DataFrame()
    kept.write_ndjson(args.out / "kept.jsonl")
    rejects.write_ndjson(args.out / "rejects.jsonl")
    report = json.loads((args.out / "reports" / "synthesize.json").read_text())
    metrics = {
        "model": args.model,
        "passages": table.height,
        "setup_seconds": round(t_setup, 1),
        "run_seconds": round(t_run, 1),
        "models": ctx.models,
        "template": ctx.extra.get("template"),
        "per_language": report["languages"],
    }
    gen = sum(s["generated"] for s in report["languages"].values())
    metrics["kept_rate"] = round(kept.height / gen, 4) if gen else None
    lid_c = sum(s["lid_checked"] for s in report["languages"].values())
    lid_p = sum(round((s["lid_pass_rate"] or 0) * s["lid_checked"]) for s in report["languages"].values())
    metrics["lid_pass_rate"] = round(lid_p / lid_c, 4) if lid_c else None
    rt_c = sum(s["roundtrip_checked"] for s in report["languages"].values())
    rt_p = sum(round((s["roundtrip_pass_rate"] or 0) * s["roundtrip_checked"]) for s in report["languages"].values())
    metrics["roundtrip_pass_rate"] = round(rt_p / rt_c, 4) if rt_c else None
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    print(summary["markdown"])
    print(json.dumps({k: metrics[k] for k in ("kept_rate", "lid_pass_rate", "roundtrip_pass_rate", "run_seconds")}))
    for lang in kept["lang"].unique(maintain_order=True).to_list()[:2]:
        r = kept.filter(pl.col("lang") == lang).row(0, named=True)
        print(
            f"\n[{lang}] passage: {r['passage']}\nsummary: {r['summary']}\nquery: {r['query']} "
            f"(round-trip rank {r.get('roundtrip_rank')})"
        )


if __name__ == "__main__":
    main()
