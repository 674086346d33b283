"""``mlbuild run RECIPE``: build the dataset (resumable)."""

from __future__ import annotations

import os

from ..cli import echo
from ..recipe import load_recipe


def register(sub) -> None:
    p = sub.add_parser("run", help="run a recipe and write a versioned dataset")
    p.add_argument("recipe")
    p.add_argument("--out", default="out", help="output root (default: out/)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. steps.translate.num_beams=4 (repeatable)",
    )
    p.add_argument(
        "--limit", type=int, default=None, help="only the first N input records (lines, rows), rejected ones included"
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    p.add_argument("--executor", default="local", choices=["local", "ray"])
    p.add_argument("--ray-address", default=None, help="Ray cluster address (with --executor ray)")
    p.add_argument(
        "--work-dir",
        default=None,
        metavar="PATH|URL",
        help="checkpoints and model-call cache: a folder or an fsspec URL such as s3://bucket/prefix, "
        "so a run can resume on another machine (default: $MLBUILD_WORK_DIR, else OUT/.mlbuild)",
    )
    p.add_argument(
        "--shard-rows",
        type=int,
        default=None,
        metavar="N",
        help="rows per checkpoint shard at most (default 50000; model steps cut smaller ones); never changes results",
    )
    p.add_argument(
        "--shard-mb",
        type=int,
        default=None,
        metavar="MB",
        help="in-memory MB per checkpoint shard at most (default 64); never changes results",
    )
    p.add_argument("--no-resume", action="store_true", help="start from scratch (model-call cache is kept)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version built differently")
    p.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="load no model and write nothing: estimate the tokens (and cost, with a price table) of the "
        "model-backed steps from a sample of the source's rows",
    )
    p.add_argument(
        "--dry-run-rows",
        type=int,
        default=200,
        metavar="N",
        help="source rows the --dry-run estimate renders prompts for (default 200; 1 to 100000)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import RecipeError
    from ..pipeline.runner import Runner

    if args.limit is not None and args.limit < 0:
        raise RecipeError(f"--limit {args.limit}: expected 0 or more input records")
    for flag, v in (("--shard-rows", args.shard_rows), ("--shard-mb", args.shard_mb)):
        if v is not None and v < 1:
            raise RecipeError(f"{flag} {v}: expected 1 or more")
    if not 1 <= args.dry_run_rows <= 100_000:
        raise RecipeError(f"--dry-run-rows {args.dry_run_rows}: expected 1 to 100000")
    recipe = load_recipe(args.recipe, args.overrides)
    if args.dry_run:
        from ..accounting import estimate_recipe, render_estimate

        echo(render_estimate(estimate_recipe(recipe, sample_rows=args.dry_run_rows, limit=args.limit)))
        return 0
    opts = {"address": args.ray_address} if args.executor == "ray" else {}
    sizes = {}
    if args.shard_rows:
        sizes["shard_rows"] = args.shard_rows
    if args.shard_mb:
        sizes["shard_bytes"] = args.shard_mb << 20
    runner = Runner(
        recipe,
        args.out,
        resume=not args.no_resume,
        overwrite=args.overwrite,
        limit=args.limit,
        device=args.device,
        quiet=args.quiet,
        executor=args.executor,
        executor_options=opts,
        work_dir=args.work_dir or os.environ.get("MLBUILD_WORK_DIR") or None,
        **sizes,
    )
    res = runner.run()
    total = res.manifest["rows"]
    configs = ", ".join(f"{c} ({sum(s.values())})" for c, s in res.manifest["configs"].items())
    state = " (unchanged)" if res.up_to_date else ""
    echo(f"dataset{state}: {res.dataset_dir}")
    echo(
        f"  {total} rows; configs: {configs or 'none'}; fingerprint {res.fingerprint[:16]}; "
        f"{res.manifest['seconds']:.1f}s"
    )
    return 0
