"""A small client for OpenAI-compatible endpoints (vLLM, SGLang, llama.cpp server, hosted APIs).

Standard library only (``urllib``). Requests run on a bounded thread pool; each one is retried with
exponential backoff and jitter on 429, 5xx, timeouts and dropped connections, honouring a
``Retry-After`` header. The API key is read from an environment variable at request time; it never
appears in logs, exceptions or ``repr``. Without the variable set, no ``Authorization`` header is sent
(local servers usually need none).

Example::

    client = OpenAIClient("http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-7B-Instruct", max_concurrency=16)
    client.chat([[{"role": "user", "content": "Translate to Portuguese: Hello"}]], temperature=0.0)
    client.complete(["Once upon a time"], max_tokens=20)
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..errors import MlbuildError

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_SLEEP = 60.0


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
    ):
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff = backoff
        self._lock = threading.Lock()
        self.usage = {"requests": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0}
        # proxies from the environment still apply (hosted APIs), but never for loopback addresses
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}) if _is_loopback(self.base_url) else urllib.request.ProxyHandler()
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
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            h["Authorization"] = f"Bearer {key}"
        return h

    def _redact(self, text: str) -> str:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key and key in text:
            text = text.replace(key, "***")
        return text

    def _post(self, path: str, body: dict) -> dict:
        url = self.base_url + path
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        attempt = 0
        while True:
            req = urllib.request.Request(url, data=data, headers=self._headers(), method="POST")
            retry_after: float | None = None
            try:
                with self._lock:
                    self.usage["requests"] += 1
                with self._opener.open(req, timeout=self.timeout) as resp:
                    payload = json.loads(resp.read().decode("utf-8"))
                u = payload.get("usage") or {}
                with self._lock:
                    self.usage["prompt_tokens"] += int(u.get("prompt_tokens") or 0)
                    self.usage["completion_tokens"] += int(u.get("completion_tokens") or 0)
                return payload
            except urllib.error.HTTPError as e:
                status = e.code
                excerpt = self._redact(_read_excerpt(e))
                if status not in RETRY_STATUS:
                    raise APIError(f"{url} answered HTTP {status}: {excerpt}", status) from None
                retry_after = _retry_after(e.headers.get("Retry-After") if e.headers else None)
                why = f"HTTP {status}"
            except TimeoutError as e:
                status, why = None, f"timeout after {self.timeout}s ({type(e).__name__})"
            except urllib.error.URLError as e:
                status = None
                reason = e.reason
                if isinstance(reason, TimeoutError):
                    why = f"timeout after {self.timeout}s"
                else:
                    why = f"connection error: {type(reason).__name__}"
            except (ConnectionError, http.client.HTTPException) as e:
                status, why = None, f"connection error: {type(e).__name__}"
            except json.JSONDecodeError:
                raise APIError(f"{url} answered with a body that is not JSON", None) from None
            if attempt >= self.max_retries:
                raise APIError(f"{url}: giving up after {attempt + 1} attempts; last: {why}", status)
            sleep = self.backoff * (2**attempt) * (0.5 + random.random())
            if retry_after is not None:
                sleep = max(sleep, retry_after)
            sleep = min(sleep, MAX_SLEEP)
            attempt += 1
            with self._lock:
                self.usage["retries"] += 1
            log.warning("%s: %s; retry %d/%d in %.2fs", url, why, attempt, self.max_retries, sleep)
            time.sleep(sleep)


def _is_loopback(url: str) -> bool:
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def _read_excerpt(e: urllib.error.HTTPError, limit: int = 300) -> str:
    try:
        raw = e.read().decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - the body is only for the message
        return ""
    raw = " ".join(raw.split())
    return raw[:limit] + ("..." if len(raw) > limit else "")


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
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
