from __future__ import annotations

import logging
import time

import pytest
from helpers_http import Fail, FakeOpenAIServer

from mlbuild.models.openai_client import APIError, OpenAIClient
from mlbuild.retry import parse_retry_after as _retry_after

MSG = [{"role": "user", "content": "hello there"}]


def test_chat_and_complete_keep_order():
    with FakeOpenAIServer(lambda b: (b.get("prompt") or b["messages"][-1]["content"])[::-1]) as srv:
        c = OpenAIClient(srv.base_url, "m", max_concurrency=4, backoff=0.01)
        outs = c.chat([[{"role": "user", "content": f"x{i}"}] for i in range(20)], temperature=0.0)
        assert outs == [f"x{i}"[::-1] for i in range(20)]
        assert c.complete(["abc", "de"], max_tokens=5) == ["cba", "ed"]
        paths = {r.path for r in srv.requests}
        assert paths == {"/v1/chat/completions", "/v1/completions"}
        assert srv.requests[0].body["model"] == "m" and srv.requests[0].body["temperature"] == 0.0
        assert srv.max_active <= 4


def test_concurrency_is_bounded():
    with FakeOpenAIServer() as srv:
        srv.fail(*[Fail(delay=0.05) for _ in range(12)])
        c = OpenAIClient(srv.base_url, "m", max_concurrency=3)
        t = time.perf_counter()
        c.chat([MSG] * 12)
        took = time.perf_counter() - t
        assert 2 <= srv.max_active <= 3
        assert took < 12 * 0.05  # ran in parallel


def test_retries_429_with_retry_after_then_succeeds():
    with FakeOpenAIServer() as srv:
        srv.fail(Fail(429, retry_after="0.2"), Fail(503))
        c = OpenAIClient(srv.base_url, "m", max_retries=3, backoff=0.01)
        t = time.perf_counter()
        assert c.chat([MSG]) == ["hello there"]
        assert time.perf_counter() - t >= 0.2  # honoured Retry-After
        assert len(srv.requests) == 3
        assert c.usage["retries"] == 2


def test_timeout_is_retried_and_gives_up_cleanly():
    with FakeOpenAIServer() as srv:
        srv.fail(Fail(delay=1.0))
        c = OpenAIClient(srv.base_url, "m", timeout=0.3, max_retries=2, backoff=0.01)
        assert c.chat([MSG]) == ["hello there"]  # first call timed out, second answered
        assert len(srv.requests) == 2
        srv.fail(*[Fail(delay=1.0)] * 3)
        with pytest.raises(APIError, match="giving up after 3 attempts; last: timeout"):
            c.chat([MSG])


def test_non_retryable_status_fails_at_once_and_exhausted_retries_raise():
    with FakeOpenAIServer() as srv:
        srv.fail(Fail(400, body='{"error": "bad request"}'))
        c = OpenAIClient(srv.base_url, "m", max_retries=4, backoff=0.01)
        with pytest.raises(APIError) as ei:
            c.chat([MSG])
        assert ei.value.status == 400 and "bad request" in str(ei.value)
        assert len(srv.requests) == 1
        srv.fail(*[Fail(500)] * 3)
        c2 = OpenAIClient(srv.base_url, "m", max_retries=2, backoff=0.01)
        with pytest.raises(APIError) as ei:
            c2.chat([MSG])
        assert ei.value.status == 500


def test_key_from_env_at_request_time_never_leaks(monkeypatch, caplog):
    secret = "sk-test-SECRET-123"
    with FakeOpenAIServer() as srv:
        c = OpenAIClient(srv.base_url, "m", api_key_env="MY_TEST_KEY", max_retries=1, backoff=0.01)
        monkeypatch.delenv("MY_TEST_KEY", raising=False)
        c.chat([MSG])
        assert "Authorization" not in srv.requests[-1].headers
        monkeypatch.setenv("MY_TEST_KEY", secret)  # set after the client was built: read per request
        caplog.set_level(logging.DEBUG)
        srv.fail(Fail(503), Fail(401, body=f'{{"error": "invalid key {secret}"}}'))
        with pytest.raises(APIError) as ei:
            c.chat([MSG])
        assert srv.requests[-1].headers["Authorization"] == f"Bearer {secret}"
        assert secret not in str(ei.value) and "***" in str(ei.value)
        assert secret not in repr(c) and secret not in caplog.text


def test_detailed_reports_truncation_and_tokens():
    with FakeOpenAIServer(lambda b: "one two three four") as srv:
        c = OpenAIClient(srv.base_url, "m")
        (r,) = c.chat_detailed([MSG], max_tokens=4)
        assert r.truncated and r.completion_tokens == 4
        (r,) = c.complete_detailed(["p"], max_tokens=40)
        assert not r.truncated


def test_retry_after_parsing():
    assert _retry_after("2") == 2.0
    assert _retry_after(None) is None
    assert _retry_after("garbage") is None
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
