"""``translate.v1``: machine-translate text columns into one or more target languages, with quality gates.

Each input row becomes one row per target language (and, with ``keep_source``, the source row itself).
Long texts are split into sentences (paragraph breaks and spacing are kept exactly), repeated
segments are translated once, inputs are batched by length, and every segment goes through the
run's model-call cache, so a rerun translates nothing twice. Each translation then passes the gates
(pure functions in :mod:`mlbuild.steps.translate_gates`; the first failing gate names the reason):

- ``language``: fastText language ID of the output against the target, with the confusable-family
  and script rules of ``langid.v1``; another language on top rejects the output only when it is
  clearly ahead (the target out of the top 3, or under ``lid_min_ratio`` times the top probability)
  (reasons ``lang_mismatch``, ``wrong_script``, ``lang_low_score``);
- ``copy``: output (nearly) equal to the source (``copy``);
- ``length``: output/source character ratio outside the pair's bounds (``length_ratio``);
- ``repetition``: generation loops, repeated n-grams the source does not have (``repetition``);
- ``truncation``: a segment used the whole ``max_new_tokens`` budget (``truncated``);
- empty output for a non-empty source (``empty_output``, always on);
- with ``round_trip``: translate back and score chrF against the source (``<column>_rt_chrf``), and
  with ``round_trip_min_chrf`` drop rows below it (``round_trip_low``);
- ``qe`` (off by default): reference-free quality estimation (:mod:`mlbuild.qe`), ``qe = "embedding"``
  (cosine of source and translation under multilingual-e5-small or ``qe_model``, and its margin over the
  mean cosine to the batch's other sources: ``qe_min_margin``; absolute ``qe_min_score`` /
  ``qe_min_scores`` per target) or ``qe = "comet"`` (CometKiwi via ``unbabel-comet``); reasons ``qe_low``,
  ``qe_margin_low``; scores kept as ``<column>_qe`` (and ``<column>_qe_margin``).

Reads: ``columns`` (null cells stay null), and reference columns named in ``references``.
Writes: ``lang`` (the row's language), the translated ``columns``, ``<column>_src`` (the source text),
``parallel_id`` (the source row's id, shared by all its translations; kept when the input has one),
with the language gate ``<column>_lang`` / ``<column>_lang_score`` (the language detected in the text
beside them), ``<column>_rt_chrf`` with ``round_trip``, ``<column>_qe`` / ``_qe_margin`` with the qe gate, ``mt_ok``/``mt_reason`` with ``on_fail = "flag"``.
Language columns an earlier step wrote about the source (``<column>_lang``, ``_lang_score``,
``_lang_ok``) move to ``<column>_src_lang``, ``_src_lang_score``, ``_src_lang_ok``. Every other column
passes through unchanged (``query_id``, ``doc_id``, qrels...). Row ids become ``<row_id>/<lang>``.

Parameters: ``columns``, ``source_lang``, ``target_langs``, ``engine`` (``transformers`` | ``ctranslate2``
| ``bergamot`` | ``openai``, or an engine registered with :func:`mlbuild.models.mt.register_engine`), ``model``
(Hub id, path or packaged name; ``bergamot-en-pt`` is the bergamot default), ``compute_type``
(ctranslate2: ``auto`` = int8 on CPU, int8_float16 on CUDA), decoding (``num_beams``,
``max_new_tokens``, ``generation`` for other ``generate`` settings), ``segment`` (``sentence`` |
``none``), ``max_segment_chars``, ``keep_source``, the openai settings (``base_url``, ``api_key_env``,
``prompt``, ``system``, ``max_concurrency``), the gate settings below, and runtime settings
(``batch_size``, ``device``, ``threads``, ``max_batch_tokens``) that never change results or cache keys.

Example::

    [[steps]]
    uses = "translate.v1"
    columns = ["query", "passage"]
    source_lang = "en"
    target_langs = ["pt"]
    engine = "bergamot"
"""

from __future__ import annotations

import logging
from typing import Any

import polars as pl

