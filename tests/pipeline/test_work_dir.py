"""Checkpoints and the model-call cache on a URL (``--work-dir s3://...``, ``file://...``): the same
dataset as with the default work dir, and a run killed on one machine resumes on another (a fresh
out dir and a fresh local cache mirror) with no shard and no stored model call redone.

S3 is a local moto server (``s3_work`` in conftest.py); nothing leaves the machine."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import polars as pl
import pytest
from test_resume import PLUGIN, RECIPE, _env, kill_mid_second_shard

from mlbuild.errors import MlbuildError
from mlbuild.pipeline.cache import SegmentCache, namespace_key, open_cache
from mlbuild.pipeline.runner import Runner
from mlbuild.pipeline.store import RemotePath, work_path
from mlbuild.recipe import load_recipe


def upper(calls: list[str]):
    def fn(batch: list[str]) -> list[str]:
        calls.extend(batch)
        return [t.upper() for t in batch]

    return fn


def test_segment_cache_is_shared_by_machines(tmp_path):
    root = work_path(f"file://{tmp_path}/cache")
    assert isinstance(root, RemotePath) and isinstance(open_cache(root), SegmentCache)
    ns = {"model": "upper", "v": 1}
    a = SegmentCache(root, mirror=tmp_path / "a.sqlite")
    b = SegmentCache(root, mirror=tmp_path / "b.sqlite")  # another machine: its own mirror
    calls: list[str] = []
    assert a.map(ns, ["x", "y", "x"], upper(calls), batch_size=1) == ["X", "Y", "X"]
    assert b.map(ns, ["x", "y", "z"], upper(calls)) == ["X", "Y", "Z"]
    assert calls == ["x", "y", "z"]  # b found a's two calls, made only its own
    segments = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(segments) == 3 and all(s.endswith(".jsonl") for s in segments)
    # a writer killed mid-write leaves a hidden temporary file, which readers skip
    (tmp_path / "cache" / f".{segments[0]}.tmp123").write_text('{"k": "broken')
    c = SegmentCache(root, mirror=tmp_path / "c.sqlite")
    assert c.sync() == 3
    key = namespace_key(ns)
    assert c.get_many(key, ["x", "y", "z", "w"]) == {"x": "X", "y": "Y", "z": "Z"}
    # a's mirror learns about b's segment at its next sync (every sync_seconds, or when asked)
    a.sync_seconds = 0
    assert a.get_many(key, ["z"]) == {"z": "Z"}


def test_segment_cache_compaction_keeps_every_record(tmp_path):
    root = work_path(f"file://{tmp_path}/cache")
    ns = {"model": "upper", "v": 1}
    a = SegmentCache(root, mirror=tmp_path / "a.sqlite")
    texts = [f"t{i}" for i in range(7)]
    a.map(ns, texts, upper([]), batch_size=1)  # 7 segments of one record
    b = SegmentCache(root, mirror=tmp_path / "b.sqlite")  # another reader, not synced yet
    assert a.compact(max_small=10) == 0  # few enough: left alone
    assert a.compact(max_small=3) == 7
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(files) == 1 and "-merged-" in files[0]
    key = namespace_key(ns)
    assert b.get_many(key, texts) == {t: t.upper() for t in texts}
    c = SegmentCache(root, mirror=tmp_path / "c.sqlite")
    calls: list[str] = []
    assert c.map(ns, [*texts, "new"], upper(calls)) == [t.upper() for t in texts] + ["NEW"]
    assert calls == ["new"]


def _rows(d: Path) -> pl.DataFrame:
    return pl.read_parquet(sorted((d / "data").rglob("*.parquet"))).sort("row_id")


def _recipe(tmp_path: Path, n: int, delay: float = 0.0) -> Path:
    (tmp_path / "slowplugin.py").write_text(PLUGIN)
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(n)))
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE.format(delay=delay))
    return recipe


@pytest.fixture(scope="module")
def _registered(tmp_path_factory):
    import importlib
    import sys

    d = tmp_path_factory.mktemp("plugin")
    (d / "slowplugin.py").write_text(PLUGIN)
    sys.path.insert(0, str(d))
    importlib.import_module("slowplugin")
    yield
    sys.path.remove(str(d))


@pytest.fixture
def slow_plugin(_registered, tmp_path, monkeypatch):
    """The slow_upper.v1 test step (from test_resume), registered in this process; returns its call log."""
    monkeypatch.setenv("CALL_LOG", str(tmp_path / "calls.log"))
    monkeypatch.setenv("MLBUILD_CACHE", str(tmp_path / "mirrors"))  # this machine's cache mirror
    return tmp_path / "calls.log"


@pytest.mark.parametrize("scheme", ["file", "s3"])
def test_url_work_dir_gives_the_same_dataset(tmp_path, slow_plugin, scheme, request):
    recipe = load_recipe(_recipe(tmp_path, 40))
    base = Runner(recipe, tmp_path / "default", quiet=True, shard_rows=16).run()
    if scheme == "s3":
        url = request.getfixturevalue("s3_work") + f"/{uuid.uuid4().hex}/work"
    else:
        url = f"file://{tmp_path}/shared/work"
    calls_before = len(slow_plugin.read_text().splitlines())
    runner = Runner(recipe, tmp_path / "remote", quiet=True, shard_rows=16, work_dir=url)
    res = runner.run()
    assert res.fingerprint == base.fingerprint
    assert _rows(res.dataset_dir).equals(_rows(base.dataset_dir))
    # the shards, markers and cache segments are under the URL; nothing of them is under OUT
    stage = next(p for p in (runner.work_root / "resume" / "1.0.0").iterdir() if p.name.startswith("01-slow-"))
    names = {p.name for p in stage.iterdir()}
    assert {"_SUCCESS.json", "shard-00000.parquet", "shard-00002.done"} <= names
    assert [p.name for p in (runner.work_root / "cache").iterdir()]
    assert not list((tmp_path / "remote" / ".mlbuild").rglob("*.parquet"))
    assert len(slow_plugin.read_text().splitlines()) - calls_before == 40  # another cache: computed again
    # a second run elsewhere with the same work dir finds every stage finished
    again = Runner(recipe, tmp_path / "elsewhere", quiet=True, shard_rows=16, work_dir=url).run()
    assert again.fingerprint == base.fingerprint
    assert len(slow_plugin.read_text().splitlines()) - calls_before == 40


def test_unusable_work_dir_is_a_clear_error(tmp_path, slow_plugin, s3_work):
    recipe = load_recipe(_recipe(tmp_path, 4))
    with pytest.raises(MlbuildError, match=r"work dir nosuch://bucket/x: .*nosuch"):
        Runner(recipe, tmp_path / "out", quiet=True, work_dir="nosuch://bucket/x").run()
    # a bucket that does not exist: stopped before any work, in one line naming the URL
    with pytest.raises(MlbuildError, match=r"^work dir s3://no-such-bucket/w: cannot write there: ") as e:
        Runner(recipe, tmp_path / "out", quiet=True, work_dir="s3://no-such-bucket/w").run()
    assert "\n" not in str(e.value)
    # credentials inside a URL never reach a message
    p = RemotePath("ftp://alice:s3cret@files.example.org/work")
    assert "s3cret" not in str(p) and "s3cret" not in repr(p / "x") and str(p) == "ftp://***@files.example.org/work"


def test_killed_run_resumes_on_another_machine_from_s3(tmp_path, s3_work):
    """Machine A is killed mid-step; machine B (another out dir, another local cache mirror) resumes
    from the checkpoints and cache segments on S3: every row exactly once, only the batch in flight
    at the kill is computed twice."""
    import subprocess
    import sys

    n = 600  # one source shard, three shards of 200 rows in the slow step
    recipe = _recipe(tmp_path, n, delay=0.03)
    url = f"{s3_work}/{uuid.uuid4().hex}/work"
    log = tmp_path / "calls.log"

    def start(out: str, mirror: str) -> subprocess.Popen:
        env = {**_env(tmp_path, log), "MLBUILD_CACHE": str(tmp_path / mirror)}
        cmd = [sys.executable, "-m", "mlbuild.cli", "run", str(recipe), "--out", str(tmp_path / out)]
        return subprocess.Popen(
            [*cmd, "--work-dir", url, "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    work = RemotePath(url)
    proc = start("a", "mirror-a")
    kill_mid_second_shard(proc, lambda: work.fs.glob(f"{work.path}/resume/1.0.0/01-slow-*/shard-*.done"), log)
    before = log.read_text().splitlines()
    assert 200 < len(before) < n

    proc = start("b", "mirror-b")
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "testing" not in stderr  # the (dummy) credentials never reach the output
    calls = log.read_text().splitlines()
    assert set(calls) == {f"row {i}" for i in range(n)}
    assert len(calls) - n <= 4  # one batch of 4 was in flight when A died
    rows = _rows(tmp_path / "b" / "resume" / "1.0.0")
    assert rows.height == n and rows["row_id"].n_unique() == n
    assert sorted(rows["upper"].to_list()) == sorted(f"ROW {i}" for i in range(n))
    manifest = json.loads((tmp_path / "b" / "resume" / "1.0.0" / "manifest.json").read_text())
    assert "testing" not in json.dumps(manifest)
