"""Small guards on the tree itself: shared helper modules carry no dead public names, and tests that
need the packaged real models are marked ``slow`` (off in the default run, which must pass without them)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("module", ["langs", "text"])
def test_shared_helpers_have_no_unused_public_names(module):
    path = ROOT / "mlbuild" / f"{module}.py"
    names = [
        n.name
        for n in ast.parse(path.read_text(encoding="utf-8")).body
        if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_")
    ]
    users = [p for d in ("mlbuild", "scripts") for p in (ROOT / d).rglob("*.py") if p != path]
    text = "\n".join(p.read_text(encoding="utf-8") for p in users)
    unused = [n for n in names if not re.search(rf"\b{n}\b", text)]
    assert not unused, f"mlbuild/{module}.py: {unused} used nowhere in mlbuild/ or scripts/; remove them"


def test_the_demo_run_is_marked_slow():
    """It loads lid.176, bergamot-en-pt, multilingual-e5-small and gemma-3-270m (packaged models)."""
    import test_recipes

    marks = getattr(test_recipes.test_demo_runs_end_to_end_with_a_limit, "pytestmark", [])
    assert "slow" in {m.name for m in marks}
    assert "slow" not in {m.name for m in getattr(test_recipes.test_recipe_validates, "pytestmark", [])}