from .. import langs, qe
from ..accounting import check_price, price_extra
from ..errors import StepError
from ..models.lid import FastTextLID, families_index
from ..models.mt import BERGAMOT_PAIRS, PROMPT_FIELDS, MTBackend, engines, load_mt
from ..pipeline import filters
from ..pipeline.base import ROW_ID, Step, StepOutput, StepReport
from ..pipeline.filters import Verdict
from ..pipeline.params import suggest
from ..pipeline.registry import register
from ..templating import format_problems
from . import translate_gates as gates
from .translate_params import GATES, TranslateParams
from .translate_report import References, build_report, engine_counters, markdown, round_trip_scores, target_stats
from .translate_segments import mt_usage, translate_texts

log = logging.getLogger(__name__)

# language columns an earlier step wrote about the source text; they move to <column>_src_...
SOURCE_LANG_SUFFIXES = ("_lang", "_lang_score", "_lang_ok")


@register("step")
class Translate(Step):
    __doc__ = __doc__
    name = "translate.v1"
    Params = TranslateParams

    machine_generated_text = True
    task_categories = ("translation",)
    multilinguality = "translation"

    # ------------------------------------------------------------------------------------ contract
    @classmethod
    def check(cls, params: TranslateParams, columns: list[str] | None) -> list[tuple[str, str]]:
        p = params
        problems = _check_engine(p)
        if p.source_lang in p.target_langs:
            problems.append(("target_langs", f"contains the source language {p.source_lang}"))
        if len(set(p.target_langs)) != len(p.target_langs):
            problems.append(("target_langs", "has duplicates"))
        problems += gates.length_problems(p.length_ratio, p.length_ratios)
        if p.round_trip_min_chrf and not p.round_trip:
            problems.append(("round_trip_min_chrf", "needs round_trip = true"))
        return problems + _check_qe(p) + References.check(p.references, p.target_langs, p.columns, columns)

    def input_columns(self) -> list[str]:
        return list(self.params.columns)

    def output_columns(self, columns: list[str]) -> list[str]:
        p = self.params
        moved = {f"{c}{s}": f"{c}_src{s}" for c in p.columns for s in SOURCE_LANG_SUFFIXES if f"{c}{s}" in columns}
        out = [moved.get(c, c) for c in columns] + ["lang", "parallel_id", *(f"{c}_src" for c in p.columns)]
        if "language" in p.gates:
            out += [f"{c}{s}" for c in p.columns for s in ("_lang", "_lang_score")]
        if p.round_trip:
            out += [f"{c}_rt_chrf" for c in p.columns]
        if "qe" in p.gates:
            out += [f"{c}{s}" for c in p.columns for s in _qe_suffixes(p)]
        if p.on_fail == "flag":
            out += ["mt_ok", "mt_reason"]
        return list(dict.fromkeys(out))

    # ------------------------------------------------------------------------------------ models
    def _engine_kwargs(self) -> dict[str, Any]:
        p = self.params
        if p.engine == "bergamot":
            return {"threads": p.threads or None}
        if p.engine != "openai":  # transformers, ctranslate2, and engines registered by plugins
            kw = {"num_beams": p.num_beams, "max_new_tokens": p.max_new_tokens, "batch_size": p.batch_size}
            if p.engine == "ctranslate2":
                kw.update(compute_type=p.compute_type, threads=p.threads or None)
            if p.max_batch_tokens is not None:
                kw["max_batch_tokens"] = p.max_batch_tokens
            return {**kw, **p.generation}
        kw: dict[str, Any] = {
            "base_url": p.base_url,
            "api_key_env": p.api_key_env,
            "system": p.system,
            "max_concurrency": p.max_concurrency,
            "max_new_tokens": p.max_new_tokens,
            **p.generation,
        }
        if p.prompt is not None:
            kw["prompt"] = p.prompt
        return kw

    def setup(self) -> None:
        p = self.params
        self.mt = load_mt(p.engine, p.model, self.ctx.recipe_dir, p.device, **self._engine_kwargs())
        self.ctx.record_model("mt", self.mt.id, self.mt.revision, engine=p.engine)
        self.back = self.mt
        if p.round_trip and p.round_trip_model and p.round_trip_model != p.model:
            self.back = load_mt(p.engine, p.round_trip_model, self.ctx.recipe_dir, p.device, **self._engine_kwargs())
            self.ctx.record_model("mt_back", self.back.id, self.back.revision, engine=p.engine)
        self.lid: FastTextLID | None = None
        if "language" in p.gates:
            self.lid = FastTextLID(p.lid_model, self.ctx.recipe_dir)
            self.ctx.record_model("lid", self.lid.id, self.lid.revision)
        self.families = families_index(p.confusable)
        self.qe = None
        if "qe" in p.gates:
            self.qe = qe.load_scorer(
                p.qe,
                p.qe_model,
                self.ctx.recipe_dir,
                p.device,
                cache=self.ctx.cache,
                batch_size=p.batch_size,
                min_batch=p.qe_min_batch,
            )
            self.ctx.record_model("qe", self.qe.id, self.qe.revision, method=p.qe)
        self.references = References(p.references, self.ctx.recipe_dir)
        self.ctx.extra.update(price_extra(p.price))  # the writer prices the tokens with it

    def _translate(
        self, backend: MTBackend, texts: list[str | None], src: str, tgt: str, counters: dict[str, Any], col: str
    ) -> list[dict[str, Any] | None]:
        p = self.params
        try:
            return translate_texts(
                backend,
                texts,
                src,
                tgt,
                cache=self.ctx.cache,
                segment=p.segment,
                max_segment_chars=p.max_segment_chars,
                batch_size=p.batch_size,
                counters=counters,
                usage=self.usage,
            )
        except StepError:
            raise
        except Exception as e:  # named with the step and the pair
            raise StepError(self.name, f"{src} -> {tgt}, column '{col}': {type(e).__name__}: {e}") from e

    def _round_trip(
        self, col: str, sources: list[str | None], texts: list[str | None], tgt: str, st: dict[str, Any]
    ) -> tuple[list[float | None], Verdict]:
        back = self._translate(self.back, texts, tgt, self.params.source_lang, engine_counters(), col)
        scores = round_trip_scores(sources, back)
        vals = [s for s in scores if s is not None]
        st.setdefault("rt_chrf_sum", {})[col] = sum(vals)
        st.setdefault("rt_chrf_n", {})[col] = len(vals)
        return scores, gates.round_trip_low(scores, self.params.round_trip_min_chrf)

    def _qe_gate(
        self, col: str, sources: list[str | None], texts: list[str | None], tgt: str, st: dict, verdicts: list[Verdict]
    ) -> list[pl.Series]:
        """Score one column's translations (QE), append the gate's verdict, keep its stats; return the columns."""
        p = self.params
        scores = self.qe.score(sources, texts)
        margin = p.qe_min_margin if p.qe == "embedding" else None
        v = qe.verdict(scores, _qe_min_score(p, tgt), margin)
        verdicts.append(v)
        qe.add_stats(st.setdefault("qe", {}).setdefault(col, {}), scores, v, sources, texts)
        out = [pl.Series(f"{col}_qe", scores.score, dtype=pl.Float32)]
        if p.qe == "embedding":
            out.append(pl.Series(f"{col}_qe_margin", scores.margin, dtype=pl.Float32))
        return out

    # ------------------------------------------------------------------------------------ process
    def process(self, batch: pl.DataFrame) -> StepOutput:
        p = self.params
        base = batch if "parallel_id" in batch.columns else batch.with_columns(pl.col(ROW_ID).alias("parallel_id"))
        base = _move_source_langs(base.with_columns(pl.col("parallel_id").cast(pl.Utf8)), p.columns)
        sources = {c: [v if isinstance(v, str) else None for v in batch[c].cast(pl.Utf8).to_list()] for c in p.columns}
        stats: dict[str, Any] = {"mt": {}}
        self.usage = mt_usage(self.mt)  # tokens per language translated into (round trips: the source's)
        parts: list[pl.DataFrame] = []
        verdicts: list[Verdict] = []
        for tgt in p.target_langs:
            rows, verdict, stats["mt"][tgt] = self._target_rows(base, sources, tgt)
            parts.append(rows)
            verdicts.append(verdict)
        verdict = Verdict([r for v in verdicts for r in v.reasons], [d for v in verdicts for d in v.details])
        rows, rejects, stats = filters.apply(
            pl.concat(parts, how="diagonal_relaxed"),
            verdict,
            p.on_fail,
            ok_column="mt_ok",
            reason_column="mt_reason",
            stats=stats,
        )
        if p.keep_source:
            rows = pl.concat([self._source_rows(base, sources), rows], how="diagonal_relaxed")
        return StepOutput(rows, rejects, {**stats, **self.usage.stats()})

    def _target_rows(
        self, base: pl.DataFrame, sources: dict[str, list[str | None]], tgt: str
    ) -> tuple[pl.DataFrame, Verdict, dict[str, Any]]:
        """One target's rows (every gate's verdict combined: the first failing column names the reason)."""
        p = self.params
        st = target_stats(base.height)
        new: list[pl.Series] = []
        col_verdicts: list[Verdict] = []
        for c in p.columns:
            outs = self._translate(self.mt, sources[c], p.source_lang, tgt, st, c)
            texts = [o["text"] if o is not None else None for o in outs]
            st["truncated"] += sum(1 for o in outs if o is not None and o["truncated"])
            new.append(pl.Series(c, texts, dtype=pl.Utf8))
            cut = [bool(o is not None and o["truncated"]) for o in outs]
            verdicts, lang = gates.run_gates(p, self.lid, self.families, sources[c], texts, cut, tgt)
            if lang is not None:
                new += gates.lang_series(c, lang.codes, lang.scores)
            if p.round_trip:
                scores, v = self._round_trip(c, sources[c], texts, tgt, st)
                new.append(pl.Series(f"{c}_rt_chrf", scores, dtype=pl.Float64))
                verdicts.append(v)
            if self.qe is not None:
                new += self._qe_gate(c, sources[c], texts, tgt, st, verdicts)
            col_verdicts.append(gates.prefixed(filters.first_failure(verdicts), c))
        verdict = filters.first_failure(col_verdicts)
        rows = base.with_columns(
            *(pl.col(c).alias(f"{c}_src") for c in p.columns),
            *new,
            pl.lit(tgt).alias("lang"),
            pl.concat_str([pl.col(ROW_ID), pl.lit(f"/{tgt}")]).alias(ROW_ID),
        )
        self.references.collect(rows, tgt, st, verdict.reasons)
        st["dropped"] = verdict.failed()
        st["rows_out"] = sum(verdict.ok) if p.on_fail == "drop" else base.height
        return rows, verdict, st

    def _source_rows(self, base: pl.DataFrame, sources: dict[str, list[str | None]]) -> pl.DataFrame:
        """The kept source rows (``keep_source``): nothing to gate; their language columns describe the source."""
        p = self.params
        extra: list[pl.Series] = []
        if self.lid is not None:
            for c in p.columns:
                if f"{c}_src_lang" in base.columns and f"{c}_src_lang_score" in base.columns:
                    codes, scores = base[f"{c}_src_lang"].to_list(), base[f"{c}_src_lang_score"].to_list()
                else:
                    codes, scores = gates.identify(self.lid, sources[c])
                extra += gates.lang_series(c, codes, scores)
        if p.round_trip:
            extra += [pl.Series(f"{c}_rt_chrf", [None] * base.height, dtype=pl.Float64) for c in p.columns]
        if self.qe is not None:
            extra += [
                pl.Series(f"{c}{s}", [None] * base.height, dtype=pl.Float32)
                for c in p.columns
                for s in _qe_suffixes(p)
            ]
        if p.on_fail == "flag":
            extra += [
                pl.Series("mt_ok", [True] * base.height),
                pl.Series("mt_reason", [None] * base.height, dtype=pl.Utf8),
            ]
        return base.with_columns(
            *(pl.col(c).alias(f"{c}_src") for c in p.columns),
            *extra,
            pl.lit(p.source_lang).alias("lang"),
            pl.concat_str([pl.col(ROW_ID), pl.lit(f"/{p.source_lang}")]).alias(ROW_ID),
        )

    # ------------------------------------------------------------------------------------ report
    def finalize(self, stats: dict[str, Any]) -> StepReport:
        report = build_report(self.name, self.params, stats)
        md = markdown(report)
        return StepReport(summary=md, data=report, markdown=md)


