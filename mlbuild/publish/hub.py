"""Publish a built dataset version to the Hugging Face Hub, and list the published versions.

``push(plan)`` uploads ``OUT/<name>/<version>/`` as it is (data, card, manifest, resolved recipe,
reports; ``rejects/`` only on request; hidden paths never) as ONE commit, then tags it
``v<version>``. The tag is the version: a tag that already exists with the same fingerprint makes
the push a no-op; with a different fingerprint the push is refused.

Robustness: files go up chunk by chunk through ``HfApi.preupload_lfs_files`` (Xet or LFS, whichever
the installed ``huggingface_hub`` uses), each chunk and the commit retried with exponential backoff
on transient errors. Content already on the Hub is never sent twice (the Hub answers "already
present" for LFS objects; Xet deduplicates chunks), and a small state file in
``OUT/.mlbuild/push/`` keeps the files' sha256 and what is already uploaded, so rerunning the same
command after a failure resumes where it stopped.

The token comes from ``HF_TOKEN`` or the ``huggingface_hub`` login (``hf auth login``); it is
passed to ``HfApi`` and never logged, written or put in an error message."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .. import retry
from ..errors import InputError, MlbuildError, requires
from ..redact import RedactingFilter, redact, redact_url
from ..retry import describe, status_of

log = logging.getLogger(__name__)

T = TypeVar("T")

INSTALL = "pip install 'mlbuild[hub]'"
REPO_TYPE = "dataset"
# Top-level folders whose remote content mlbuild owns: files in them that the pushed version does not
# have are deleted in the same commit (stale shards would otherwise be picked up by `train-*.parquet`).
MANAGED_DIRS = ("data", "reports", "rejects")
TRANSIENT_STATUS = retry.TRANSIENT_STATUS
CHUNK_FILES = 64
CHUNK_BYTES = 2 << 30
RETRIES = 5
BACKOFF_S = 2.0
BACKOFF_MAX_S = 60.0
STALL_S = 300.0


class PushRefused(MlbuildError):
    """The push cannot go ahead as asked (bad repo id, version conflict, no token): fix the command."""

    exit_code = 2


class UploadFailed(MlbuildError):
    """The upload failed after retries; rerun the same command to resume."""

    exit_code = 1


# ---------------------------------------------------------------- plan (local, no network)


@dataclass
class FileEntry:
    path: str  # path in the repo (posix)
    local: Path
    size: int


@dataclass
class PushPlan:
    folder: Path
    repo_id: str
    name: str
    version: str
    fingerprint: str
    files: list[FileEntry]
    commit_message: str
    commit_description: str
    tag: str
    tag_message: str
    revision: str = "main"
    private: bool = False
    create_pr: bool = False
    include_rejects: bool = False
    skipped: list[str] = field(default_factory=list)  # local files left out (rejects/, hidden)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def state_path(self) -> Path:
        return (
            self.folder.resolve().parent.parent
            / ".mlbuild"
            / "push"
            / self.repo_id.replace("/", "--")
            / f"{self.version}.json"
        )


_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def check_repo_id(repo_id: str) -> str:
    """``ORG/NAME`` with the Hub's characters (letters, digits, ``-_.``; no ``--`` or ``..``; 96 chars)."""
    ok = (
        bool(_REPO_ID.match(repo_id or ""))
        and len(repo_id) <= 96
        and "--" not in repo_id
        and ".." not in repo_id
        and not repo_id.endswith((".git", ".", "-"))
    )
    if not ok:
        raise PushRefused(
            f"--repo-id {repo_id!r} is not a Hub dataset id; expected ORG/NAME (letters, digits, "
            "'-', '_', '.'), e.g. my-org/my-dataset"
        )
    return repo_id


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def plan_push(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    create_pr: bool = False,
    include_rejects: bool = False,
) -> PushPlan:
    """Check the folder and the repo id and list what a push would send. Touches no network."""
    check_repo_id(repo_id)
    d = Path(folder)
    if not d.is_dir():
        raise InputError(str(d), "no such folder; point at a built version, OUT/<name>/<version>")
    mf = d / "manifest.json"
    if not mf.is_file():
        hint = ""
        subs = sorted(p.parent.relative_to(d) for p in d.glob("*/*/manifest.json"))[:3]
        if subs:
            hint = f" (found versions under it: {', '.join(str(s) for s in subs)})"
        raise InputError(str(mf), f"no manifest.json here; point at OUT/<name>/<version>{hint}")
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
        name, version, fp = manifest["name"], str(manifest["version"]), manifest["fingerprint"]
    except (ValueError, KeyError) as e:
        raise InputError(str(mf), f"not an mlbuild manifest ({type(e).__name__}: {e})") from e
    if not (d / "README.md").is_file():
        log.warning("%s has no README.md (dataset card); the Hub will show no card and no viewer configs", d)
    files, skipped = [], []
    for p in sorted(d.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(d).as_posix()
        parts = rel.split("/")
        if any(part.startswith(".") for part in parts):  # .mlbuild work dirs, .cache, editor files: never
            skipped.append(rel)
            continue
        if parts[0] == "rejects" and not include_rejects:
            skipped.append(rel)
            continue
        files.append(FileEntry(rel, p, p.stat().st_size))
    rows = manifest.get("rows")
    configs = ", ".join(
        f"{c} ({', '.join(f'{s}={n}' for s, n in sp.items())})" for c, sp in (manifest.get("configs") or {}).items()
    )
    desc = (
        f"Dataset {name} version {version}, built with mlbuild "
        f"{(manifest.get('mlbuild') or {}).get('mlbuild', '?')}.\n\n"
        f"- fingerprint: {fp}\n- rows: {rows}\n- configs: {configs or 'none'}\n"
        f"- rejects included: {'yes' if include_rejects else 'no'}\n"
    )
    return PushPlan(
        folder=d,
        repo_id=repo_id,
        name=name,
        version=version,
        fingerprint=fp,
        files=files,
        commit_message=f"{name} {version} (mlbuild, fingerprint {fp[:12]})",
        commit_description=desc,
        tag=f"v{version}",
        tag_message=f"{name} {version} fingerprint {fp}",
        revision=revision or "main",
        private=private,
        create_pr=create_pr,
        include_rejects=include_rejects,
        skipped=skipped,
    )


# ---------------------------------------------------------------- secrets


@contextmanager
def redact_logs(secret: str | None) -> Iterator[None]:
    """For the push's duration, every log record that reaches a handler has the token (and any URL
    credentials) masked; huggingface_hub's and httpx's loggers included."""
    flt = RedactingFilter(secret)
    handlers = [h for name in ("", "huggingface_hub", "httpx", "httpx2") for h in logging.getLogger(name).handlers]
    for h in handlers:
        h.addFilter(flt)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(flt)


@contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    """huggingface_hub's own progress bars off for a quiet push, restored afterwards."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    if not enabled and not was_disabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not enabled and not was_disabled:
            enable_progress_bars()


def quiet_http_logs(debug: bool = False) -> None:
    """One INFO line per HTTP request is noise for a push of many files; keep them for ``--debug``."""
    if not debug:
        for name in ("httpx2", "httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def stall_timeout(seconds: float | None) -> Iterator[None]:
    """``huggingface_hub``'s HTTP client waits forever by default: a stalled connection hangs the push.
    For the push's duration, a socket read/write without progress for ``seconds`` raises a timeout,
    which the retries handle. A client factory the user installed is left alone."""
    from huggingface_hub.utils import _http, set_client_factory

    default = getattr(_http, "default_client_factory", None)
    if not seconds or default is None or getattr(_http, "_GLOBAL_CLIENT_FACTORY", None) is not default:
        yield
        return
    import httpx2

    def factory():
        client = default()
        client.timeout = httpx2.Timeout(seconds, connect=min(30.0, seconds))
        return client

    set_client_factory(factory)
    try:
        yield
    finally:
        set_client_factory(default)


def resolve_token(required: bool = True) -> str | None:
    """The token from ``HF_TOKEN`` or the ``huggingface_hub`` login; never from the command line."""
    hub = requires("huggingface_hub", INSTALL, "publishing to the Hub")
    token = hub.get_token()
    if token is None and required:
        raise PushRefused("no Hugging Face token: set HF_TOKEN (a token with write access) or run `hf auth login`")
    return token


# ---------------------------------------------------------------- retries


def transient(exc: BaseException) -> bool:
    """Worth retrying: rate limits, server errors, timeouts and dropped connections (also when wrapped)."""
    return retry.is_transient(exc, TRANSIENT_STATUS)


def with_retries(
    fn: Callable[[], T],
    what: str,
    *,
    retries: int,
    backoff: float,
    retry_if: Callable[[BaseException], bool] = transient,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` through :func:`mlbuild.retry.call`: on a transient error wait ``backoff * 2**i`` (capped
    at ``BACKOFF_MAX_S``, with jitter; a ``Retry-After`` honoured) and try again, ``retries`` more times
    at most. The last error propagates."""
    policy = retry.RetryPolicy(retries=retries, backoff=backoff, max_wait=BACKOFF_MAX_S, statuses=TRANSIENT_STATUS)
    return retry.call(fn, what, policy, retry_if=retry_if, sleep=sleep, logger=log)


# ---------------------------------------------------------------- resumable state


def _load_state(plan: PushPlan) -> dict[str, Any]:
    p = plan.state_path
    try:
        st = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if st.get("fingerprint") != plan.fingerprint or st.get("revision") != plan.revision:
        return {}
    return st


def _save_state(plan: PushPlan, st: dict[str, Any]) -> None:
    st.update(
        {
            "repo_id": plan.repo_id,
            "revision": plan.revision,
            "version": plan.version,
            "fingerprint": plan.fingerprint,
            "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    p = plan.state_path
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(st, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(p)


# ---------------------------------------------------------------- the Hub


@dataclass
class PushResult:
    status: str  # "pushed" | "unchanged" | "pr-opened"
    repo_id: str
    tag: str
    commit: str | None = None
    url: str = ""
    pr_url: str | None = None
    uploaded_files: int = 0
    resumed_files: int = 0
    deleted: list[str] = field(default_factory=list)
    bytes: int = 0


@dataclass
class VersionInfo:
    tag: str
    commit: str
    version: str | None
    fingerprint: str | None
    rows: int | None
    created: str | None
    note: str = ""


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def _check_online() -> None:
    from huggingface_hub import constants

    if constants.is_offline_mode():
        raise PushRefused("HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set: talking to the Hub needs it unset")


def make_api(token: str | None):
    hub = requires("huggingface_hub", INSTALL, "publishing to the Hub")
    return hub.HfApi(endpoint=_endpoint(), token=token)


def remote_manifest(api, repo_id: str, revision: str) -> dict[str, Any] | None:
    """``manifest.json`` at ``revision`` (a tag or commit), or None when that revision has none."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RemoteEntryNotFoundError

    with tempfile.TemporaryDirectory(prefix="mlbuild-hub-") as tmp:
        try:
            path = hf_hub_download(
                repo_id,
                "manifest.json",
                repo_type=REPO_TYPE,
                revision=revision,
                cache_dir=tmp,
                token=api.token,
                endpoint=api.endpoint,
            )
        except (EntryNotFoundError, RemoteEntryNotFoundError):
            return None
        try:
            return json.loads(Path(path).read_text(encoding="utf-8"))
        except ValueError:
            return None


def validate_card(api, content: str) -> None:
    """The Hub's own check of the card's YAML metadata (``/api/validate-yaml``, the check that
    ``create_commit`` runs): rejected metadata is a ``PushRefused`` listing the Hub's messages."""
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    resp = get_session().post(
        f"{api.endpoint}/api/validate-yaml",
        json={"content": content, "repoType": REPO_TYPE},
        headers=build_hf_headers(token=api.token),
    )
    if resp.status_code == 400:
        try:
            errors = [e.get("message", "") for e in resp.json().get("errors", [])]
        except ValueError:
            errors = [resp.text[:300]]
        raise PushRefused(
            "the Hub rejects the card's metadata (README.md front matter): "
            + "; ".join(e for e in errors if e)
            + ". Fix the recipe's [dataset] fields (license, task_categories, ...) or the card template and rebuild"
        )
    hf_raise_for_status(resp)


def _refs(api, repo_id: str):
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return api.list_repo_refs(repo_id, repo_type=REPO_TYPE)
    except RepositoryNotFoundError:
        return None


def _tree_url(api, repo_id: str, rev: str) -> str:
    return redact_url(f"{api.endpoint}/datasets/{repo_id}/tree/{rev}")  # for display: no credentials


def _stale(api, plan: PushPlan, base_rev: str) -> list[str]:
    from huggingface_hub.errors import RevisionNotFoundError

    try:
        remote = api.list_repo_files(plan.repo_id, repo_type=REPO_TYPE, revision=base_rev)
    except RevisionNotFoundError:
        return []
    local = {f.path for f in plan.files}
    local_dirs = {f.path.split("/")[0] for f in plan.files if "/" in f.path}
    owned = set(MANAGED_DIRS) | local_dirs
    return sorted(p for p in remote if p not in local and "/" in p and p.split("/")[0] in owned)


def _chunks(files: list[FileEntry], max_files: int, max_bytes: int) -> Iterator[list[FileEntry]]:
    cur: list[FileEntry] = []
    size = 0
    for f in files:
        if cur and (len(cur) >= max_files or size + f.size > max_bytes):
            yield cur
            cur, size = [], 0
        cur.append(f)
        size += f.size
    if cur:
        yield cur


def _conflict(plan: PushPlan, remote: dict[str, Any] | None) -> PushRefused:
    if remote is None:
        return PushRefused(
            f"{plan.repo_id} already has tag {plan.tag} but no manifest.json at it (not an mlbuild "
            f"version); bump dataset.version or delete that tag on the Hub"
        )
    return PushRefused(
        f"{plan.repo_id} already has {plan.tag} with fingerprint {str(remote.get('fingerprint'))[:16]}, "
        f"but this build's fingerprint is {plan.fingerprint[:16]}: a published version never changes; "
        "bump dataset.version in the recipe and rebuild"
    )


def push(
    plan: PushPlan,
    *,
    token: str | None = None,
    retries: int = RETRIES,
    backoff: float | None = None,
    chunk_files: int = CHUNK_FILES,
    chunk_bytes: int = CHUNK_BYTES,
    quiet: bool = False,
    stall: float | None = STALL_S,
) -> PushResult:
    """Upload ``plan`` as one commit and tag it (see the module docstring). Raises ``PushRefused``
    (exit 2) for conflicts and ``UploadFailed`` (exit 1) when the upload fails after retries."""
    token = token if token is not None else resolve_token()
    backoff = BACKOFF_S if backoff is None else backoff
    with redact_logs(token), _progress_bars(not quiet), stall_timeout(stall):
        try:
            return _push(plan, token, retries, backoff, chunk_files, chunk_bytes, quiet)
        except MlbuildError as e:
            # our own messages never hold the token; mask secrets anyway, and drop the chained cause's text
            clean = redact(str(e), token)
            if clean != str(e):
                try:
                    err = type(e)(clean)
                except TypeError:  # an error class with another signature: keep the message and exit code
                    err = MlbuildError(clean)
                    err.exit_code = e.exit_code
                raise err from None
            raise
        except Exception as e:  # turned into one clean, token-free message
            status = status_of(e)
            msg = redact(describe(e), token)
            if status in (401, 403):
                raise PushRefused(
                    f"the Hub refused the request ({msg}); check that the token has write access to {plan.repo_id}"
                ) from None
            state = plan.state_path
            raise UploadFailed(
                f"push of {plan.name} {plan.version} to {plan.repo_id} failed: {msg}. What is "
                f"uploaded stays on the Hub; rerun the same command to resume (state: {state})"
            ) from None


def _push(
    plan: PushPlan, token: str | None, retries: int, backoff: float, chunk_files: int, chunk_bytes: int, quiet: bool
) -> PushResult:
    _check_online()
    # Over 80 lines on purpose: the numbered phases below (tag, repo and branch, card, chunked upload,
    # commit, tag) are the push protocol read top to bottom; they share the client, the retry settings and
    # the refs read in phase 1, and each phase is a few lines.
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.errors import HfHubHTTPError

    api = make_api(token)
    repo_id = plan.repo_id
    retry = dict(retries=retries, backoff=backoff)

    # 1. the tag is the version: same fingerprint = nothing to do, another one = refuse
    refs = with_retries(lambda: _refs(api, repo_id), "reading the repo's refs", **retry)
    tags = {t.name: t.target_commit for t in refs.tags} if refs else {}
    if plan.tag in tags:
        remote = with_retries(
            lambda: remote_manifest(api, repo_id, tags[plan.tag]), "reading the remote manifest", **retry
        )
        if remote is not None and remote.get("fingerprint") == plan.fingerprint:
            plan.state_path.unlink(missing_ok=True)
            return PushResult(
                "unchanged", repo_id, plan.tag, commit=tags[plan.tag], url=_tree_url(api, repo_id, plan.tag)
            )
        raise _conflict(plan, remote)

    # 2. the repo and the branch
    if refs is None:
        log.info("creating dataset repo %s (%s)", repo_id, "private" if plan.private else "public")
        with_retries(
            lambda: api.create_repo(repo_id, repo_type=REPO_TYPE, private=plan.private, exist_ok=True),
            "creating the repo",
            **retry,
        )
        branches: set[str] = {"main"}
    else:
        branches = {b.name for b in refs.branches}
        if plan.private:
            log.warning(
                "--private only applies when the repo is created; %s already exists and keeps its visibility", repo_id
            )
    if plan.revision not in branches:
        log.info("creating branch %s", plan.revision)
        with_retries(
            lambda: api.create_branch(repo_id, branch=plan.revision, repo_type=REPO_TYPE, exist_ok=True),
            "creating the branch",
            **retry,
        )

    # 3. the card's metadata, checked by the Hub before any upload (create_commit checks it only after)
    card = plan.folder / "README.md"
    if card.is_file():
        with_retries(lambda: validate_card(api, card.read_text(encoding="utf-8")), "checking the card", **retry)

    # 4. upload the content, chunk by chunk (resumable: the Hub keeps what it got; the state keeps hashes)
    state = _load_state(plan)
    known: dict[str, Any] = state.get("files", {})
    ops: dict[str, Any] = {}
    resumed = 0
    for f in plan.files:
        op = CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=str(f.local))
        st = f.local.stat()
        k = known.get(f.path)
        if k and k.get("size") == st.st_size and k.get("mtime_ns") == st.st_mtime_ns:
            if k.get("sha256"):
                op.upload_info.sha256 = bytes.fromhex(k["sha256"])
            resumed += bool(k.get("uploaded"))
        else:
            known[f.path] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        ops[f.path] = op
    if resumed:
        log.info(
            "resuming an earlier attempt (state %s): %d of %d files were uploaded then; the Hub skips content "
            "it already has",
            plan.state_path,
            resumed,
            len(plan.files),
        )
    state["files"] = known
    state["attempts"] = int(state.get("attempts", 0)) + 1
    _save_state(plan, state)

    from tqdm.auto import tqdm

    bar = tqdm(total=plan.total_bytes, unit="B", unit_scale=True, desc=f"push {plan.tag}", disable=quiet, leave=False)
    try:
        for chunk in _chunks(plan.files, chunk_files, chunk_bytes):
            chunk_ops = [ops[f.path] for f in chunk]

            def _upload(chunk_ops=chunk_ops):
                api.preupload_lfs_files(
                    repo_id,
                    additions=chunk_ops,
                    repo_type=REPO_TYPE,
                    revision=plan.revision,
                    create_pr=plan.create_pr,
                    free_memory=False,
                )

            try:
                with_retries(_upload, f"uploading {chunk[0].path} (+{len(chunk) - 1} files)", **retry)
            finally:
                for f, op in zip(chunk, chunk_ops):  # record hashes computed so far, success or not
                    if op.upload_info.is_hashed:
                        known[f.path]["sha256"] = op.upload_info.sha256.hex()
                _save_state(plan, state)
            for f, op in zip(chunk, chunk_ops):  # large files' content is now on the Hub (small ones go with
                if op.upload_info.is_hashed:  # the commit and are never hashed up front)
                    known[f.path]["uploaded"] = True
            _save_state(plan, state)
            bar.update(sum(f.size for f in chunk))
    finally:
        bar.close()

    # 5. one commit: every file, and stale files in mlbuild's folders deleted. The parent commit pins the
    # branch head the deletions were computed from; a concurrent push makes the Hub refuse (409/412), and
    # the commit is rebuilt on the new head and retried.
    base_rev = plan.revision
    deleted: list[str] = []

    def _commit():
        head = None if plan.create_pr else api.repo_info(repo_id, repo_type=REPO_TYPE, revision=base_rev).sha
        stale = _stale(api, plan, base_rev)
        deleted[:] = stale
        operations = [CommitOperationDelete(path_in_repo=p) for p in stale] + list(ops.values())
        return api.create_commit(
            repo_id,
            operations,
            commit_message=plan.commit_message,
            commit_description=plan.commit_description,
            repo_type=REPO_TYPE,
            revision=plan.revision,
            create_pr=plan.create_pr,
            parent_commit=head,
        )

    def _commit_retry(e: BaseException) -> bool:
        return transient(e) or (isinstance(e, HfHubHTTPError) and status_of(e) in (409, 412))

    info = with_retries(_commit, "committing", retry_if=_commit_retry, **retry)
    state["commit"] = info.oid
    _save_state(plan, state)
    if deleted:
        log.info("removed %d stale file(s) of an earlier version: %s", len(deleted), ", ".join(deleted[:5]))
    if plan.create_pr:
        plan.state_path.unlink(missing_ok=True)
        return PushResult(
            "pr-opened",
            repo_id,
            plan.tag,
            commit=info.oid,
            pr_url=info.pr_url,
            uploaded_files=len(plan.files) - resumed,
            resumed_files=resumed,
            deleted=deleted,
            bytes=plan.total_bytes,
        )

    # 6. the tag (a concurrent push of the same version may have won: then it must be the same build)
    def _tag():
        try:
            api.create_tag(repo_id, tag=plan.tag, tag_message=plan.tag_message, revision=info.oid, repo_type=REPO_TYPE)
        except HfHubHTTPError as e:
            if status_of(e) != 409:
                raise
            remote = remote_manifest(api, repo_id, plan.tag)
            if remote is None or remote.get("fingerprint") != plan.fingerprint:
                raise _conflict(plan, remote) from None

    with_retries(_tag, f"tagging {plan.tag}", **retry)
    plan.state_path.unlink(missing_ok=True)
    return PushResult(
        "pushed",
        repo_id,
        plan.tag,
        commit=info.oid,
        url=_tree_url(api, repo_id, plan.tag),
        uploaded_files=len(plan.files) - resumed,
        resumed_files=resumed,
        deleted=deleted,
        bytes=plan.total_bytes,
    )


def _version_key(v: VersionInfo) -> tuple:
    try:
        from packaging.version import Version

        return (0, Version(v.tag[1:] if v.tag.startswith("v") else v.tag), v.tag)
    except Exception:  # not a PEP 440 version: sort after, by name
        return (1, v.tag, v.tag)


def list_versions(
    repo_id: str, *, token: str | None = None, retries: int = RETRIES, backoff: float | None = None
) -> list[VersionInfo]:
    """Tags ``v*`` of the repo with the fingerprint, rows and date of the manifest at each tag."""
    check_repo_id(repo_id)
    token = token if token is not None else resolve_token(required=False)
    backoff = BACKOFF_S if backoff is None else backoff
    with redact_logs(token):
        try:
            _check_online()
            api = make_api(token)
            refs = with_retries(
                lambda: _refs(api, repo_id), "reading the repo's refs", retries=retries, backoff=backoff
            )
            if refs is None:
                raise PushRefused(f"no dataset repo {repo_id} on {redact_url(api.endpoint)} (or no access to it)")
            out = []
            for t in refs.tags:
                if not t.name.startswith("v"):
                    continue
                m = with_retries(
                    lambda t=t: remote_manifest(api, repo_id, t.target_commit),
                    f"reading manifest.json at {t.name}",
                    retries=retries,
                    backoff=backoff,
                )
                if m is None:
                    out.append(VersionInfo(t.name, t.target_commit, None, None, None, None, "no manifest.json"))
                    continue
                note = "" if f"v{m.get('version')}" == t.name else f"manifest says version {m.get('version')}"
                out.append(
                    VersionInfo(
                        t.name,
                        t.target_commit,
                        str(m.get("version")),
                        m.get("fingerprint"),
                        m.get("rows"),
                        m.get("created"),
                        note,
                    )
                )
            return sorted(out, key=_version_key)
        except MlbuildError:
            raise
        except Exception as e:  # any client error: one clean, token-free message
            status = status_of(e)
            msg = redact(describe(e), token)
            if status in (401, 403):
                raise PushRefused(f"the Hub refused the request ({msg}); check the token") from None
            raise UploadFailed(f"listing versions of {repo_id} failed: {msg}") from None
