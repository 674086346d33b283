"""The stages of ``project_spans.v1`` for one batch, in order (:class:`Projector`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import spans as S
from ..pipeline.filters import first_failure
from . import checks, markers
from .alignment import align_rows
from .rows import Projected


@dataclass
class Projector:
    """Projects source spans onto translations with the step's ``params``: ``translate(texts, lang)``
    gives MT outputs (cached by the step), ``aligner`` word links (methods ``align`` and ``fallback``)."""

    params: Any  # ProjectSpansParams
    translate: Callable[[list[str], str], list[str]]
    aligner: Any
    style: S.MarkerStyle

    def onto_translations(self, texts: Sequence[str], src_spans: Sequence[list[S.Span]], lang: str) -> list[Projected]:
        """Translate each text into ``lang`` and carry its spans over: source check, then markers (and the
        plain-text check, and alignment for rows whose markers fail) or alignment."""
        p = self.params
        rows = [Projected() for _ in texts]
        src_ok = checks.source_spans(texts, src_spans)
        checks.record(rows, range(len(texts)), src_ok)
        valid = [k for k, reason in enumerate(src_ok.reasons) if reason is None]
        if p.method == "align":
            out = self.translate([texts[k] for k in valid], lang)
            for k, t in zip(valid, out):
                rows[k].text = t
            empty = checks.empty_translation(out, "MT returned an empty text", [src_spans[k] for k in valid])
            checks.record(rows, valid, empty)
            todo = [k for k, reason in zip(valid, empty.reasons) if reason is None]
            self._align(texts, src_spans, rows, todo, context=valid)
            return rows
        marked = [S.insert_markers(texts[k], src_spans[k], self.style) for k in valid]
        failed = markers.extract(
            texts,
            src_spans,
            self.translate(marked, lang),
            rows,
            valid,
            style=self.style,
            src_lang=p.source_lang,
            tgt_lang=lang,
        )
        if p.verify_plain:
            ok = [k for k in valid if rows[k].status == "ok" and src_spans[k]]
            markers.verify_plain(rows, ok, self.translate([texts[k] for k in ok], lang))
        if p.method == "fallback" and failed:
            # align every translated row of the batch (more text for a statistical aligner), use the failed ones
            context = [k for k in valid if rows[k].text.strip()]
            self._align(texts, src_spans, rows, failed, context)
        return rows

    def onto_targets(
        self, texts: Sequence[str], src_spans: Sequence[list[S.Span]], targets: Sequence[str]
    ) -> list[Projected]:
        """Carry spans onto existing translations (``target_column``) by alignment."""
        rows = [Projected(text=t) for t in targets]
        verdict = first_failure(
            [checks.source_spans(texts, src_spans), checks.empty_translation(targets, "the target text is empty")]
        )
        checks.record(rows, range(len(texts)), verdict)
        todo = [k for k, reason in enumerate(verdict.reasons) if reason is None]
        self._align(texts, src_spans, rows, todo, context=list(range(len(texts))))
        return rows

    def _align(
        self,
        texts: Sequence[str],
        src_spans: Sequence[list[S.Span]],
        rows: list[Projected],
        todo: list[int],
        context: list[int],
    ) -> None:
        p = self.params
        align_rows(
            self.aligner,
            texts,
            src_spans,
            rows,
            todo,
            context,
            copy_exact=p.copy_exact,
            max_gap=p.max_gap,
            min_confidence=p.min_confidence,
        )
