"""Kill ``mlbuild run`` mid-step (SIGKILL, no cleanup) and rerun: same fingerprint, same rows, no
row lost or duplicated, and no shard or model call repeated once its result was stored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

PLUGIN = '''
from __future__ import annotations
import os, time
from dataclasses import dataclass
import polars as pl
from mlbuild.pipeline.base import Step, StepOutput
from mlbuild.pipeline.cache import cached_map
from mlbuild.pipeline.params import param
from mlbuild.pipeline.registry import register

@dataclass
class SlowParams:
    column: str = param()
    delay: float = param(0.0, runtime=True)
    batch_size: int = param(4, runtime=True)

@register("step")
class SlowUpper(Step):
    """slow_upper.v1: uppercase a column through a (counted) fake model call."""
    name = "slow_upper.v1"
    Params = SlowParams
    rows_per_shard = 200  # a model step asks for small shards: the source's one shard is cut in three

    def input_columns(self):
        return [self.params.column]

    def output_columns(self, columns):
        return [*columns, "upper"]

    def _model(self, texts):
        with open(os.environ["CALL_LOG"], "a") as f:
            for t in texts:
                f.write(t + "\\n")
        time.sleep(self.params.delay)
        return [t.upper() for t in texts]

    def process(self, batch):
        texts = batch[self.params.column].to_list()
        out = cached_map(self.ctx.cache, {"model": "upper", "v": 1}, texts, self._model, self.params.batch_size)
        return StepOutput(batch.with_columns(pl.Series("upper", out)))
'''

RECIPE = """
[dataset]
name = "resume"
version = "1.0.0"

[source]
uses = "jsonl.v1"
path = "rows.jsonl"

[[steps]]
id = "slow"
uses = "slow_upper.v1"
column = "text"
delay = {delay}
"""


def _env(tmp_path: Path, log: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env["MLBUILD_PLUGINS"] = "slowplugin"
    env["CALL_LOG"] = str(log)
    return env


def _run(tmp_path: Path, recipe: Path, out: Path, env: dict[str, str], *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mlbuild.cli", "run", str(recipe), "--out", str(out), "--quiet", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_mid_second_shard(proc: subprocess.Popen, done_markers, log: Path) -> None:
    """SIGKILL the run once a shard is finished and the next one has started calling the model."""
    deadline = time.time() + 120
    while time.time() < deadline:
        calls = log.read_text().count("\n") if log.exists() else 0
        if calls > 200 + 8 and done_markers():
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_kill_mid_step_then_resume(tmp_path):
    (tmp_path / "slowplugin.py").write_text(PLUGIN)
    n = 600  # one source shard, three shards of 200 rows in the slow step
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(n)))
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE.format(delay=0.03))
    out = tmp_path / "out"
    log = tmp_path / "calls.log"
    env = _env(tmp_path, log)

    proc = _run(tmp_path, recipe, out, env)
    work = out / ".mlbuild" / "resume" / "1.0.0"
    kill_mid_second_shard(proc, lambda: list(work.glob("01-slow-*/shard-*.done")), log)
    calls_before = log.read_text().splitlines()
    assert not (out / "resume" / "1.0.0").exists()  # no half-written dataset
    assert 200 < len(calls_before) < n

    proc = _run(tmp_path, recipe, out, env)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    calls_all = log.read_text().splitlines()
    # every text reached the model; the only repeats are the one batch that was in flight at the kill
    # (its result was never stored); nothing that was stored was redone
    assert set(calls_all) == {f"row {i}" for i in range(n)}
    assert len(calls_all) - n <= 4
    d = out / "resume" / "1.0.0"
    rows = pl.read_parquet(list((d / "data").rglob("*.parquet")))
    assert rows.height == n and rows["row_id"].n_unique() == n
    assert sorted(rows["upper"].to_list()) == sorted(f"ROW {i}" for i in range(n))

    # an uninterrupted run from scratch gives the same fingerprint
    fresh = tmp_path / "fresh"
    env2 = _env(tmp_path, tmp_path / "calls2.log")
    proc = _run(tmp_path, recipe, fresh, env2)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    fp1 = json.loads((d / "manifest.json").read_text())["fingerprint"]
    fp2 = json.loads((fresh / "resume" / "1.0.0" / "manifest.json").read_text())["fingerprint"]
    assert fp1 == fp2


def test_resume_with_another_shard_size_loses_and_repeats_no_row(tmp_path):
    """Killed with 200-row shards, resumed with --shard-rows 150: shard boundaries are not part of any
    result, so the finished version holds every row once and has the fingerprint of a clean run."""
    (tmp_path / "slowplugin.py").write_text(PLUGIN)
    n = 600
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(n)))
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE.format(delay=0.03))
    out, log = tmp_path / "out", tmp_path / "calls.log"
    env = _env(tmp_path, log)
    proc = _run(tmp_path, recipe, out, env)
    work = out / ".mlbuild" / "resume" / "1.0.0"
    kill_mid_second_shard(proc, lambda: list(work.glob("01-slow-*/shard-*.done")), log)

    proc = _run(tmp_path, recipe, out, env, "--shard-rows", "150")
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    d = out / "resume" / "1.0.0"
    rows = pl.read_parquet(list((d / "data").rglob("*.parquet")))
    assert rows.height == n and rows["row_id"].n_unique() == n
    assert sorted(rows["upper"].to_list()) == sorted(f"ROW {i}" for i in range(n))
    fresh = tmp_path / "fresh"
    proc = _run(tmp_path, recipe, fresh, _env(tmp_path, tmp_path / "calls2.log"))
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    fp = [json.loads((o / "resume" / "1.0.0" / "manifest.json").read_text())["fingerprint"] for o in (out, fresh)]
    assert fp[0] == fp[1]
