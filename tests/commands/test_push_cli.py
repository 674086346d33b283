"""``mlbuild push`` and ``mlbuild versions`` from the command line: exit codes, the dry run (also as
docs/publishing.md tells a new user to run it), and the messages, against the local fake Hub."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "publish"))

from fake_hub import Fail, serve  # noqa: E402
from test_push import REPO, TOKEN, build_all, copy_version, local_files  # noqa: E402

from mlbuild.cli import main  # noqa: E402
from mlbuild.publish import hub as hubmod  # noqa: E402

DOCS = Path(__file__).resolve().parents[2] / "docs" / "publishing.md"


@pytest.fixture(scope="module")
def built(tiny_lid, tmp_path_factory):
    return build_all(tmp_path_factory.mktemp("built"), tiny_lid)


@pytest.fixture
def version_dir(built, tmp_path):
    return lambda key="v1": copy_version(built[key], tmp_path / key)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    monkeypatch.setattr(hubmod, "BACKOFF_S", 0.01)
    with serve(monkeypatch, tmp_path, TOKEN) as h:
        yield h


def test_dry_run_lists_files_sizes_commit_and_tag_and_touches_nothing(hub, version_dir, capsys, monkeypatch):
    d = version_dir()
    monkeypatch.delenv("HF_TOKEN")  # a dry run needs no token
    assert main(["push", str(d), "--repo-id", REPO, "--dry-run"]) == 0
    out = capsys.readouterr().out
    for rel, data in local_files(d).items():
        line = next((ln for ln in out.splitlines() if ln.strip().startswith(rel + " ")), None)
        assert line is not None, f"{rel} not listed"
        size = len(data)
        assert (f"{size} B" in line) if size < 1000 else re.search(r"\d+\.\d (KB|MB)", line)
    assert "rejects/" in out and "--include-rejects" in out
    assert re.search(r"^commit: +tiny-set 0\.1\.0 \(mlbuild, fingerprint [0-9a-f]{12}\)", out, re.M)
    assert re.search(r"^tag: +v0\.1\.0", out, re.M)
    assert not hub.requests and not hub.repos  # nothing read, nothing written
    assert not (d.parent.parent / ".mlbuild" / "push").exists()


def test_docs_dry_run_as_a_new_user(hub, version_dir, capsys, monkeypatch):
    """The dry-run command of docs/publishing.md, run as written (on a built version folder)."""
    text = DOCS.read_text(encoding="utf-8")
    cmds = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("mlbuild push") and "--dry-run" in ln]
    assert cmds, "docs/publishing.md shows no `mlbuild push ... --dry-run`"
    argv = shlex.split(cmds[0])[1:]
    d = version_dir()
    argv[1] = str(d)  # the docs' out/mlbuild-demo/0.1.0 is this test's built folder
    monkeypatch.delenv("HF_TOKEN")
    assert main(argv) == 0
    out = capsys.readouterr().out
    for key in ("dry run:", "files (", "commit:", "tag:", "left out"):
        assert key in out and key in text  # what the docs show is what the command prints
    assert not hub.requests


def test_push_versions_and_exit_codes(hub, version_dir, capsys):
    d = version_dir()
    assert main(["push", str(d), "--repo-id", REPO, "--quiet"]) == 0
    out = capsys.readouterr().out
    fp = json.loads((d / "manifest.json").read_text())["fingerprint"]
    assert "pushed tiny-set 0.1.0" in out and "tagged v0.1.0" in out
    # again: a no-op that says so
    assert main(["push", str(d), "--repo-id", REPO, "--quiet"]) == 0
    assert "nothing to push" in capsys.readouterr().out
    # another build of the same version: refused, exit 2
    other = version_dir("v1_other")
    assert main(["push", str(other), "--repo-id", REPO, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "bump dataset.version" in err and len(err.strip().splitlines()) == 1
    # versions: the tag with its fingerprint
    assert main(["push", str(version_dir("v2")), "--repo-id", REPO, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["versions", "--repo-id", REPO]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^v0\.1\.0 +{fp[:16]} ", out, re.M) and re.search(r"^v0\.2\.0 ", out, re.M)
    assert main(["versions", "--repo-id", REPO, "--json"]) == 0
    rows = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert [r["tag"] for r in rows] == ["v0.1.0", "v0.2.0"] and rows[0]["fingerprint"] == fp


def test_user_errors_exit_2(hub, version_dir, tmp_path, capsys):
    d = version_dir()
    assert main(["push", str(d), "--repo-id", "not-a-repo-id"]) == 2
    assert main(["push", str(tmp_path / "missing"), "--repo-id", REPO]) == 2
    assert main(["push", str(d.parent.parent), "--repo-id", REPO]) == 2  # OUT instead of OUT/<name>/<version>
    err = capsys.readouterr().err
    assert "ORG/NAME" in err and "no such folder" in err and "found versions under it: tiny-set/0.1.0" in err
    assert main(["versions", "--repo-id", "test-org/nothing-here"]) == 2
    assert not hub.calls("POST", r".")


def test_upload_failure_exits_1_with_resume_hint(hub, version_dir, capsys):
    hub.fail(Fail("POST", r"/commit/", status=500, times=10_000))
    d = version_dir()
    assert main(["push", str(d), "--repo-id", REPO, "--retries", "1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "rerun the same command to resume" in err and "500" in err
    hub.failures.clear()
    assert main(["push", str(d), "--repo-id", REPO, "--quiet"]) == 0
    assert "tagged v0.1.0" in capsys.readouterr().out
