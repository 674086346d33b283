"""Run ``synthesize_queries.v1`` on real English passages with a real model, through ``mlbuild run``, and
report what survives: per query language, the share of passages that keep a query, the drop reasons,
the kept queries' language by an independent detector, and kept queries that look unfinished.

Defaults: the first 20 English passages of ``recipes/data/demo/passages.jsonl`` (encyclopedic, 13-37
words), Spanish cross-lingual queries (5-shot) and English monolingual ones (3-shot), the packaged
Gemma-3-270m base model (greedy), fastText ``lid.176`` as the step's language filter and the packaged
multilingual-e5-small for its round-trip filter (top 5 among the passages).

The recipe is written to ``OUT/recipe/`` and run with the local executor; generations are cached in
``OUT/run/.mlbuild/cache.sqlite``, so a rerun only redoes the filters. The script only uses the
runner and the files a build writes (``reports/<step id>.json``, ``rejects/``, ``data/``), so the
same script measures older versions of the step (``PYTHONPATH=<old checkout>``).

Independent checks of the kept queries (not the step's own filters):

- language: ``lingua-language-detector`` (``pip install lingua-language-detector==2.1.1``; its
  models ship in the wheel) restricted to the languages of the run plus a few neighbours; without
  it, fastText ``lid.176`` (the step's own detector, so a weaker check) and the output says so;
- unfinished: the query does not end with a question mark, or its last word is one a complete
  question cannot end on in a small fixed list (articles, conjunctions, "of"/"de"), listed in full.

    PYTHONPATH=$PWD python scripts/eval_synthesis.py --out /tmp/synth-eval --n 20   # ~10-20 min, 2 cores

Writes ``OUT/metrics.json`` and ``OUT/queries.jsonl`` (every kept query with its checks); prints a
summary table.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from pathlib import Path

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"

RECIPE = """
[dataset]
name = "synth-eval"
version = "1.0.0"
license = "cc-by-4.0"
description = "Evaluation of synthesize_queries.v1."
seed = 13

[source]
uses = "jsonl.v1"
path = "passages.jsonl"
text_columns = ["passage"]
required = ["doc_id", "passage"]
id_column = "doc_id"

[[steps]]
id = "synthesize"
uses = "synthesize_queries.v1"
passage_column = "passage"
passage_lang = "en"
target_langs = {targets}
monolingual = true
model = "{model}"
lid_model = "lid.176"
{embed}
batch_size = {batch_size}
{extra}

[output]
config_by = "lang"
"""

# words a finished question does not end on (independent of the step's own rule, deliberately small)
_DANGLING = {
    "eng": {"the", "a", "an", "and", "or", "of", "to", "was", "is", "were", "are", "which", "what", "whose"},
    "spa": {"el", "la", "los", "las", "un", "una", "y", "o", "de", "del", "que", "qué", "cuál", "es", "fue"},
}
_END = ("?", "？", "؟")


def read_passages(path: Path, n: int) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{"doc_id": r["doc_id"], "passage": r["passage"]} for r in rows][:n]


class Judge:
    """Language of a query by lingua (preferred) or fastText lid.176 (fallback): a flores code."""

    def __init__(self, targets: list[str]):
        from mlbuild import langs

        self.langs = langs
        try:
            from lingua import IsoCode639_3, Language, LanguageDetectorBuilder

            codes = {langs.normalize(t).split("_")[0] for t in targets} | {"eng", "spa", "por", "fra", "ita", "cat"}
            ls = [Language.from_iso_code_639_3(getattr(IsoCode639_3, c.upper())) for c in sorted(codes)]
            self.detector = LanguageDetectorBuilder.from_languages(*ls).build()
            self.name = "lingua-language-detector (" + ", ".join(sorted(codes)) + ")"
        except ImportError:
            from mlbuild.models.lid import FastTextLID

            self.detector = None
            self.lid = FastTextLID("lid.176", RECIPES_DIR)
            self.name = "fastText lid.176 (the step's own detector: install lingua-language-detector for a check)"

    def __call__(self, text: str) -> str | None:
        if self.detector is not None:
            lang = self.detector.detect_language_of(text)
            return self.langs.normalize(lang.iso_code_639_3.name.lower()) if lang is not None else None
        codes, _ = self.lid.predict([text], k=1)
        return codes[0][0] if codes[0] else None


def unfinished(query: str, lang: str) -> str | None:
    q = query.strip()
    if not q.endswith(_END):
        return "no question mark at the end"
    last = re.findall(r"\w+", q.casefold())
    if last and last[-1] in _DANGLING.get(lang.split("_")[0], set()):
        return f"ends on {last[-1]!r}"
    return None


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--passages", type=Path, default=RECIPES_DIR / "data/demo/passages.jsonl")
    ap.add_argument("--n", type=int, default=20, help="passages (the first N lines)")
    ap.add_argument("--targets", default="es", help="cross-lingual target languages, comma-separated")
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--embed-model", default="multilingual-e5-small", help="'' = no round-trip filter")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is faster on a busy machine)")
    ap.add_argument("--set", action="append", default=[], help="extra step parameter line, e.g. 'max_new_tokens = 64'")
    return ap.parse_args()


def write_recipe(args: argparse.Namespace, targets: list[str], passages: list[dict]) -> Path:
    rdir = args.out / "recipe"
    rdir.mkdir(parents=True, exist_ok=True)
    (rdir / "passages.jsonl").write_text("".join(json.dumps(r) + "\n" for r in passages), encoding="utf-8")
    recipe = RECIPE.format(
        targets=json.dumps(targets),
        model=args.model,
        embed=f'embed_model = "{args.embed_model}"' if args.embed_model else "",
        batch_size=args.batch_size,
        extra="\n".join(args.set),
    )
    (rdir / "recipe.toml").write_text(recipe, encoding="utf-8")
    return rdir / "recipe.toml"


def read_build(ds: Path) -> tuple[dict, list[dict]]:
    """The step's report and the kept queries of a built dataset."""
    import polars as pl

    # reports/<step id>.json, named by the recipe step even when the step runs as several stages
    (report_file,) = [p for p in (ds / "reports").glob("synthesize*.json")]
    report = json.loads(report_file.read_text(encoding="utf-8"))
    kept = []
    for p in sorted(ds.glob("data/**/*.parquet")):
        kept += pl.read_parquet(p).select("doc_id", "lang", "query", "summary").to_dicts()
    return report, kept


