"""Why a projected row is not ``ok``: one small pure function per check, each returning a
:class:`~mlbuild.pipeline.filters.Verdict` over the rows it is given (the reason is the row's
``projection_status``, the detail its ``projection_detail``).

The stages run a check on the rows that reach them and :func:`record` the failures on those rows; a row
keeps the first failure it meets (as :func:`~mlbuild.pipeline.filters.first_failure` combines verdicts),
except that ``method = "fallback"`` gives a row whose markers failed a second chance by alignment.
:func:`acceptance` turns the final statuses into the verdict ``on_fail`` acts on
(:func:`mlbuild.pipeline.filters.apply`): every failure, but not ``low_confidence``, which stays in the
data for review.

A new check is one function here and one line in the stage that runs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .. import spans as S
from ..pipeline.filters import Verdict, first_failure
from .rows import Projected, overlap_new


def source_spans(texts: Sequence[str], spans: Sequence[list[S.Span]]) -> Verdict:
    """Source spans that do not fit their text (out of range, empty, start after end)."""
    problems = [S.check_spans(t, sp) for t, sp in zip(texts, spans)]
    return Verdict.from_mask([p is not None for p in problems], "invalid_source_spans", problems)


def empty_translation(targets: Sequence[str], detail: str, spans: Sequence[list[S.Span]] | None = None) -> Verdict:
    """Empty target texts. With ``spans``, a row without spans passes (it has nothing to carry over)."""
    failed = [not t.strip() and (spans is None or bool(spans[i])) for i, t in enumerate(targets)]
    return Verdict.from_mask(failed, "empty_translation", [detail] * len(targets))


def markers(extractions: Sequence[S.Extraction | None]) -> Verdict:
    """The markers' category (``missing_marker``, ``duplicated_marker``, ``wrong_order``, ``crossed_spans``,
    ``empty_span``) with every problem found; ``None`` entries (rows not extracted) pass."""
    bad = [ex is not None and ex.status != "ok" for ex in extractions]
    return Verdict(
        [ex.status if b else None for ex, b in zip(extractions, bad)],
        [("; ".join(ex.problems) or None) if b else None for ex, b in zip(extractions, bad)],
    )


def plain_text(agrees: Sequence[bool], missing: Sequence[list[str]], plains: Sequence[str]) -> Verdict:
    """``low_confidence`` where the translation made without markers does not hold every projected span's
    text once, verbatim (markers bent a name, or MT put the span elsewhere)."""
    return Verdict.from_mask(
        [not a for a in agrees],
        "low_confidence",
        [
            "not in the translation made without markers: " + ", ".join(map(repr, m)) + f" (that translation: {p!r})"
            for m, p in zip(missing, plains)
        ],
    )


def span_alignment(problems: Sequence[list[str]]) -> Verdict:
    """Per row, the spans alignment could not place (``unaligned: span 1 ('Jack')``, ``discontinuous``,
    ``no_tokens``): the first names the row, the detail lists them all."""
    return Verdict([p[0].split(":")[0] if p else None for p in problems], ["; ".join(p) or None for p in problems])


def crossed_spans(projected: Sequence[list[S.Span]], sources: Sequence[list[S.Span]]) -> Verdict:
    """Projected spans that cross, or overlap where the source spans did not."""
    failed = [S.crossing(g) or overlap_new(g, s) for g, s in zip(projected, sources)]
    return Verdict.from_mask(failed, "crossed_spans", ["crossed_spans: projected spans overlap"] * len(failed))


def low_confidence(confidences: Sequence[float], min_confidence: float) -> Verdict:
    """Aligned rows whose weakest span's confidence is below ``min_confidence``."""
    return Verdict.from_mask(
        [c < min_confidence for c in confidences],
        "low_confidence",
        [f"low_confidence: {c:.2f} < {min_confidence}" for c in confidences],
    )


def aligned(
    problems: Sequence[list[str]],
    projected: Sequence[list[S.Span]],
    sources: Sequence[list[S.Span]],
    confidences: Sequence[float],
    min_confidence: float,
) -> Verdict:
    """An aligned row's verdict: its spans' problems, then crossing, then confidence."""
    return first_failure(
        [span_alignment(problems), crossed_spans(projected, sources), low_confidence(confidences, min_confidence)]
    )


def record(rows: list[Projected], idx: Iterable[int], verdict: Verdict) -> None:
    """Set the status and detail of the rows ``idx`` (in the verdict's order) that fail it."""
    for k, reason, detail in zip(idx, verdict.reasons, verdict.details):
        if reason is not None:
            rows[k].status, rows[k].detail = reason, detail


def acceptance(rows: Sequence[Projected]) -> Verdict:
    """The gate ``on_fail`` acts on: a row fails with its status unless it is ``ok`` or ``low_confidence``."""
    return Verdict(
        [None if r.projected else r.status for r in rows], [None if r.projected else r.detail for r in rows]
    )
