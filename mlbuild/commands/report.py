"""``mlbuild report KIND ...``: run a report outside a recipe. Each kind is a sub-verb
(``language-similarity``); a new kind is one more ``_add_<kind>`` function registered in ``KINDS``.

``mlbuild report language-similarity --parallel DIR_OR_DATASET --langs fr de sw --out DIR``
scores how close a model (the packaged Gemma-3-270m by default) puts each language to the pivot, per
layer, and writes ``DIR/language_similarity.{json,md}`` and plots. ``--parallel`` is a folder of
line-aligned text files (the language code in each file name: ``dev.eng_Latn`` + ``dev.por_Latn``, or
Tatoeba's ``tatoeba.fra-eng.fra`` + ``tatoeba.fra-eng.eng``), a built dataset folder, or a ``.parquet``
/ ``.jsonl`` file with a ``parallel_id`` column.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import echo
from ..errors import InputError, RecipeError


def register(sub) -> None:
    p = sub.add_parser("report", help="run a report outside a recipe (language-similarity)")
    kinds = p.add_subparsers(dest="report_kind", metavar="KIND")
    for add in KINDS:
        add(kinds)
    p.set_defaults(func=_missing_kind(p))


def _missing_kind(parser: argparse.ArgumentParser):
    def run(args) -> int:
        parser.print_help()
        return 2

    return run


# ---------------------------------------------------------------------------------------------- language-similarity


def _add_language_similarity(kinds) -> None:
    p = kinds.add_parser(
        "language-similarity",
        help="how close a model puts each language to a pivot, per layer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--parallel",
        required=True,
        metavar="DIR_OR_DATASET",
        help="folder of line-aligned text files, a built dataset folder, or a .parquet/.jsonl file",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="where the report files go")
    p.add_argument("--model", default="gemma-3-270m", help="packaged name, folder, .gguf file or Hub id")
    p.add_argument("--gguf-file", default=None, help="GGUF file inside the model folder or Hub repo")
    p.add_argument("--revision", default=None, help="Hub revision")
    p.add_argument("--pivot", default="eng_Latn")
    p.add_argument("--langs", nargs="*", default=[], help="languages to score (default: all found)")
    p.add_argument(
        "--pooling",
        action="append",
        choices=["mean", "last_token", "weighted_mean"],
        help="repeatable; the first is scored (default: mean)",
    )
    p.add_argument("--score", default="mexa", choices=["mexa", "mexa_centered", "ranker_centered", "ranker"])
    p.add_argument("--aggregate", default="mean", choices=["mean", "max"], help="over layers")
    p.add_argument("--max-sentences", type=int, default=200, help="pairs per language at most")
    p.add_argument("--min-sentences", type=int, default=10)
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-length", type=int, default=256, help="tokens per sentence at most")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="precision (auto: float32 on CPU, bfloat16 on CUDA)",
    )
    p.add_argument("--text-column", default="text", help="dataset input: the text column")
    p.add_argument("--lang-column", default="lang", help="dataset input: the language column")
    p.add_argument("--id-column", default="parallel_id", help="dataset input: the parallel unit id")
    p.add_argument("--name", default="language_similarity", help="file name prefix")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=0, help="sentences per forward pass (0: 32 on CPU, 256 on CUDA)")
    p.add_argument("--cache", default=None, help="vector cache (sqlite; default: OUT/.cache/vectors.sqlite)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the vector cache")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_language_similarity)


def _is_dataset(path: Path) -> bool:
    if path.is_file():
        return True
    return (path / "data").is_dir() or (path / "manifest.json").exists() or any(path.glob("*.parquet"))


def run_language_similarity(args) -> int:
    from ..pipeline import params as P
    from ..pipeline.cache import CallCache
    from ..reports import language_similarity as ls

    raw = {
        "model": args.model,
        "gguf_file": args.gguf_file,
        "revision": args.revision,
        "pivot": args.pivot,
        "langs": args.langs,
        "text_column": args.text_column,
        "lang_column": args.lang_column,
        "id_column": args.id_column,
        "pooling": args.pooling or ["mean"],
        "score": args.score,
        "aggregate": args.aggregate,
        "max_sentences": args.max_sentences,
        "min_sentences": args.min_sentences,
        "bootstrap": args.bootstrap,
        "confidence": args.confidence,
        "seed": args.seed,
        "max_length": args.max_length,
        "dtype": args.dtype,
        "name": args.name,
        "trust_remote_code": args.trust_remote_code,
        "device": args.device,
        "batch_size": args.batch_size,
    }
    raw = {k: v for k, v in raw.items() if v is not None}
    params, problems = P.parse(ls.LanguageSimilarityParams, raw, "report language-similarity", Path.cwd())
    if params is not None:
        problems += [(f"report language-similarity -> {w}", m) for w, m in ls.check_params(params)]
    if problems:
        raise RecipeError(problems)
    src = Path(args.parallel)
    if not src.exists():
        raise InputError(str(src), "not found")
    if _is_dataset(src):
        sets = ls.sets_from_table(
            ls.read_table(src),
            params.pivot,
            params.langs,
            text_column=params.text_column,
            lang_column=params.lang_column,
            id_column=params.id_column,
        )
    else:
        sets = ls.read_parallel_dir(src, params.pivot, params.langs)
    if params.langs:
        missing = [c for c in params.langs if c not in sets and c != params.pivot]
        if missing:
            raise InputError(
                str(src),
                f"no parallel text with {params.pivot} for {', '.join(missing)} "
                f"(found: {', '.join(sorted(sets)) or 'none'})",
            )
    sets, skipped = ls.prepare(sets, params.max_sentences, params.min_sentences, params.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = None if args.no_cache else CallCache(Path(args.cache) if args.cache else out / ".cache" / "vectors.sqlite")
    try:
        encoder = ls._load_encoder(params, Path.cwd(), args.device)
        result = ls.build_report(
            sets,
            encoder,
            pivot=params.pivot,
            poolings=params.pooling,
            score=params.score,
            aggregate=params.aggregate,
            bootstrap=params.bootstrap,
            confidence=params.confidence,
            seed=params.seed,
            cache=cache,
            quiet=args.quiet,
            skipped=skipped,
            extra={"input": str(src)},
        )
    finally:
        if cache is not None:
            cache.close()
    summary = ls.write_outputs(result, out, params.name)
    L = result["languages"]
    echo(
        f"{result['model']} ({result['revision']}), pivot {result['pivot']}, score {params.score} "
        f"({params.aggregate} over {len(result['layers'])} layers), pooling {result['pooling']}"
    )
    for c in result["ranking"]:
        r = L[c]
        lo, hi = r["rank_range"]
        rank = f"{lo}" if lo == hi else f"{lo}-{hi}"
        echo(
            f"  {rank:>5}  {c:<9} {r['score']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]  n={r['n']:<4} "
            f"centred parallel {r['aggregate']['ranker_centered']['mean']:.3f} vs non-parallel "
            f"{r['aggregate']['nonparallel_centered']['mean']:.3f}"
        )
    for c, why in result["skipped"].items():
        echo(f"  skipped {c}: {why}")
    echo(
        f"report: {out / (params.name + '.md')} ({', '.join(summary['files'])}); "
        f"{result['sentences']['distinct']} sentences, {result['sentences']['from_cache']} from cache, "
        f"{result['sentences']['seconds']:.1f}s"
    )
    return 0


KINDS = [_add_language_similarity]
