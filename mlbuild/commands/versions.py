"""``mlbuild versions --repo-id ORG/NAME``: the versions published on the Hub (tags ``v*``), each with
the fingerprint, row count and build date read from its ``manifest.json``."""

from __future__ import annotations

import json

from ..cli import echo
from ..publish import hub


def register(sub) -> None:
    p = sub.add_parser("versions", help="list the versions of a dataset published on the Hub, with fingerprints")
    p.add_argument("--repo-id", required=True, help="dataset repo on the Hub, ORG/NAME")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    p.set_defaults(func=run)


def run(args) -> int:
    hub.quiet_http_logs(getattr(args, "debug", False))
    versions = hub.list_versions(args.repo_id)
    if args.json:
        for v in versions:
            echo(json.dumps(v.__dict__, sort_keys=True))
        return 0
    if not versions:
        echo(f"{args.repo_id}: no published versions (no v* tags)")
        return 0
    echo(f"{'TAG':<12} {'FINGERPRINT':<18} {'ROWS':>9}  {'BUILT':<25} {'COMMIT':<12} NOTE")
    for v in versions:
        rows = "-" if v.rows is None else str(v.rows)
        echo(
            f"{v.tag:<12} {(v.fingerprint or '-')[:16]:<18} {rows:>9}  {(v.created or '-'):<25} "
            f"{v.commit[:12]:<12} {v.note}".rstrip()
        )
    return 0
