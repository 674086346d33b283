from __future__ import annotations

import json
import subprocess
import sys

from mlbuild.cli import main

RECIPE = """
[dataset]
name = "cli"
version = "0.1.0"

[source]
uses = "jsonl.v1"
path = "rows.jsonl"
text_columns = ["text"]

[[steps]]
id = "lid"
uses = "langid.v1"
column = "text"
model = "{model}"
"""


def test_run_inspect_steps(write_recipe, tiny_lid, tmp_path, capsys):
    rows = "".join(json.dumps({"text": t}) + "\n" for t in ["the cat sits on the mat", "o gato está no tapete"])
    path = write_recipe(RECIPE.format(model=tiny_lid), {"rows.jsonl": rows})
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "dataset: " in out and "2 rows" in out
    assert main(["inspect", str(tmp_path / "out" / "cli" / "0.1.0")]) == 0
    out = capsys.readouterr().out
    assert "lid" in out and "langid.v1" in out and "fingerprint" in out
    assert main(["steps"]) == 0
    out = capsys.readouterr().out
    assert "langid.v1" in out and "jsonl.v1" in out
    assert main(["steps", "langid.v1"]) == 0
    assert "on_fail" in capsys.readouterr().out


def test_input_error_is_one_clean_line_exit_2(write_recipe, tiny_lid, tmp_path):
    path = write_recipe(RECIPE.format(model=tiny_lid), {"rows.jsonl": '{"text": "ok"}\n{"text": \n'})
    p = subprocess.run(
        [sys.executable, "-m", "mlbuild.cli", "run", str(path), "--out", str(tmp_path / "o"), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2
    assert p.stderr.strip().startswith("error: ") and "rows.jsonl:2" in p.stderr
    assert "Traceback" not in p.stderr
    p = subprocess.run(
        [sys.executable, "-m", "mlbuild.cli", "--debug", "run", str(path), "--out", str(tmp_path / "o"), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert p.returncode != 0 and "Traceback" in p.stderr


def test_runtime_failure_exit_1(write_recipe, tmp_path, capsys):
    path = write_recipe(RECIPE.format(model=tmp_path / "not-a-model.ftz"), {"rows.jsonl": '{"text": "ok"}\n'})
    (tmp_path / "not-a-model.ftz").write_text("garbage")
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "lid (langid.v1)" in err and "setup failed" in err


def test_unknown_step_in_steps_command(capsys):
    assert main(["steps", "langid.v2"]) == 2
    assert "did you mean 'langid.v1'" in capsys.readouterr().err
