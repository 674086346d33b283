"""The installed package works on its own: build the wheel, install it into a folder outside the source
tree, and run a recipe with it from elsewhere. Card template, prompt templates and exemplars must come
from the wheel (``mlbuild/data/``), not from a checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

RECIPE = """
[dataset]
name = "from-wheel"
version = "0.1.0"
license = "cc-by-4.0"
description = "Built by an installed wheel."

[source]
uses = "jsonl.v1"
path = "rows.jsonl"
text_columns = ["text"]
id_column = "id"
"""

SYNTH = """
[[steps]]
uses = "synthesize_queries.v1"
passage_column = "text"
passage_lang = "en"
engine = "openai"
model = "m"
base_url = "http://127.0.0.1:9/v1"
template = "prompts/summarize-then-ask.v1.j2"
exemplars = "exemplars/swim.v1.jsonl"
lid_model = ""
"""


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the source (no build/ or egg-info left in the checkout) and
    installed with ``pip install --target``; returns the target folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT / "mlbuild", src / "mlbuild", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src)], cwd=tmp)
    (wheel,) = (tmp / "dist").glob("mlbuild-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in (
        "mlbuild/data/data_cards/default.md.j2",
        "mlbuild/data/prompts/summarize-then-ask.v1.j2",
        "mlbuild/data/exemplars/swim.v1.jsonl",
    ):
        assert data in names, f"{data} missing from {wheel.name}"
    target = tmp / "site"
    _run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], cwd=tmp)
    return target


def test_installed_wheel_runs_a_recipe_outside_the_source_tree(installed, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(["the cat sits on the mat", "o gato está no tapete"])]
    (work / "rows.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (work / "recipe.toml").write_text(RECIPE, encoding="utf-8")
    (work / "synth.toml").write_text(RECIPE + SYNTH, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(installed)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    py = [sys.executable]

    where = _run([*py, "-c", "import mlbuild; print(mlbuild.__file__)"], cwd=work, env=env).stdout.strip()
    assert Path(where).resolve().is_relative_to(installed.resolve()), where
    assert not Path(where).resolve().is_relative_to(ROOT)

    # packaged prompt template and exemplars are found by name from the wheel (validation reads them)
    _run([*py, "-m", "mlbuild.cli", "validate", "synth.toml"], cwd=work, env=env)
    _run([*py, "-m", "mlbuild.cli", "run", "recipe.toml", "--out", "out", "--quiet"], cwd=work, env=env)
    d = work / "out" / "from-wheel" / "0.1.0"
    card = (d / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "license: cc-by-4.0" in card
    assert "# from-wheel" in card and "## Configurations and splits" in card  # the packaged default body
    assert json.loads((d / "manifest.json").read_text(encoding="utf-8"))["rows"] == 2
    assert list(d.glob("data/*/*.parquet"))