def language_metrics(lang: str, kept: list[dict], report: dict, n_passages: int) -> dict:
    ks = [q for q in kept if q["lang"] == lang]
    r = report["languages"].get(lang, {})
    docs = {q["doc_id"] for q in ks}
    right = sum(q["right_lang"] for q in ks)
    return {
        "passages": n_passages,
        "prompts": r.get("generated", 0),
        "kept_queries": len(ks),
        "passages_with_a_query": len(docs),
        "passage_keep_rate": round(len(docs) / n_passages, 4) if n_passages else None,
        "right_language": right,
        "right_language_rate": round(right / len(ks), 4) if ks else None,
        "unfinished": [q["query"] for q in ks if q["unfinished"]],
        "dropped": r.get("dropped", {}),
        "tokens_per_s": r.get("tokens_per_s"),
    }


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from mlbuild import langs
    from mlbuild.pipeline.runner import Runner
    from mlbuild.recipe import load_recipe

    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    passages = read_passages(args.passages, args.n)
    recipe_path = write_recipe(args, targets, passages)
    t0 = time.perf_counter()
    res = Runner(load_recipe(recipe_path), args.out / "run", quiet=False, overwrite=True).run()
    seconds = time.perf_counter() - t0
    report, kept = read_build(res.dataset_dir)
    judge = Judge(targets)
    for q in kept:
        q["judged_lang"] = judge(q["query"])
        q["right_lang"] = q["judged_lang"] == q["lang"]
        q["unfinished"] = unfinished(q["query"], q["lang"])
    (args.out / "queries.jsonl").write_text(
        "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in kept), encoding="utf-8"
    )
    codes = [langs.normalize("en")] + [langs.normalize(t) for t in targets]
    per_lang = {lang: language_metrics(lang, kept, report, len(passages)) for lang in codes}
    metrics = {
        "passages_file": str(args.passages),
        "n": len(passages),
        "model": args.model,
        "embed_model": args.embed_model or None,
        "judge": judge.name,
        "seconds": round(seconds, 1),
        "up_to_date": res.up_to_date,
        "summaries": report.get("summaries"),
        "threads": args.threads,
        "recipe": recipe_path.read_text(encoding="utf-8"),
        "per_language": per_lang,
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    print(f"\n{len(passages)} passages from {args.passages}, {seconds:.0f} s; language judged by {judge.name}")
    print("| query language | prompts | passages keeping a query | right language | unfinished | dropped |")
    print("|---|---|---|---|---|---|")
    for lang, m in per_lang.items():
        rl = f"{m['right_language']}/{m['kept_queries']}"
        drops = ", ".join(f"{k} {v}" for k, v in m["dropped"].items()) or "-"
        print(
            f"| {lang} | {m['prompts']} | {m['passages_with_a_query']}/{m['passages']} "
            f"({100 * (m['passage_keep_rate'] or 0):.0f}%) | {rl} | {len(m['unfinished'])} | {drops} |"
        )


if __name__ == "__main__":
    main()
