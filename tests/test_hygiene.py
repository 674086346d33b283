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


def test_step_files_stay_small():
    """A large step keeps its parts in a package of its own (projection/, synthesis/, mining/)."""
    big = {
        p.name: n for p in (ROOT / "mlbuild" / "steps").glob("*.py") if (n := len(p.read_text().splitlines())) > 400
    }
    assert not big, f"step files over 400 lines: {big}"


def test_long_functions_say_why():
    """No function over 80 lines without a comment saying why (one containing '80 lines')."""
    long = []
    for path in (ROOT / "mlbuild").rglob("*.py"):
        src = path.read_text(encoding="utf-8")
        lines = src.splitlines()
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = lines[node.lineno - 1 : node.end_lineno]
                if len(body) > 80 and not any("80 lines" in line for line in body if line.strip().startswith("#")):
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({len(body)} lines)")
    assert not long, "functions over 80 lines without a reason in a comment:\n" + "\n".join(long)
