"""Per-query candidate lists: ``listwise`` and the layouts listwise trainers read.

Each query gets one row (with its first input row's other columns) holding up to ``num_candidates``
candidates: every known positive of the query (at most ``num_candidates - 1``, in input order) and
its mined negatives (in selection order) up to ``num_candidates``. A query without a negative goes
to ``rejects/`` (``no_negatives``).

**Candidate order** (``listwise``, ``st-listwise``, ``rank-permutation``): the list above shuffled by
``numpy.random.default_rng(s).permutation``, ``s`` = the first 8 bytes (little-endian) of
``sha256(seed, group, query text)`` (the seed of random sampling), so the positives are not always
first and the order does not depend on row order, batches or shards. ``flag-reranker`` keeps
positives and negatives apart, in the order above.

**Teacher ordering**: candidates by teacher score (desc), ties by list position; ``teacher_order`` holds
0-based positions, ``permutation`` the RankGPT / RankZephyr target ``"[2] > [1] > [3]"`` (1-based).

| layout | columns (beside the input's) |
|---|---|
| ``listwise`` | ``docs``, ``doc_ids``, ``labels`` (1 positive, 0 other), ``scores`` (first stage: dense cosine), ``retrievers`` (``positive`` for a known positive), [``teacher_scores``, ``teacher_order``] |
| ``st-listwise`` | ``docs``, ``labels`` (sentence-transformers' cross-encoder listwise losses: query, docs, labels) [``teacher_scores``] |
| ``flag-reranker`` | ``query``, ``pos``, ``neg``, ``pos_scores``, ``neg_scores`` (teacher scores with a teacher, else dense cosine), ``prompt`` (FlagEmbedding's reranker JSONL) |
| ``rank-permutation`` | ``docs``, ``doc_ids``, ``permutation``, ``teacher_scores`` (needs a teacher) |
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from .base import Layout, Mined, register

POSITIVE = "positive"  # the retriever tag of a known positive


@dataclass
class Lists:
    docs: list[list[str]]
    ids: list[list[str]]
    labels: list[list[int]]
    scores: list[list[float]]
    tags: list[list[str]]
    teacher: list[list[float]] | None
    n_pos: list[int]


def candidate_lists(m: Mined, shuffle: bool) -> Lists:
    """Each row's candidates (module docstring), shuffled by the row's seed when ``shuffle``."""
    L = m.lists
    assert L is not None, "per-query layouts need Mined.lists"
    k = L.num_candidates
    out = Lists([], [], [], [], [], [] if m.teacher_neg is not None else None, [])
    for r in range(len(L.query)):
        npos = min(len(L.positives[r]), k - 1)
        nneg = min(len(m.negatives[r]), k - npos)
        tags = m.neg_retrievers[r][:nneg] if m.neg_retrievers is not None else ["dense"] * nneg
        cols = [
            L.positives[r][:npos] + m.negatives[r][:nneg],
            L.pos_ids[r][:npos] + L.neg_ids[r][:nneg],
            [1] * npos + [0] * nneg,
            [float(x) for x in L.pos_scores[r][:npos]] + [float(x) for x in m.neg_scores[r][:nneg]],
            [POSITIVE] * npos + list(tags),
        ]
        if out.teacher is not None:
            cols.append([float(x) for x in L.teacher_pos[r][:npos]] + [float(x) for x in m.teacher_neg[r][:nneg]])
        if shuffle:
            perm = np.random.default_rng(L.seeds[r]).permutation(npos + nneg)
            cols = [[c[j] for j in perm] for c in cols]
        for dest, c in zip((out.docs, out.ids, out.labels, out.scores, out.tags, out.teacher), cols):
            dest.append(c)
        out.n_pos.append(npos)
    return out


def teacher_order(scores: list[float]) -> list[int]:
    """Positions by teacher score (desc), ties by position."""
    s = np.asarray(scores, dtype=np.float64)
    return np.lexsort((np.arange(len(s)), -s)).tolist()


def permutation(scores: list[float]) -> str:
    return " > ".join(f"[{j + 1}]" for j in teacher_order(scores))


def _f32_lists(name: str, xs: list[list[float]]) -> pl.Series:
    return pl.Series(name, xs, dtype=pl.List(pl.Float32))


class _ListLayout(Layout):
    per_query = True

    def columns(self, num_negatives: int) -> list[str]:
        return list(self.list_columns)


@register
class Listwise(_ListLayout):
    name = "listwise"
    list_columns = ("docs", "doc_ids", "labels", "scores", "retrievers")
    teacher_columns = ("teacher_scores", "teacher_order")

    def build(self, m: Mined, num_negatives: int, include_scores: bool) -> pl.DataFrame:
        c = candidate_lists(m, shuffle=True)
        cols = [
            pl.Series("docs", c.docs, dtype=pl.List(pl.Utf8)),
            pl.Series("doc_ids", c.ids, dtype=pl.List(pl.Utf8)),
            pl.Series("labels", c.labels, dtype=pl.List(pl.Int8)),
            _f32_lists("scores", c.scores),
            pl.Series("retrievers", c.tags, dtype=pl.List(pl.Utf8)),
        ]
        if c.teacher is not None:
            cols.append(_f32_lists("teacher_scores", c.teacher))
            cols.append(pl.Series("teacher_order", [teacher_order(t) for t in c.teacher], dtype=pl.List(pl.Int32)))
        return m.base.with_columns(cols)


@register
class STListwise(_ListLayout):
    name = "st-listwise"
    list_columns = ("docs", "labels")
    teacher_columns = ("teacher_scores",)

    def build(self, m: Mined, num_negatives: int, include_scores: bool) -> pl.DataFrame:
        c = candidate_lists(m, shuffle=True)
        cols = [
            pl.Series("docs", c.docs, dtype=pl.List(pl.Utf8)),
            pl.Series("labels", c.labels, dtype=pl.List(pl.Int8)),
        ]
        if c.teacher is not None:
            cols.append(_f32_lists("teacher_scores", c.teacher))
        return m.base.with_columns(cols)


@register
class FlagReranker(_ListLayout):
    name = "flag-reranker"
    list_columns = ("query", "pos", "neg", "pos_scores", "neg_scores", "prompt")

    def build(self, m: Mined, num_negatives: int, include_scores: bool) -> pl.DataFrame:
        c = candidate_lists(m, shuffle=False)
        sc = c.teacher if c.teacher is not None else c.scores
        n = c.n_pos
        cols = [
            pl.Series("query", m.lists.query, dtype=pl.Utf8),
            pl.Series("pos", [d[:p] for d, p in zip(c.docs, n)], dtype=pl.List(pl.Utf8)),
            pl.Series("neg", [d[p:] for d, p in zip(c.docs, n)], dtype=pl.List(pl.Utf8)),
            _f32_lists("pos_scores", [s[:p] for s, p in zip(sc, n)]),
            _f32_lists("neg_scores", [s[p:] for s, p in zip(sc, n)]),
            pl.Series("prompt", [m.lists.prompt] * len(n), dtype=pl.Utf8),
        ]
        return m.base.with_columns(cols)


@register
class RankPermutation(_ListLayout):
    name = "rank-permutation"
    list_columns = ("docs", "doc_ids", "permutation", "teacher_scores")
    needs_teacher = True

    def build(self, m: Mined, num_negatives: int, include_scores: bool) -> pl.DataFrame:
        c = candidate_lists(m, shuffle=True)
        cols = [
            pl.Series("docs", c.docs, dtype=pl.List(pl.Utf8)),
            pl.Series("doc_ids", c.ids, dtype=pl.List(pl.Utf8)),
            pl.Series("permutation", [permutation(t) for t in c.teacher], dtype=pl.Utf8),
            _f32_lists("teacher_scores", c.teacher),
        ]
        return m.base.with_columns(cols)
