"""A tiny OpenAI-compatible HTTP server on 127.0.0.1 for tests (no network, standard library only).

Usage::

    from helpers_http import FakeOpenAIServer, Fail

    def reply(body: dict) -> str:              # body = the JSON request (model, messages | prompt, ...)
        return body["messages"][-1]["content"].upper()

    with FakeOpenAIServer(reply) as srv:        # srv.base_url == "http://127.0.0.1:<port>/v1"
        srv.fail(Fail(429, retry_after="0"), Fail(delay=2.0))  # next two requests: a 429, then a slow answer
        OpenAIClient(srv.base_url, "m").chat([[{"role": "user", "content": "hi"}]])
        srv.requests                            # list of Request(path, body, headers), in arrival order

- ``reply(body) -> str`` gives the text of ``choices[0]``; without it the server echoes the last user
  message (chat) or the prompt (completions). Return a :class:`Fail` from ``reply`` to fail that call.
- ``srv.fail(*items)`` queues failures served to the next requests, one each, before normal replies:
  ``Fail(status, retry_after=None, delay=0.0, body="")``; ``Fail(delay=s)`` with status 200 answers
  normally after ``s`` seconds (use a delay longer than the client timeout to test timeouts).
- ``usage.completion_tokens`` counts whitespace-separated words of the reply; ``finish_reason`` is
  ``"length"`` when that count reaches the request's ``max_tokens``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Fail:
    status: int = 500
    retry_after: str | None = None
    delay: float = 0.0
    body: str = ""

    def __post_init__(self) -> None:
        if self.delay and self.status == 500 and not self.body:
            self.status = 200  # Fail(delay=...) = a slow but otherwise normal answer


@dataclass
class Request:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]


def _default_reply(body: dict[str, Any]) -> str:
    if "messages" in body:
        users = [m for m in body["messages"] if m.get("role") == "user"]
        return str(users[-1]["content"]) if users else ""
    return str(body.get("prompt", ""))


class FakeOpenAIServer:
    def __init__(self, reply: Callable[[dict[str, Any]], str | Fail] | None = None):
        self.reply = reply or _default_reply
        self.requests: list[Request] = []
        self._failures: deque[Fail] = deque()
        self._lock = threading.Lock()
        self.active = 0
        self.max_active = 0  # highest number of requests in flight at once (to check concurrency bounds)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # http.server naming
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                with server._lock:
                    server.requests.append(Request(self.path, body, dict(self.headers)))
                    fail = server._failures.popleft() if server._failures else None
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                self._counted = True
                try:
                    self._answer(body, fail)
                finally:
                    self._release()

            def _release(self) -> None:
                # a request stops counting as in flight just before its answer is written: once the client has
                # read the answer it may send the next one before this thread runs again
                if getattr(self, "_counted", False):
                    self._counted = False
                    with server._lock:
                        server.active -= 1

            def _answer(self, body: dict[str, Any], fail: Fail | None) -> None:
                if fail is None:
                    out = server.reply(body)
                    if isinstance(out, Fail):
                        fail = out
                if fail is not None:
                    if fail.delay:
                        time.sleep(fail.delay)
                    if fail.status != 200:
                        self._send(fail.status, fail.body.encode(), fail.retry_after)
                        return
                    out = server.reply(body)
                    if isinstance(out, Fail):
                        self._send(out.status, out.body.encode(), out.retry_after)
                        return
                text = str(out)
                ntok = len(text.split())
                limit = body.get("max_tokens")
                finish = "length" if limit is not None and ntok >= int(limit) else "stop"
                if self.path.endswith("/chat/completions"):
                    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
                elif self.path.endswith("/completions"):
                    choice = {"index": 0, "text": text, "finish_reason": finish}
                else:
                    self._send(404, b'{"error": "not found"}')
                    return
                payload = {
                    "id": "x",
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [choice],
                    "usage": {"prompt_tokens": 1, "completion_tokens": ntok, "total_tokens": ntok + 1},
                }
                self._send(200, json.dumps(payload).encode())

            def _send(self, status: int, data: bytes, retry_after: str | None = None) -> None:
                self._release()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    if retry_after is not None:
                        self.send_header("Retry-After", retry_after)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def fail(self, *items: Fail) -> None:
        with self._lock:
            self._failures.extend(items)

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
