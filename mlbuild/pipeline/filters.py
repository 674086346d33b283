"""Filters and gates: small pure functions that say, per row, why it fails (or ``None``); the step
base applies what the recipe asked for with ``on_fail``, the one name every step uses:

- ``drop``: the failing rows leave the data and go to ``rejects/`` with their reason and detail;
- ``keep``: the rows stay; the failures are only counted;
- ``flag``: the rows stay, with a boolean column saying whether they passed (and, where the step
  names one, a column with the reason).

A filter returns a :class:`Verdict`; several are combined with :func:`first_failure` (the first
filter that fails a row names its reason). :func:`apply` turns a verdict into a
:class:`~mlbuild.pipeline.base.StepOutput` whose stats carry typed :class:`FilterCounts`, which the
runner merges across shards and the card shows (``failed``: reason -> rows, whatever ``on_fail``).

A new filter is one function::

    def too_short(texts: list[str], min_chars: int) -> Verdict:
        return Verdict.from_mask([len(t) < min_chars for t in texts], "too_short",
                                 [f"{len(t)} characters" for t in texts])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

OnFail = Literal["drop", "keep", "flag"]
ON_FAIL_DOC = "rows failing a check: drop (to rejects/), keep (count only) or flag (a column says which passed)"


@dataclass
class Verdict:
    """Per row: the reason it fails (``None`` when it passes) and an optional human-readable detail."""

    reasons: list[str | None]
    details: list[str | None] | None = None

    def __post_init__(self) -> None:
        if self.details is None:
            self.details = [None] * len(self.reasons)
        elif len(self.details) != len(self.reasons):
            raise ValueError(f"{len(self.reasons)} reasons but {len(self.details)} details")

    def __len__(self) -> int:
        return len(self.reasons)

    @classmethod
    def passing(cls, n: int) -> Verdict:
        return cls([None] * n)

    @classmethod
    def from_mask(cls, failed: Sequence[bool], reason: str, details: Sequence[str | None] | None = None) -> Verdict:
        """Rows where ``failed`` is true fail with ``reason`` (and their detail, when given)."""
        failed = [bool(x) for x in failed]
        return cls(
            [reason if f else None for f in failed],
            [(details[i] if details is not None else None) if f else None for i, f in enumerate(failed)],
        )

    @property
    def ok(self) -> list[bool]:
        return [r is None for r in self.reasons]

    def failed(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.reasons:
            if r is not None:
                out[r] = out.get(r, 0) + 1
        return dict(sorted(out.items()))

    def take(self, idx: Sequence[int], n: int) -> Verdict:
        """This verdict (over rows ``idx`` of a batch of ``n``) spread over the whole batch."""
        reasons: list[str | None] = [None] * n
        details: list[str | None] = [None] * n
        for j, i in enumerate(idx):
            reasons[i], details[i] = self.reasons[j], self.details[j]
        return Verdict(reasons, details)


def first_failure(verdicts: Sequence[Verdict]) -> Verdict:
    """Combine verdicts over the same rows: each row keeps the first failure (filters run in order)."""
    if not verdicts:
        raise ValueError("no verdicts to combine")
    n = len(verdicts[0])
    reasons: list[str | None] = [None] * n
    details: list[str | None] = [None] * n
    for v in verdicts:
        if len(v) != n:
            raise ValueError("verdicts over different numbers of rows")
        for i, r in enumerate(v.reasons):
            if r is not None and reasons[i] is None:
                reasons[i], details[i] = r, v.details[i]
    return Verdict(reasons, details)


@dataclass
class FilterCounts:
    """What one step's checks found: rows checked, failures per reason, and what was done with them."""

    checked: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    on_fail: str = "drop"

    def add(self, verdict: Verdict) -> None:
        self.checked += len(verdict)
        for r, n in verdict.failed().items():
            self.failed[r] = self.failed.get(r, 0) + n

    def to_stats(self) -> dict[str, Any]:
        """The stats entry (summed across shards by :func:`~mlbuild.pipeline.base.merge_stats`)."""
        return {"checked": self.checked, "failed": dict(sorted(self.failed.items())), "on_fail": {self.on_fail: 1}}

    @classmethod
    def from_stats(cls, stats: dict[str, Any]) -> FilterCounts:
        on_fail = next(iter(stats.get("on_fail") or {"drop": 1}))
        return cls(int(stats.get("checked", 0)), dict(stats.get("failed", {})), on_fail)


def apply(
    rows: pl.DataFrame,
    verdict: Verdict,
    on_fail: OnFail,
    *,
    ok_column: str | None = None,
    reason_column: str | None = None,
    stats: dict[str, Any] | None = None,
    stats_key: str = "checks",
) -> tuple[pl.DataFrame, pl.DataFrame | None, dict[str, Any]]:
    """Apply ``on_fail`` to ``rows`` given ``verdict``; return (rows, rejects, stats).

    ``drop``: failing rows become rejects (columns ``reason`` and ``detail``); ``flag``: rows get
    ``ok_column`` (bool) and, when given, ``reason_column``; ``keep``: rows are unchanged. In every
    case ``stats[stats_key]`` holds the :class:`FilterCounts`."""
    if len(verdict) != rows.height:
        raise ValueError(f"verdict over {len(verdict)} rows for a batch of {rows.height}")
    counts = FilterCounts(on_fail=on_fail)
    counts.add(verdict)
    stats = dict(stats or {})
    stats[stats_key] = counts.to_stats()
    ok = pl.Series(verdict.ok, dtype=pl.Boolean)
    if on_fail == "keep":
        return rows, None, stats
    if on_fail == "flag":
        if ok_column is None:
            raise ValueError("on_fail = 'flag' needs a column name")
        cols = [ok.alias(ok_column)]
        if reason_column is not None:
            cols.append(pl.Series(reason_column, verdict.reasons, dtype=pl.Utf8))
        return rows.with_columns(cols), None, stats
    if on_fail != "drop":
        raise ValueError(f"on_fail must be drop, keep or flag, got {on_fail!r}")
    bad = [i for i, r in enumerate(verdict.reasons) if r is not None]
    if not bad:
        return rows, None, stats
    rejects = rows[bad].with_columns(
        pl.Series("reason", [verdict.reasons[i] for i in bad], dtype=pl.Utf8),
        pl.Series("detail", [verdict.details[i] for i in bad], dtype=pl.Utf8),
    )
    return rows.filter(ok), rejects, stats


def summary(stats: dict[str, Any], stats_key: str = "checks") -> str:
    """One Markdown sentence for the card from merged stats: checked rows and failures per reason."""
    c = stats.get(stats_key)
    if not c:
        return ""
    counts = FilterCounts.from_stats(c)
    if not counts.failed:
        return f"All {counts.checked} rows passed the checks."
    verb = {"drop": "dropped", "keep": "kept", "flag": "flagged"}.get(counts.on_fail, counts.on_fail)
    parts = ", ".join(f"`{r}` {n}" for r, n in counts.failed.items())
    return f"{sum(counts.failed.values())} of {counts.checked} rows failed the checks ({verb}): {parts}."
