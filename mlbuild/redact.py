"""Secrets out of everything people read: logs, warnings, errors, manifests, cards, recipe locks.

One place masks what a URL or a message can carry:

- ``scheme://user:password@host`` (and ``scheme://token@host``) -> ``scheme://***@host``;
- query parameters that name a secret (``?key=``, ``api_key=``, ``token=``, ``access_token=``,
  ``sig=``, ``password=``, ``secret=``, ``X-Amz-Signature=``, ...) -> ``?key=***``;
- ``Authorization: Bearer <token>`` -> ``Authorization: Bearer ***``;
- any literal secret the caller knows (an API key read from the environment).

Example::

    >>> redact_url("https://bob:hunter2@llm.example.org/v1?api_key=abc&model=x")
    'https://***@llm.example.org/v1?api_key=***&model=x'
    >>> redact("POST https://u:p@host/v1/chat/completions failed", "sk-123")
    'POST https://***@host/v1/chat/completions failed'

:class:`RedactingFilter` applies :func:`redact` to every log record a handler emits (the CLI installs
one on its handlers, as a last net behind the call sites that redact their own messages).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

MASK = "***"

# scheme://user:password@ (a password may hold an unescaped '/', as AWS secrets do) or scheme://token@
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)(?:[^/?#@\s:]*:[^@\s'\"<>]*|[^/?#@\s:]+)@")
# ?name=value or &name=value where name says secret (case-insensitive, with prefixes such as x-amz-)
_SECRET_NAMES = (
    r"(?:[a-z0-9_\-]*[_\-])?(?:key|apikey|api[_\-]?key|token|access[_\-]?token|auth|password|passwd|pwd|secret|"
    r"sig|signature|credential|session[_\-]?token|client[_\-]?secret)"
)
_QUERY_SECRET = re.compile(rf"(?i)([?&;]{_SECRET_NAMES}=)[^&#\s\"'<>]+")
# "Authorization: Bearer <anything>", or "Bearer <token-like word of 12+ characters>"
_BEARER = re.compile(r"(?i)\b(authorization:\s*bearer\s+)[^\s,;\x27\x22]+|\b(bearer\s+)[A-Za-z0-9._~+/=\-]{12,}")


def redact_url(url: str) -> str:
    """``url`` with its user info and secret query parameters masked (safe to print)."""
    return redact(url)


def redact(text: object, *secrets: str | None) -> str:
    """``text`` (any object, as ``str``) with URL credentials, secret query parameters, bearer tokens
    and each of ``secrets`` (literal values, e.g. an API key) replaced by ``***``."""
    s = str(text)
    for secret in _literal(secrets):
        s = s.replace(secret, MASK)
    if "://" in s:
        s = _USERINFO.sub(rf"\1{MASK}@", s)
    if "=" in s:
        s = _QUERY_SECRET.sub(rf"\1{MASK}", s)
    if "earer" in s:
        s = _BEARER.sub(lambda m: (m.group(1) or m.group(2)) + MASK, s)
    return s


def _literal(secrets: Iterable[str | None]) -> list[str]:
    # longest first, so a secret that contains another is masked whole; very short values would mask
    # ordinary words, so they are left to the patterns
    return sorted({x for x in secrets if x and len(x) >= 4}, key=len, reverse=True)


class RedactingFilter(logging.Filter):
    """A handler filter that rewrites each record's message through :func:`redact` (plus ``secrets``)."""

    def __init__(self, *secrets: str | None):
        super().__init__()
        self.secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a broken format string: let the handler report it as usual
            return True
        clean = redact(msg, *self.secrets)
        if clean != msg:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            # the traceback text is built by the formatter from the exception: pre-render it redacted
            import traceback

            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = redact(text, *self.secrets)
        return True
