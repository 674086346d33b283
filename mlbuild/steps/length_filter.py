"""``length_filter.v1``: keep rows whose text is neither too short nor too long.

Reads: ``column``. Writes nothing new, except ``<column>_length_ok`` with ``on_fail = "flag"``.
Lengths are counted in Unicode code points (``min_chars``/``max_chars``) and in words, where a word
is a run of Unicode letters, digits or marks (``min_words``/``max_words``: scripts written without
spaces, such as Chinese or Thai, count as few long words, so use characters for them). A missing
(null) text has length 0. A row outside any bound fails with ``too_short`` or ``too_long`` and a
detail such as ``"3 words < min_words 5"``.

Parameters: ``column``; ``min_chars``, ``max_chars``, ``min_words``, ``max_words`` (each optional);
``on_fail``: ``drop`` (to ``rejects/``), ``keep`` (count only) or ``flag``.

Example::

    [[steps]]
    uses = "length_filter.v1"
    column = "passage"
    min_words = 5
    max_chars = 4000
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import polars as pl

from ..pipeline import filters
from ..pipeline.base import Step, StepOutput, StepReport
from ..pipeline.filters import ON_FAIL_DOC, OnFail, Verdict
from ..pipeline.params import param
from ..pipeline.registry import register

WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX = 100_000_000


@dataclass
class LengthFilterParams:
    column: str = param(doc="text column to measure")
    min_chars: int | None = param(None, doc="fewest characters (Unicode code points)", ge=0, le=MAX)
    max_chars: int | None = param(None, doc="most characters", ge=1, le=MAX)
    min_words: int | None = param(None, doc="fewest words (runs of letters, digits or marks)", ge=0, le=MAX)
    max_words: int | None = param(None, doc="most words", ge=1, le=MAX)
    on_fail: OnFail = param("drop", doc=ON_FAIL_DOC)


def length_verdict(texts: list[str | None], p: LengthFilterParams) -> Verdict:
    """Per text: ``too_short``/``too_long`` with the length and the bound it broke, or None."""
    reasons: list[str | None] = []
    details: list[str | None] = []
    for t in texts:
        t = t or ""
        chars = len(t)
        words = len(WORD.findall(t)) if p.min_words is not None or p.max_words is not None else 0
        reason = detail = None
        if p.min_chars is not None and chars < p.min_chars:
            reason, detail = "too_short", f"{chars} characters < min_chars {p.min_chars}"
        elif p.min_words is not None and words < p.min_words:
            reason, detail = "too_short", f"{words} words < min_words {p.min_words}"
        elif p.max_chars is not None and chars > p.max_chars:
            reason, detail = "too_long", f"{chars} characters > max_chars {p.max_chars}"
        elif p.max_words is not None and words > p.max_words:
            reason, detail = "too_long", f"{words} words > max_words {p.max_words}"
        reasons.append(reason)
        details.append(detail)
    return Verdict(reasons, details)


@register("step")
class LengthFilter(Step):
    __doc__ = __doc__
    name = "length_filter.v1"
    Params = LengthFilterParams

    @classmethod
    def check(cls, params: LengthFilterParams, columns: list[str] | None) -> list[tuple[str, str]]:
        p = params
        problems = []
        if all(v is None for v in (p.min_chars, p.max_chars, p.min_words, p.max_words)):
            problems.append(("min_chars", "set at least one of min_chars, max_chars, min_words, max_words"))
        for lo, hi in (("min_chars", "max_chars"), ("min_words", "max_words")):
            a, b = getattr(p, lo), getattr(p, hi)
            if a is not None and b is not None and a > b:
                problems.append((lo, f"{lo} {a} is above {hi} {b}: every row would fail"))
        return problems

    def input_columns(self) -> list[str]:
        return [self.params.column]

    def output_columns(self, columns: list[str]) -> list[str]:
        extra = [f"{self.params.column}_length_ok"] if self.params.on_fail == "flag" else []
        return list(dict.fromkeys([*columns, *extra]))

    def process(self, batch: pl.DataFrame) -> StepOutput:
        p = self.params
        verdict = length_verdict(batch[p.column].cast(pl.Utf8).to_list(), p)
        rows, rejects, stats = filters.apply(batch, verdict, p.on_fail, ok_column=f"{p.column}_length_ok")
        return StepOutput(rows, rejects, stats)

    def finalize(self, stats: dict[str, Any]) -> StepReport:
        return StepReport(summary=filters.summary(stats))
