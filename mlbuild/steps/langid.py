"""``langid.v1``: identify the language of a text column with fastText.

Reads: ``column`` (and the ``expect`` column when ``expect`` names one).
Writes: ``<column>_lang`` (internal code such as ``kir_Cyrl``), ``<column>_lang_score``, and with
``on_fail = "flag"`` also ``<column>_lang_ok``.

Parameters:
- ``column``: the text column.
- ``expect``: a language code (``ky``, ``kir_Cyrl``) or a column holding codes; rows whose text is
  not in that language are mismatches.
- ``model``: ``lid.176`` (packaged fastText, the default), a path to any fastText LID model
  (GlotLID), or a Hub id.
- ``min_score``: a top score below this is a mismatch (``lang_low_score``).
- ``on_fail``: ``drop`` (to ``rejects/``), ``keep`` (count only) or ``flag`` (add ``_lang_ok``).
- ``confusable``: families fastText mixes up (default: kaz/kir/tat/bak/uzb_Cyrl and others). A
  prediction in the expected language's family is accepted when the expected language is in the
  top ``top_k`` and the script matches.
- ``script_check``: the letters must be mostly in the expected language's script (catches
  Latin-script output for a Cyrillic target).
- ``short_text``: texts shorter than this many characters are accepted when the expected language
  is in the top ``top_k`` (fastText is weak on short text).

Example::

    [[steps]]
    uses = "langid.v1"
    column = "passage"
    expect = "en"
    min_score = 0.5
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from .. import langs
from ..models.lid import DEFAULT_CONFUSABLE, FastTextLID, check_languages, families_index
from ..pipeline import filters
from ..pipeline.base import Step, StepOutput, StepReport
from ..pipeline.filters import ON_FAIL_DOC, OnFail
from ..pipeline.params import param
from ..pipeline.registry import register


@dataclass
class LangIdParams:
    column: str = param(doc="text column to identify")
    expect: str | None = param(None, doc="expected language: a code, or a column holding codes")
    model: str = param("lid.176", doc="fastText LID model: packaged name, path or Hub id", kind="path")
    min_score: float = param(0.0, doc="minimum top-1 probability", ge=0.0, le=1.0)
    on_fail: OnFail = param("drop", doc=ON_FAIL_DOC)
    confusable: list[list[str]] = param(DEFAULT_CONFUSABLE, doc="language families fastText confuses")
    script_check: bool = param(True, doc="check that the text is written in the expected script")
    short_text: int = param(
        20, doc="below this many characters, accept the expected language in the top-k", ge=0, le=10_000
    )
    top_k: int = param(3, doc="predictions considered for the confusable and short-text rules", ge=1, le=176)
    batch_size: int = param(10000, doc="texts per fastText call", runtime=True, ge=1, le=10_000_000)


@register("step")
class LangId(Step):
    __doc__ = __doc__
    name = "langid.v1"
    Params = LangIdParams
    machine_generated_annotations = True

    @classmethod
    def check(cls, params: LangIdParams, columns: list[str] | None) -> list[tuple[str, str]]:
        problems = []
        e = params.expect
        if e is not None and not (columns is not None and e in columns) and not langs.is_valid(e):
            if columns is None or e not in columns:
                hint = " or a column name" if columns is not None else ""
                problems.append(
                    (
                        "expect",
                        f"{e!r} is neither a known language code{hint}"
                        + (f" (columns: {', '.join(columns)})" if columns else ""),
                    )
                )
        for i, fam in enumerate(params.confusable):
            for c in fam:
                if not langs.is_valid(c):
                    problems.append((f"confusable[{i}]", f"unknown language code {c!r}"))
        return problems

    def input_columns(self) -> list[str]:
        return [self.params.column]

    def output_columns(self, columns: list[str]) -> list[str]:
        c = self.params.column
        out = [*columns, f"{c}_lang", f"{c}_lang_score"]
        if self.params.on_fail == "flag":
            out.append(f"{c}_lang_ok")
        return list(dict.fromkeys(out))

    def setup(self) -> None:
        self.lid = FastTextLID(self.params.model, self.ctx.recipe_dir)
        self.ctx.record_model("lid", self.lid.id, self.lid.revision)
        self.families = families_index(self.params.confusable)

    def _expected(self, batch: pl.DataFrame) -> list[str | None]:
        e = self.params.expect
        if e is None:
            return [None] * batch.height
        if e in batch.columns:
            out = []
            for v in batch[e].to_list():
                out.append(langs.normalize(v) if isinstance(v, str) and langs.is_valid(v) else None)
            return out
        return [langs.normalize(e)] * batch.height

    def process(self, batch: pl.DataFrame) -> StepOutput:
        p = self.params
        col = p.column
        texts = batch[col].cast(pl.Utf8).fill_null("").to_list()
        expected = self._expected(batch)
        codes: list[str] = []
        scores: list[np.ndarray] = []
        reasons: list[str | None] = []
        details: list[str | None] = []
        counts = {"confusable_accepted": 0, "short_text_accepted": 0}
        for i in range(0, len(texts), p.batch_size):
            r = check_languages(
                self.lid,
                texts[i : i + p.batch_size],
                expected[i : i + p.batch_size],
                min_score=p.min_score,
                families=self.families,
                script_check=p.script_check,
                short_text=p.short_text,
                top_k=p.top_k,
            )
            codes += r["codes"]
            scores.append(r["scores"])
            reasons += [None if ok else reason for ok, reason in zip(r["ok"], r["reasons"])]
            details += [None if ok else d for ok, d in zip(r["ok"], r["details"])]
            for k, v in r["counts"].items():
                counts[k] += v
        out = batch.with_columns(
            pl.Series(f"{col}_lang", codes, dtype=pl.Utf8),
            pl.Series(f"{col}_lang_score", np.concatenate(scores) if scores else [], dtype=pl.Float32),
        )
        stats: dict[str, Any] = {"detected": {}, **counts}
        for c, n in pl.Series(codes, dtype=pl.Utf8).value_counts().iter_rows():
            stats["detected"][c] = int(n)
        rows, rejects, stats = filters.apply(
            out, filters.Verdict(reasons, details), p.on_fail, ok_column=f"{col}_lang_ok", stats=stats
        )
        return StepOutput(rows, rejects, stats)

    def finalize(self, stats: dict[str, Any]) -> StepReport:
        det = stats.get("detected", {})
        top = sorted(det.items(), key=lambda kv: -kv[1])[:10]
        md = "Detected languages (top 10): " + ", ".join(f"`{c}` {n}" for c, n in top)
        if stats.get("confusable_accepted") or stats.get("short_text_accepted"):
            md += (
                f". Accepted through the confusable-family rule: {stats.get('confusable_accepted', 0)}; "
                f"through the short-text rule: {stats.get('short_text_accepted', 0)}"
            )
        return StepReport(summary=md + ". " + filters.summary(stats))
