"""The ``generate`` stage of ``synthesize_queries.v1`` (a row step: every worker runs it on its shards).

Per passage row and target language it plans the queries to ask (:class:`Job`), calls the LLM (staged:
the summary once per passage, then each question after its header, then, for cross-lingual targets in
``pivot`` mode, the question rewritten in the target language; or one call per query, v1 style), parses
and filters the queries (:mod:`.filters`), checks their language, removes duplicates per passage, and,
with the round-trip filter on, embeds the kept queries (and the rows' passages as corpus entries) for the
global ``roundtrip`` stage."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import partial
from typing import Any

import polars as pl

from ..accounting import price_extra
from ..errors import RecipeError
from ..models.lid import families_index
from ..pipeline import filters as F
from ..pipeline.base import ROW_ID, Step, StepOutput, concat_rejects
from ..pipeline.cache import hash_text
from ..pipeline.vector_cache import vector_cache
from ..resources import find_file
from . import filters as SF
from . import models
from .calls import Caller
from .passages import (
    CORPUS,
    CORPUS_ONLY,
    VECTOR,
    corpus_rows,
    doc_ids,
    passage_langs,
    passage_texts,
    roundtrip_on,
    titles,
)
from .prompts import Exemplar, PromptBuilder, load_exemplars, pick_exemplars, pick_pivot_exemplars, topic_words

NEW_COLUMNS = ["query", "summary", "lang", "query_id", "doc_id", "passage_lang", "generator", "roundtrip_rank"]
STRUCTURAL = ("parse_no_query",)  # no query to keep: dropped whatever on_fail says
OK_COLUMN, REASON_COLUMN = "query_ok", "query_reject_reason"


@dataclass
class Job:
    """One query to write: row ``i`` of the batch, target language, query index; ``exemplars``: those its
    (last) prompt shows; ``source``: for a pivot job, the job whose question it rewrites."""

    i: int
    target: str
    q: int
    exemplars: list[Exemplar]
    source: Job | None = None
    output: bool = True  # False: a pivot source asked only to be rewritten (monolingual = false)
    summary: str = ""
    query: str = ""
    generation: str = ""
    verdict: tuple[str | None, str | None] = (None, None)


def new_lang_stats() -> dict[str, Any]:
    keys = ("generated", "kept", "query_words", "lid_checked", "lid_passed", "roundtrip_checked", "roundtrip_passed")
    keys += ("generated_tokens",)
    return {**dict.fromkeys(keys, 0), "dropped": {}, "generation_seconds": 0.0}


class GenerateStage(Step):
    """Stage ``generate`` of ``synthesize_queries.v1``: see the module docstring."""

    name = "synthesize_queries.v1#generate"
    kind = "row"
    rows_per_shard = 64  # generation is slow: small shards resume with little repeated and spread on a cluster

    def __init__(self, params: Any, ctx: Any = None):
        # everything from (params, ctx): a cluster executor rebuilds the stage from them on its workers
        super().__init__(params, ctx)
        self.embed = roundtrip_on(params)  # embed kept queries for the round-trip stage
        self.corpus_rows = corpus_rows(params)  # emit each passage's embedding as a corpus entry

    # -- setup
    def setup(self) -> None:
        p = self.params
        base = self.ctx.recipe_dir
        tpath, epath = find_file(p.template, base), find_file(p.exemplars, base)
        if tpath is None or epath is None:
            missing = "template" if tpath is None else "exemplars"
            raise RecipeError([(missing, f"file not found: {getattr(p, missing)}")])
        self.exemplar_pool = load_exemplars(epath)
        self.prompts = PromptBuilder(tpath, self.exemplar_pool, p.max_passage_words)
        self.topic_words = topic_words(self.exemplar_pool)
        missing_targets = [t for t in p.target_langs if not any(t in e.queries for e in self.exemplar_pool)]
        if missing_targets:
            msg = f"{epath.name} has no exemplar with a query in {', '.join(missing_targets)}; add some"
            raise RecipeError([("exemplars", msg + " (passage, summary, query)")])
        if p.generation == "staged" and (why := self.prompts.check_staged()):
            raise RecipeError(
                [
                    (
                        "template",
                        f"{tpath.name} cannot run staged generation: {why}; use a staged template "
                        "(prompts/summarize-then-ask.v2.j2) or generation = 'single'",
                    )
                ]
            )
        self.llm = models.load_llm(p, base, self.ctx.device if p.device == "auto" else p.device, quiet=self.ctx.quiet)
        self.ctx.record_model("llm", self.llm.id, self.llm.revision, engine=p.engine)
        self.generator = f"{self.llm.id}|{self.prompts.name}"
        self.lid = models.load_lid(p.lid_model, base) if p.lid_model else None
        if self.lid is not None:
            self.ctx.record_model("lid", self.lid.id, self.lid.revision)
        self.families = families_index(p.confusable)
        self.embedder = None
        if self.embed or self.corpus_rows:
            self.embedder = models.load_embedder(p, base, p.device, vector_cache(self.ctx))
            self.ctx.record_model("embedder", self.embedder.id, self.embedder.revision, engine=p.embed_engine)
        self.ctx.extra["roundtrip"] = {"on": self.embed, "embed_model": p.embed_model if self.embed else None}
        self.seed = p.seed if p.seed is not None else self.ctx.seed
        self.ctx.extra["seed"] = self.seed
        self.ctx.extra["template"] = self._template_record(tpath, epath)
        self.ctx.extra.update(price_extra(p.price))  # the writer prices this stage's tokens with it
        self.caller = Caller(self)

    def _template_record(self, tpath, epath) -> dict[str, Any]:
        shots = pick_exemplars(self.exemplar_pool, "eng_Latn", "eng_Latn", self.params.shots_monolingual)
        stage = "single" if self.params.generation == "single" else "question"
        probe = self.prompts.render("{passage}", "eng_Latn", "eng_Latn", exemplars=shots, stage=stage)
        return {
            "file": tpath.name,
            "version": self.prompts.version,
            "sha256": hash_text(self.prompts.source),
            "rendered_probe_sha256": hash_text(probe),
            "exemplars_file": epath.name,
            "exemplars_sha256": hash_text(epath.read_text(encoding="utf-8")),
            "generation": self.params.generation,
            "cross_lingual": self.params.cross_lingual,
        }

    # -- planning
    def plan(self, ids: list[str], plangs: list[str | None], skip: list[str | None]) -> tuple[list[Job], list]:
        """The jobs of a batch (rows with a ``skip`` reason get none) and the (row, target, q) triples that
        have no exemplar to show."""
        p = self.params
        jobs: list[Job] = []
        no_ex: list[tuple[int, str, int]] = []
        for i, plang in enumerate(plangs):
            if skip[i] is not None or plang is None:
                continue
            targets = ([plang] if p.monolingual else []) + list(p.target_langs)
            sources: dict[int, Job] = {}
            for t in dict.fromkeys(targets):
                for q in range(p.queries_per_passage):
                    job = self._job(i, plang, t, q, ids[i], sources)
                    if job is None:
                        no_ex.append((i, t, q))
                    else:
                        jobs.append(job)
            jobs += [s for s in sources.values() if not s.output]
        return jobs, no_ex

    def _rng(self, doc_id: str, t: str, q: int) -> random.Random | None:
        return random.Random(hash_text(str(self.seed), doc_id, t, str(q))) if q else None

    def _job(self, i: int, plang: str, t: str, q: int, doc_id: str, sources: dict[int, Job]) -> Job | None:
        p, pool = self.params, self.exemplar_pool
        mono_k, cross_k = p.shots_monolingual, p.shots_cross_lingual
        if t == plang or p.generation == "single" or p.cross_lingual == "direct":
            k = mono_k if t == plang else cross_k
            exs = pick_exemplars(pool, plang, t, k, self._rng(doc_id, t, q))
            if k and not exs:
                return None
            job = Job(i, t, q, exs)
            if t == plang:
                if q in sources:  # asked already as the source of a pivot: now it is an output too
                    sources[q].output = True
                    return sources.pop(q)
                sources[q] = job
            return job
        pivot = pick_pivot_exemplars(pool, plang, t, cross_k, self._rng(doc_id, t, q))
        src_exs = pick_exemplars(pool, plang, plang, mono_k, self._rng(doc_id, plang, q))
        if (cross_k and not pivot) or (mono_k and not src_exs):  # no question pairs: ask directly
            exs = pick_exemplars(pool, plang, t, cross_k, self._rng(doc_id, t, q))
            return Job(i, t, q, exs) if exs or not cross_k else None
        if q not in sources:
            sources[q] = Job(i, plang, q, src_exs, output=False)
        return Job(i, t, q, pivot, source=sources[q])

    # -- the row step
    def process(self, batch: pl.DataFrame) -> StepOutput:
        p = self.params
        if not batch.height:  # an empty shard (it may lack the columns)
            return StepOutput(batch.select([c for c in batch.columns if c not in (CORPUS_ONLY,)]), None, {})
        texts, heads, ids = passage_texts(batch, p), titles(batch, p), doc_ids(batch, p)
        corpus_only = batch[CORPUS_ONLY].fill_null(False).to_list() if CORPUS_ONLY in batch.columns else None
        plangs = passage_langs(batch, p, texts, self.lid)
        skip: list[str | None] = []
        for i, t in enumerate(texts):
            if corpus_only is not None and corpus_only[i]:
                skip.append("corpus_only")
            elif not t.strip():
                skip.append("empty_passage")
            else:
                skip.append(None if plangs[i] is not None else "passage_lang_unknown")
        stats: dict[str, Any] = {"passages_in": sum(s != "corpus_only" for s in skip), "synthesis": {}}
        lang_stats = partial(lang_stats_of, stats)
        jobs, no_ex = self.plan(ids, plangs, skip)
        self.caller.run(jobs, texts, heads, plangs, lang_stats, stats)
        self.judge(jobs, texts, ids, lang_stats, stats)
        out = [j for j in jobs if j.output]
        rows, rejects = self.assemble(batch, out, ids, plangs, stats)
        rejects = concat_rejects([rejects, self._skipped(batch, skip), self._no_exemplars(batch, no_ex, lang_stats)])
        if self.corpus_rows:
            rows = pl.concat([rows, self._corpus(batch, texts, ids)], how="diagonal_relaxed")
        return StepOutput(rows, rejects, stats)

    # -- filters
    def text_verdict(self, jobs: list[Job], texts: list[str]) -> F.Verdict:
        """The text filters over ``jobs``, in order (the first failure names the reason)."""
        p = self.params
        if not jobs:
            return F.Verdict([])
        queries, passages, targets = [j.query for j in jobs], [texts[j.i] for j in jobs], [j.target for j in jobs]
        single = p.generation == "single"
        return F.first_failure(
            [
                SF.parse_failures(
                    [j.summary for j in jobs],
                    queries,
                    p.min_summary_words,
                    "no 'Question ...:' line in the output" if single else "the model wrote no question",
                ),
                SF.unfinished(queries, targets),
                SF.query_length(queries, p.min_query_words, p.max_query_words),
                SF.template_echo(
                    queries, passages, [j.exemplars for j in jobs], targets, self.topic_words, p.echo_fraction
                ),
                SF.copied_from_passage(queries, passages, p.max_copy_words, p.max_copy_fraction),
            ]
        )

    def judge(self, jobs: list[Job], texts: list[str], ids: list[str], lang_stats, stats: dict[str, Any]) -> None:
        """Every job's verdict: text filters (a pivot job whose source question failed them fails with its
        reason), then language ID and duplicates among the queries still alive."""
        p = self.params
        text = self.text_verdict(jobs, texts)
        for j, r, d in zip(jobs, text.reasons, text.details):
            j.verdict = (r, d)
        for j in jobs:
            src = j.source
            if src is not None and src.verdict[0] is not None:  # not rewritten: the source failed
                j.verdict = (src.verdict[0], f"the {src.target} question it rewrites: {src.verdict[1]}")
                j.generation = j.generation or src.generation
        live = [j for j in jobs if j.output and j.verdict[0] is None]
        if self.lid is not None and live:
            v, counts = SF.wrong_language(
                self.lid, [j.query for j in live], [j.target for j in live], p.lid_min_score, self.families
            )
            stats["lid_confusable_accepted"] = counts["confusable_accepted"]
            stats["lid_short_text_accepted"] = counts["short_text_accepted"]
            for j, r, d in zip(live, v.reasons, v.details):
                s = lang_stats(j.target)
                s["lid_checked"] += 1
                s["lid_passed"] += int(r is None)
                j.verdict = (r, d)
        live = [j for j in live if j.verdict[0] is None]
        dup = SF.near_duplicates(
            [(ids[j.i], j.target) for j in live], [j.query for j in live], [j.q for j in live], p.near_duplicate
        )
        for j, r, d in zip(live, dup.reasons, dup.details):
            j.verdict = (r, d)

    # -- output
    def assemble(self, batch, jobs: list[Job], ids, plangs, stats) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        """The jobs as rows (every input column kept, the new ones replaced), ``on_fail`` applied."""
        base = batch.drop([c for c in [*NEW_COLUMNS, CORPUS_ONLY] if c in batch.columns])
        rows = base[[j.i for j in jobs]] if jobs else base.clear()
        gen = self.generator
        cols = {
            ROW_ID: [f"{batch[ROW_ID][j.i]}/{j.target}/{j.q}" for j in jobs],
            "query": [j.query for j in jobs],
            "summary": [j.summary for j in jobs],
            "lang": [j.target for j in jobs],
            "query_id": [f"{ids[j.i]}/{j.target}/{j.q}" for j in jobs],
            "doc_id": [ids[j.i] for j in jobs],
            "passage_lang": [plangs[j.i] for j in jobs],
            "generator": [gen + ("|pivot" if j.source is not None else "") for j in jobs],
            "generation": [j.generation for j in jobs],
        }
        rows = rows.with_columns([pl.Series(k, v, dtype=pl.Utf8) for k, v in cols.items()])
        if self.embed:
            rows = rows.with_columns(self._query_vectors(jobs))
        for j in jobs:
            s = lang_stats_of(stats, j.target)
            if j.verdict[0] is None:
                s["kept"] += 1
                s["query_words"] += len(j.query.split())
            else:
                s["dropped"][j.verdict[0]] = s["dropped"].get(j.verdict[0], 0) + 1
        verdict = F.Verdict([j.verdict[0] for j in jobs], [j.verdict[1] for j in jobs])
        structural = [r in STRUCTURAL for r in verdict.reasons]
        hard = rows.filter(pl.Series(structural, dtype=pl.Boolean)).with_columns(
            pl.Series("reason", [r for r, s in zip(verdict.reasons, structural) if s], dtype=pl.Utf8),
            pl.Series("detail", [d for d, s in zip(verdict.details, structural) if s], dtype=pl.Utf8),
        )
        soft = [i for i, s in enumerate(structural) if not s]
        v = F.Verdict([verdict.reasons[i] for i in soft], [verdict.details[i] for i in soft])
        kept, dropped, st = F.apply(
            rows[soft], v, self.params.on_fail, ok_column=OK_COLUMN, reason_column=REASON_COLUMN, stats_key="checks"
        )
        stats.update(st)
        rejects = concat_rejects([hard, dropped])
        if rejects is not None and VECTOR in rejects.columns:
            rejects = rejects.drop(VECTOR)
        return kept.drop("generation"), rejects

    def _query_vectors(self, jobs: list[Job]) -> pl.Series:
        live = [k for k, j in enumerate(jobs) if j.verdict[0] is None]
        vecs = self.embedder.embed([jobs[k].query for k in live], kind="query") if live else None
        col: list[list[float] | None] = [None] * len(jobs)
        for r, k in enumerate(live):
            col[k] = vecs[r].tolist()
        return pl.Series(VECTOR, col, dtype=pl.List(pl.Float32))

    def _corpus(self, batch: pl.DataFrame, texts: list[str], ids: list[str]) -> pl.DataFrame:
        """One corpus entry per passage row (empty ones too, as the corpus is the step's whole input)."""
        vecs = self.embedder.embed(texts, kind="passage") if texts else []
        return pl.DataFrame(
            {
                ROW_ID: [f"{r}#corpus" for r in batch[ROW_ID].to_list()],
                "doc_id": ids,
                CORPUS: [True] * len(ids),
                VECTOR: [v.tolist() for v in vecs],
            },
            schema={ROW_ID: pl.Utf8, "doc_id": pl.Utf8, CORPUS: pl.Boolean, VECTOR: pl.List(pl.Float32)},
        )

    def _skipped(self, batch: pl.DataFrame, skip: list[str | None]) -> pl.DataFrame | None:
        idx = [i for i, s in enumerate(skip) if s is not None and s != "corpus_only"]
        if not idx:
            return None
        return (
            batch[idx]
            .drop([c for c in (CORPUS_ONLY,) if c in batch.columns])
            .with_columns(
                pl.Series("reason", [skip[i] for i in idx], dtype=pl.Utf8), pl.lit(None, pl.Utf8).alias("detail")
            )
        )

    def _no_exemplars(self, batch: pl.DataFrame, no_ex: list[tuple[int, str, int]], lang_stats):
        if not no_ex:
            return None
        for _, t, _ in no_ex:
            d = lang_stats(t)["dropped"]
            d["no_exemplars"] = d.get("no_exemplars", 0) + 1
        return (
            batch[[i for i, _, _ in no_ex]]
            .drop([c for c in (CORPUS_ONLY,) if c in batch.columns])
            .with_columns(
                pl.Series("lang", [t for _, t, _ in no_ex], dtype=pl.Utf8),
                pl.lit("no_exemplars").alias("reason"),
                pl.lit("no exemplar has a query in this language").alias("detail"),
            )
        )


def lang_stats_of(stats: dict[str, Any], lang: str) -> dict[str, Any]:
    return stats["synthesis"].setdefault(lang, new_lang_stats())
