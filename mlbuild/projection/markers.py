"""The markers method: MT output of a text whose spans were wrapped in numbered markers -> repaired
markers (split tags, stray or lost spaces, punctuation pulled inside a span, markers moved around
articles: :func:`mlbuild.spans.repair_markers`) -> the text without markers and the target spans
(:func:`mlbuild.spans.extract_markers`); and the optional check against a translation made without
markers."""

from __future__ import annotations

from collections.abc import Sequence

from .. import spans as S
from ..pipeline.filters import first_failure
from . import checks
from .rows import Projected, nested, verbatim


def extract(
    texts: Sequence[str],
    src_spans: Sequence[list[S.Span]],
    outputs: Sequence[str],
    rows: list[Projected],
    idx: Sequence[int],
    *,
    style: S.MarkerStyle,
    src_lang: str,
    tgt_lang: str,
) -> list[int]:
    """Set rows ``idx`` from ``outputs`` (the MT output of each one's marked text, in order); return the
    rows whose markers failed (empty outputs are ``empty_translation``, not a markers failure)."""
    empty = checks.empty_translation(outputs, "MT returned an empty text")
    found: list[S.Extraction | None] = []
    for k, out, reason in zip(idx, outputs, empty.reasons):
        r = rows[k]
        r.method = "markers"
        if reason is not None:
            found.append(None)
            continue
        info = [S.SourceSpanInfo.of(texts[k], s, src_lang) for s in src_spans[k]]
        fixed, r.repairs = S.repair_markers(out, style, info, tgt_lang=tgt_lang, src_lang=src_lang)
        ex = S.extract_markers(fixed, style, [s.label for s in src_spans[k]], source_nested=nested(src_spans[k]))
        r.text, r.marker_spans = ex.text, ex.spans
        r.spans = [s for s in ex.spans if s is not None]
        r.confidence = 1.0 if ex.status == "ok" else 0.0
        found.append(ex)
    verdict = checks.markers(found)
    checks.record(rows, idx, first_failure([empty, verdict]))
    failed = [k for k, reason in zip(idx, verdict.reasons) if reason is not None]
    for k in failed:
        rows[k].markers_failure = rows[k].status
    return failed


def verify_plain(rows: list[Projected], idx: Sequence[int], plains: Sequence[str]) -> None:
    """Rows ``idx`` against ``plains``, their translations made without markers. When every projected
    span's text occurs once, verbatim, in the plain translation, the row takes that text (markers can bend
    a translation: ``Sofia`` -> ``Sfia``); otherwise it is ``low_confidence``."""
    checked = [(k, pt) for k, pt in zip(idx, plains) if pt != rows[k].text]
    moved: list[list[S.Span]] = []
    missing: list[list[str]] = []
    for k, pt in checked:
        r = rows[k]
        moved.append([])
        missing.append([])
        for sp in r.spans:
            hit = verbatim(r.text[sp.start : sp.end], pt)
            if hit is None:
                missing[-1].append(r.text[sp.start : sp.end])
            else:
                moved[-1].append(S.Span(hit[0], hit[1], sp.label))
    agrees = [not m and not S.crossing(mv) and len(set(mv)) == len(mv) for m, mv in zip(missing, moved)]
    verdict = checks.plain_text(agrees, missing, [pt for _, pt in checked])
    for (k, pt), spans, reason in zip(checked, moved, verdict.reasons):
        r = rows[k]
        if reason is None:
            r.text, r.spans, r.repairs = pt, spans, [*r.repairs, "plain_text"]
        else:
            r.confidence = 0.5
    checks.record(rows, [k for k, _ in checked], verdict)
