"""Publishing to the Hub: end to end against a local fake Hub (tests/publish/fake_hub.py) that speaks
the endpoints ``huggingface_hub`` calls for create repo, preupload, LFS upload, commit, tag, refs,
tree and download. Datasets are built by the real runner from a tiny recipe."""

from __future__ import annotations

import json
import logging
import shutil
import traceback
from pathlib import Path

import pytest
from fake_hub import Fail, serve

from mlbuild.pipeline.runner import Runner
from mlbuild.publish import hub as hubmod
from mlbuild.recipe import load_recipe

TOKEN = "hf_mlbuildTESTsecret0123456789abcdefXYZ"
REPO = "test-org/tiny-set"

EN = [
    "the cat sits on the mat",
    "where is the train station",
    "this is a good book to read",
    "the weather is nice today",
    "we walk to the river in the morning",
    "please open the window",
    "the dog sleeps by the door",
    "we read a book in the garden",
    "the train leaves in the morning",
]
PT = ["o gato está no tapete", "onde fica a estação de trem", "este é um bom livro para ler"]

RECIPE = """
[dataset]
name = "tiny-set"
version = "{version}"
license = "cc-by-4.0"
description = "tiny test set"

[source]
uses = "jsonl.v1"
path = "{data}"
text_columns = ["text"]
id_column = "id"

[[steps]]
id = "lid"
uses = "langid.v1"
column = "text"
expect = "en"
model = "{lid}"
short_text = 0

[output]
splits = {{ train = 0.7, test = 0.3 }}
max_rows_per_file = {max_rows}
"""


def build_all(base: Path, lid: Path) -> dict[str, Path]:
    """v1 (several shards per split), another build of v1 (one more row), v2 (one shard per split)."""
    return {
        "v1": build(base / "v1", lid),
        "v1_other": build(base / "v1_other", lid, extra_en=("a new sentence about the river",)),
        "v2": build(base / "v2", lid, version="0.2.0", max_rows=100),
    }


def copy_version(src: Path, dst_root: Path) -> Path:
    """A fresh copy of OUT/<name>/<version> under ``dst_root``/out, so push state files do not leak."""
    dst = dst_root / "out" / src.parent.name / src.name
    shutil.copytree(src, dst)
    return dst


def build(root: Path, lid: Path, version: str = "0.1.0", max_rows: int = 2, extra_en: tuple[str, ...] = ()) -> Path:
    """Run the real runner on a tiny recipe; returns OUT/tiny-set/<version>."""
    root.mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"en{i}", "text": t} for i, t in enumerate(EN + list(extra_en))]
    rows += [{"id": f"pt{i}", "text": t} for i, t in enumerate(PT)]
    data = root / "rows.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    recipe = root / "recipe.toml"
    recipe.write_text(
        RECIPE.format(version=version, data=data.as_posix(), lid=lid.as_posix(), max_rows=max_rows), encoding="utf-8"
    )
    res = Runner(load_recipe(recipe), root / "out", quiet=True).run()
    return res.dataset_dir


@pytest.fixture
def hub(monkeypatch, tmp_path):
    monkeypatch.setattr(hubmod, "BACKOFF_S", 0.01)
    monkeypatch.setattr(hubmod, "BACKOFF_MAX_S", 0.05)
    with serve(monkeypatch, tmp_path, TOKEN) as h:
        yield h


@pytest.fixture(scope="module")
def built(tiny_lid, tmp_path_factory) -> dict[str, Path]:
    return build_all(tmp_path_factory.mktemp("built"), tiny_lid)


@pytest.fixture
def version_dir(built, tmp_path):
    return lambda key="v1": copy_version(built[key], tmp_path / key)


def local_files(d: Path, rejects: bool = False) -> dict[str, bytes]:
    out = {}
    for p in sorted(d.rglob("*")):
        rel = p.relative_to(d).as_posix()
        if (
            p.is_file()
            and (rejects or not rel.startswith("rejects/"))
            and not any(s.startswith(".") for s in rel.split("/"))
        ):
            out[rel] = p.read_bytes()
    return out


