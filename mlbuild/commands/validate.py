"""``mlbuild validate RECIPE...``: check recipes without loading any model."""

from __future__ import annotations

from ..cli import echo
from ..errors import RecipeError
from ..recipe import load_recipe


def register(sub) -> None:
    p = sub.add_parser("validate", help="check recipes without loading models (exit 2 on errors)")
    p.add_argument("recipes", nargs="+", metavar="RECIPE")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def run(args) -> int:
    code = 0
    for path in args.recipes:
        try:
            r = load_recipe(path, args.overrides)
        except RecipeError as e:
            echo(f"error: {e}", err=True)
            code = 2
            continue
        echo(
            f"{path}: ok ({r.source.uses} -> {' -> '.join(s.uses for s in r.steps) or 'no steps'}; "
            f"{r.dataset.name} {r.dataset.version})"
        )
    return code
