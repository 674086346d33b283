"""A small client for OpenAI-compatible endpoints (vLLM, SGLang, llama.cpp server, hosted APIs).

Standard library only (``urllib``). Requests run on a bounded thread pool; each one goes through
:func:`mlbuild.retry.call`: retried with exponential backoff and jitter on 408/409/425/429/5xx, timeouts
and dropped or refused connections, honouring a ``Retry-After`` header, at most ``max_retries`` times
(and within ``retry_budget`` seconds when set). The API key is read from an environment variable at
request time; it never appears in logs, exceptions or ``repr``. Without the variable set, no
``Authorization`` header is sent (local servers usually need none). Credentials written into
``base_url`` (``https://user:password@host/v1``) are sent but masked in every message
(:mod:`mlbuild.redact`).

Example::

    client = OpenAIClient("http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-7B-Instruct", max_concurrency=16)
    client.chat([[{"role": "user", "content": "Translate to Portuguese: Hello"}]], temperature=0.0)
    client.complete(["Once upon a time"], max_tokens=20)
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .. import retry
from ..errors import MlbuildError
from ..redact import redact, redact_url

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_SLEEP = 60.0  # longest backoff wait between two attempts


class APIError(MlbuildError):
    """An endpoint call failed for good (a non-retryable status, or retries exhausted).

    Carries the HTTP ``status`` (None for network errors) and a short excerpt of the response body,
    with the API key redacted should the server echo it."""

    def __init__(self, message: str, status: int | None = None):
        self.status = status
        super().__init__(message)


@dataclass
class Completion:
    """One generated text with what the endpoint said about it."""

    text: str
    finish_reason: str | None = None  # "stop", "length" (hit max_tokens), ...
    completion_tokens: int | None = None
    prompt_tokens: int | None = None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


class OpenAIClient:
    """Calls ``{base_url}/chat/completions`` and ``{base_url}/completions``; results keep input order."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 8,
        max_retries: int = 5,
        timeout: float = 60.0,
        backoff: float = 1.0,
        retry_budget: float | None = None,
    ):
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        # credentials written into the URL go out as HTTP Basic auth (urllib cannot send them from the
        # URL); ``base_url`` keeps the URL without them, for messages and repr
        self._url, self._basic = _split_credentials(base_url.rstrip("/"))
        # what a server might echo back in an error body: the URL's password and the Basic token
        password = urllib.parse.unquote(urllib.parse.urlsplit(base_url).password or "")
        self._secrets = (password, self._basic.split(" ", 1)[1] if self._basic else None)
        self.base_url = redact_url(self._url)
        self.model = model
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff = backoff
        self.retry_policy = retry.RetryPolicy(
            retries=max_retries, backoff=backoff, max_wait=MAX_SLEEP, budget=retry_budget, statuses=RETRY_STATUS
        )
        self._lock = threading.Lock()
        self.usage = {"requests": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0}
        # proxies from the environment still apply (hosted APIs), but never for loopback addresses
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}) if _is_loopback(self._url) else urllib.request.ProxyHandler()
        )

    def __repr__(self) -> str:  # never shows the key, only where it comes from
        return (
            f"OpenAIClient(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r}, "
            f"max_concurrency={self.max_concurrency})"
        )

    # -- public API -----------------------------------------------------------------------------
    def chat(self, messages_batch: list[list[dict]], **params: Any) -> list[str]:
        """One chat completion per conversation; returns the assistant texts in input order."""
        return [c.text for c in self.chat_detailed(messages_batch, **params)]

    def complete(self, prompts: list[str], **params: Any) -> list[str]:
        """One text completion per prompt; returns the texts in input order."""
        return [c.text for c in self.complete_detailed(prompts, **params)]

    def chat_detailed(self, messages_batch: list[list[dict]], **params: Any) -> list[Completion]:
        bodies = [{"model": self.model, "messages": m, **params} for m in messages_batch]
        return self._run("/chat/completions", bodies, _parse_chat)

    def complete_detailed(self, prompts: list[str], **params: Any) -> list[Completion]:
        bodies = [{"model": self.model, "prompt": p, **params} for p in prompts]
        return self._run("/completions", bodies, _parse_completion)

    # -- internals ------------------------------------------------------------------------------
    def _run(self, path: str, bodies: list[dict], parse) -> list[Completion]:
        if not bodies:
            return []
        if len(bodies) == 1 or self.max_concurrency == 1:
            return [parse(self._post(path, b)) for b in bodies]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(bodies))) as pool:
            return list(pool.map(lambda b: parse(self._post(path, b)), bodies))

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._key()
        if self._basic:  # the URL's own credentials are the more specific choice
            h["Authorization"] = self._basic
        elif key:
            h["Authorization"] = f"Bearer {key}"
        return h

    def _key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def _post(self, path: str, body: dict) -> dict:
        url = self._url + path
        shown = self.base_url + path  # no credentials, no secret query values
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        attempts = 0

        def attempt() -> dict:
            nonlocal attempts
            attempts += 1
            with self._lock:
                self.usage["requests"] += 1
                self.usage["retries"] += int(attempts > 1)
            req = urllib.request.Request(url, data=data, headers=self._headers(), method="POST")
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    payload = json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as e:
                excerpt = redact(_read_excerpt(e), self._key(), *self._secrets)
                if e.code not in RETRY_STATUS:
                    raise APIError(f"{shown} answered HTTP {e.code}: {excerpt}", e.code) from None
                after = retry.parse_retry_after(e.headers.get("Retry-After") if e.headers else None)
                raise retry.TransientError(f"HTTP {e.code}", e.code, after) from None
            except TimeoutError as e:
                raise retry.TransientError(f"timeout after {self.timeout}s ({type(e).__name__})") from None
            except urllib.error.URLError as e:
                if isinstance(e.reason, TimeoutError):
                    raise retry.TransientError(f"timeout after {self.timeout}s") from None
                raise retry.TransientError(f"connection error: {type(e.reason).__name__}") from None
            except (ConnectionError, http.client.HTTPException) as e:
                raise retry.TransientError(f"connection error: {type(e).__name__}") from None
            except json.JSONDecodeError:
                raise APIError(f"{shown} answered with a body that is not JSON", None) from None
            u = payload.get("usage") or {}
            with self._lock:
                self.usage["prompt_tokens"] += int(u.get("prompt_tokens") or 0)
                self.usage["completion_tokens"] += int(u.get("completion_tokens") or 0)
            return payload

        try:
            return retry.call(
                attempt,
                f"POST {shown}",
                self.retry_policy,
                retry_if=lambda e: isinstance(e, retry.TransientError),
                logger=log,
            )
        except retry.TransientError as e:
            raise APIError(f"{shown}: giving up after {attempts} attempts; last: {e.why}", e.status) from None