def push(d: Path, **kw) -> hubmod.PushResult:
    opts = {k: kw.pop(k) for k in ("revision", "private", "create_pr", "include_rejects") if k in kw}
    kw.setdefault("quiet", True)
    kw.setdefault("backoff", 0.01)
    return hubmod.push(hubmod.plan_push(d, REPO, **opts), **kw)


def test_push_uploads_every_file_as_one_tagged_commit(hub, version_dir):
    d = version_dir()
    res = push(d)
    assert res.status == "pushed" and res.tag == "v0.1.0"
    repo = hub.repo(REPO)
    assert repo.tags["v0.1.0"][0] == repo.branches["main"] == res.commit
    assert len(repo.commits) == 2  # the repo's initial commit + ONE commit with everything
    remote = hub.files(REPO, "v0.1.0")
    want = local_files(d)
    assert set(remote) == set(want) | {".gitattributes"}
    assert all(remote[p] == want[p] for p in want)
    # what arrived: card with the viewer configs, manifest with the fingerprint, resolved recipe, data, reports
    assert remote["README.md"].startswith(b"---\n") and b"configs:" in remote["README.md"]
    manifest = json.loads(remote["manifest.json"])
    assert manifest["fingerprint"] == json.loads((d / "manifest.json").read_text())["fingerprint"]
    assert "recipe.lock.toml" in remote
    shards = [p for p in remote if p.startswith("data/")]
    assert len(shards) >= 4 and all(repo.resolve("v0.1.0").files[p].lfs for p in shards)
    assert not any(p.startswith("rejects/") for p in remote)
    assert (d / "rejects").is_dir() and any((d / "rejects").iterdir())  # there were rejects, left out
    # the tag message and commit carry the version and fingerprint
    assert manifest["fingerprint"] in repo.tags["v0.1.0"][1]
    assert manifest["fingerprint"][:12] in repo.commits[res.commit].title
    # the token was what authenticated the writes
    writes = hub.calls("POST", r"/commit/|/preupload/|/tag/|/repos/create")
    assert writes and all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in writes)
    assert not hubmod.plan_push(d, REPO).state_path.exists()  # no resume state left after success


def test_include_rejects_and_hidden_paths_never_go(hub, version_dir):
    d = version_dir()
    (d / ".mlbuild").mkdir()
    (d / ".mlbuild" / "work.parquet").write_bytes(b"work files")
    (d / "reports" / ".cache").mkdir(parents=True)
    (d / "reports" / ".cache" / "x").write_text("x")
    push(d, include_rejects=True)
    remote = hub.files(REPO, "v0.1.0")
    assert set(remote) == set(local_files(d, rejects=True)) | {".gitattributes"}
    assert any(p.startswith("rejects/") for p in remote)
    assert not any("/." in "/" + p for p in remote if p != ".gitattributes")


def test_same_version_again_is_a_noop(hub, version_dir):
    d = version_dir()
    first = push(d)
    n_commits = len(hub.repo(REPO).commits)
    hub.requests.clear()
    again = push(d)
    assert again.status == "unchanged" and again.commit == first.commit
    assert len(hub.repo(REPO).commits) == n_commits
    assert not hub.calls("POST", r"/preupload/|/commit/|/tag/|lfs")  # nothing uploaded, nothing committed


def test_same_version_with_another_fingerprint_is_refused(hub, version_dir):
    push(version_dir("v1"))
    other = version_dir("v1_other")
    n_commits = len(hub.repo(REPO).commits)
    with pytest.raises(hubmod.PushRefused) as e:
        push(other)
    assert e.value.exit_code == 2
    assert "v0.1.0" in str(e.value) and "bump dataset.version" in str(e.value)
    assert len(hub.repo(REPO).commits) == n_commits
    assert not hub.calls("POST", r"/commit/")[1:]  # only the first push committed


def test_a_tag_without_manifest_is_refused(hub, version_dir):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo(REPO, repo_type="dataset")
    api.create_tag(REPO, tag="v0.1.0", repo_type="dataset")
    with pytest.raises(hubmod.PushRefused, match="no manifest.json"):
        push(version_dir())