def _check_engine(p: TranslateParams) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    known = engines()
    if p.engine not in known:
        problems.append(
            ("engine", f"unknown MT engine {p.engine!r}{suggest(p.engine, list(known))} (known: {', '.join(known)})")
        )
    if p.engine in ("transformers", "ctranslate2", "openai") and not p.model:
        where = ", as the endpoint names it" if p.engine == "openai" else ""
        problems.append(("model", f"the {p.engine} engine needs a model (a Hub id or a local path{where})"))
    if p.engine == "bergamot":
        if p.model not in (None, "bergamot-en-pt"):
            problems.append(("model", "the bergamot engine ships one model: 'bergamot-en-pt'"))
        pairs = ", ".join(f"{a}->{b}" for a, b in BERGAMOT_PAIRS)
        for t in p.target_langs:
            if (p.source_lang.split("_")[0], t.split("_")[0]) not in BERGAMOT_PAIRS:
                problems.append(
                    ("target_langs", f"the bergamot engine cannot translate {p.source_lang} -> {t} (pairs: {pairs})")
                )
    if p.engine == "openai" and p.prompt is not None and "{text}" not in p.prompt:
        problems.append(("prompt", "the template must contain {text}"))
    for name in ("prompt", "system"):  # filled with plain names only: no {text.__class__}
        problems += [(name, m) for m in format_problems(getattr(p, name) or "", PROMPT_FIELDS)]
    if p.engine != "openai" and (p.prompt is not None or p.system is not None):
        problems.append(("prompt", "prompt/system apply to the openai engine only"))
    return problems + check_price(p.engine, p.price)