def _split_credentials(url: str) -> tuple[str, str | None]:
    """``(url without user info, "Basic ..." header value or None)``."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()).decode()
    return urllib.parse.urlunsplit(parts._replace(netloc=host)), f"Basic {token}"


def _is_loopback(url: str) -> bool:
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def _read_excerpt(e: urllib.error.HTTPError, limit: int = 300) -> str:
    try:
        raw = e.read().decode("utf-8", "replace")
    except Exception:  # the body is only for the message
        return ""
    raw = " ".join(raw.split())
    return raw[:limit] + ("..." if len(raw) > limit else "")


def _usage(payload: dict) -> tuple[int | None, int | None]:
    u = payload.get("usage") or {}
    return u.get("completion_tokens"), u.get("prompt_tokens")


def _parse_chat(payload: dict) -> Completion:
    try:
        choice = payload["choices"][0]
        text = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise APIError("chat completion without choices[0].message.content") from None
    ct, pt = _usage(payload)
    return Completion(text, choice.get("finish_reason"), ct, pt)


def _parse_completion(payload: dict) -> Completion:
    try:
        choice = payload["choices"][0]
        text = choice.get("text") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise APIError("completion without choices[0].text") from None
    ct, pt = _usage(payload)
    return Completion(text, choice.get("finish_reason"), ct, pt)
