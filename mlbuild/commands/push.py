"""``mlbuild push OUTDIR --repo-id ORG/NAME``: publish a built version to the Hugging Face Hub as one
commit tagged ``v<version>`` (``--dry-run`` lists what would go, touching nothing)."""

from __future__ import annotations

from ..cli import echo
from ..publish import hub


def register(sub) -> None:
    p = sub.add_parser(
        "push",
        help="publish a built dataset version to the Hugging Face Hub, tagged v<version>",
        description="Upload OUT/<name>/<version>/ (data, card, manifest, resolved recipe, reports) "
        "as one commit and tag it v<version>. The token comes from HF_TOKEN or "
        "`hf auth login`. Rerun the same command to resume a failed push.",
    )
    p.add_argument("outdir", help="the built version folder, OUT/<name>/<version>")
    p.add_argument("--repo-id", required=True, help="dataset repo on the Hub, ORG/NAME")
    p.add_argument("--private", action="store_true", help="create the repo private (when it does not exist yet)")
    p.add_argument("--revision", default=None, help="branch to commit to (default: main; created if missing)")
    p.add_argument(
        "--create-pr",
        action="store_true",
        help="open a pull request instead of committing; rerun push after merging to tag the version",
    )
    p.add_argument("--include-rejects", action="store_true", help="also upload rejects/ (left out by default)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list every file and its size, the commit message and the tag; touch nothing",
    )
    p.add_argument("--retries", type=int, default=hub.RETRIES, help=f"retries per step (default {hub.RETRIES})")
    p.add_argument(
        "--stall-timeout",
        type=float,
        default=hub.STALL_S,
        metavar="SECONDS",
        help=f"a request with no progress for this long is retried (default {hub.STALL_S:.0f})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    p.set_defaults(func=run)


def run(args) -> int:
    hub.quiet_http_logs(getattr(args, "debug", False))
    plan = hub.plan_push(
        args.outdir,
        args.repo_id,
        revision=args.revision,
        private=args.private,
        create_pr=args.create_pr,
        include_rejects=args.include_rejects,
    )
    if args.dry_run:
        print_plan(plan)
        return 0
    res = hub.push(plan, retries=args.retries, quiet=args.quiet, stall=args.stall_timeout)
    if res.status == "unchanged":
        echo(f"{plan.repo_id} already has {res.tag} with this fingerprint ({plan.fingerprint[:16]}); nothing to push")
        echo(f"  {res.url}")
        return 0
    resumed = f", {res.resumed_files} of them uploaded by an earlier attempt" if res.resumed_files else ""
    echo(
        f"pushed {plan.name} {plan.version}: {len(plan.files)} files, {hub.human(res.bytes)}{resumed}; "
        f"commit {res.commit[:12] if res.commit else '-'}"
    )
    if res.deleted:
        echo(f"  removed {len(res.deleted)} stale file(s) of an earlier version")
    if res.status == "pr-opened":
        echo(f"  opened a pull request: {res.pr_url}")
        echo(f"  {res.tag} is not tagged yet: after merging, run the same command without --create-pr to tag it")
        return 0
    echo(f"  tagged {res.tag}: {res.url}")
    return 0


def print_plan(plan: hub.PushPlan) -> None:
    width = max((len(f.path) for f in plan.files), default=10)
    branch = f"a pull request against {plan.revision}" if plan.create_pr else f"branch {plan.revision}"
    echo("dry run: nothing is uploaded, nothing on the Hub is read or changed")
    echo(f"repo:    datasets/{plan.repo_id} ({branch}{', created private if new' if plan.private else ''})")
    echo(f"dataset: {plan.name} {plan.version}, fingerprint {plan.fingerprint}")
    echo(f"files ({len(plan.files)}, {hub.human(plan.total_bytes)}):")
    for f in plan.files:
        echo(f"  {f.path:<{width}}  {hub.human(f.size):>9}")
    if plan.skipped:
        why = (
            "hidden files never go"
            if plan.include_rejects
            else "rejects/ needs --include-rejects; hidden files never go"
        )
        echo(
            f"left out ({len(plan.skipped)}: {why}): {', '.join(plan.skipped[:6])}"
            f"{' ...' if len(plan.skipped) > 6 else ''}"
        )
    echo(f"commit:  {plan.commit_message}")
    for line in plan.commit_description.strip().splitlines():
        echo(f"         {line}".rstrip())
    echo(f"tag:     {plan.tag}" + ("  (after the pull request is merged and push is rerun)" if plan.create_pr else ""))
    echo(
        f"also:    files of an earlier version under {', '.join(d + '/' for d in hub.MANAGED_DIRS)} that this "
        "version lacks are deleted in the same commit"
    )
