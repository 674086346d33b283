"""A local stand-in for the Hugging Face Hub on 127.0.0.1 (standard library only), enough for
``huggingface_hub``'s dataset-publishing calls over plain git-LFS (set ``HF_HUB_DISABLE_XET``):

- ``POST /api/repos/create``                                  create_repo (409 when it exists)
- ``GET  /api/datasets/{id}[/revision/{rev}]``                repo_info (sha, siblings)
- ``GET  /api/datasets/{id}/refs``                            list_repo_refs (branches, tags, PRs)
- ``GET  /api/datasets/{id}/tree/{rev}[/{path}]``             list_repo_tree / list_repo_files
- ``POST /api/validate-yaml``                                 README.md front matter check
- ``POST /api/datasets/{id}/preupload/{rev}``                 upload mode per file (lfs | regular) + remote oid
- ``POST /datasets/{id}.git/info/lfs/objects/batch``          LFS batch: upload actions for missing objects
- ``PUT  /lfs-upload/{id}/{oid}``, ``POST /lfs-verify/...``   LFS object upload and verify (sha256 checked)
- ``POST /api/datasets/{id}/commit/{rev}``                    NDJSON commit (file, lfsFile, deletedFile,
                                                              deletedFolder; parentCommit; create_pr)
- ``POST /api/datasets/{id}/tag/{rev}``                       create_tag (409 when it exists)
- ``POST /api/datasets/{id}/branch/{branch}``                 create_branch
- ``HEAD|GET /datasets/{id}/resolve/{rev}/{path}``            hf_hub_download

Every request is recorded in ``hub.requests`` (method, path, headers, body size). ``hub.fail(...)``
queues injected failures matched by method and path regex. Writes need ``Authorization: Bearer
<token>`` with a token in ``hub.tokens``."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import yaml


@contextmanager
def serve(monkeypatch, tmp_path: Path, token: str) -> Iterator[FakeHub]:
    """Start a FakeHub and point ``huggingface_hub`` at it for one test: ``HF_ENDPOINT``, ``HF_TOKEN``,
    no stored login, online (tests/conftest.py sets offline mode), plain LFS uploads
    (``HF_HUB_DISABLE_XET``: Xet's CAS protocol is not faked), and fast retries in ``http_backoff``."""
    import huggingface_hub.constants as C
    from huggingface_hub.utils import http_backoff

    with FakeHub(tokens=(token,)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", token)
        monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
        monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
        monkeypatch.setattr(C, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(C, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(C, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
        # huggingface_hub's own per-request backoff (1 s, 2 s, ... 8 s) made fast for injected failures
        monkeypatch.setattr(
            http_backoff,
            "__kwdefaults__",
            {**http_backoff.__kwdefaults__, "base_wait_time": 0.01, "max_wait_time": 0.02},
        )
        yield hub


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Blob:
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def oid(self) -> str:
        """The oid the preupload endpoint reports: sha256 for LFS files, git sha1 for regular ones."""
        return self.sha256 if self.lfs else git_sha1(self.data)


@dataclass
class Commit:
    sha: str
    parent: str | None
    files: dict[str, Blob]
    title: str
    description: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (commit sha, message)
    prs: list[str] = field(default_factory=list)  # refs/pr/<n> -> commit sha (index n-1)
    lfs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content

    def resolve(self, rev: str) -> Commit | None:
        rev = unquote(rev)
        if rev in self.branches:
            return self.commits[self.branches[rev]]
        if rev in self.tags:
            return self.commits[self.tags[rev][0]]
        m = re.fullmatch(r"refs/pr/(\d+)", rev)
        if m and 0 < int(m.group(1)) <= len(self.prs):
            return self.commits[self.prs[int(m.group(1)) - 1]]
        return self.commits.get(rev)


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    size: int


@dataclass
class Fail:
    """An injected failure: the next ``times`` requests whose method matches and whose path matches
    ``path`` (a regex) get ``status`` (``status=0`` drops the connection without an answer), after
    ``delay`` seconds; ``status=None`` handles the request normally after the delay (a stall).
    ``after`` lets that many matching requests through first; ``retry_after`` adds that header."""

    method: str
    path: str
    status: int | None = 503
    times: int = 1
    after: int = 0
    message: str = "injected failure"
    delay: float = 0.0
    retry_after: str | None = None  # a Retry-After header on the injected error


class FakeHub:
    def __init__(self, tokens: tuple[str, ...] = ()):
        self.tokens = set(tokens)
        self.repos: dict[str, Repo] = {}
        self.requests: list[Request] = []
        self.failures: list[Fail] = []
        # card metadata check of /api/validate-yaml: metadata dict -> error message or None
        self.check_card: Callable[[dict], str | None] = lambda meta: None
        self.lock = threading.RLock()
        self._counter = 0
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # ---- lifecycle
    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    # ---- test helpers
    def fail(self, *items: Fail) -> None:
        with self.lock:
            self.failures.extend(items)

    def calls(self, method: str, pattern: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]

    def repo(self, repo_id: str) -> Repo:
        return self.repos[f"datasets/{repo_id}"]

    def files(self, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        c = self.repo(repo_id).resolve(rev)
        assert c is not None, f"no revision {rev}"
        return {p: b.data for p, b in c.files.items()}

    def merge_pr(self, repo_id: str, num: int, branch: str = "main") -> str:
        repo = self.repo(repo_id)
        with self.lock:
            repo.branches[branch] = repo.prs[num - 1]
        return repo.branches[branch]

    def new_sha(self, seed: str) -> str:
        with self.lock:
            self._counter += 1
            return hashlib.sha1(f"{self._counter}\x1f{seed}\x1f{time.time_ns()}".encode()).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    # ---- plumbing
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(
        self, status: int, body: bytes | dict | list = b"", headers: dict | None = None, head: bool = False
    ) -> None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: int, message: str, code: str | None = None, retry_after: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        self._send(status, {"error": message}, headers)

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.hub.tokens

    def _injected(self, method: str, path: str) -> Fail | None:
        hub = self.hub
        with hub.lock:
            for f in hub.failures:
                if f.method == method and re.search(f.path, path):
                    if f.after > 0:
                        f.after -= 1
                        return None
                    f.times -= 1
                    if f.times <= 0:
                        hub.failures.remove(f)
                    return f
        return None

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        body = self._body() if method in ("POST", "PUT") else b""
        with self.hub.lock:
            self.hub.requests.append(
                Request(method, path, query, {k.lower(): v for k, v in self.headers.items()}, len(body))
            )
        fail = self._injected(method, path)
        if fail is not None and fail.delay:
            time.sleep(fail.delay)
        if fail is not None and fail.status is not None:
            if fail.status == 0:
                self.close_connection = True
                self.connection.close()
                return
            return self._error(fail.status, fail.message, retry_after=fail.retry_after)
        try:
            self._route(method, path, query, body)
        except Exception as e:  # a bug in the fake should show up as a 500 in the test
            self._error(500, f"fake hub crashed: {type(e).__name__}: {e}")

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    # ---- routes
    def _repo(self, key: str, write: bool = False) -> Repo | None:
        repo = self.hub.repos.get(key)
        if repo is None or (repo.private and not self._authorized()):
            self._error(404, "Repository not found", "RepoNotFound")
            return None
        if write and not self._authorized():
            self._error(401, "Invalid credentials in Authorization header")
            return None
        return repo

    def _route(self, method: str, path: str, query: dict, body: bytes) -> None:
        hub = self.hub
        rid = r"(?P<key>datasets/[^/]+/[^/]+)"
        if method == "POST" and path == "/api/repos/create":
            if not self._authorized():
                return self._error(401, "Invalid credentials in Authorization header")
            p = json.loads(body)
            key = f"{p.get('type', 'model')}s/{p['organization']}/{p['name']}"
            with hub.lock:
                if key in hub.repos:
                    return self._error(409, "You already created this dataset repo")
                repo = Repo(repo_id=f"{p['organization']}/{p['name']}", private=p.get("visibility") == "private")
                init = Commit(
                    hub.new_sha("init"),
                    None,
                    {".gitattributes": Blob(b"*.parquet filter=lfs\n", False)},
                    "initial commit",
                    "",
                )
                repo.commits[init.sha] = init
                repo.branches["main"] = init.sha
                hub.repos[key] = repo
            return self._send(200, {"url": f"{hub.url}/{key}", "name": repo.repo_id})
        if method == "POST" and path == "/api/validate-yaml":
            content = json.loads(body)["content"]
            m = re.match(r"---\n(.*?)\n---\n", content, re.S)
            try:
                meta = yaml.safe_load(m.group(1)) if m else {}
            except yaml.YAMLError as e:
                return self._send(400, {"errors": [{"message": str(e)}], "warnings": []})
            problem = hub.check_card(meta if isinstance(meta, dict) else {})
            if problem:
                return self._send(400, {"errors": [{"message": problem}], "warnings": []})
            return self._send(200, {"errors": [], "warnings": []})
        if m := re.fullmatch(rf"/api/{rid}(?:/revision/(?P<rev>.+))?", path):
            repo = self._repo(m["key"])
            if repo is None:
                return
            c = repo.resolve(m["rev"] or "main")
            if c is None:
                return self._error(404, "Revision not found", "RevisionNotFound")
            return self._send(
                200,
                {
                    "id": repo.repo_id,
                    "sha": c.sha,
                    "private": repo.private,
                    "siblings": [{"rfilename": p} for p in sorted(c.files)],
                    "tags": [],
                },
                head=method == "HEAD",
            )
        if method == "GET" and (m := re.fullmatch(rf"/api/{rid}/refs", path)):
            repo = self._repo(m["key"])
            if repo is None:
                return
            out = {
                "branches": [
                    {"name": b, "ref": f"refs/heads/{b}", "targetCommit": s} for b, s in repo.branches.items()
                ],
                "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": s} for t, (s, _) in repo.tags.items()],
                "converts": [],
            }
            if query.get("include_prs"):
                out["pullRequests"] = [
                    {"name": f"refs/pr/{i}", "ref": f"refs/pr/{i}", "targetCommit": s}
                    for i, s in enumerate(repo.prs, start=1)
                ]
            return self._send(200, out)
        if method == "GET" and (m := re.fullmatch(rf"/api/{rid}/tree/(?P<rev>[^/]+)(?:/(?P<sub>.+))?", path)):
            repo = self._repo(m["key"])
            if repo is None:
                return
            c = repo.resolve(m["rev"])
            if c is None:
                return self._error(404, "Revision not found", "RevisionNotFound")
            recursive = (query.get("recursive") or ["false"])[0].lower() == "true"
            prefix = unquote(m["sub"]).rstrip("/") + "/" if m["sub"] else ""
            entries, folders = [], set()
            for p, b in sorted(c.files.items()):
                if not p.startswith(prefix):
                    continue
                rest = p[len(prefix) :]
                parts = rest.split("/")
                for i in range(1, len(parts)):
                    if recursive or i == 1:
                        folders.add(prefix + "/".join(parts[:i]))
                if len(parts) > 1 and not recursive:
                    continue
                e = {"type": "file", "path": p, "size": len(b.data), "oid": git_sha1(b.data)}
                if b.lfs:
                    e["lfs"] = {"oid": b.sha256, "size": len(b.data), "pointerSize": 130}
                entries.append(e)
            entries += [{"type": "directory", "path": f, "oid": git_sha1(f.encode())} for f in sorted(folders)]
            return self._send(200, entries)
        if method == "POST" and (m := re.fullmatch(rf"/api/{rid}/preupload/(?P<rev>.+)", path)):
            repo = self._repo(m["key"], write=True)
            if repo is None:
                return
            c = repo.resolve(m["rev"])
            files = []
            for f in json.loads(body)["files"]:
                lfs = f["path"].endswith((".parquet", ".png", ".arrow")) or f["size"] > 64 * 1024
                old = c.files.get(f["path"]) if c else None
                files.append(
                    {
                        "path": f["path"],
                        "uploadMode": "lfs" if lfs else "regular",
                        "shouldIgnore": False,
                        "oid": old.oid if old is not None and old.lfs == lfs else None,
                    }
                )
            return self._send(200, {"files": files})
        if method == "POST" and (
            m := re.fullmatch(r"/(?P<key>datasets/[^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
        ):
            repo = self._repo(m["key"], write=True)
            if repo is None:
                return
            objects = []
            for o in json.loads(body)["objects"]:
                item = {"oid": o["oid"], "size": o["size"]}
                if o["oid"] not in repo.lfs:
                    item["actions"] = {
                        "upload": {"href": f"{hub.url}/lfs-upload/{m['key']}/{o['oid']}"},
                        "verify": {"href": f"{hub.url}/lfs-verify/{m['key']}", "header": {}},
                    }
                objects.append(item)
            return self._send(200, {"transfer": "basic", "objects": objects})
        if method == "PUT" and (
            m := re.fullmatch(r"/lfs-upload/(?P<key>datasets/[^/]+/[^/]+)/(?P<oid>[0-9a-f]{64})", path)
        ):
            if hashlib.sha256(body).hexdigest() != m["oid"]:
                return self._error(400, "sha256 mismatch")
            with hub.lock:
                hub.repos[m["key"]].lfs[m["oid"]] = body
            return self._send(200)
        if method == "POST" and (m := re.fullmatch(r"/lfs-verify/(?P<key>datasets/[^/]+/[^/]+)", path)):
            o = json.loads(body)
            data = hub.repos[m["key"]].lfs.get(o["oid"])
            if data is None or len(data) != o["size"]:
                return self._error(404, "object not found")
            return self._send(200, {})
        if method == "POST" and (m := re.fullmatch(rf"/api/{rid}/commit/(?P<rev>.+)", path)):
            return self._commit(m["key"], unquote(m["rev"]), bool(query.get("create_pr")), body)
        if method == "POST" and (m := re.fullmatch(rf"/api/{rid}/tag/(?P<rev>.+)", path)):
            repo = self._repo(m["key"], write=True)
            if repo is None:
                return
            p = json.loads(body)
            c = repo.resolve(m["rev"])
            if c is None:
                return self._error(404, "Revision not found", "RevisionNotFound")
            with hub.lock:
                if p["tag"] in repo.tags:
                    return self._error(409, f"Tag {p['tag']} already exists")
                repo.tags[p["tag"]] = (c.sha, p.get("message", ""))
            return self._send(200, {})
        if method == "POST" and (m := re.fullmatch(rf"/api/{rid}/branch/(?P<branch>.+)", path)):
            repo = self._repo(m["key"], write=True)
            if repo is None:
                return
            p = json.loads(body or b"{}")
            c = repo.resolve(p.get("startingPoint") or "main")
            with hub.lock:
                if unquote(m["branch"]) in repo.branches:
                    return self._error(409, "Branch already exists")
                repo.branches[unquote(m["branch"])] = c.sha
            return self._send(200, {})
        if method in ("GET", "HEAD") and (
            m := re.fullmatch(
                r"/(?P<key>datasets/[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/"
                r"(?P<file>.+)",
                path,
            )
        ):
            repo = self._repo(m["key"])
            if repo is None:
                return
            c = repo.resolve(m["rev"])
            if c is None:
                return self._error(404, "Revision not found", "RevisionNotFound")
            b = c.files.get(unquote(m["file"]))
            if b is None:
                return self._error(404, "Entry not found", "EntryNotFound")
            headers = {"X-Repo-Commit": c.sha, "ETag": f'"{b.oid}"', "Content-Type": "application/octet-stream"}
            if method == "HEAD":
                self.send_response(200)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(b.data)))
                self.end_headers()
                return
            return self._send(200, b.data, headers)
        self._error(404, f"fake hub has no route for {method} {path}")

    def _commit(self, key: str, rev: str, create_pr: bool, body: bytes) -> None:
        hub = self.hub
        repo = self._repo(key, write=True)
        if repo is None:
            return
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = lines[0]["value"]
        with hub.lock:
            base = repo.resolve(rev)
            if base is None:
                return self._error(404, "Revision not found", "RevisionNotFound")
            if header.get("parentCommit") and header["parentCommit"] != base.sha:
                return self._error(412, "A commit has happened since. Please refresh and try again.")
            files = dict(base.files)
            for item in lines[1:]:
                v = item["value"]
                if item["key"] == "file":
                    files[v["path"]] = Blob(base64.b64decode(v["content"]), False)
                elif item["key"] == "lfsFile":
                    if v["oid"] not in repo.lfs:
                        return self._error(422, f"LFS object {v['oid']} for {v['path']} was never uploaded")
                    files[v["path"]] = Blob(repo.lfs[v["oid"]], True)
                elif item["key"] == "deletedFile":
                    if v["path"] not in files:
                        return self._error(404, "A file with this name doesn't exist", "EntryNotFound")
                    del files[v["path"]]
                elif item["key"] == "deletedFolder":
                    pre = v["path"].rstrip("/") + "/"
                    files = {p: b for p, b in files.items() if not p.startswith(pre)}
                else:
                    return self._error(400, f"unknown commit operation {item['key']}")
            c = Commit(
                hub.new_sha(header["summary"]), base.sha, files, header["summary"], header.get("description", "")
            )
            repo.commits[c.sha] = c
            pr_url = None
            if create_pr:
                repo.prs.append(c.sha)
                pr_url = f"{hub.url}/{key}/discussions/{len(repo.prs)}"
            else:
                branch = rev if rev in repo.branches else None
                if branch is None:
                    return self._error(400, f"can only commit to a branch, not {rev}")
                repo.branches[branch] = c.sha
        return self._send(
            200, {"commitUrl": f"{hub.url}/{key}/commit/{c.sha}", "commitOid": c.sha, "pullRequestUrl": pr_url}
        )
