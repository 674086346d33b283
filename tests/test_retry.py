"""The one retry loop (mlbuild/retry.py) that the OpenAI-compatible client and the Hub push share."""

from __future__ import annotations

import http.client
import logging
import urllib.error

import pytest

from mlbuild import retry
from mlbuild.errors import MlbuildError
from mlbuild.retry import RetryPolicy, TransientError


class Clock:
    """A fake clock that the fake sleep advances."""

    def __init__(self):
        self.t = 0.0
        self.waits: list[float] = []

    def sleep(self, s: float) -> None:
        self.waits.append(s)
        self.t += s

    def __call__(self) -> float:
        return self.t


def flaky(n: int, exc: BaseException):
    calls = {"n": 0}

    def fn():
        calls["n"] += 1
        if calls["n"] <= n:
            raise exc
        return "ok"

    return fn, calls


def test_exponential_backoff_with_jitter_and_a_cap():
    clock = Clock()
    fn, calls = flaky(4, ConnectionResetError("reset"))
    policy = RetryPolicy(retries=5, backoff=1.0, max_wait=3.0)
    assert retry.call(fn, "x", policy, sleep=clock.sleep, clock=clock) == "ok"
    w = clock.waits
    assert calls["n"] == 5 and len(w) == 4
    assert 0.5 <= w[0] <= 1.0 and 1.0 <= w[1] <= 2.0 and 1.5 <= w[2] <= 3.0 and 1.5 <= w[3] <= 3.0


def test_retry_after_is_honoured_and_a_long_one_gives_up():
    clock = Clock()
    fn, _ = flaky(1, TransientError("HTTP 429", 429, retry_after=7.0))
    assert retry.call(fn, "x", RetryPolicy(backoff=0.01), sleep=clock.sleep, clock=clock) == "ok"
    assert clock.waits == [7.0]
    fn, calls = flaky(1, TransientError("HTTP 429", 429, retry_after=3600.0))
    with pytest.raises(TransientError):
        retry.call(fn, "x", RetryPolicy(max_retry_after=300.0), sleep=clock.sleep, clock=clock)
    assert calls["n"] == 1


def test_retry_after_from_an_http_response_header():
    class Resp:
        status_code = 503
        headers = {"Retry-After": "2"}

    class HubError(Exception):
        response = Resp()

    assert retry.retry_after_of(RuntimeError("wrapped")) is None
    try:
        try:
            raise HubError("busy")
        except HubError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as e:
        assert retry.retry_after_of(e) == 2.0 and retry.status_of(e) == 503 and retry.is_transient(e)
    assert retry.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry.parse_retry_after("soon") is None


def test_time_budget_stops_retrying():
    clock = Clock()
    fn, calls = flaky(100, TimeoutError("slow"))
    with pytest.raises(TimeoutError):
        retry.call(
            fn, "x", RetryPolicy(retries=50, backoff=1.0, max_wait=4.0, budget=10.0), sleep=clock.sleep, clock=clock
        )
    assert sum(clock.waits) <= 10.0 and 3 <= calls["n"] < 10


def test_what_is_retryable():
    assert retry.is_transient(ConnectionRefusedError())
    assert retry.is_transient(urllib.error.URLError(ConnectionRefusedError(111, "refused")))
    assert retry.is_transient(http.client.RemoteDisconnected("closed"))
    http500 = urllib.error.HTTPError("http://h", 500, "boom", {}, None)
    http400 = urllib.error.HTTPError("http://h", 400, "bad", {}, None)
    assert retry.is_transient(http500) and not retry.is_transient(http400)
    assert not retry.is_transient(ValueError("a bug")) and not retry.is_transient(MlbuildError("ours"))
    assert retry.is_transient(http400, frozenset({400}))  # statuses are the caller's choice


def test_non_retryable_errors_propagate_at_once():
    clock = Clock()
    fn, calls = flaky(3, ValueError("no"))
    with pytest.raises(ValueError):
        retry.call(fn, "x", RetryPolicy(), sleep=clock.sleep, clock=clock)
    assert calls["n"] == 1 and not clock.waits


def test_exhausted_retries_raise_the_last_error_and_logs_are_redacted(caplog):
    clock = Clock()
    caplog.set_level(logging.WARNING)
    fn, calls = flaky(10, ConnectionResetError("reset by https://u:pw-SECRET@h/v1"))
    with pytest.raises(ConnectionResetError):
        retry.call(
            fn, "POST https://u:pw-SECRET@h/v1?key=K-SECRET", RetryPolicy(retries=2), sleep=clock.sleep, clock=clock
        )
    assert calls["n"] == 3
    assert "retry 1/2" in caplog.text and "retry 2/2" in caplog.text
    assert "SECRET" not in caplog.text and "POST https://***@h/v1?key=***" in caplog.text


def test_policy_bounds():
    for bad in ({"retries": -1}, {"backoff": -1.0}, {"budget": 0.0}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)


def test_the_openai_client_and_the_hub_push_share_it(monkeypatch):
    """Both clients go through retry.call (one loop to fix, one set of rules)."""
    from mlbuild.models import openai_client
    from mlbuild.publish import hub

    seen = []
    real = retry.call

    def spy(fn, what, policy=None, **kw):
        seen.append(what)
        return real(fn, what, policy, **kw)

    monkeypatch.setattr(retry, "call", spy)
    assert hub.with_retries(lambda: 1, "hub op", retries=1, backoff=0.0) == 1
    with pytest.raises(openai_client.APIError):
        openai_client.OpenAIClient("http://127.0.0.1:9/v1", "m", max_retries=0).complete(["p"])
    assert seen == ["hub op", "POST http://127.0.0.1:9/v1/completions"]
