"""``qe_filter.v1``: filter existing bitext (a source column and its translation) by reference-free quality
estimation, as OpusFilter users do; the same scorers and gate as ``translate.v1``'s ``qe`` gate
(:mod:`mlbuild.qe`).

- ``method = "embedding"``: cosine of source and translation under a multilingual sentence encoder
  (``model``: the packaged multilingual-e5-small by default, any encoder folder or Hub id), and its margin
  over the translation's mean cosine to the other sources of the same batch and target language
  (``min_margin``; batches with fewer than ``min_batch`` distinct sources are not judged by it);
- ``method = "comet"``: a reference-free COMET checkpoint (CometKiwi) through ``unbabel-comet`` (``model``:
  checkpoint folder, ``.ckpt`` file or Hub id), batched, on GPU when there is one;
- absolute thresholds: ``min_score`` for every language, ``min_scores`` per target language.

Do not filter with the metric you later evaluate with (a CometKiwi-filtered set scored by COMET, an
e5-filtered set scored by e5 similarity): the filter has chosen the rows that metric likes.

Reads: ``source_column``, ``target_column`` (and ``target_lang_column`` when given).
Writes: ``qe_score`` and, with ``embedding``, ``qe_margin``; with ``on_fail = "flag"`` also ``qe_ok`` and
``qe_reason``. Failing rows (``qe_low``, ``qe_margin_low``) go to ``rejects/`` with ``drop``.
The report shows the distribution of scores per target language and examples of rejected rows.

Example::

    [[steps]]
    uses = "qe_filter.v1"
    source_column = "en"
    target_column = "de"
    source_lang = "en"
    target_lang = "de"
    method = "embedding"
    min_margin = 0.0475
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

from .. import langs, qe
from ..pipeline import filters
from ..pipeline.base import Step, StepOutput, StepReport
from ..pipeline.filters import ON_FAIL_DOC, OnFail, Verdict
from ..pipeline.params import param
from ..pipeline.registry import register

ANY = "*"  # the stats key when rows carry no target language


@dataclass
class QEFilterParams:
    source_column: str = param(doc="the source text column")
    target_column: str = param(doc="the translation column")
    source_lang: str | None = param(None, doc="language of the source column (recorded in the report)", kind="lang")
    target_lang: str | None = param(None, doc="language of the translations", kind="lang")
    target_lang_column: str | None = param(None, doc="a column holding each row's target language (instead)")
    method: Literal["embedding", "comet"] = param("embedding", doc="embedding (cosine + margin) or comet (CometKiwi)")
    model: str | None = param(
        None, doc="encoder (default multilingual-e5-small) or COMET checkpoint (path or Hub id)", kind="path"
    )
    min_score: float | None = param(None, doc="minimum score for every language (None = off)", ge=-1.0, le=1.0)
    min_scores: dict = param({}, doc="minimum score per target language, e.g. { de = 0.85 }")
    min_margin: float | None = param(
        qe.DEFAULT_MIN_MARGIN,
        doc="embedding: minimum margin over the mean cosine to the batch's other sources (None = off; comet: unused)",
        ge=-1.0,
        le=1.0,
    )
    min_batch: int = param(8, doc="distinct sources a batch needs for the margin test", ge=2, le=1_000_000)
    on_fail: OnFail = param("drop", doc=ON_FAIL_DOC)
    batch_size: int = param(64, doc="texts per encoder call", runtime=True, ge=1, le=100_000)
    device: str = param("auto", doc="auto | cpu | cuda", runtime=True)


@register("step")
class QEFilter(Step):
    __doc__ = __doc__
    name = "qe_filter.v1"
    Params = QEFilterParams
    rows_per_shard = 4096  # the margin compares rows within a batch: batches of real size

    @classmethod
    def check(cls, params: QEFilterParams, columns: list[str] | None) -> list[tuple[str, str]]:
        p = params
        problems: list[tuple[str, str]] = []
        if p.target_lang and p.target_lang_column:
            problems.append(("target_lang_column", "give target_lang or target_lang_column, not both"))
        if columns is not None and p.target_lang_column and p.target_lang_column not in columns:
            problems.append(
                ("target_lang_column", f"no column {p.target_lang_column!r} (available: {', '.join(columns)})")
            )
        if p.method == "comet" and not p.model:
            problems.append(("model", "method = 'comet' needs a COMET checkpoint (path or Hub id)"))
        for k, v in p.min_scores.items():
            if not langs.is_valid(k):
                problems.append((f"min_scores.{k}", "keys are language codes (de, deu, deu_Latn)"))
            elif p.target_lang and langs.normalize(k) != p.target_lang:
                problems.append((f"min_scores.{k}", f"not the target_lang ({p.target_lang})"))
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not -1.0 <= v <= 1.0:
                problems.append((f"min_scores.{k}", "expected a number in [-1, 1]"))
        if p.min_scores and not (p.target_lang or p.target_lang_column):
            problems.append(("min_scores", "needs target_lang or target_lang_column"))
        return problems

    def input_columns(self) -> list[str]:
        p = self.params
        return [p.source_column, p.target_column, *([p.target_lang_column] if p.target_lang_column else [])]

    def output_columns(self, columns: list[str]) -> list[str]:
        p = self.params
        out = [*columns, "qe_score", *(["qe_margin"] if p.method == "embedding" else [])]
        if p.on_fail == "flag":
            out += ["qe_ok", "qe_reason"]
        return list(dict.fromkeys(out))

    def setup(self) -> None:
        p = self.params
        self.scorer = qe.load_scorer(
            p.method,
            p.model,
            self.ctx.recipe_dir,
            p.device,
            cache=self.ctx.cache,
            batch_size=p.batch_size,
            min_batch=p.min_batch,
        )
        self.ctx.record_model("qe", self.scorer.id, self.scorer.revision, method=p.method)
        self.thresholds = {langs.normalize(k): float(v) for k, v in p.min_scores.items() if langs.is_valid(k)}

    def _langs(self, batch: pl.DataFrame) -> list[str]:
        p = self.params
        if p.target_lang_column:
            return [
                langs.normalize(v) if isinstance(v, str) and langs.is_valid(v) else ANY
                for v in batch[p.target_lang_column].to_list()
            ]
        return [p.target_lang or ANY] * batch.height

    def process(self, batch: pl.DataFrame) -> StepOutput:
        p = self.params
        src = [v if isinstance(v, str) else None for v in batch[p.source_column].cast(pl.Utf8).to_list()]
        tgt = [v if isinstance(v, str) else None for v in batch[p.target_column].cast(pl.Utf8).to_list()]
        row_langs = self._langs(batch)
        n = batch.height
        score: list[float | None] = [None] * n
        margin: list[float | None] = [None] * n
        reasons: list[str | None] = [None] * n
        details: list[str | None] = [None] * n
        stats: dict[str, Any] = {"qe": {}}
        for lang in dict.fromkeys(row_langs):  # margins compare rows of the same target language
            idx = [i for i, x in enumerate(row_langs) if x == lang]
            s_src, s_tgt = [src[i] for i in idx], [tgt[i] for i in idx]
            s = self.scorer.score(s_src, s_tgt)
            floor = self.thresholds.get(lang, p.min_score)
            v = qe.verdict(s, floor, p.min_margin if p.method == "embedding" else None)
            qe.add_stats(stats["qe"].setdefault(lang, {}), s, v, s_src, s_tgt)
            for j, i in enumerate(idx):
                score[i], margin[i], reasons[i], details[i] = s.score[j], s.margin[j], v.reasons[j], v.details[j]
        cols = [pl.Series("qe_score", score, dtype=pl.Float32)]
        if p.method == "embedding":
            cols.append(pl.Series("qe_margin", margin, dtype=pl.Float32))
        rows, rejects, stats = filters.apply(
            batch.with_columns(cols),
            Verdict(reasons, details),
            p.on_fail,
            ok_column="qe_ok",
            reason_column="qe_reason",
            stats=stats,
        )
        return StepOutput(rows, rejects, stats)

    def finalize(self, stats: dict[str, Any]) -> StepReport:
        p = self.params
        per_lang = {lang: qe.summarize(st) for lang, st in sorted(stats.get("qe", {}).items())}
        data = {
            "step": self.name,
            "method": p.method,
            "model": p.model or (qe.DEFAULT_EMBEDDING_MODEL if p.method == "embedding" else None),
            "source_lang": p.source_lang,
            "thresholds": {"min_score": p.min_score, "min_scores": p.min_scores, "min_margin": p.min_margin},
            "per_lang": per_lang,
            "checks": stats.get("checks"),
        }
        md = "\n".join([filters.summary(stats), "", *qe.markdown(per_lang, p.method)])
        return StepReport(summary=md, data=data, markdown=md)