def test_new_version_replaces_stale_shards_and_versions_lists_both(hub, version_dir):
    push(version_dir("v1"))  # max_rows_per_file=2: several shards per split
    d2 = version_dir("v2")  # one shard per split
    res = push(d2)
    assert res.deleted and all(p.startswith("data/") for p in res.deleted)
    v1 = hub.files(REPO, "v0.1.0")
    v2 = hub.files(REPO, "v0.2.0")
    assert {p for p in v2 if p.startswith("data/")} == {p for p in local_files(d2) if p.startswith("data/")}
    assert len([p for p in v1 if p.startswith("data/")]) > len([p for p in v2 if p.startswith("data/")])
    assert ".gitattributes" in v2  # files outside mlbuild's folders are left alone
    versions = hubmod.list_versions(REPO)
    assert [v.tag for v in versions] == ["v0.1.0", "v0.2.0"]
    fps = {v.tag: v.fingerprint for v in versions}
    assert fps["v0.2.0"] == json.loads((d2 / "manifest.json").read_text())["fingerprint"]
    assert fps["v0.1.0"] != fps["v0.2.0"] and all(v.rows for v in versions)


def test_interrupted_upload_resumes_without_resending(hub, version_dir):
    d = version_dir()
    # the third LFS upload and every one after it fails (503, past huggingface_hub's own retries and ours)
    hub.fail(Fail("PUT", r"^/lfs-upload/", status=503, times=10_000, after=2))
    with pytest.raises(hubmod.UploadFailed) as e:
        push(d, retries=1, chunk_files=2)
    msg = str(e.value)
    assert e.value.exit_code == 1 and "rerun the same command to resume" in msg and "503" in msg
    repo = hub.repo(REPO)
    assert len(repo.commits) == 1 and not repo.tags  # nothing half-committed
    sent_first = set(repo.lfs)
    assert len(sent_first) == 2
    state_path = hubmod.plan_push(d, REPO).state_path
    state = json.loads(state_path.read_text())
    # the state records files of fully uploaded chunks (chunk 1: README.md + one shard); the second shard
    # got through inside the failed chunk: only the Hub knows, and says so when asked again
    marked = sum(bool(f.get("uploaded")) for f in state["files"].values())
    assert marked == 1 and all(
        f.get("sha256") for p, f in state["files"].items() if p.endswith(".parquet") and f.get("uploaded")
    )
    assert TOKEN not in state_path.read_text()

    hub.failures.clear()
    hub.requests.clear()
    res = push(d, chunk_files=2)
    assert res.status == "pushed" and res.resumed_files == marked
    put_oids = {r.path.rsplit("/", 1)[1] for r in hub.calls("PUT", r"^/lfs-upload/")}
    assert put_oids and not (put_oids & sent_first)  # what got through before is not sent again
    assert set(hub.files(REPO, "v0.1.0")) == set(local_files(d)) | {".gitattributes"}
    assert not state_path.exists()


def test_transient_commit_errors_are_retried_once_committed(hub, version_dir, caplog):
    hub.fail(Fail("POST", r"/commit/", status=503, times=2))
    with caplog.at_level(logging.WARNING, logger="mlbuild.publish.hub"):
        res = push(version_dir(), retries=3)
    assert res.status == "pushed"
    assert len(hub.calls("POST", r"/commit/")) == 3
    assert len(hub.repo(REPO).commits) == 2  # one real commit despite the retries
    assert "committing failed (HTTP 503" in caplog.text and "retry 2/3" in caplog.text


def test_rate_limit_retry_after_from_the_hub_is_honoured(hub, version_dir, caplog):
    """A 429 with Retry-After: the shared retry loop (mlbuild.retry) waits at least that long."""
    import time

    hub.fail(Fail("POST", r"/commit/", status=429, times=1, retry_after="0.6"))
    t = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="mlbuild.publish.hub"):
        res = push(version_dir(), retries=2)
    assert res.status == "pushed" and time.perf_counter() - t >= 0.6
    assert "committing failed (429 Too Many Requests" in caplog.text and "retry 1/2 in 0.6s" in caplog.text


