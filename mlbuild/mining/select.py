"""Candidates and their selection: which retrieved passages become a query's negatives.

A :class:`Candidates` window holds, per query, passages ordered by score (desc) then corpus index (asc)
(pooled from several retrievers: in :mod:`.pool`'s order), each with the retriever that found it and, when a teacher scored it, the teacher's score. :func:`select`
applies :class:`Rules` (sentence-transformers' semantics: positives out, then ``exclude_same`` matches,
margins, max/min score, each candidate counted under the first reason that removes it; then
``range_min`` / ``range_max`` over what is left and ``top`` or seeded ``random`` sampling)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

REASONS = ("positive", "exclude_same", "absolute_margin", "relative_margin", "max_score", "min_score")
CODE = np.int64(1) << np.int64(32)  # pair code = query row * 2**32 + corpus index


@dataclass
class Candidates:
    """Per query row, a window of candidate passages (``index`` -1 = none), best first."""

    index: np.ndarray  # int64 [nq, w] corpus indices
    score: np.ndarray  # float32 [nq, w] the score the window is ordered by
    retriever: np.ndarray | None = None  # int8 [nq, w]: position in ``retrievers`` (None: all the first)
    retrievers: tuple[str, ...] = ("dense",)
    teacher: np.ndarray | None = None  # float32 [nq, w]: a teacher's score of each candidate

    @property
    def shape(self) -> tuple[int, int]:
        return self.index.shape

    def rescored_by_teacher(self) -> Candidates:
        """The window ordered by the teacher's scores (ties by corpus index), which become its scores."""
        if self.teacher is None:
            raise ValueError("no teacher scores")
        key_i = np.where(self.index >= 0, self.index, np.iinfo(np.int64).max)
        s = np.where(self.index >= 0, self.teacher, -np.inf).astype(np.float32)
        order = np.stack([np.lexsort((key_i[r], -s[r])) for r in range(len(s))]) if len(s) else key_i
        take = lambda a: None if a is None else np.take_along_axis(a, order, 1)  # noqa: E731
        return replace(self, index=take(self.index), score=take(s), retriever=take(self.retriever), teacher=take(s))


@dataclass(frozen=True)
class Rules:
    num_negatives: int = 3
    range_min: int = 0
    range_max: int | None = None
    absolute_margin: float | None = None
    relative_margin: float | None = None
    max_score: float | None = None
    min_score: float | None = None
    sampling: str = "top"
    include_positives: bool = False
    teacher_rescore: bool = False

    @classmethod
    def of(cls, params: Any) -> Rules:
        return cls(**{f: getattr(params, f) for f in cls.__dataclass_fields__})

    def window(self, max_positives: int) -> int:
        """``range_max``, or sentence-transformers' default: room for the positives and, with filters,
        10x the negatives."""
        if self.range_max is not None:
            return self.range_max
        filters = (
            self.absolute_margin is not None
            or self.relative_margin is not None
            or self.max_score is not None
            or (self.teacher_rescore and self.min_score is not None)
        )
        return self.range_min + (self.num_negatives * 10 if filters else self.num_negatives) + max_positives


@dataclass
class Exclusions:
    """Sorted pair codes (query row * 2**32 + corpus index) of each query's positives and of the passages
    sharing an ``exclude_same`` value with them."""

    positive: np.ndarray
    same: np.ndarray

    @classmethod
    def of(cls, pos_rows, pos_index, same_rows, same_index) -> Exclusions:
        def codes(r, i):
            return np.unique(np.asarray(r, np.int64) * CODE + np.asarray(i, np.int64))

        return cls(codes(pos_rows, pos_index), codes(same_rows, same_index))

    def subset(self, rows: np.ndarray) -> Exclusions:
        """The exclusions of query rows ``rows`` renumbered 0.. in that order."""
        new = np.full(int(rows.max(initial=-1)) + 1, -1, dtype=np.int64)
        new[rows] = np.arange(len(rows))

        def sub(c):
            r = c // CODE
            keep = r < len(new)
            keep[keep] = new[r[keep]] >= 0
            return np.sort(new[r[keep]] * CODE + c[keep] % CODE)

        return Exclusions(sub(self.positive), sub(self.same))


@dataclass
class Selection:
    index: list[np.ndarray]  # per query: corpus indices of the chosen negatives (window order)
    score: list[np.ndarray]
    skipped: dict[str, int] = field(default_factory=dict)
    retriever: list[np.ndarray] | None = None  # per query: the chosen negatives' tags (``Candidates.retriever``)

    def counts(self) -> np.ndarray:
        return np.array([len(x) for x in self.index], dtype=np.int64)


def select(
    cands: Candidates, excl: Exclusions, pos_min: np.ndarray, rules: Rules, range_max: int, seeds: list[int] | None
) -> Selection:
    """Filter and sample each query's window (see the module docstring)."""
    cand_i, cand_s = cands.index, cands.score
    nq = cand_i.shape[0]
    valid = cand_i >= 0
    codes = np.arange(nq, dtype=np.int64)[:, None] * CODE + np.where(valid, cand_i, 0)
    left = valid.copy()
    masks: dict[str, np.ndarray] = {}

    def drop(name: str, m: np.ndarray) -> None:
        masks[name] = m & left
        left[masks[name]] = False

    if not rules.include_positives and excl.positive.size:
        drop("positive", np.isin(codes, excl.positive))
    if excl.same.size:
        drop("exclude_same", np.isin(codes, excl.same))
    with np.errstate(invalid="ignore"):
        if rules.absolute_margin is not None:
            drop("absolute_margin", cand_s + rules.absolute_margin > pos_min[:, None])
        if rules.relative_margin is not None:
            thr = pos_min - np.abs(pos_min) * rules.relative_margin
            drop("relative_margin", cand_s > thr[:, None])
        if rules.max_score is not None:
            drop("max_score", cand_s > rules.max_score)
        if rules.min_score is not None:
            drop("min_score", cand_s < rules.min_score)
    rank = np.cumsum(left, axis=1) - 1
    eligible = left & (rank >= rules.range_min) & (rank < range_max)
    n = rules.num_negatives
    picks: list[np.ndarray] = []
    if rules.sampling == "top":
        chosen = eligible & (rank < rules.range_min + n)
        picks = [np.flatnonzero(chosen[r]) for r in range(nq)]
    else:
        for r in range(nq):
            pos = np.flatnonzero(eligible[r])
            if len(pos) > n:
                rng = np.random.default_rng(seeds[r] if seeds is not None else 0)
                pos = np.sort(rng.choice(pos, size=n, replace=False))  # kept in window order
            picks.append(pos)
    tags = None if cands.retriever is None else [cands.retriever[r, p] for r, p in enumerate(picks)]
    return Selection(
        [cand_i[r, p] for r, p in enumerate(picks)],
        [cand_s[r, p] for r, p in enumerate(picks)],
        {k: int(v.sum()) for k, v in masks.items()},
        tags,
    )
