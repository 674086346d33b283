"""Token counters a model-backed step keeps per language, as summable step stats.

A step counts two things for each language:

- what the data needs: every prompt of the step (cache hits included) and every output, so the numbers
  are the same on a first run, a resumed run and a rerun (``prompts``, ``in``, ``out``);
- what this run computed: the prompts that were not in the model-call cache (``computed_prompts``,
  ``computed_in``, ``computed_out``), and, for OpenAI-compatible servers, the tokens the server itself
  reported for those requests (``reported_in``, ``reported_out``: what a provider bills).

Tokens are counted with the model's own tokenizer when there is one (the transformers engine, or a
``tokenizer`` a step names for an endpoint); otherwise with the approximation ``ceil(UTF-8 bytes / 4)``
(about 4 characters a token for English, 2 for Cyrillic or Greek, 0.75 for Chinese or Japanese: close to
the BPE tokenizers of current API models, within about 30%). The method is recorded beside the counts.

Stats layout (``merge_stats`` adds shards together)::

    stats["tokens"] = {"eng_Latn": {"prompts": 120, "in": 41_230, "out": 480, "computed_prompts": 120, ...}}
    stats["token_count_method"] = "tokenizer:gemma-3-270m"  # or "approx:utf8_bytes/4"
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

APPROX = "approx:utf8_bytes/4"
FIELDS = ("prompts", "in", "out", "computed_prompts", "computed_in", "computed_out", "reported_in", "reported_out")


def approx_tokens(text: str) -> int:
    """``ceil(len(text.encode("utf-8")) / 4)``: 0 for the empty string."""
    return (len(text.encode("utf-8", "surrogatepass")) + 3) // 4


class TokenCounter:
    """Counts tokens of texts with a tokenizer (anything callable like a transformers tokenizer) or, without
    one, with :func:`approx_tokens`. ``method`` says which, for the manifest."""

    def __init__(self, tokenizer: Any = None, name: str = ""):
        self.tokenizer = tokenizer
        self.method = f"tokenizer:{name or type(tokenizer).__name__}" if tokenizer is not None else APPROX

    def __repr__(self) -> str:
        return f"TokenCounter({self.method!r})"

    def count(self, texts: Sequence[str], special_tokens: bool = False) -> list[int]:
        """Tokens per text; ``special_tokens``: include what the tokenizer adds (a prompt's BOS)."""
        if self.tokenizer is None:
            return [approx_tokens(t) for t in texts]
        if not texts:
            return []
        ids = self.tokenizer(list(texts), add_special_tokens=special_tokens)["input_ids"]
        return [len(x) for x in ids]


def load_counter(tokenizer: str | None, base_dir: Path | None = None) -> TokenCounter:
    """A counter with the tokenizer at ``tokenizer`` (a local folder, a packaged model name, or a Hub id in
    the local HF cache), or the approximation when ``tokenizer`` is None or cannot be loaded offline (logged)."""
    if not tokenizer:
        return TokenCounter()
    try:
        from transformers import AutoTokenizer

        from ..models.loading import loader_kwargs
        from ..models.resolve import resolve_model

        ref = resolve_model(tokenizer, base_dir)
        source = ref.path if ref.path is not None and ref.path.is_dir() else ref.ref
        tok = AutoTokenizer.from_pretrained(source, **loader_kwargs(trust_remote_code=False))
    except Exception as e:  # counting falls back; it never stops a run
        log.warning("tokenizer %r not loaded (%s: %s); counting tokens as %s", tokenizer, type(e).__name__, e, APPROX)
        return TokenCounter()
    return TokenCounter(tok, tokenizer)


class Usage:
    """Token counters per language for one batch of a step's work; :meth:`stats` is what goes into the
    step's stats (``{"tokens": ..., "token_count_method": ...}``)."""

    def __init__(self, counter: TokenCounter):
        self.counter = counter
        self.by_lang: dict[str, dict[str, int]] = {}

    def _slot(self, lang: str | None) -> dict[str, int]:
        return self.by_lang.setdefault(lang or "und", dict.fromkeys(FIELDS[:6], 0))

    def add(self, lang: str | None, prompts: Sequence[str], outputs: Sequence[str]) -> None:
        """Every prompt the data needs and its output (cache hits included)."""
        s = self._slot(lang)
        s["prompts"] += len(prompts)
        s["in"] += sum(self.counter.count(prompts, special_tokens=True))
        s["out"] += sum(self.counter.count(outputs))

    def add_computed(
        self,
        lang: str | None,
        prompts: Sequence[str],
        outputs: Sequence[str],
        reported_in: int | None = None,
        reported_out: int | None = None,
    ) -> None:
        """Prompts this run sent to the model (cache misses), with the server's own counts when it gave them."""
        s = self._slot(lang)
        s["computed_prompts"] += len(prompts)
        s["computed_in"] += sum(self.counter.count(prompts, special_tokens=True))
        s["computed_out"] += sum(self.counter.count(outputs))
        if reported_in is not None:
            s["reported_in"] = s.get("reported_in", 0) + int(reported_in)
        if reported_out is not None:
            s["reported_out"] = s.get("reported_out", 0) + int(reported_out)

    def add_computed_mixed(
        self,
        langs: Sequence[str | None],
        prompts: Sequence[str],
        outputs: Sequence[str],
        reported_in: int | None = None,
        reported_out: int | None = None,
    ) -> None:
        """:meth:`add_computed` for one batch whose prompts are in several languages (``langs``, one per prompt):
        the server's counts for the batch are shared out in proportion to the tokens counted per language
        (whole tokens, adding up to the server's)."""
        groups: dict[str, list[int]] = {}
        for k, lang in enumerate(langs):
            groups.setdefault(lang or "und", []).append(k)
        counted = {
            lang: (
                sum(self.counter.count([prompts[k] for k in idx], special_tokens=True)),
                sum(self.counter.count([outputs[k] for k in idx])),
            )
            for lang, idx in groups.items()
        }
        rep_in = _share(reported_in, {lang: c[0] for lang, c in counted.items()})
        rep_out = _share(reported_out, {lang: c[1] for lang, c in counted.items()})
        for lang, idx in groups.items():
            ps, os_ = [prompts[k] for k in idx], [outputs[k] for k in idx]
            self.add_computed(lang, ps, os_, rep_in.get(lang), rep_out.get(lang))

    def stats(self) -> dict[str, Any]:
        if not self.by_lang:
            return {}
        return {"tokens": {k: dict(v) for k, v in self.by_lang.items()}, "token_count_method": self.counter.method}


def totals(tokens: dict[str, dict[str, int]]) -> dict[str, int]:
    """The per-language counters summed over languages."""
    out: dict[str, int] = {}
    for v in tokens.values():
        for k, n in v.items():
            out[k] = out.get(k, 0) + int(n)
    return out


def _share(total: int | None, weights: dict[str, int]) -> dict[str, int]:
    """``total`` split over ``weights`` in proportion (largest remainders; equal shares when all weights are 0)."""
    if total is None or not weights:
        return {}
    w = {k: (v if any(weights.values()) else 1) for k, v in weights.items()}
    whole = sum(w.values())
    exact = {k: total * v / whole for k, v in w.items()}
    out = {k: int(x) for k, x in exact.items()}
    for k in sorted(exact, key=lambda k: (out[k] - exact[k], k))[: total - sum(out.values())]:
        out[k] += 1
    return out
