"""One retry loop for mlbuild's HTTP clients (the OpenAI-compatible client, the Hub push).

:func:`call` runs ``fn`` and, while it fails with a retryable error, waits and runs it again:

- waits grow exponentially with jitter: ``min(max_wait, backoff * 2**i) * U(0.5, 1.0)`` before retry ``i + 1``;
- a ``Retry-After`` the server sent (seconds or an HTTP date) is honoured: the wait is at least that
  long; a server asking for more than ``max_retry_after`` seconds is not retried (come back later);
- at most ``retries`` retries, and none that would start after ``budget`` seconds (when set);
- retryable: the statuses in ``statuses`` (429, 5xx, ...), timeouts, dropped or refused connections,
  also when wrapped in another exception (``__cause__`` / ``__context__``); and :class:`TransientError`,
  which a client raises from ``fn`` when it has classified a failure itself. mlbuild's own errors never;
- each retry logs one WARNING with the error, secrets masked (:func:`mlbuild.redact.redact`).

The last error propagates unchanged; the caller turns it into its own message.

Example::

    policy = RetryPolicy(retries=5, backoff=1.0, budget=600)
    payload = retry.call(lambda: post(url, body), f"POST {url}", policy, logger=log)
"""

from __future__ import annotations

import email.utils
import http.client
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .errors import MlbuildError
from .redact import redact

log = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_NETWORK_NAMES = ("TimeoutException", "NetworkError", "RemoteProtocolError", "TransportError", "ProtocolError")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. ``retries`` counts retries after the first attempt."""

    retries: int = 5
    backoff: float = 1.0  # the first wait (seconds), doubled at each retry
    max_wait: float = 60.0  # cap of one backoff wait
    max_retry_after: float = 300.0  # a longer Retry-After gives up instead of waiting
    budget: float | None = None  # no retry starts later than this many seconds after the first attempt
    statuses: frozenset[int] = TRANSIENT_STATUS

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff < 0 or self.max_wait < 0:
            raise ValueError("retries, backoff and max_wait must be >= 0")
        if self.budget is not None and self.budget <= 0:
            raise ValueError("budget must be > 0 seconds (or None)")

    def wait(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        w = min(self.max_wait, self.backoff * 2**retry) * (0.5 + random.random() / 2)
        return max(w, retry_after) if retry_after is not None else w


class TransientError(Exception):
    """A failure the client classified as worth retrying. ``why`` is a short, secret-free description
    (``HTTP 503``, ``timeout after 60s``); ``status`` the HTTP status, if any; ``retry_after`` seconds."""

    def __init__(self, why: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(why)
        self.why = why
        self.status = status
        self.retry_after = retry_after


def _chain(exc: BaseException):
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _own_status(e: BaseException) -> int | None:
    if isinstance(e, TransientError):
        return e.status
    status = getattr(getattr(e, "response", None), "status_code", None)
    if status is None and isinstance(getattr(e, "code", None), int) and hasattr(e, "headers"):
        status = e.code  # urllib.error.HTTPError
    return status if isinstance(status, int) else None


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception (or one it wraps) carries, or None."""
    for e in _chain(exc):
        status = _own_status(e)
        if status is not None:
            return status
    return None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header value (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, dt.timestamp() - time.time())


def retry_after_of(exc: BaseException) -> float | None:
    """The ``Retry-After`` an exception (or one it wraps) carries: a :class:`TransientError`'s value, or
    the header of its HTTP response."""
    for e in _chain(exc):
        if isinstance(e, TransientError) and e.retry_after is not None:
            return e.retry_after
        headers = getattr(getattr(e, "response", None), "headers", None) or getattr(e, "headers", None)
        if headers is not None:
            try:
                value = headers.get("Retry-After")
            except Exception:  # an object without a mapping's get(): no header
                value = None
            if value:
                return parse_retry_after(str(value))
    return None


def is_transient(exc: BaseException, statuses: frozenset[int] = TRANSIENT_STATUS) -> bool:
    """Worth retrying: a retryable status, a timeout or a dropped connection, also when wrapped."""
    if isinstance(exc, MlbuildError):
        return False
    for e in _chain(exc):
        if isinstance(e, TransientError):
            return True
        if isinstance(e, MlbuildError):
            return False
        status = _own_status(e)
        if status is not None:
            return status in statuses
        reason = getattr(e, "reason", None)  # urllib.error.URLError wraps the socket error
        for x in (e, reason):
            if isinstance(x, (ConnectionError, TimeoutError, http.client.HTTPException)):
                return True
            if x is not None and type(x).__name__.endswith(_NETWORK_NAMES):
                return True
    return False


def describe(exc: BaseException) -> str:
    """One short line for an error: ``HTTP 503: <first line>`` or ``<Type>: <first line>``, secrets masked."""
    if isinstance(exc, TransientError):
        return redact(exc.why)
    status = status_of(exc)
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    head = f"HTTP {status}" if status is not None else type(exc).__name__
    line = f"{head}: {first}" if first and not first.startswith(str(status)) else (first or head)
    return redact(line)


def call(
    fn: Callable[[], T],
    what: str,
    policy: RetryPolicy | None = None,
    *,
    retry_if: Callable[[BaseException], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    logger: logging.Logger | None = None,
) -> T:
    """Run ``fn`` under ``policy`` (see the module docstring); ``what`` names the call in log lines.
    ``retry_if`` replaces the default classification (:func:`is_transient` with the policy's statuses)."""
    policy = policy or RetryPolicy()
    logger = logger or log
    classify = retry_if or (lambda e: is_transient(e, policy.statuses))
    start = clock()
    for attempt in range(policy.retries + 1):
        try:
            return fn()
        except Exception as e:  # classified below; anything not retryable propagates as is
            if attempt >= policy.retries or not classify(e):
                raise
            after = retry_after_of(e)
            if after is not None and after > policy.max_retry_after:
                logger.warning(
                    "%s failed (%s); the server asks to wait %.0fs: giving up", redact(what), describe(e), after
                )
                raise
            wait = policy.wait(attempt, after)
            if policy.budget is not None and clock() - start + wait > policy.budget:
                logger.warning(
                    "%s failed (%s); giving up: the retry budget of %.0fs is spent",
                    redact(what),
                    describe(e),
                    policy.budget,
                )
                raise
            logger.warning(
                "%s failed (%s); retry %d/%d in %.1fs", redact(what), describe(e), attempt + 1, policy.retries, wait
            )
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover
