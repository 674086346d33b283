"""Output layouts of mined rows, one module each, registered by name (``output_format``).

A layout is a class with ``name``, the columns it adds (:meth:`Layout.columns`), its score columns
(``score_columns`` with ``include_scores``, ``teacher_columns`` with a teacher), the fewest negatives a
row needs (:meth:`Layout.needs`; rows with fewer go to rejects) and :meth:`Layout.build`, which turns one
:class:`Mined` batch into output rows. A new layout is a new module here that calls :func:`register`
(and is imported below)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import polars as pl

from ...pipeline.base import reject


@dataclass
class Mined:
    """One batch of mined rows, in input order."""

    base: pl.DataFrame  # the rows' columns (precomputed vectors dropped)
    positive_column: str
    positive: list[str]
    negatives: list[list[str]]  # per row: its query's negatives, best first
    neg_scores: list[list[float]]
    pos_score: np.ndarray  # per row: the positive's score
    first_of_query: np.ndarray  # per row: the first row of its query (in the whole input)
    teacher_pos: list[float] | None = None
    teacher_neg: list[list[float]] | None = None

    @property
    def counts(self) -> np.ndarray:
        return np.array([len(x) for x in self.negatives], dtype=np.int64)


class Layout:
    name: ClassVar[str] = ""
    score_columns: ClassVar[tuple[str, ...]] = ()
    teacher_columns: ClassVar[tuple[str, ...]] = ()

    def columns(self, num_negatives: int) -> list[str]:
        raise NotImplementedError

    def needs(self, num_negatives: int) -> int:
        """Negatives a row needs to be written (fewer: rejected)."""
        return 1

    def reject_reason(self) -> str:
        return "no_negatives"

    def build(self, m: Mined, num_negatives: int, include_scores: bool) -> pl.DataFrame:
        raise NotImplementedError

    def apply(self, m: Mined, num_negatives: int, include_scores: bool) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        """(rows, rejects): rows short of :meth:`needs` negatives are rejected with the count found."""
        counts = m.counts
        keep = counts >= self.needs(num_negatives)
        bad = None
        if (~keep).any():
            detail = pl.Series("detail", [f"found {c} of {num_negatives}" for c in counts[~keep]], dtype=pl.Utf8)
            bad = reject(m.base.filter(pl.Series(~keep)), self.reject_reason()).with_columns(detail)
            m = subset(m, np.flatnonzero(keep))
        return self.build(m, num_negatives, include_scores), bad


def subset(m: Mined, idx: np.ndarray) -> Mined:
    pick = lambda xs: None if xs is None else [xs[i] for i in idx]  # noqa: E731
    return Mined(
        m.base[idx] if len(idx) else m.base.clear(),
        m.positive_column,
        pick(m.positive),
        pick(m.negatives),
        pick(m.neg_scores),
        m.pos_score[idx],
        m.first_of_query[idx],
        pick(m.teacher_pos),
        pick(m.teacher_neg),
    )


LAYOUTS: dict[str, Layout] = {}


def register(cls: type[Layout]) -> type[Layout]:
    LAYOUTS[cls.name] = cls()
    return cls


def get(name: str) -> Layout:
    if name not in LAYOUTS:
        raise ValueError(f"unknown output format {name!r} (known: {', '.join(LAYOUTS)})")
    return LAYOUTS[name]


def score_columns(name: str, include_scores: bool, teacher: bool) -> list[str]:
    lay = get(name)
    return [*(lay.score_columns if include_scores else ()), *(lay.teacher_columns if teacher else ())]


def series(name: str, values: Any, dtype: Any) -> pl.Series:
    return pl.Series(name, values, dtype=dtype)


from . import labeled_list, labeled_pair, ntuple, triplet  # noqa: E402,F401  (registration)

NAMES: tuple[str, ...] = tuple(LAYOUTS)
