"""``mlbuild eval KIND ...``: evaluate what a build made. One kind today: ``retrieval``.

``mlbuild eval retrieval OUTDIR --retriever bm25 --retriever multilingual-e5-small --metrics ndcg@10
recall@100 mrr@10 --out DIR`` runs each retriever on each language subset of a built dataset (its
``mteb/`` or ``beir/`` layout), a folder in MTEB's retrieval layout, or a BEIR folder, and writes
``DIR/eval-retrieval.json|md|png`` and ``DIR/runs/<system>/<subset>.trec``. On a built dataset the
same files go to its ``reports/`` and the card (``README.md``) gets a ``Retrieval evaluation`` section
between markers, replaced on every rerun (``--no-card`` leaves the dataset untouched).

``mlbuild eval retrieval --run RUN [--run RUN2] --qrels QRELS`` scores TREC run files as trec_eval
does (the system is the run file's stem, the subset ``all``).

``--json`` prints ``{system: {subset: {metric: value}}}`` on stdout. Metric names: ir-measures notation
(nDCG@10, R@100, RR@10, AP, P@10, RR); lower-case and trec_eval spellings are accepted.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..cli import echo
from ..errors import InputError, RecipeError
from ..pipeline.params import param
from ._flags import add_param_flags, params_from_args


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a built dataset (retrieval)")
    kinds = p.add_subparsers(dest="eval_kind", metavar="KIND")
    _add_retrieval(kinds)

    def missing(args) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=missing)


LOC = "eval retrieval"


@dataclass
class EvalRetrievalParams:
    metrics: list[str] = param(
        ["nDCG@10", "R@100", "RR@10"], doc="ir-measures names (nDCG@10, R@100, RR@10, AP, P@10, RR)", min_items=1
    )
    depth: int = param(1000, doc="documents retrieved per query", ge=1, le=100_000)
    split: str | None = param(None, doc="split to evaluate (default: test, or the only one)")
    corpus_lang: str | None = param(None, doc="BM25 analyzer language when the layout does not record it", kind="lang")
    device: str = param("auto", doc="auto | cpu | cuda")
    batch_size: int = param(64, doc="texts per embedding batch", ge=1, le=100_000)


def _add_retrieval(kinds) -> None:
    p = kinds.add_parser(
        "retrieval",
        help="evaluate retrievers per language subset, or score TREC run files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", nargs="?", help="built dataset folder, MTEB-layout folder or BEIR folder")
    p.add_argument(
        "--retriever",
        action="append",
        metavar="SPEC",
        help="repeatable: bm25, multilingual-e5-small, or an embedding model folder / Hub id (default: bm25)",
    )
    p.add_argument("--out", default=None, metavar="DIR", help="where the JSON, Markdown, PNG and runs go")
    p.add_argument("--json", action="store_true", help="print {system: {subset: {metric: value}}} on stdout")
    p.add_argument("--run", action="append", metavar="RUN", help="TREC run file (repeatable); needs --qrels")
    p.add_argument("--qrels", default=None, help="TREC qrels (or BEIR qrels TSV) for --run")
    p.add_argument("--subset", action="append", metavar="NAME", help="evaluate only these subsets (repeatable)")
    p.add_argument("--work-dir", default=None, help="embedding cache and vectors (default: DIR/.cache, or a temp dir)")
    p.add_argument("--no-card", action="store_true", help="do not write into the dataset (reports/, README.md)")
    p.add_argument("--no-runs", action="store_true", help="do not write the TREC run files")
    p.add_argument("--quiet", action="store_true")
    add_param_flags(p.add_argument_group("evaluation parameters"), EvalRetrievalParams)
    p.set_defaults(func=run_retrieval)


def _check(args) -> EvalRetrievalParams:
    from ..evaluation.metrics import parse_metric

    params, problems = params_from_args(args, EvalRetrievalParams, LOC, Path.cwd())
    if args.run and args.dataset:
        problems.append((LOC, "give a dataset or --run/--qrels, not both"))
    if args.run and not args.qrels:
        problems.append(("--run", "needs --qrels"))
    if args.qrels and not args.run:
        problems.append(("--qrels", "needs --run"))
    if not args.run and not args.dataset:
        problems.append((LOC, "give a dataset folder, or --run RUN --qrels QRELS"))
    if args.run and args.retriever:
        problems.append(("--retriever", "retrievers run on a dataset; --run files are scored as they are"))
    for m in params.metrics if params is not None else []:
        try:
            parse_metric(m)
        except ValueError as e:
            problems.append((f"{LOC} -> metrics (--metrics)", str(e)))
    if problems or params is None:
        raise RecipeError(problems)
    return params


def run_retrieval(args) -> int:
    from ..evaluation import runner
    from ..evaluation.data import load_sets

    params = _check(args)
    say = (lambda msg: None) if (args.quiet or args.json) else (lambda msg: echo(msg, err=True))
    out = Path(args.out) if args.out else None
    if args.run:
        res = runner.evaluate_runs(args.run, args.qrels, params.metrics)
    else:
        dataset = Path(args.dataset)
        sets = load_sets(dataset, params.split, args.subset)
        if not sets:
            raise InputError(str(dataset), "no retrieval subset found")
        with tempfile.TemporaryDirectory(prefix="mlbuild-eval-") as tmp:
            work = Path(args.work_dir) if args.work_dir else (out / ".cache" if out else Path(tmp))
            res = runner.evaluate_sets(
                sets,
                args.retriever or ["bm25"],
                params.metrics,
                depth=params.depth,
                corpus_lang=params.corpus_lang,
                device=params.device,
                batch_size=params.batch_size,
                work_dir=work,
                base_dir=Path.cwd(),
                progress=say,
            )
        res.source = str(dataset)
        if (dataset / "manifest.json").is_file() and not args.no_card:
            manifest = json.loads((dataset / "manifest.json").read_text(encoding="utf-8"))
            runner.write_outputs(res, dataset / "reports", runs=False)
            runner.update_card(dataset / "README.md", runner.card_section(res, manifest.get("fingerprint")))
            say(f"card: {dataset / 'README.md'} (section 'Retrieval evaluation'), reports/{runner.REPORT_STEM}.*")
    if out is not None:
        files = runner.write_outputs(res, out, runs=not args.no_runs)
        say(f"wrote {len(files)} files under {out}")
    if args.json:
        echo(json.dumps(res.results, ensure_ascii=False))
    elif not args.quiet:
        echo(runner.markdown(res).rstrip())
    return 0
