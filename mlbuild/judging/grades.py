"""A relevance grade (0-3) from an LLM's generation, and the majority over several sampled judgments.

:func:`parse_grade` reads, in this order (the first that matches wins):

1. the last ``final score: N`` (UMBRELA's answer format ``##final score: 2``; ``**Final score:** 2`` too);
2. a generation that starts with the grade (a completion prompt that ends in ``##final score:``, or a
   model that answers ``2``, ``2.``, ``2 - the passage ...``);
3. ``score``/``grade``/``relevance`` followed within a few characters by the grade (``Score = 3``).

A number outside 0-3 (``final score: 5``), or none at all, gives None: the judgment is *unparsed*.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

MAX_GRADE = 3
_FINAL = re.compile(r"final\s*score\s*\**\s*[:=]?\s*\**\s*(\d+)", re.IGNORECASE)
_LEADING = re.compile(r"^\s*[#*\s]*(\d+)(?![\d.]\d)")
_LABELLED = re.compile(r"\b(?:score|grade|relevance|category)\b[^0-9\n]{0,12}?(\d+)", re.IGNORECASE)


def _grade(digits: str) -> int | None:
    g = int(digits)
    return g if 0 <= g <= MAX_GRADE else None


def parse_grade(text: str | None) -> int | None:
    """The grade 0-3 a generation gives, or None (see the module docstring for the formats read)."""
    if not text:
        return None
    finals = _FINAL.findall(text)
    if finals:
        return _grade(finals[-1])
    m = _LEADING.match(text)
    if m:
        return _grade(m.group(1))
    m = _LABELLED.search(text)
    return _grade(m.group(1)) if m else None


def majority(votes: Sequence[int | None]) -> tuple[int | None, int]:
    """The most frequent parsed grade among ``votes`` and how many votes gave it; ties go to the lower
    grade (a conservative call: with mined negatives, fewer are thrown away as false negatives on a split
    vote). Unparsed votes (None) do not vote; all unparsed gives (None, 0)."""
    counts = Counter(v for v in votes if v is not None)
    if not counts:
        return None, 0
    best = max(counts.values())
    grade = min(g for g, n in counts.items() if n == best)
    return grade, best
