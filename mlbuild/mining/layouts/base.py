"""The layout base: :class:`Layout`, the :class:`Mined` batch it turns into rows, the registry and the
helpers layouts share. Layouts import this module; the package imports the layouts (no cycle)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import polars as pl

from ...pipeline.base import reject


@dataclass
class QueryLists:
    """Per row (of a per-query layout): its query and every positive of that query, with ids and
    scores, and its negatives' ids; ``seeds`` fix each query's candidate order."""

    query: list[str]
    positives: list[list[str]]
    pos_ids: list[list[str]]
    pos_scores: list[list[float]]
    neg_ids: list[list[str]]
    seeds: list[int]
    num_candidates: int
    teacher_pos: list[list[float]] | None = None
    prompt: str = ""  # flag-reranker's prompt column


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
    neg_retrievers: list[list[str]] | None = None  # per row: the retriever(s) that found each negative
    lists: QueryLists | None = None  # per-query layouts only

    @property
    def counts(self) -> np.ndarray:
        return np.array([len(x) for x in self.negatives], dtype=np.int64)


class Layout:
    name: ClassVar[str] = ""
    score_columns: ClassVar[tuple[str, ...]] = ()
    teacher_columns: ClassVar[tuple[str, ...]] = ()
    retriever_columns: ClassVar[tuple[str, ...]] = ()  # with retrievers other than dense alone
    per_query: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = False

    def removes(self, positive_column: str) -> list[str]:
        """Input columns the layout drops (per-query layouts: the positive column; the list holds them)."""
        return [positive_column] if self.per_query else []

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
        if self.per_query:  # one row per query: the others are merged into it
            m = subset(m, np.flatnonzero(m.first_of_query))
            counts, keep = m.counts, m.counts >= self.needs(num_negatives)
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
        pick(m.neg_retrievers),
        None
        if m.lists is None
        else QueryLists(
            pick(m.lists.query),
            pick(m.lists.positives),
            pick(m.lists.pos_ids),
            pick(m.lists.pos_scores),
            pick(m.lists.neg_ids),
            pick(m.lists.seeds),
            m.lists.num_candidates,
            pick(m.lists.teacher_pos),
            m.lists.prompt,
        ),
    )


LAYOUTS: dict[str, Layout] = {}


def register(cls: type[Layout]) -> type[Layout]:
    LAYOUTS[cls.name] = cls()
    return cls


def get(name: str) -> Layout:
    if name not in LAYOUTS:
        raise ValueError(f"unknown output format {name!r} (known: {', '.join(LAYOUTS)})")
    return LAYOUTS[name]


def score_columns(name: str, include_scores: bool, teacher: bool, pooled: bool = False) -> list[str]:
    lay = get(name)
    return [
        *(lay.score_columns if include_scores else ()),
        *(lay.teacher_columns if teacher else ()),
        *(lay.retriever_columns if pooled else ()),
    ]


def param_problems(p: Any, lay: Layout) -> list[tuple[str, str]]:
    """What ``mine_negatives.v1``'s params lack or carry for layout ``lay`` and the retrievers."""
    out: list[tuple[str, str]] = []
    if lay.per_query and p.num_candidates is None:
        out.append(("num_candidates", f"output_format {lay.name!r} writes a list per query: set its size"))
    if not lay.per_query and p.num_candidates is not None:
        out.append(("num_candidates", f"only for per-query layouts ({', '.join(per_query_names())})"))
    if lay.needs_teacher and not p.teacher:
        out.append(("teacher", f"output_format {lay.name!r} needs a teacher cross-encoder"))
    if p.prompt and lay.name != "flag-reranker":
        out.append(("prompt", "only for output_format = 'flag-reranker'"))
    if (p.corpus_id_column or p.positive_id_column) and not lay.per_query:
        out.append(("corpus_id_column", "ids are written by per-query layouts only (doc_ids)"))
    r = list(p.retrievers)
    if len(set(r)) != len(r):
        out.append(("retrievers", "each retriever at most once"))
    if r and r[0] != "dense":
        out.append(("retrievers", "must start with 'dense' (pooled candidates are scored and filtered on it)"))
    if p.bm25_lang and "bm25" not in r:
        out.append(("bm25_lang", "only with 'bm25' in retrievers"))
    return out


def per_query_names() -> list[str]:
    return [n for n, lay in LAYOUTS.items() if lay.per_query]


def series(name: str, values: Any, dtype: Any) -> pl.Series:
    return pl.Series(name, values, dtype=dtype)
