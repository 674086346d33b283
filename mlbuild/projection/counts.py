"""Per-language counts of a projection (:class:`LangCounts`, summed across shards as plain stats) and the
step's report built from them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import langs
from .. import spans as S
from ..metrics.projection import prf, span_counts
from ..pipeline.base import StepReport
from .rows import Projected


def _bump(d: dict[str, int], key: str) -> None:
    d[key] = d.get(key, 0) + 1


@dataclass
class LangCounts:
    """What happened to the rows of one target language."""

    rows_in: int = 0
    projected: int = 0  # status ok
    low_confidence: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # failure category -> rows
    review_queued: int = 0  # every row not ok
    by_method: dict[str, int] = field(default_factory=dict)  # markers / align -> rows
    repairs: dict[str, int] = field(default_factory=dict)  # marker repair -> times applied
    markers_failed: dict[str, int] = field(default_factory=dict)  # markers' failure category -> rows
    recovered_by_align: int = 0  # rows whose markers failed, projected by alignment
    spans_projected: int = 0
    gold: dict[str, int] | None = None  # rows, tp, fp, fn against gold_column

    def add(self, r: Projected, gold: list[S.Span] | None) -> None:
        self.rows_in += 1
        if r.status == "ok":
            self.projected += 1
        elif r.status == "low_confidence":
            self.low_confidence += 1
        else:
            _bump(self.failed, r.status)
        if r.status != "ok":
            self.review_queued += 1
        if r.method:
            _bump(self.by_method, r.method)
        for rep in r.repairs:
            _bump(self.repairs, rep)
        if r.markers_failure:
            _bump(self.markers_failed, r.markers_failure)
            if r.projected:
                self.recovered_by_align += 1
        if r.projected:
            self.spans_projected += len(r.spans)
        if gold is not None:
            g = self.gold = self.gold or {"rows": 0, "tp": 0, "fp": 0, "fn": 0}
            g["rows"] += 1
            for k, v in span_counts(r.spans if r.projected else [], gold).items():
                g[k] += v

    def to_stats(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["gold"] is None:
            del out["gold"]
        return out


def count(rows: Sequence[Projected], golds: Sequence[list[S.Span] | None], row_langs: Sequence[str]) -> dict:
    """Stats of a batch: target language -> :meth:`LangCounts.to_stats`."""
    per: dict[str, LangCounts] = {}
    for r, g, lang in zip(rows, golds, row_langs):
        per.setdefault(lang or "und", LangCounts()).add(r, g)
    return {lang: c.to_stats() for lang, c in per.items()}


TABLE_HEAD = [
    "| language | rows in | projected | low confidence | failed (category: rows) | review-queued "
    "| marker repairs | P / R / F1 |",
    "|---|---:|---:|---:|---|---:|---|---|",
]


def _table_row(lang: str, s: dict[str, Any]) -> str:
    failed = "; ".join(f"{k}: {v}" for k, v in sorted(s["failed"].items())) or "none"
    if s.get("markers_failed"):
        failed += (
            " (markers failed: "
            + ", ".join(f"{k} {v}" for k, v in sorted(s["markers_failed"].items()))
            + f"; recovered by alignment: {s['recovered_by_align']})"
        )
    reps = ", ".join(f"{k} {v}" for k, v in sorted(s["repairs"].items())) or "none"
    g = s.get("gold")
    score = f"{g['precision']:.3f} / {g['recall']:.3f} / {g['f1']:.3f} ({g['rows']} rows)" if g else "no gold"
    name = langs.display_name(lang) if langs.is_valid(lang) else lang
    return (
        f"| `{lang}` ({name}) | {s['rows_in']} | {s['projected']} | {s['low_confidence']} | {failed} "
        f"| {s['review_queued']} | {reps} | {score} |"
    )


def report(per: dict[str, Any], *, method: str, marker_style: str | None, aligner: str | None) -> StepReport | None:
    """The step's report from its merged per-language stats: ``data`` (every count, and P/R/F1 with gold),
    a Markdown table, and the same table as the card's summary."""
    if not per:
        return None
    data: dict[str, Any] = {"method": method, "marker_style": marker_style, "aligner": aligner, "languages": {}}
    lines = list(TABLE_HEAD)
    for lang, s in sorted(per.items()):
        entry = dict(s)
        if "gold" in s:
            entry["gold"] = {**s["gold"], **{k: round(v, 4) for k, v in prf(s["gold"]).items()}}
        data["languages"][lang] = entry
        lines.append(_table_row(lang, entry))
    md = "\n".join(lines)
    page = (
        "# Span projection\n\n" + md + "\n\nRows not `ok` form the review "
        "queue: `mlbuild review export OUTDIR --to queue.jsonl`.\n"
    )
    return StepReport(summary="Span projection:\n\n" + md, data=data, markdown=page)