def test_concurrent_commit_rebuilds_on_the_new_head(hub, version_dir):
    hub.fail(Fail("POST", r"/commit/", status=412, times=1, message="A commit has happened since"))
    res = push(version_dir())
    assert res.status == "pushed" and hub.repo(REPO).tags["v0.1.0"][0] == res.commit


def test_stalled_commit_times_out_and_the_retry_finds_it_done(hub, version_dir):
    """The commit's answer never comes in time (the Hub applied it): the stall timeout fires, the retry
    sees nothing left to change on the new head, and tags that commit. One commit, no hang."""
    hub.fail(Fail("POST", r"/commit/", status=None, delay=1.5))
    res = push(version_dir(), stall=0.5)
    repo = hub.repo(REPO)
    assert res.status == "pushed" and len(repo.commits) == 2
    assert repo.tags["v0.1.0"][0] == repo.branches["main"]


def test_concurrent_push_of_the_same_build_wins_the_tag_first(hub, version_dir, monkeypatch):
    """Another machine pushed the same build and tagged it between our commit and our tag: fine."""
    from huggingface_hub import HfApi

    original = HfApi.create_tag

    def racing(self, repo_id, *, tag, revision=None, **kw):
        monkeypatch.setattr(HfApi, "create_tag", original)
        original(self, repo_id, tag=tag, revision=revision, **kw)  # the other machine's tag
        return original(self, repo_id, tag=tag, revision=revision, **kw)  # ours: 409

    monkeypatch.setattr(HfApi, "create_tag", racing)
    res = push(version_dir())
    assert res.status == "pushed" and len(hub.calls("POST", r"/tag/")) == 2


def test_client_errors_are_not_retried(hub, version_dir):
    hub.fail(Fail("POST", r"/commit/", status=422, times=1, message="bad commit"))
    with pytest.raises(hubmod.UploadFailed, match="422"):
        push(version_dir(), retries=5)
    assert len(hub.calls("POST", r"/commit/")) == 1


def test_card_metadata_rejected_by_the_hub_before_any_upload(hub, version_dir):
    hub.check_card = lambda meta: "license: 'cc-by-4.0' is not allowed here" if meta.get("license") else None
    with pytest.raises(hubmod.PushRefused, match="is not allowed here") as e:
        push(version_dir())
    assert e.value.exit_code == 2 and "[dataset]" in str(e.value)
    assert not hub.calls("PUT", r"lfs-upload") and not hub.calls("POST", r"/preupload/|/commit/")


def test_branch_revision(hub, version_dir):
    res = push(version_dir(), revision="release")
    repo = hub.repo(REPO)
    assert repo.branches["release"] == res.commit == repo.tags["v0.1.0"][0]
    assert set(hub.files(REPO, "main")) == {".gitattributes"}


def test_create_pr_then_tag_after_merge(hub, version_dir):
    d = version_dir()
    res = push(d, create_pr=True)
    repo = hub.repo(REPO)
    assert res.status == "pr-opened" and res.pr_url and not repo.tags
    assert set(hub.files(REPO, "main")) == {".gitattributes"}
    merged = hub.merge_pr(REPO, 1)
    n_commits = len(repo.commits)
    again = push(d)
    assert again.status == "pushed" and repo.tags["v0.1.0"][0] == merged
    assert len(repo.commits) == n_commits  # nothing changed since the merge: tagged without a new commit


def test_private_repo_created_private(hub, version_dir):
    push(version_dir(), private=True)
    assert hub.repo(REPO).private


def test_token_from_the_login_file(hub, version_dir, monkeypatch, tmp_path):
    import huggingface_hub.constants as C

    monkeypatch.delenv("HF_TOKEN")
    login = tmp_path / "login" / "token"
    login.parent.mkdir()
    login.write_text(TOKEN)
    monkeypatch.setattr(C, "HF_TOKEN_PATH", str(login))
    push(version_dir())
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in hub.calls("POST", r"/commit/"))


