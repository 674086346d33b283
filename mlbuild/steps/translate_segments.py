"""How ``translate.v1`` sends texts to an MT engine: split into segments (sentences, with the
separators kept so the text reassembles exactly), every segment through the run's model-call cache
(repeated segments are translated once, a rerun translates nothing twice), and large windows per
call so the engine can sort by length across many segments. Tokens in (source segments) and out
(translations) are counted per language translated into (:func:`mt_usage`, for the manifest and card)."""

from __future__ import annotations

import time
from typing import Any

from ..accounting import TokenCounter, Usage
from ..models.mt import MTBackend
from ..pipeline.cache import cached_map
from ..text import reassemble, split_segments

REPORTED = (("reported_in", "prompt"), ("reported_out", "completion"))


def mt_usage(backend: MTBackend) -> Usage:
    """Token counters for ``backend``: its tokenizer when it has one, else the approximation."""
    tok = getattr(backend, "tok", None)
    return Usage(TokenCounter(tok, backend.id) if tok is not None else TokenCounter())


def translate_texts(
    backend: MTBackend,
    texts: list[str | None],
    src: str,
    tgt: str,
    *,
    cache: Any,
    segment: str = "sentence",
    max_segment_chars: int | None = None,
    batch_size: int = 32,
    counters: dict[str, Any],
    usage: Usage | None = None,
) -> list[dict[str, Any] | None]:
    """Translate whole texts through segments; per text ``{text, tokens, truncated}`` (None for None).

    ``counters`` (see :func:`mlbuild.steps.translate_report.engine_counters`) get the segments seen,
    the distinct ones, those the engine translated now (not from ``cache``), engine time and output size;
    ``usage`` the tokens of every segment and of those translated now (the server's counts for an endpoint)."""
    parts = [split_segments(t, segment, max_segment_chars or None) if t is not None else None for t in texts]
    segs = [s for pt in parts if pt is not None for s in pt[1::2]]
    counters["segments"] += len(segs)
    counters["unique_segments"] += len(set(segs))
    ns = {"task": "translate", **backend.config(), "src": src, "tgt": tgt}

    client = getattr(backend, "client", None)  # an OpenAI-compatible endpoint reports its own token counts

    def call(batch: list[str]) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        before = dict(client.usage) if client is not None else None
        res = backend.translate_detailed(batch, src, tgt)
        if usage is not None:
            rep = {}
            if before is not None:
                rep = {k: client.usage[f"{n}_tokens"] - before[f"{n}_tokens"] for k, n in REPORTED}
            usage.add_computed(tgt, batch, [r.text for r in res], **rep)
        counters["engine_seconds"] += time.perf_counter() - t0
        counters["engine_segments"] += len(batch)
        counters["engine_chars"] += sum(len(b) for b in batch)
        out = []
        for r in res:
            if r.tokens is not None:
                counters["output_tokens"] += r.tokens
            counters["output_words"] += len(r.text.split())
            out.append({"text": r.text, "tokens": r.tokens, "truncated": bool(r.truncated)})
        return out

    # a large window per call lets the backend sort by length across many segments
    results = cached_map(cache, ns, segs, call, batch_size=max(batch_size * 16, 256)) if segs else []
    if usage is not None:
        usage.add(tgt, segs, [r["text"] for r in results])
    out: list[dict[str, Any] | None] = []
    k = 0
    for pt in parts:
        if pt is None:
            out.append(None)
            continue
        n = len(pt) // 2
        rs = results[k : k + n]
        k += n
        out.append(
            {
                "text": reassemble(pt, [r["text"] for r in rs]),
                "truncated": any(r["truncated"] for r in rs),
                "tokens": sum(r["tokens"] or 0 for r in rs),
            }
        )
    return out
