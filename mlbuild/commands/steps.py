"""``mlbuild steps [NAME]``: list registered sources, steps and reports with their parameters."""

from __future__ import annotations

from ..cli import echo
from ..errors import RecipeError
from ..pipeline import params as P
from ..pipeline import registry


def register(sub) -> None:
    p = sub.add_parser("steps", help="list registered sources, steps and reports, with parameters and docs")
    p.add_argument("name", nargs="?", help="show one component in full")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.name:
        for kind in ("source", "step", "report"):
            if args.name in registry.known(kind):
                cls = registry.lookup(kind, args.name)
                echo(f"{cls.name} ({kind})\n")
                echo(cls.doc())
                echo("\nparameters:")
                for row in P.describe(cls.Params):
                    flag = "required" if row["required"] else f"default {row['default']!r}"
                    rt = ", runtime-only" if row["runtime"] else ""
                    echo(f"  {row['name']}: {row['type']} ({flag}{rt}) {row['doc']}")
                return 0
        try:
            registry.lookup("step", args.name)
        except KeyError as e:
            raise RecipeError(str(e).strip("'\"")) from None
    for kind in ("source", "step", "report"):
        echo(f"{kind}s:")
        for name, cls in registry.known(kind).items():
            first = (cls.doc().splitlines() or [""])[0]
            names = ", ".join(r["name"] for r in P.describe(cls.Params))
            echo(f"  {name:28s} {first.split(':', 1)[-1].strip()[:80]}")
            echo(f"  {'':28s} params: {names}")
    return 0
