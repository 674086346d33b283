"""What a QE scorer returns, and which rows it looks at (shared by the scorers and the gate)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class QEScores:
    """Per row: the score (cosine or COMET; None when the row was not scored: a null or blank side) and the
    relative score (embedding only: cosine minus the mean cosine to the other sources of the batch; None
    when the batch was too small to compare)."""

    score: list[float | None]
    margin: list[float | None]


def scored(sources: Sequence[str | None], targets: Sequence[str | None]) -> list[int]:
    """Indices of rows with a non-blank source and a non-blank target (the rows a scorer looks at)."""
    return [
        i
        for i, (s, t) in enumerate(zip(sources, targets, strict=True))
        if isinstance(s, str) and isinstance(t, str) and s.strip() and t.strip()
    ]
