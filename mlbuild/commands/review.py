"""``mlbuild review``: the span-projection review queue.

- ``mlbuild review export OUTDIR --to FILE.jsonl``: failed and low-confidence rows of a built dataset
  (and those ``project_spans.v1`` dropped to ``rejects/``), one JSON line each, with the source and the
  translation marked ``[1]..[/1]`` for a person to fix in a text editor.
- ``mlbuild review import FILE.jsonl [--dataset OUTDIR] [--version X.Y.Z]``: fold the corrected lines back
  in as a new dataset version (next patch version by default) whose card counts them as human-corrected.

See :mod:`mlbuild.publish.review` for the file format."""

from __future__ import annotations

from ..cli import echo
from ..publish import review


def register(sub) -> None:
    p = sub.add_parser("review", help="export the span-projection review queue, import corrections")
    rs = p.add_subparsers(dest="review_command", metavar="ACTION", required=True)
    e = rs.add_parser("export", help="write failed and low-confidence rows to a JSONL file to fix by hand")
    e.add_argument("outdir", help="a built dataset: OUT/<name>/<version>")
    e.add_argument("--to", required=True, metavar="FILE.jsonl")
    e.add_argument(
        "--min-confidence", type=float, default=None, help="also queue rows whose projection_confidence is below this"
    )
    e.add_argument("--step", default=None, help="id of the project_spans step (default: the last one)")
    e.set_defaults(func=run_export)
    i = rs.add_parser("import", help="fold corrected rows back in as a new dataset version")
    i.add_argument("file", metavar="FILE.jsonl")
    i.add_argument("--dataset", default=None, help="the dataset the queue came from (default: named in the file)")
    i.add_argument("--version", default=None, help="the new version (default: next patch version)")
    i.add_argument("--overwrite", action="store_true", help="replace that version if it exists")
    i.add_argument("--strict", action="store_true", help="fail when a line's markers are still broken")
    i.set_defaults(func=run_import)


def run_export(args) -> int:
    counts = review.export_queue(args.outdir, args.to, min_confidence=args.min_confidence, step_id=args.step)
    total = sum(counts.values())
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "nothing to review"
    echo(f"{total} rows to review -> {args.to} ({detail})")
    return 0


def run_import(args) -> int:
    res = review.import_corrections(
        args.file, args.dataset, args.version, overwrite=args.overwrite, strict=args.strict
    )
    echo(f"dataset: {res.dataset_dir}")
    echo(
        f"  {res.corrected} rows human-corrected ({res.added_from_rejects} back from rejects/), "
        f"{res.unedited} lines left unedited, {len(res.invalid)} still broken"
    )
    for line, rid, problem in res.invalid[:20]:
        echo(f"  {args.file}:{line}: row {rid}: {problem}", err=True)
    return 0
