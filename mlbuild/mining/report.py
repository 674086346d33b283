"""Mining statistics: score quantiles from a bounded sample, and the report's Markdown."""

from __future__ import annotations

from typing import Any

import numpy as np

from .select import REASONS

QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
SAMPLE = 1 << 20  # scores kept for quantiles: exact up to this many, a uniform sample beyond


class ScoreSample:
    """Scores seen in a stream: all of them up to ``SAMPLE``, then a seeded uniform sample of that size
    (bottom-k of random keys), so quantiles cost bounded memory. Count, mean, min and max stay exact."""

    def __init__(self, size: int = SAMPLE, seed: int = 0):
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.vals = np.zeros(0, np.float64)
        self.keys = np.zeros(0, np.float64)
        self.count, self.total = 0, 0.0
        self.lo, self.hi = np.inf, -np.inf

    def add(self, x: Any) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        x = x[np.isfinite(x)]
        if not x.size:
            return
        self.count += x.size
        self.total += float(x.sum())
        self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))
        self.vals = np.concatenate([self.vals, x])
        self.keys = np.concatenate([self.keys, self.rng.random(x.size)])
        if len(self.vals) > self.size:
            keep = np.argpartition(self.keys, self.size)[: self.size]
            self.vals, self.keys = self.vals[keep], self.keys[keep]

    def quantiles(self) -> dict[str, Any]:
        if not self.count:
            return {"count": 0}
        qs = np.quantile(self.vals, QUANTILES)
        qs[0], qs[-1] = self.lo, self.hi
        out: dict[str, Any] = {"count": self.count, "mean": round(self.total / self.count, 6)}
        out.update({f"q{int(q * 100):02d}": round(float(v), 6) for q, v in zip(QUANTILES, qs)})
        if self.count > self.size:
            out["sampled"] = self.size
        return out


def group_stats(index: Any, per_group: dict, grouped: bool) -> dict[str, Any]:
    """Totals over the groups' :class:`~mlbuild.mining.mine.GroupStats` (and, when ``grouped``, each group's)."""
    rows_per_group = np.bincount(index.query_group.array()[index.row_query.array()], minlength=len(index.groups))
    out: dict[str, Any] = {"skipped": {}, "short_queries": 0, "widened_queries": 0}
    by_group = {}
    for g, st in per_group.items():
        st.rows = int(rows_per_group[index.groups[g]])
        by_group[g or "all"] = st.as_dict()
        out["short_queries"] += st.short
        out["widened_queries"] += st.widened
        for k, v in st.skipped.items():
            out["skipped"][k] = out["skipped"].get(k, 0) + v
    if grouped:
        out["by_group"] = by_group
    return out


def quantiles(x: np.ndarray) -> dict[str, Any]:
    s = ScoreSample()
    s.add(x)
    return s.quantiles()


def markdown(stats: dict[str, Any], num_negatives: int, output_format: str) -> str:
    lines = [
        "# Hard-negative mining",
        "",
        f"{stats.get('queries', 0)} queries, {stats.get('rows', 0)} input rows, corpus of "
        f"{stats.get('corpus', 0)} passages; {stats.get('negatives', 0)} negatives, "
        f"{stats.get('output_rows', 0)} output rows ({output_format}).",
        "",
        *setup_lines(stats, output_format),
        "## Scores (cosine)",
        "",
        "| | count | mean | min | 5% | 25% | 50% | 75% | 95% | max |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("positive_score", "negative_score"):
        q = stats.get(name, {})
        if q.get("count"):
            lines.append(
                f"| {name.split('_')[0]} | {q['count']} | {q['mean']:.4f} | "
                + " | ".join(f"{q[k]:.4f}" for k in ("q00", "q05", "q25", "q50", "q75", "q95", "q100"))
                + " |"
            )
    lines += ["", "## Candidates skipped", "", "| reason | candidates |", "|---|---|"]
    for k in REASONS:
        if k in stats.get("skipped", {}):
            lines.append(f"| {k} | {stats['skipped'][k]} |")
    lines += [
        "",
        f"Queries with fewer than {num_negatives} negatives: {stats.get('short_queries', 0)}"
        f" (window widened for {stats.get('widened_queries', 0)}).",
    ]
    if stats.get("by_group"):
        lines += [
            "",
            "## Per group",
            "",
            "| group | queries | corpus | negatives | short | pos median | neg median |",
            "|---|---|---|---|---|---|---|",
        ]
        for g, s in sorted(stats["by_group"].items()):
            pos, neg = s.get("positive_score", {}), s.get("negative_score", {})
            lines.append(
                f"| {g} | {s['queries']} | {s['corpus']} | {s['negatives']} | {s['short_queries']} | "
                + (f"{pos['q50']:.4f}" if pos.get("count") else "n/a")
                + " | "
                + (f"{neg['q50']:.4f}" if neg.get("count") else "n/a")
                + " |"
            )
    return "\n".join(lines) + "\n"


def setup_lines(stats: dict[str, Any], output_format: str) -> list[str]:
    """Layout, list size, teacher and retrievers (with the negatives each found) as Markdown lines."""
    out = [
        f"- Layout: `{output_format}`"
        + (f", {stats['num_candidates']} candidates per query" if stats.get("num_candidates") else "")
    ]
    if stats.get("merged_rows"):
        out.append(f"- Rows merged into their query's row: {stats['merged_rows']}")
    out.append(f"- Teacher: `{stats['teacher']}`" if stats.get("teacher") else "- Teacher: none")
    by = stats.get("negatives_by_retriever") or {}
    found = ", ".join(f"{k} {v}" for k, v in by.items())
    out.append(
        f"- Retrievers: {', '.join(stats.get('retrievers', ['dense']))}"
        + (f" (negatives found by {found})" if found else "")
    )
    return [*out, ""]


def summary(stats: dict[str, Any], num_negatives: int) -> str:
    extra = f" Layout {stats['layout']}" if stats.get("layout") else ""
    if extra:
        extra += f", teacher {stats['teacher']}." if stats.get("teacher") else "."
    return (
        f"Hard negatives: {stats.get('negatives', 0)} for {stats.get('queries', 0)} queries; "
        f"{stats.get('short_queries', 0)} queries got fewer than {num_negatives}. "
        f"Positive score median {stats.get('positive_score', {}).get('q50', 'n/a')}, negative median "
        f"{stats.get('negative_score', {}).get('q50', 'n/a')}.{extra}"
    )
