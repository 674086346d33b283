"""Pass 2 of a mining run: the rows again, batch by batch, with their query's negatives (and, for the
per-query layouts, every positive of the query), teacher scores when a teacher runs, in the chosen
layout. Memory: one input batch and its negatives' texts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from ..pipeline.base import StepOutput, concat_rejects
from ..pipeline.cache import SEP, cached_map
from . import layouts
from .index import MiningIndex
from .mine import Results, seed_of
from .rows import batches, prepare

TeacherFn = Callable[[list[str], list[str]], np.ndarray]


def teacher_fn(cache: Any, teacher: Any) -> TeacherFn:
    """Teacher scores of (query, passage) pairs through the run's model-call cache (JSON values, keyed
    by the teacher's namespace: id, revision, max length, output), in batches."""

    def fn(batch: list[str]) -> list[float]:
        qs, ds = zip(*(k.split(SEP, 1) for k in batch))
        return [float(x) for x in teacher.score(list(qs), list(ds))]

    def scores(queries: list[str], passages: list[str]) -> np.ndarray:
        if not queries:
            return np.zeros(0, dtype=np.float32)
        keys = [q + SEP + d for q, d in zip(queries, passages)]
        out = cached_map(cache, teacher.namespace(), keys, fn, batch_size=max(teacher.batch_size, 256))
        return np.asarray(out, np.float32)

    return scores


@dataclass
class EmitOptions:
    query_column: str
    positive_column: str
    layout: str
    num_negatives: int
    include_scores: bool
    positive_vec: str | None  # precomputed positive vectors (split with list positives)
    dropped: set[str]
    tags: tuple[str, ...] | None  # retriever tag names (None: dense alone, no retriever columns)
    num_candidates: int = 0
    seed: int = 0
    prompt: str = ""


def split(flat: Any, counts: Any) -> list[list]:
    out, s = [], 0
    for c in counts:
        out.append(list(flat[s : s + c]))
        s += c
    return out


class Emitter:
    def __init__(self, index: MiningIndex, res: Results, opts: EmitOptions, teacher: TeacherFn | None):
        self.index, self.res, self.o, self.teacher = index, res, opts, teacher
        self.layout = layouts.get(opts.layout)
        self.group_names = {code: name for name, code in index.groups.items()}

    def run(self, table: Any, emit: Callable[[StepOutput], None]) -> dict[str, Any]:
        o, ix = self.o, self.index
        first = ix.first_rows()
        r0 = negatives = output_rows = merged = 0
        for b in batches(table):
            rows, rej = prepare(b, o.query_column, o.positive_column, o.positive_vec)
            n = rows.height
            rq, re = ix.row_query.array()[r0 : r0 + n], ix.row_entry.array()[r0 : r0 + n]
            is_first = first[rq] == r0 + np.arange(n)
            r0 += n
            if self.layout.per_query:  # one row per query: the others are merged into it
                merged += int((~is_first).sum())
                keep = np.flatnonzero(is_first)
                rows, rq, re, is_first = rows[keep] if len(keep) else rows.clear(), rq[keep], re[keep], is_first[keep]
            mined = self.mined(rows, rq, re, is_first)
            out, bad = self.layout.apply(mined, o.num_negatives, o.include_scores)
            negatives += int(mined.counts.sum())
            output_rows += out.height
            emit(StepOutput(out, concat_rejects([rej, bad])))
        stats = {"negatives": negatives, "output_rows": output_rows}
        if self.layout.per_query:
            stats["merged_rows"] = merged
        return stats

    def mined(self, rows: pl.DataFrame, rq: np.ndarray, re: np.ndarray, is_first: np.ndarray) -> layouts.Mined:
        """One batch's rows with their negatives, scores, tags and teacher scores (:class:`layouts.Mined`)."""
        o, ix, res = self.o, self.index, self.res
        n = rows.height
        counts = res.count[rq] if n else np.zeros(0, np.int32)
        ents, scores, tags = np.asarray(res.entry[rq]), np.asarray(res.score[rq]), np.asarray(res.retriever[rq])
        flat = np.concatenate([ents[r, : counts[r]] for r in range(n)] or [np.zeros(0, np.int64)])
        uniq, inv = np.unique(flat, return_inverse=True)
        tids = ix.entry_text.array()[uniq]
        texts = ix.passage_text.get(tids) if len(uniq) else []
        neg_texts = split([texts[j] for j in inv], counts)
        neg_scores = [scores[r, : counts[r]].astype(float).tolist() for r in range(n)]
        ne = max(ix.n_entries, 1)
        pair = np.searchsorted(ix.pos_query * ne + ix.pos_entry, rq * ne + re)
        positives = rows[o.positive_column].cast(pl.Utf8).to_list()
        base = rows.drop([c for c in o.dropped if c in rows.columns])
        m = layouts.Mined(base, o.positive_column, positives, neg_texts, neg_scores, res.pos_score[pair], is_first)
        if o.tags is not None:
            m.neg_retrievers = [[o.tags[t] for t in tags[r, : counts[r]]] for r in range(n)]
        queries = rows[o.query_column].cast(pl.Utf8).to_list()
        if self.layout.per_query:
            ids = ix.doc_ids(tids) if len(uniq) else []
            m.lists = self.lists(rq, queries, split([ids[j] for j in inv], counts))
        if self.teacher is not None:
            m.teacher_pos = self.teacher(queries, positives).tolist()
            flat_t = self.teacher(
                [queries[r] for r in range(n) for _ in neg_texts[r]], [t for ts in neg_texts for t in ts]
            )
            m.teacher_neg = [x.tolist() for x in np.split(flat_t, np.cumsum(counts)[:-1])] if n else []
            if m.lists is not None:
                pq = [q for q, ps in zip(queries, m.lists.positives) for _ in ps]
                tp = self.teacher(pq, [p for ps in m.lists.positives for p in ps])
                m.lists.teacher_pos = split(tp.tolist(), [len(ps) for ps in m.lists.positives])
        return m

    def lists(self, rq: np.ndarray, queries: list[str], neg_ids: list[list[str]]) -> layouts.QueryLists:
        """Every positive of each row's query (corpus order), with ids and scores; the rows' seeds."""
        ix, o = self.index, self.o
        rows, pair = ix.positives(rq)
        tids = ix.entry_text.array()[ix.pos_entry[pair]]
        per_row = np.bincount(rows, minlength=len(rq))
        texts = ix.passage_text.get(tids) if len(tids) else []
        ids = ix.doc_ids(tids) if len(tids) else []
        groups = ix.query_group.array()[rq]
        seeds = [seed_of(o.seed, self.group_names.get(int(g), ""), q) for g, q in zip(groups, queries)]
        return layouts.QueryLists(
            queries,
            split(texts, per_row),
            split(ids, per_row),
            split(self.res.pos_score[pair].tolist(), per_row),
            neg_ids,
            seeds,
            o.num_candidates,
            prompt=o.prompt,
        )
