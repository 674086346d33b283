"""``mlbuild report KIND ...``: run a report outside a recipe. Each kind is a sub-verb
(``language-similarity``); a new kind is one more ``_add_<kind>`` function registered in ``KINDS``.

``mlbuild report language-similarity --parallel DIR_OR_DATASET --langs fr de sw --out DIR``
scores how close a model (the packaged Gemma-3-270m by default) puts each language to the pivot, per
layer, and writes ``DIR/language_similarity.{json,md}`` and plots (``language_similarity.heatmap.png``...).
``--parallel`` is a folder of line-aligned text files (the language code in each file name:
``dev.eng_Latn`` + ``dev.por_Latn``, or Tatoeba's ``tatoeba.fra-eng.fra`` + ``tatoeba.fra-eng.eng``), a
built dataset folder, or a ``.parquet`` / ``.jsonl`` file with a ``parallel_id`` column (or, with
``--columns eng_Latn=en por_Latn=pt``, one text column per language). Every parameter of
``language_similarity.v1`` is a flag (``--max-sentences``, ``--pooling``...), checked like a recipe.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..cli import echo
from ..errors import InputError, RecipeError
from ._flags import add_param_flags, named, params_from_args

LOC = "report language-similarity"


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
    from ..reports.language_similarity import LanguageSimilarityParams

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
    p.add_argument("--cache", default=None, help="vector cache (sqlite; default: OUT/.cache/vectors.sqlite)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the vector cache")
    p.add_argument("--quiet", action="store_true")
    add_param_flags(p.add_argument_group("report parameters (language_similarity.v1)"), LanguageSimilarityParams)
    p.set_defaults(func=run_language_similarity)


def _is_dataset(path: Path) -> bool:
    if path.is_file():
        return True
    return (path / "data").is_dir() or (path / "manifest.json").exists() or any(path.glob("*.parquet"))


def _params(args) -> Any:
    from ..pipeline import params as P
    from ..reports import language_similarity as ls

    params, problems = params_from_args(args, ls.LanguageSimilarityParams, LOC, Path.cwd())
    rows = {r["name"]: r for r in P.describe(ls.LanguageSimilarityParams)}
    if params is not None:
        problems += [named((f"{LOC} -> {w}", m), rows) for w, m in ls.check_params(params)]
    if problems:
        raise RecipeError(problems)
    return params


def _sets(src: Path, params: Any) -> tuple[dict, dict[str, str]]:
    """The chosen pairs per language, and the languages skipped (too few usable pairs)."""
    from ..similarity import inputs, sample

    if _is_dataset(src):
        sets, skipped = sample.sample_sets(
            inputs.file_source(src),
            params.pivot,
            params.langs,
            columns=params.columns or None,
            text_column=params.text_column,
            lang_column=params.lang_column,
            id_column=params.id_column,
            max_sentences=params.max_sentences,
            min_sentences=params.min_sentences,
            seed=params.seed,
        )
        found = {*sets, *skipped}
    else:
        all_sets = inputs.read_parallel_dir(src, params.pivot, params.langs)
        found = set(all_sets)
        sets, skipped = sample.prepare(all_sets, params.max_sentences, params.min_sentences, params.seed)
    missing = [c for c in params.langs if c not in found and c != params.pivot]
    if missing:
        raise InputError(
            str(src),
            f"no parallel text with {params.pivot} for {', '.join(missing)} (found: {', '.join(sorted(found)) or 'none'})",
        )
    return sets, skipped


def run_language_similarity(args) -> int:
    from ..pipeline.cache import CallCache
    from ..reports import language_similarity as ls
    from ..similarity import render, scores

    params = _params(args)
    src = Path(args.parallel)
    if not src.exists():
        raise InputError(str(src), "not found")
    sets, skipped = _sets(src, params)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = None if args.no_cache else CallCache(Path(args.cache) if args.cache else out / ".cache" / "vectors.sqlite")
    try:
        result = scores.build_report(
            sets,
            ls.load_encoder(params, Path.cwd(), params.device),
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
    _echo_result(result, params, out, render.write(result, out, params.name))
    return 0


def _echo_result(result: dict[str, Any], params: Any, out: Path, summary: dict[str, Any]) -> None:
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


KINDS = [_add_language_similarity]
