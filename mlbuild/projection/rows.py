"""One row's projection as it goes through the stages, and the text helpers the stages share."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .. import spans as S

# Statuses whose spans count as projected: a ``low_confidence`` row stays in the data whatever ``on_fail``
# says (it is in the review queue); every other status is a failure.
PROJECTED = ("ok", "low_confidence")


@dataclass
class Projected:
    """The target text of one row, the spans found in it and how it went (the output columns' values)."""

    text: str = ""
    spans: list[S.Span] = field(default_factory=list)  # for failed rows: the spans that did project
    status: str = "ok"  # "ok", "low_confidence" or a failure category
    method: str | None = None  # "markers" or "align"; None when the row failed before either ran
    confidence: float = 1.0
    detail: str | None = None  # what went wrong (also, after a fallback, what the markers did)
    repairs: list[str] = field(default_factory=list)  # marker repairs applied to the MT output
    marker_spans: list[S.Span | None] | None = None  # per source span, what its markers gave (None: failed)
    markers_failure: str | None = None  # the markers' failure category (kept when alignment takes over)

    @property
    def projected(self) -> bool:
        return self.status in PROJECTED


def verbatim(needle: str, text: str) -> tuple[int, int] | None:
    """Where ``needle`` occurs in ``text`` as whole words, when it occurs exactly once."""
    if not needle.strip():
        return None
    hits = [m.span() for m in re.finditer(rf"(?<!\w){re.escape(needle)}(?!\w)", text)]
    return hits[0] if len(hits) == 1 else None


def nested(spans: list[S.Span]) -> bool:
    return any(a is not b and a.start <= b.start and b.end <= a.end for a in spans for b in spans)


def overlap_new(got: list[S.Span], src: list[S.Span]) -> bool:
    """Projected spans that overlap where the source spans did not."""
    if nested(src):
        return False
    return any(a is not b and a.start < b.end and b.start < a.end for a in got for b in got)
