"""Credentials in URLs (``user:pass@``, ``?api_key=``) never reach a message: the helper itself, the
OpenAI-compatible client failing against a real local socket (HTTP 500, connection refused), and a whole
``mlbuild run`` through the CLI (stderr, every log record, the published files)."""

from __future__ import annotations

import json
import logging
import re
import socket
import traceback

import pytest
from helpers_http import Fail, FakeOpenAIServer

from mlbuild import retry
from mlbuild.models.openai_client import APIError, OpenAIClient
from mlbuild.redact import RedactingFilter, redact, redact_url

PASSWORD = "pw-S3CRET-7f3a"
QUERY_KEY = "qk-S3CRET-91bd"
MSG = [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("https://bob:hunter2@llm.example.org/v1", "https://***@llm.example.org/v1"),
        ("http://token@127.0.0.1:8000/v1/chat", "http://***@127.0.0.1:8000/v1/chat"),
        ("s3://AKIA:sec/ret@bucket/key", "s3://***@bucket/key"),  # a '/' inside userinfo would end it: ok
        ("https://h/v1?api_key=abc&model=x", "https://h/v1?api_key=***&model=x"),
        (
            "https://h/x?X-Amz-Signature=ab12&X-Amz-Credential=cd&a=1",
            "https://h/x?X-Amz-Signature=***&X-Amz-Credential=***&a=1",
        ),
        ("https://h/x?access_token=t0k&token=t1", "https://h/x?access_token=***&token=***"),
        (
            "error at POST https://u:p@h/v1/completions: HTTP 500",
            "error at POST https://***@h/v1/completions: HTTP 500",
        ),
        ("Authorization: Bearer sk-abc123, then", "Authorization: Bearer ***, then"),
        # left alone: no credentials
        ("https://h/a@b/c", "https://h/a@b/c"),
        ("git@github.com:org/repo", "git@github.com:org/repo"),
        ("the bearer of news; key=value in prose", "the bearer of news; key=value in prose"),
        ("https://h/v1?model=x&keyword=y", "https://h/v1?model=x&keyword=y"),
    ],
)
def test_redact_patterns(text, expected):
    assert redact(text) == expected


def test_redact_literal_secrets_and_urls():
    assert redact_url("https://a:b@h:1/p?key=z") == "https://***@h:1/p?key=***"
    assert redact("key sk-LONGSECRET in body", "sk-LONGSECRET", None, "") == "key *** in body"
    assert redact(ValueError("https://u:p@h")) == "https://***@h"


def test_redacting_filter_masks_messages_args_and_tracebacks():
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    h = Keep()
    h.setFormatter(logging.Formatter("%(message)s"))
    h.addFilter(RedactingFilter("tok-123456"))
    lg = logging.getLogger("mlbuild.test.redact")
    lg.addHandler(h)
    lg.propagate = False
    try:
        lg.warning("calling %s with %s", "https://u:pw@h/v1", "tok-123456")
        try:
            raise RuntimeError("failed https://u:pw@h/v1")
        except RuntimeError:
            lg.exception("boom")
    finally:
        lg.removeHandler(h)
    text = "\n".join(records)
    assert "pw@" not in text and "tok-123456" not in text
    assert "https://***@h/v1" in text and "RuntimeError: failed https://***@h/v1" in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_credentials(base_url: str) -> str:
    return base_url.replace("http://", f"http://alice:{PASSWORD}@") + f"?api_key={QUERY_KEY}"


def _assert_clean(*texts: str) -> None:
    for t in texts:
        assert PASSWORD not in t and QUERY_KEY not in t, t


def test_client_http_500_with_credentials_in_the_url(caplog):
    caplog.set_level(logging.DEBUG)
    with FakeOpenAIServer() as srv:
        base = srv.base_url
        srv.fail(*[Fail(500, body=f'{{"error": "upstream said alice:{PASSWORD}"}}')] * 3)
        c = OpenAIClient(base.replace("http://", f"http://alice:{PASSWORD}@"), "m", max_retries=2, backoff=0.01)
        with pytest.raises(APIError) as ei:
            c.chat([MSG])
        # the credentials were sent (HTTP Basic), never shown
        assert srv.requests[0].headers["Authorization"].startswith("Basic ")
        assert srv.requests[0].path == "/v1/chat/completions"
        srv.fail(Fail(401, body=f'{{"error": "bad password {PASSWORD}"}}'))
        with pytest.raises(APIError) as e401:
            c.chat([MSG])
    assert "giving up after 3 attempts; last: HTTP 500" in str(ei.value)
    assert "HTTP 401" in str(e401.value) and "***" in str(e401.value)
    assert "http://127.0.0.1" in str(ei.value)
    logged = [r.getMessage() for r in caplog.records]
    assert sum("retry" in m for m in logged) == 2
    _assert_clean(str(ei.value), str(e401.value), repr(c), c.base_url, *logged, caplog.text)
    _assert_clean("".join(traceback.format_exception(ei.value)))