def test_no_token_is_a_user_error(hub, version_dir, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(hubmod.PushRefused, match="HF_TOKEN") as e:
        push(version_dir())
    assert e.value.exit_code == 2 and not hub.requests


def test_token_never_appears_in_any_output(hub, version_dir, monkeypatch, capfd, caplog):
    """stdout, stderr, every log record at DEBUG, error messages and tracebacks, the state file and
    everything uploaded: no token anywhere (while the server did receive it)."""
    from mlbuild.cli import main

    caplog.set_level(logging.DEBUG)
    d = version_dir()
    seen: list[str] = []

    assert main(["--debug", "push", str(d), "--repo-id", REPO]) == 0
    # a failing push (persistent 500 on the commit) through the CLI: one clean error line, exit 1
    hub.fail(Fail("POST", r"/commit/", status=500, times=10_000))
    d2 = version_dir("v2")
    assert main(["push", str(d2), "--repo-id", REPO, "--retries", "1"]) == 1
    state = hubmod.plan_push(d2, REPO).state_path
    seen.append(state.read_text())
    # the same failure through the library: the exception, its repr and its full traceback
    try:
        push(d2, retries=0)
    except hubmod.UploadFailed as e:
        seen += [str(e), repr(e), "".join(traceback.format_exception(e))]
    else:
        pytest.fail("expected UploadFailed")
    # a wrong token: the Hub answers 401; the message must not echo what was sent
    hub.failures.clear()
    monkeypatch.setenv("HF_TOKEN", TOKEN[::-1])
    with pytest.raises(hubmod.PushRefused) as e:
        push(d2)
    assert e.value.exit_code == 2 and "write access" in str(e.value) and "401" in str(e.value)
    seen += [str(e.value), "".join(traceback.format_exception(e.value))]
    assert main(["--debug", "versions", "--repo-id", REPO]) == 0
    out, err = capfd.readouterr()
    seen += [out, err, caplog.text, *(r.getMessage() for r in caplog.records)]
    for f in hub.files(REPO, "v0.1.0").values():
        seen.append(f.decode("utf-8", "replace"))
    assert "pushed tiny-set 0.1.0" in out and "error:" in err
    assert hub.calls("POST", r"/commit/")[0].headers["authorization"] == f"Bearer {TOKEN}"
    for text in seen:
        assert TOKEN not in text and TOKEN[::-1] not in text


def test_offline_mode_is_refused(hub, version_dir, monkeypatch):
    import huggingface_hub.constants as C

    monkeypatch.setattr(C, "HF_HUB_OFFLINE", True)
    with pytest.raises(hubmod.PushRefused, match="HF_HUB_OFFLINE"):
        push(version_dir())


def test_with_retries_backs_off_exponentially():
    waits: list[float] = []
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] < 4:
            raise ConnectionError("reset")
        return "ok"

    assert hubmod.with_retries(flaky, "x", retries=5, backoff=1.0, sleep=waits.append) == "ok"
    assert len(waits) == 3
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0 and 2.0 <= waits[2] <= 4.0
    with pytest.raises(ValueError):
        hubmod.with_retries(
            lambda: (_ for _ in ()).throw(ValueError("no")), "x", retries=5, backoff=1.0, sleep=waits.append
        )
    assert len(waits) == 3  # not transient: no retry


@pytest.mark.parametrize("rid", ["noslash", "a/b/c", "-org/x", "org/x..y", "org/x--y", "org/", "o rg/x", ""])
def test_bad_repo_ids(rid):
    with pytest.raises(hubmod.PushRefused):
        hubmod.check_repo_id(rid)


def test_plan_lists_files_and_leaves_hub_alone(built):
    plan = hubmod.plan_push(built["v1"], REPO)
    assert plan.tag == "v0.1.0" and plan.fingerprint in plan.commit_description
    assert {f.path for f in plan.files} == set(local_files(built["v1"]))
    assert all(f.size == (built["v1"] / f.path).stat().st_size for f in plan.files)
    assert plan.state_path.parent.parent.parent.name == ".mlbuild"
