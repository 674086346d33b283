"""The alignment method: word-align source and target texts, then map each source span -> the source
words it covers -> their aligned target words -> one contiguous target span
(:func:`mlbuild.models.align.project_span`). Spans whose markers were fine are kept as they are, and with
``copy_exact`` a span whose text occurs once, verbatim, in the target goes there without a link."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import spans as S
from . import checks
from .rows import Projected, verbatim


def align_rows(
    aligner: Any,
    texts: Sequence[str],
    src_spans: Sequence[list[S.Span]],
    rows: list[Projected],
    todo: Sequence[int],
    context: Sequence[int],
    *,
    copy_exact: bool,
    max_gap: int,
    min_confidence: float,
) -> None:
    """Align rows ``todo`` and set their spans and status; the aligner also sees the ``context`` rows (a
    statistical aligner learns from every sentence it is given)."""
    if not todo:
        return
    ctx_rows = sorted(set(context) | set(todo))
    src_tok = {k: S.tokenize(texts[k]) for k in ctx_rows}
    tgt_tok = {k: S.tokenize(rows[k].text) for k in ctx_rows}
    links = aligner.align(
        [[texts[k][a:b] for a, b in src_tok[k]] for k in ctx_rows],
        [[rows[k].text[a:b] for a, b in tgt_tok[k]] for k in ctx_rows],
    )
    by_row = dict(zip(ctx_rows, links))
    got, problems, confs = [], [], []
    for k in todo:
        spans, probs, conf = project_row(
            texts[k], src_spans[k], rows[k], src_tok[k], tgt_tok[k], by_row[k], copy_exact=copy_exact, max_gap=max_gap
        )
        got.append(spans)
        problems.append(probs)
        confs.append(conf)
    verdict = checks.aligned(problems, got, [src_spans[k] for k in todo], confs, min_confidence)
    for j, k in enumerate(todo):
        r = rows[k]
        reason, detail = verdict.reasons[j], verdict.details[j]
        prior = [f"markers: {r.detail}"] if r.detail else []  # what the markers did, when they ran first
        r.method, r.spans, r.status = "align", got[j], reason or "ok"
        r.confidence = round(confs[j], 4) if reason in (None, "low_confidence") else 0.0
        r.detail = "; ".join(prior + ([detail] if detail else [])) or None


def project_row(
    text: str,
    src_spans: list[S.Span],
    row: Projected,
    src_tok: list[tuple[int, int]],
    tgt_tok: list[tuple[int, int]],
    links: Any,
    *,
    copy_exact: bool,
    max_gap: int,
) -> tuple[list[S.Span], list[str], float]:
    """One row's target spans, the problems of the spans that did not project (``"unaligned: span 2
    ('Jack')"``) and the row's confidence (its weakest span's; 1.0 without spans)."""
    from ..models.align import project_span

    kept = row.marker_spans or [None] * len(src_spans)
    got, problems, confs = [], [], []
    for i, sp in enumerate(src_spans, start=1):
        if kept[i - 1] is not None:  # the markers of this span were fine
            got.append(kept[i - 1])
            confs.append(1.0)
            continue
        if copy_exact:
            found = verbatim(text[sp.start : sp.end], row.text)
            if found is not None:
                got.append(S.Span(found[0], found[1], sp.label))
                confs.append(1.0)
                continue
        span, status, conf = project_span(src_tok, tgt_tok, links, sp.start, sp.end, max_gap)
        if span is None:
            problems.append(f"{status}: span {i} ({text[sp.start : sp.end]!r})")
        else:
            got.append(S.Span(span[0], span[1], sp.label))
            confs.append(conf)
    return got, problems, (min(confs) if confs else 1.0)
