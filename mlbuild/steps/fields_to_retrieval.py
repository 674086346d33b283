"""``fields_to_retrieval.v1``: a cross-lingual retrieval set from bilingual records, the way CLIRudit was
built from scholarly records: the query is one field of a record (French keywords or title), the
document another (the English abstract), and the record's own document is the judged positive.

Both sides are checked before a pair is kept: empty or too short (``min_query_chars``,
``min_doc_chars``), and in the expected language (fastText LID, ``lid.176`` by default, with the
confusable-family, script and short-text rules of ``langid.v1``). A record failing a check goes to
``rejects/`` with the reason (``empty_query``, ``doc_too_short``, ``query_lang_mismatch``,
``doc_wrong_script``...), or is kept/flagged with ``on_fail``. A list-valued query field (keywords) is
joined with ``join``.

Reads: ``query_column``, ``doc_column`` (+ ``title_column``, ``id_column`` when given).

Writes (paired query rows, which the ``mteb`` output format turns into queries, a corpus and qrels):
``query_id`` (``query_id_prefix`` + record id), ``query``, ``lang`` (= ``query_lang``), ``doc_ids``
(``[doc_id]``), ``doc_scores`` (``[1]``), ``doc_id`` (``doc_id_prefix`` + record id), ``passage``,
``title``, ``doc_lang`` (= ``doc_lang``); with ``on_fail = "flag"`` also ``pair_ok`` and
``pair_reason``. Other columns pass through.

Example::

    [[steps]]
    uses = "fields_to_retrieval.v1"
    query_column = "keywords_fr"
    query_lang = "fr"
    doc_column = "abstract_en"
    title_column = "title_en"
    doc_lang = "en"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from .. import langs
from ..models.lid import DEFAULT_CONFUSABLE, FastTextLID, check_languages, families_index
from ..pipeline import filters
from ..pipeline.base import ROW_ID, Step, StepOutput, StepReport
from ..pipeline.filters import ON_FAIL_DOC, OnFail, Verdict
from ..pipeline.params import param
from ..pipeline.registry import register

OUT_COLUMNS = ["query_id", "query", "lang", "doc_ids", "doc_scores", "doc_id", "passage", "title", "doc_lang"]


@dataclass
class FieldsToRetrievalParams:
    query_column: str = param(doc="field that becomes the query (text, or a list such as keywords)")
    query_lang: str = param(doc="language of the query field", kind="lang")
    doc_column: str = param(doc="field that becomes the document")
    doc_lang: str = param(doc="language of the document field", kind="lang")
    title_column: str | None = param(None, doc="field that becomes the document's title")
    id_column: str | None = param(None, doc="record id column (default: the row id)")
    query_id_prefix: str = param("q-", doc="prefix of query ids (record id after it)")
    doc_id_prefix: str = param("d-", doc="prefix of document ids (record id after it)")
    join: str = param(", ", doc="separator for a list-valued query field")
    min_query_chars: int = param(3, doc="queries shorter than this fail (query_too_short)", ge=0, le=100_000)
    min_doc_chars: int = param(20, doc="documents shorter than this fail (doc_too_short)", ge=0, le=10_000_000)
    check_langs: bool = param(True, doc="check the language of both fields with fastText")
    lid_model: str = param("lid.176", doc="fastText LID model: packaged name, path or Hub id", kind="path")
    lid_min_score: float = param(0.0, doc="minimum top-1 probability of the LID", ge=0.0, le=1.0)
    script_check: bool = param(True, doc="the text must be written in the expected script")
    short_text: int = param(20, doc="below this many characters accept the language in the top-k", ge=0, le=10_000)
    confusable: list[list[str]] = param(DEFAULT_CONFUSABLE, doc="language families fastText confuses")
    on_fail: OnFail = param("drop", doc=ON_FAIL_DOC)
    batch_size: int = param(1024, doc="texts per LID call", runtime=True, ge=1, le=1_000_000)


@register("step")
class FieldsToRetrieval(Step):
    __doc__ = __doc__
    name = "fields_to_retrieval.v1"
    Params = FieldsToRetrievalParams
    task_categories = ("text-retrieval",)
    multilinguality = "multilingual"

    def input_columns(self) -> list[str]:
        p = self.params
        return [c for c in (p.query_column, p.doc_column, p.title_column, p.id_column) if c]

    def output_columns(self, columns: list[str]) -> list[str]:
        out = [c for c in columns if c not in OUT_COLUMNS] + OUT_COLUMNS
        return out + (["pair_ok", "pair_reason"] if self.params.on_fail == "flag" else [])

    def setup(self) -> None:
        if self.params.check_langs:
            self.lid = FastTextLID(self.params.lid_model, self.ctx.recipe_dir)
            self.ctx.record_model("lid", self.lid.id, self.lid.revision)
            self.families = families_index(self.params.confusable)

    def _texts(self, col: pl.Series) -> list[str]:
        if isinstance(col.dtype, pl.List):
            return [
                self.params.join.join(str(x).strip() for x in (v or []) if x is not None and str(x).strip())
                for v in col.to_list()
            ]
        return [(v or "").strip() for v in col.cast(pl.Utf8).to_list()]

    def _side(self, texts: list[str], lang: str, min_chars: int, side: str) -> Verdict:
        p = self.params
        reasons: list[str | None] = [None] * len(texts)
        details: list[str | None] = [None] * len(texts)
        todo = []
        for i, t in enumerate(texts):
            if not t:
                reasons[i] = f"empty_{side}"
            elif len(t) < min_chars:
                reasons[i], details[i] = f"{side}_too_short", f"{len(t)} < {min_chars} characters"
            else:
                todo.append(i)
        if p.check_langs and todo:
            for s in range(0, len(todo), p.batch_size):
                idx = todo[s : s + p.batch_size]
                r = check_languages(
                    self.lid,
                    [texts[i].replace("\n", " ") for i in idx],
                    [lang] * len(idx),
                    min_score=p.lid_min_score,
                    families=self.families,
                    script_check=p.script_check,
                    short_text=p.short_text,
                )
                for j, i in enumerate(idx):
                    if not r["ok"][j]:
                        reasons[i], details[i] = f"{side}_{r['reasons'][j]}", r["details"][j]
        return Verdict(reasons, details)

    def process(self, batch: pl.DataFrame) -> StepOutput:
        p = self.params
        qlang, dlang = langs.normalize(p.query_lang), langs.normalize(p.doc_lang)
        queries = self._texts(batch[p.query_column])
        docs = self._texts(batch[p.doc_column])
        ids = batch[p.id_column or ROW_ID].cast(pl.Utf8).to_list()
        verdict = filters.first_failure(
            [self._side(queries, qlang, p.min_query_chars, "query"), self._side(docs, dlang, p.min_doc_chars, "doc")]
        )
        title = self._texts(batch[p.title_column]) if p.title_column else [""] * batch.height
        rows = batch.drop([c for c in OUT_COLUMNS if c in batch.columns]).with_columns(
            pl.Series("query_id", [f"{p.query_id_prefix}{i}" for i in ids], dtype=pl.Utf8),
            pl.Series("query", queries, dtype=pl.Utf8),
            pl.lit(qlang).alias("lang"),
            pl.Series("doc_ids", [[f"{p.doc_id_prefix}{i}"] for i in ids], dtype=pl.List(pl.Utf8)),
            pl.Series("doc_scores", [[1]] * batch.height, dtype=pl.List(pl.Int64)),
            pl.Series("doc_id", [f"{p.doc_id_prefix}{i}" for i in ids], dtype=pl.Utf8),
            pl.Series("passage", docs, dtype=pl.Utf8),
            pl.Series("title", title, dtype=pl.Utf8),
            pl.lit(dlang).alias("doc_lang"),
        )
        kept, rejects, stats = filters.apply(
            rows, verdict, p.on_fail, ok_column="pair_ok", reason_column="pair_reason"
        )
        return StepOutput(kept, rejects, stats)

    def finalize(self, stats: dict[str, Any]) -> StepReport | None:
        text = filters.summary(stats)
        return StepReport(
            summary=f"Query/document pairs from `{self.params.query_column}` -> `{self.params.doc_column}`. {text}"
        )
