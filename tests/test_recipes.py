"""Every ready recipe under recipes/ must validate (without loading models; packaged prompt templates and
exemplars are found by name), and the demo must run (slow: it needs the packaged models)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlbuild.recipe import load_recipe

RECIPES = sorted((Path(__file__).resolve().parent.parent / "recipes").glob("*.toml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_validates(path):
    r = load_recipe(path)
    assert r.dataset.name and r.source is not None


@pytest.mark.slow  # the packaged models (lid.176, bergamot-en-pt, multilingual-e5-small, gemma-3-270m)
def test_demo_runs_end_to_end_with_a_limit(tmp_path):
    from mlbuild.pipeline.runner import Runner

    demo = next(p for p in RECIPES if p.name == "demo.toml")
    res = Runner(load_recipe(demo), tmp_path / "out", quiet=True, limit=6).run()
    assert res.dataset_dir.joinpath("README.md").is_file()
    assert res.manifest["rows"] > 0
