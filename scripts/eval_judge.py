"""Measure ``judge_relevance.v1`` against judgments built from Tatoeba (real, human-made translations).

For each language, ``--pairs`` sentences become queries; the query's own English translation is a relevant
passage (reference grade 3) and the English side of another, randomly chosen pair is a non-relevant one
(reference grade 0). The step runs in ``qrels`` mode with ``reference_column = "ref"``, so its own report
gives Cohen's kappa (0-3, quadratic, binary at grade 2), precision/recall of "relevant" and the confusion
table; this script adds prompts/s and example outputs per template.

    python scripts/eval_judge.py --out /tmp/judge-eval                       # packaged gemma-3-270m, 2 templates
    python scripts/eval_judge.py --out /tmp/judge-eval --engine openai --model NAME \\
        --base-url http://127.0.0.1:8000/v1 --templates prompts/umbrela.v1.j2    # a served model

Data: ``/work/shared/data/tatoeba_laser`` (or ``--data``); never copied into the project. Generations are
cached in ``OUT/cache.sqlite`` (a rerun is instant). Writes ``OUT/metrics.json`` and
``OUT/reports/<template>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path

import polars as pl

from mlbuild.pipeline.base import RunContext
from mlbuild.pipeline.cache import CallCache
from mlbuild.publish.writer import file_report
from mlbuild.steps.judge_relevance import JudgeParams, JudgeRelevance

DATA = Path("/work/shared/data/tatoeba_laser")


def build_set(data: Path, langs: list[str], pairs: int, seed: int) -> pl.DataFrame:
    rows = []
    for lang in langs:
        xx = (data / f"tatoeba.{lang}-eng.{lang}").read_text(encoding="utf-8").splitlines()
        en = (data / f"tatoeba.{lang}-eng.eng").read_text(encoding="utf-8").splitlines()
        rng = random.Random(f"{seed}/{lang}")
        idx = rng.sample(range(len(xx)), pairs)
        for i in idx:
            j = rng.choice([k for k in range(len(en)) if en[k] != en[i]])
            rows.append({"row_id": f"{lang}-{i}-rel", "query": xx[i], "passage": en[i], "ref": 3, "lang": lang})
            rows.append({"row_id": f"{lang}-{i}-non", "query": xx[i], "passage": en[j], "ref": 0, "lang": lang})
    return pl.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--langs", default="fra,spa,deu,rus,tur,jpn")
    ap.add_argument("--pairs", type=int, default=20, help="queries per language (each gives 2 judged pairs)")
    ap.add_argument("--templates", default="prompts/umbrela.v1.j2,prompts/umbrela-fewshot.v1.j2")
    ap.add_argument("--engine", default="transformers", choices=["transformers", "openai"])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--base-url", default=None)
    ap.add_argument("--api", default="chat", choices=["chat", "completions"])
    ap.add_argument("--max-new-tokens", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    table = build_set(args.data, args.langs.split(","), args.pairs, args.seed)
    cache = CallCache(args.out / "cache.sqlite")
    results = {"pairs": table.height, "langs": args.langs.split(","), "model": args.model, "templates": {}}
    for tpl in args.templates.split(","):
        p = JudgeParams(
            query_column="query",
            passage_column="passage",
            mode="qrels",
            reference_column="ref",
            passage_lang="en",
            engine=args.engine,
            model=args.model,
            base_url=args.base_url,
            api=args.api,
            template=tpl,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
        )
        step = JudgeRelevance(p, RunContext(recipe_dir=Path.cwd(), cache=cache, device="cpu", quiet=True))
        step.setup()
        t0 = time.perf_counter()
        out = step.process(table)
        secs = time.perf_counter() - t0
        report = step.finalize(out.stats)
        name = Path(tpl).name.removesuffix(".j2")
        file_report(report, name, args.out / "reports")
        computed = sum(v["computed_prompts"] for v in out.stats["tokens"].values())
        agree = report.data["agreement"]["all"]
        ex = out.rows.select("lang", "query", "passage", "ref", "grade").head(4).to_dicts()
        results["templates"][name] = {
            "agreement": agree,
            "confusion": report.data["confusion"]["all"],
            "grades": report.data["totals"]["grades"],
            "unparsed": report.data["totals"]["unparsed"],
            "seconds": round(secs, 2),
            "prompts_computed": computed,
            "prompts_per_s": round(computed / secs, 3) if computed else None,
            "examples": report.data["examples"],
            "rows": ex,
        }
        print(f"{name}: {report.summary}")
        print(f"  kappa {agree['kappa']}, binary {agree['kappa_binary']}, unparsed {agree['unparsed']}")
        if computed:
            print(f"  {computed} prompts in {secs:.1f}s ({computed / secs:.2f} prompts/s)")
    (args.out / "metrics.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
