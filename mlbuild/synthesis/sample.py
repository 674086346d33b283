"""The ``sample`` stage of ``synthesize_queries.v1`` (global, cheap): a seeded sample of ``sample`` passages
per passage language, chosen by the smallest ``sha256(seed, doc_id)``.

Two passes over the stage's input: the first reads ids, texts and languages and keeps, per language, the
``sample`` smallest (hash, position) pairs in a bounded candidate list (memory: ``sample`` entries per
language, whatever the corpus size); the second streams the rows again, passing the sampled ones (and
empty passages, which the generation stage rejects as ``empty_passage``) and rejecting the rest as
``not_sampled``. With the round-trip filter ranking against the step's own input, the passages left out
still pass on, marked ``_synth_corpus_only``, so they stay in the corpus (they get no query)."""

from __future__ import annotations

import heapq
from typing import Any

import polars as pl

from ..pipeline.base import Step, StepOutput
from ..pipeline.cache import hash_text
from . import models
from .passages import CORPUS_ONLY, corpus_rows, doc_ids, passage_langs, passage_texts


def smallest_per_group(
    best: dict[Any, list[tuple[str, int]]], groups: list[Any], keys: list[str], positions: list[int], n: int
) -> dict[Any, list[tuple[str, int]]]:
    """Merge a batch into ``best`` (group -> the ``n`` smallest (key, position) pairs so far)."""
    by: dict[Any, list[tuple[str, int]]] = {}
    for g, k, p in zip(groups, keys, positions):
        by.setdefault(g, []).append((k, p))
    for g, items in by.items():
        best[g] = heapq.nsmallest(n, best.get(g, []) + items)
    return best


class SampleStage(Step):
    """Stage ``sample`` of ``synthesize_queries.v1``: see the module docstring."""

    name = "synthesize_queries.v1#sample"
    kind = "global"

    def __init__(self, params: Any, ctx: Any = None):
        # everything from (params, ctx): a cluster executor rebuilds the stage from them on its workers
        super().__init__(params, ctx)
        self.corpus_rows = corpus_rows(params)

    def resources(self) -> dict[str, float]:
        """No model but fastText language ID: no GPU."""
        return {}

    def setup(self) -> None:
        p = self.params
        self.seed = p.seed if p.seed is not None else self.ctx.seed
        self.lid = None
        if p.passage_lang is None:
            self.lid = models.load_lid(p.lid_model, self.ctx.recipe_dir)

    def _columns(self, columns: list[str]) -> list[str]:
        p = self.params
        want = [p.passage_column, p.doc_id_column or "doc_id", p.passage_lang or ""]
        return list(dict.fromkeys(["row_id", *[c for c in want if c in columns]]))

    def selected(self, table: Any) -> tuple[set[int], int]:
        """Positions (in stream order) of the sampled passages, and the number of non-empty passages."""
        best: dict[Any, list[tuple[str, int]]] = {}
        pos = 0
        nonempty = 0
        for batch in table.iter_batches(self._columns(list(table.columns))):
            texts = passage_texts(batch, self.params)
            ids = doc_ids(batch, self.params)
            plangs = passage_langs(batch, self.params, texts, self.lid)
            idx = [i for i, t in enumerate(texts) if t.strip()]
            nonempty += len(idx)
            keys = [hash_text(str(self.seed), ids[i]) for i in idx]
            best = smallest_per_group(best, [plangs[i] for i in idx], keys, [pos + i for i in idx], self.params.sample)
            pos += batch.height
        return {p for items in best.values() for _, p in items}, nonempty

    def run_global(self, table: Any, emit) -> dict[str, Any]:
        keep, nonempty = self.selected(table)
        pos = 0
        for batch in table.iter_batches():
            texts = passage_texts(batch, self.params)
            mask = [(pos + i) in keep or not t.strip() for i, t in enumerate(texts)]
            pos += batch.height
            sel = pl.Series(mask, dtype=pl.Boolean)
            out = batch.with_columns((~sel).alias(CORPUS_ONLY)) if self.corpus_rows else batch.filter(sel)
            rejects = batch.filter(~sel).with_columns(
                pl.lit("not_sampled").alias("reason"), pl.lit(None, pl.Utf8).alias("detail")
            )
            emit(StepOutput(out, rejects, {"passages_not_sampled": rejects.height}))
        return {"sampled": len(keep), "sample_candidates": nonempty}