def test_client_connection_refused_with_credentials_in_the_url(caplog):
    caplog.set_level(logging.DEBUG)
    url = _with_credentials(f"http://127.0.0.1:{_free_port()}/v1")
    c = OpenAIClient(url, "m", max_retries=1, backoff=0.01)
    with pytest.raises(APIError, match="connection error: ConnectionRefusedError") as ei:
        c.complete(["p"])
    assert "?api_key=***" in str(ei.value)
    _assert_clean(str(ei.value), repr(c), caplog.text, *(r.getMessage() for r in caplog.records))


RECIPE = """
[dataset]
name = "redacted"
version = "1.0.0"
license = "cc-by-4.0"

[source]
uses = "jsonl.v1"
path = "passages.jsonl"
text_columns = ["passage"]
id_column = "doc_id"

[[steps]]
uses = "synthesize_queries.v1"
passage_lang = "en"
monolingual = true
engine = "openai"
model = "test-model"
base_url = "{base_url}"
lid_model = "{lid}"
"""

PASSAGES = [
    "the river carries water from the mountains to the sea every single day of the year",
    "honey bees dance in the hive to show the other bees where the flowers are found",
]


def _reply(body):
    prompt = body["prompt"]
    if prompt.endswith("Summary:") and "Question" not in prompt:  # staged: the summary call
        return " the river carries water\n"
    if not prompt.endswith("Summary:"):  # staged: the question, after its header
        return " where does the river carry its water every day?\n"
    lang = re.findall(r"Question in (\w+):", prompt)[-1]
    return f" the river carries water\nQuestion in {lang}: where does the river carry its water every day?\n\nPassage:"


def _recipe(write_recipe, base_url: str, lid) -> object:
    rows = "".join(json.dumps({"doc_id": f"d{i}", "passage": p}) + "\n" for i, p in enumerate(PASSAGES))
    return write_recipe(RECIPE.format(base_url=base_url, lid=lid), {"passages.jsonl": rows})


def test_cli_run_against_a_failing_server_never_shows_the_password(
    write_recipe, tiny_lid, tmp_path, monkeypatch, capfd, caplog
):
    """`mlbuild run` with a base_url holding user:pass@ and ?api_key=, against a server answering 500:
    exit 1, one error line, and neither secret on stderr, stdout or in any log record."""
    from mlbuild.cli import main

    monkeypatch.setattr(retry.RetryPolicy, "wait", lambda self, i, after=None: 0.0)
    caplog.set_level(logging.DEBUG)
    with FakeOpenAIServer(lambda body: Fail(500)) as srv:
        path = _recipe(write_recipe, _with_credentials(srv.base_url), tiny_lid)
        code = main(["run", str(path), "--out", str(tmp_path / "out")])
        assert srv.requests and srv.requests[0].headers["Authorization"].startswith("Basic ")
    out, err = capfd.readouterr()
    assert code == 1 and "error:" in err and "HTTP 500" in err
    _assert_clean(out, err, caplog.text, *(r.getMessage() for r in caplog.records))


def test_published_files_mask_the_url_credentials(write_recipe, tiny_lid, tmp_path):
    """A successful run: the recipe lock (published with the version) shows the URL masked; no file of
    the version holds either secret."""
    from mlbuild.pipeline.runner import Runner
    from mlbuild.recipe import load_recipe

    with FakeOpenAIServer(_reply) as srv:
        path = _recipe(write_recipe, _with_credentials(srv.base_url), tiny_lid)
        res = Runner(load_recipe(path), tmp_path / "out", quiet=True).run()
    lock = (res.dataset_dir / "recipe.lock.toml").read_text(encoding="utf-8")
    assert "http://***@127.0.0.1:" in lock and "api_key=***" in lock
    for p in res.dataset_dir.rglob("*"):
        if p.is_file():
            _assert_clean(p.read_text(encoding="utf-8", errors="ignore"))


def test_prompt_templates_fill_plain_names_only():
    from mlbuild.templating import safe_format

    assert (
        safe_format("{src_name}: {text} {{literal}}", {"src_name": "English", "text": "hi"}) == "English: hi {literal}"
    )
    for bad in ("{text.__class__.__mro__}", "{text[0]}", "{text!r}", "{other}", "{text"):
        with pytest.raises(ValueError):
            safe_format(bad, {"text": "hi"})