def _qe_suffixes(p: TranslateParams) -> tuple[str, ...]:
    return ("_qe", "_qe_margin") if p.qe == "embedding" else ("_qe",)


def _qe_min_score(p: TranslateParams, tgt: str) -> float | None:
    """The absolute QE threshold for a target: its ``qe_min_scores`` entry, else ``qe_min_score``."""
    for k, v in p.qe_min_scores.items():
        if langs.is_valid(k) and langs.normalize(k) == tgt:
            return float(v)
    return p.qe_min_score


def _check_qe(p: TranslateParams) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if p.compute_type != "auto" and p.engine != "ctranslate2":
        problems.append(("compute_type", "applies to the ctranslate2 engine only"))
    if "qe" not in p.gates:
        if p.qe_min_scores or p.qe_min_score is not None or p.qe_model or p.qe != "embedding":
            problems.append(("gates", "QE settings are given but 'qe' is not in gates"))
        return problems
    if p.qe == "comet" and not p.qe_model:
        problems.append(("qe_model", "qe = 'comet' needs a COMET checkpoint (path or Hub id)"))
    for k, v in p.qe_min_scores.items():
        if not langs.is_valid(k) or langs.normalize(k) not in p.target_langs:
            problems.append((f"qe_min_scores.{k}", f"not one of target_langs ({', '.join(p.target_langs)})"))
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not -1.0 <= v <= 1.0:
            problems.append((f"qe_min_scores.{k}", "expected a number in [-1, 1]"))
    return problems


def _move_source_langs(base: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Language columns about a source column (``<c>_lang``...) renamed ``<c>_src_lang``...: they describe
    the source text, which the rows keep as ``<c>_src``, not the translation written into ``<c>``."""
    moved = {f"{c}{s}": f"{c}_src{s}" for c in columns for s in SOURCE_LANG_SUFFIXES if f"{c}{s}" in base.columns}
    return base.drop([new for new in moved.values() if new in base.columns]).rename(moved) if moved else base


__all__ = ["Translate", "TranslateParams", "GATES"]
