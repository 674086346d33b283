"""No row lost, no column that lies, nothing half-done: the regressions of the integrity issue that live
in the runner and the writer (splits from a column, --limit, versions, locks, swaps, locks files,
the datasets cache, report names)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from mlbuild.cli import main
from mlbuild.errors import MlbuildError, RecipeError
from mlbuild.pipeline.runner import Runner
from mlbuild.recipe import load_recipe

BASE = """
[dataset]
name = "{name}"
version = "1.0.0"

[source]
uses = "jsonl.v1"
path = "rows.jsonl"
text_columns = ["text"]
"""


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def data_rows(d: Path) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p) for p in sorted((d / "data").rglob("*.parquet"))], how="diagonal_relaxed")


def test_split_column_without_splits_takes_the_column_values(write_recipe, tmp_path):
    rows = [{"text": f"t{i}", "split": s} for i, s in enumerate(["train", "test", "test", "validation"])]
    path = write_recipe(BASE.format(name="sc") + '\n[output]\nsplit_column = "split"\n', {"rows.jsonl": jsonl(rows)})
    res = Runner(load_recipe(path), tmp_path / "out", quiet=True).run()
    assert res.manifest["configs"] == {"default": {"test": 2, "train": 1, "validation": 1}}
    assert res.manifest["rows"] == 4
    import datasets

    ds = datasets.load_dataset(str(res.dataset_dir), "default")
    assert {k: v.num_rows for k, v in ds.items()} == {"train": 1, "test": 2, "validation": 1}
    assert "split" not in ds["test"].column_names


def test_split_column_values_outside_declared_splits_refused_before_any_step(write_recipe, tmp_path):
    rows = [{"text": "a", "split": "train"}, {"text": "b", "split": "dev"}]
    text = BASE.format(name="sc2") + '\n[output]\nsplit_column = "split"\nsplits = ["train", "test"]\n'
    path = write_recipe(text, {"rows.jsonl": jsonl(rows)})
    with pytest.raises(RecipeError, match=r"column 'split' holds \['dev'\] \(first at row 000000002\), not in splits"):
        Runner(load_recipe(path), tmp_path / "out", quiet=True).run()


BAD_LINES = [
    {"text": "ok 1"},
    {"text": ""},
    {"text": "ok 2"},
    {"text": 5},
    {"text": "ok 3"},
]


def test_limit_counts_input_records_before_parsing(write_recipe, tmp_path, capsys):
    path = write_recipe(BASE.format(name="lim"), {"rows.jsonl": jsonl(BAD_LINES * 3)})
    res = Runner(load_recipe(path), tmp_path / "out", quiet=True, limit=4).run()
    src = res.manifest["steps"][0]
    # the first 4 records: 2 good, 2 rejected, nothing cut and counted nowhere
    assert (src["rows_in"], src["rows_out"], src["dropped"]) == (4, 2, {"empty_text": 1, "wrong_type": 1})
    assert len((res.dataset_dir / "rejects" / "00-source.jsonl").read_text().splitlines()) == 2
    assert main(["run", str(path), "--out", str(tmp_path / "o2"), "--limit", "-1"]) == 2
    assert "--limit -1: expected 0 or more input records" in capsys.readouterr().err


def test_changed_recipe_under_a_version_is_refused_before_the_first_step(write_recipe, tmp_path, tiny_lid):
    rows = jsonl([{"text": "the cat sits on the mat"}] * 3)
    step = f'\n[[steps]]\nuses = "langid.v1"\ncolumn = "text"\nmodel = "{tiny_lid}"\n'
    path = write_recipe(BASE.format(name="v") + step, {"rows.jsonl": rows})
    Runner(load_recipe(path), tmp_path / "out", quiet=True).run()
    changed = write_recipe(BASE.format(name="v") + step + "min_score = 0.5\n", {"rows.jsonl": rows}, name="c.toml")
    work = tmp_path / "out" / ".mlbuild" / "v" / "1.0.0"
    before = sorted(p.name for p in work.iterdir())
    with pytest.raises(RecipeError, match="already holds version 1.0.0 built from a different recipe"):
        Runner(load_recipe(changed), tmp_path / "out", quiet=True).run()
    assert sorted(p.name for p in work.iterdir()) == before  # no stage was started
    # the same recipe again: up to date at once
    again = Runner(load_recipe(path), tmp_path / "out", quiet=True).run()
    assert again.up_to_date


def test_a_second_run_into_the_same_version_is_told_who_holds_it(write_recipe, tmp_path):
    from mlbuild.pipeline.lock import OutputLock

    path = write_recipe(BASE.format(name="lk"), {"rows.jsonl": jsonl([{"text": "a"}])})
    target = tmp_path / "out" / "lk" / "1.0.0"
    code = (
        "import sys, time; from pathlib import Path; from mlbuild.pipeline.lock import OutputLock\n"
        f"with OutputLock(Path({str(target)!r})):\n    print('held', flush=True); time.sleep(30)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(MlbuildError, match=rf"is being built by another run \(pid {holder.pid} on "):
            Runner(load_recipe(path), tmp_path / "out", quiet=True).run()
    finally:
        holder.kill()
        holder.wait()
    with OutputLock(target):  # released when its holder died
        pass
    assert Runner(load_recipe(path), tmp_path / "out", quiet=True).run().manifest["rows"] == 1


def test_overwrite_swaps_versions_without_a_moment_of_none(write_recipe, tmp_path, monkeypatch):
    from mlbuild.publish import swap

    path = write_recipe(BASE.format(name="sw"), {"rows.jsonl": jsonl([{"text": "old"}])})
    out = tmp_path / "out"
    Runner(load_recipe(path), out, quiet=True).run()
    target = out / "sw" / "1.0.0"
    (tmp_path / "rows.jsonl").write_text(jsonl([{"text": "new"}, {"text": "newer"}]))
    # where the atomic exchange is missing, and the run dies between the two renames...
    monkeypatch.setattr(swap, "_exchange", lambda a, b: False)
    real_rename = Path.rename

    def dying_rename(self, dst):
        if Path(self).name.endswith(".partial"):
            raise KeyboardInterrupt("killed between the renames")
        return real_rename(self, dst)

    monkeypatch.setattr(Path, "rename", dying_rename)
    with pytest.raises(KeyboardInterrupt):
        Runner(load_recipe(path), out, quiet=True, overwrite=True).run()
    monkeypatch.setattr(Path, "rename", real_rename)
    assert not target.exists() and swap.aside(target).exists()  # the old version is aside, not lost
    swap.recover(target)
    assert data_rows(target)["text"].to_list() == ["old"]
    # the normal way: the new version replaces the old one
    monkeypatch.undo()
    res = Runner(load_recipe(path), out, quiet=True, overwrite=True).run()
    assert data_rows(res.dataset_dir)["text"].to_list() == ["new", "newer"]
    assert not swap.aside(target).exists()


def test_recipe_lock_runs_where_it_sits_and_reproduces_the_fingerprint(write_recipe, tmp_path, tiny_lid):
    text = (
        BASE.format(name="lock").replace('path = "rows.jsonl"', 'path = "${vars.data}/rows.jsonl"')
        + '\n[vars]\ndata = "data"\n'
        + f'\n[[steps]]\nuses = "langid.v1"\ncolumn = "text"\nmodel = "{tiny_lid}"\n'
    )
    path = write_recipe(text, {"data/rows.jsonl": jsonl([{"text": "the cat sits on the mat"}])})
    res = Runner(load_recipe(path), tmp_path / "out", quiet=True).run()
    lock = res.dataset_dir / "recipe.lock.toml"
    body = lock.read_text()
    assert "../../../data/rows.jsonl" in body and "${vars." not in body
    # from another folder, into another out root: same fingerprint
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cwd = os.getcwd()
    os.chdir(elsewhere)
    try:
        again = Runner(load_recipe(lock), tmp_path / "out2", quiet=True).run()
    finally:
        os.chdir(cwd)
    assert again.fingerprint == res.fingerprint
    # and where it sits, it is the same version: up to date
    assert Runner(load_recipe(lock), tmp_path / "out", quiet=True).run().up_to_date


def test_two_builds_with_one_version_folder_name_load_their_own_rows(write_recipe, tmp_path):
    """datasets caches a local folder by its name ('1.0.0'), the config and the card's YAML: the card
    carries the fingerprint, so each build (and a rebuild with --overwrite) loads its own rows."""
    import datasets

    a = write_recipe(BASE.format(name="a"), {"rows.jsonl": jsonl([{"text": "from a"}])}, name="a.toml")
    da = Runner(load_recipe(a), tmp_path / "out", quiet=True).run().dataset_dir
    (tmp_path / "rows.jsonl").write_text(jsonl([{"text": "from b"}, {"text": "b again"}]))
    b = write_recipe(BASE.format(name="b"), None, name="b.toml")
    db = Runner(load_recipe(b), tmp_path / "out", quiet=True).run().dataset_dir
    assert datasets.load_dataset(str(da), "default", split="train")["text"] == ["from a"]
    assert datasets.load_dataset(str(db), "default", split="train")["text"] == ["from b", "b again"]
    (tmp_path / "rows.jsonl").write_text(jsonl([{"text": "b rebuilt"}]))
    db2 = Runner(load_recipe(b), tmp_path / "out", quiet=True, overwrite=True).run().dataset_dir
    assert datasets.load_dataset(str(db2), "default", split="train")["text"] == ["b rebuilt"]


REPORTING = '''
from __future__ import annotations
from dataclasses import dataclass
from mlbuild.pipeline.base import Step, StepOutput, StepReport
from mlbuild.pipeline.params import param
from mlbuild.pipeline.registry import register

@dataclass
class P:
    tag: str = param("x")

@register("step")
class Tagger(Step):
    """tagger.v1: counts rows, reports them."""
    name = "tagger.v1"
    Params = P

    def process(self, batch):
        return StepOutput(batch, None, {"seen": batch.height})

    def finalize(self, stats):
        return StepReport(summary=f"{self.params.tag}: {stats['seen']} rows", data={"tag": self.params.tag})
'''


def test_two_steps_of_one_kind_keep_their_own_reports(write_recipe, tmp_path, monkeypatch):
    (tmp_path / "tagplugin.py").write_text(REPORTING)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    importlib.import_module("tagplugin")
    steps = '\n[[steps]]\nid = "first"\nuses = "tagger.v1"\ntag = "one"\n\n[[steps]]\nid = "second"\nuses = "tagger.v1"\ntag = "two"\n'
    path = write_recipe(BASE.format(name="rep") + steps, {"rows.jsonl": jsonl([{"text": "a"}, {"text": "b"}])})
    res = Runner(load_recipe(path), tmp_path / "out", quiet=True).run()
    reports = res.dataset_dir / "reports"
    assert json.loads((reports / "first.json").read_text()) == {"tag": "one"}
    assert json.loads((reports / "second.json").read_text()) == {"tag": "two"}
    card = (res.dataset_dir / "README.md").read_text()
    assert "one: 2 rows" in card and "two: 2 rows" in card


def test_published_files_carry_no_local_absolute_path(write_recipe, tmp_path, tiny_lid):
    """Model paths in the manifest and card: relative to the recipe folder, or the name alone for a file
    elsewhere (the content hash in `revision` pins it); the machine's directories never reach the Hub."""
    import shutil

    (tmp_path / "models").mkdir()
    shutil.copy(tiny_lid, tmp_path / "models" / "lid.ftz")
    rows = [{"text": "the cat sits on the mat"}, {"text": "o gato está no tapete"}]
    steps = (
        '\n[[steps]]\nid = "a"\nuses = "langid.v1"\ncolumn = "text"\nmodel = "models/lid.ftz"\n'
        f'\n[[steps]]\nid = "b"\nuses = "langid.v1"\ncolumn = "text"\nmodel = "{tiny_lid}"\non_fail = "keep"\n'
    )
    path = write_recipe(BASE.format(name="paths") + steps, {"rows.jsonl": jsonl(rows)})
    res = Runner(load_recipe(path), tmp_path / "out", quiet=True).run()
    models = res.manifest["models"]
    assert models["a.lid"]["id"] == "models/lid.ftz" and models["b.lid"]["id"] == Path(tiny_lid).name
    assert models["a.lid"]["revision"].startswith("sha256:")
    for f in ("README.md", "manifest.json"):
        text = (res.dataset_dir / f).read_text()
        assert str(tmp_path) not in text and str(Path(tiny_lid).parent) not in text, f
