"""``translate.v1``: machine-translate text columns into one or more target languages, with quality gates.

Each input row becomes one row per target language (and, with ``keep_source``, the source row itself).
Long texts are split into sentences (paragraph breaks and spacing are kept exactly), repeated
segments are translated once, inputs are batched by length, and every segment goes through the
run's model-call cache, so a rerun translates nothing twice. Each translation then passes the gates:

- ``language``: fastText language ID of the output against the target, with the confusable-family,
  script and short-text rules of ``langid.v1`` (reasons ``lang_mismatch``, ``wrong_script``, ``lang_low_score``);
- ``copy``: output (nearly) equal to the source (``copy``);
- ``length``: output/source character ratio outside the pair's bounds (``length_ratio``);
- ``repetition``: generation loops, repeated n-grams the source does not have (``repetition``);
- ``truncation``: a segment used the whole ``max_new_tokens`` budget (``truncated``);
- empty output for a non-empty source (``empty_output``, always on);
- with ``round_trip``: translate back and score chrF against the source (``<column>_rt_chrf``), and
  with ``round_trip_min_chrf`` drop rows below it (``round_trip_low``).

Reads: ``columns`` (null cells stay null), and reference columns named in ``references``.
Writes: ``lang`` (the row's language), the translated ``columns``, ``<column>_src`` (the source text),
``parallel_id`` (the source row's id, shared by all its translations; kept when the input has one),
``<column>_rt_chrf`` with ``round_trip``, ``mt_ok``/``mt_reason`` with ``on_fail = "flag"``.
Every other column passes through unchanged (``query_id``, ``doc_id``, qrels...). Row ids become
``<row_id>/<lang>``.

Parameters: ``columns``, ``source_lang``, ``target_langs``, ``engine`` (``transformers`` | ``bergamot``
| ``openai``), ``model`` (Hub id, path or packaged name; ``bergamot-en-pt`` is the bergamot default),
decoding (``num_beams``, ``max_new_tokens``, ``generation`` for other ``generate`` settings),
``segment`` (``sentence`` | ``none``), ``max_segment_chars``, ``keep_source``, the openai settings
(``base_url``, ``api_key_env``, ``prompt``, ``system``, ``max_concurrency``), the gate settings below,
and runtime settings (``batch_size``, ``device``, ``threads``) that never change results or cache keys.

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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from .. import langs
from ..errors import StepError
from ..models.lid import DEFAULT_CONFUSABLE, FastTextLID, check_languages, families_index
from ..models.mt import BERGAMOT_PAIRS, ENGINES
from ..pipeline.base import ROW_ID, Step, StepOutput, StepReport
from ..pipeline.cache import cached_map
from ..pipeline.params import param
from ..pipeline.registry import register
from ..text import copy_similarity, length_ratio, letters, reassemble, repetition, split_segments

log = logging.getLogger(__name__)

GATES = ("language", "copy", "length", "repetition", "truncation")
# scripts whose texts are much shorter in characters than alphabetic ones
_DENSE_SCRIPTS = {"Hans", "Hant", "Hani", "Jpan", "Kore", "Hang"}


@dataclass
class TranslateParams:
    columns: list[str] = param(doc="text columns to translate", min_items=1)
    source_lang: str = param(doc="language of the source text (a code: en, eng, eng_Latn)", kind="lang")
    target_langs: list[str] = param(doc="languages to translate into", kind="langs", min_items=1)
    engine: Literal["transformers", "bergamot", "openai"] = param("transformers", doc="MT engine")
    model: str | None = param(
        None, doc="model: Hub id, local path or packaged name (bergamot: bergamot-en-pt)", kind="path"
    )
    num_beams: int | None = param(
        None, doc="beam size (transformers; default: the model's generation config)", ge=1, le=128
    )
    max_new_tokens: int = param(
        256, doc="generation budget per segment; using all of it counts as truncated", ge=1, le=100_000
    )
    generation: dict = param(
        {}, doc="other decoding settings passed to the engine (e.g. length_penalty)", kind="decoding"
    )
    segment: Literal["sentence", "none"] = param("sentence", doc="translate sentence by sentence, or whole texts")
    max_segment_chars: int = param(
        1000, doc="split longer sentences at clause punctuation or spaces (0 = never)", ge=0, le=1_000_000
    )
    keep_source: bool = param(False, doc="also keep the source rows (with lang = source_lang)")
    # openai engine
    base_url: str | None = param(
        None, doc="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL or api.openai.com)", runtime=True
    )
    api_key_env: str = param("OPENAI_API_KEY", doc="environment variable holding the API key", runtime=True)
    prompt: str | None = param(None, doc="prompt template with {text}, {src_name}, {tgt_name}, {src}, {tgt}")
    system: str | None = param(None, doc="system message template (openai)")
    max_concurrency: int = param(8, doc="parallel requests (openai)", runtime=True, ge=1, le=1024)
    # gates
    gates: list[str] = param(list(GATES), doc=f"quality gates to apply: {', '.join(GATES)}", choices=GATES)
    on_fail: Literal["drop", "keep", "flag"] = param(
        "drop", doc="rows failing a gate: drop (to rejects/), keep (count only) or flag (mt_ok, mt_reason)"
    )
    lid_model: str = param("lid.176", doc="fastText LID model for the language gate", kind="path")
    lid_min_score: float = param(0.0, doc="language gate: minimum top-1 probability", ge=0.0, le=1.0)
    confusable: list[list[str]] = param(DEFAULT_CONFUSABLE, doc="language families fastText confuses")
    script_check: bool = param(True, doc="language gate: output must be in the target's script")
    lid_short_text: int = param(
        50,
        doc="language gate: outputs shorter than this pass when the target is in the top 3 (short text is hard)",
        ge=0,
        le=10_000,
    )
    copy_threshold: float = param(
        0.9, doc="copy gate: similarity to the source at or above this is a copy", ge=0.0, le=1.0
    )
    copy_min_chars: int = param(
        10, doc="copy gate: only for sources with at least this many letters", ge=0, le=1_000_000
    )
    length_ratio: list[float] = param(
        [],
        doc="[min, max] output/source character ratio (default: [0.33, 3.0], [0.1, 1.5] into Chinese/Japanese/Korean)",
        ge=0.0,
        le=1000.0,
    )
    length_ratios: dict = param({}, doc='per-pair bounds, e.g. { "en-ky" = [0.5, 2.5] }')
    length_min_chars: int = param(15, doc="length gate: only for sources at least this long", ge=0, le=1_000_000)
    repeat_min: int = param(
        4, doc="repetition gate: an n-gram repeated this many times in a row is a loop", ge=2, le=1000
    )
    round_trip: bool = param(False, doc="translate back to the source language and keep chrF as <column>_rt_chrf")
    round_trip_model: str | None = param(None, doc="model for the way back (default: the same model)", kind="path")
    round_trip_min_chrf: float = param(
        0.0, doc="drop rows whose round-trip chrF is below this (0 = keep all)", ge=0.0, le=100.0
    )
    references: dict = param(
        {},
        doc='reference translations per target: { pt = { query = "query_pt" } } '
        "(a column, or a .jsonl file with 'id' = source row id and the column)",
    )
    # runtime
    batch_size: int = param(32, doc="segments per model call", runtime=True, ge=1, le=100_000)
    device: str = param("auto", doc="auto | cpu | cuda", runtime=True)
    threads: int = param(0, doc="bergamot worker threads (0 = up to 4)", runtime=True, ge=0, le=1024)


def _pair_key(src: str, tgt: str) -> tuple[str, str]:
    return langs.normalize(src), langs.normalize(tgt)


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
        problems: list[tuple[str, str]] = []
        if p.source_lang in p.target_langs:
            problems.append(("target_langs", f"contains the source language {p.source_lang}"))
        if len(set(p.target_langs)) != len(p.target_langs):
            problems.append(("target_langs", "has duplicates"))
        if p.engine in ("transformers", "openai") and not p.model:
            problems.append(
                (
                    "model",
                    f"the {p.engine} engine needs a model (a Hub id or a local path"
                    f"{'' if p.engine == 'transformers' else ', as the endpoint names it'})",
                )
            )
        if p.engine == "bergamot":
            if p.model not in (None, "bergamot-en-pt"):
                problems.append(("model", "the bergamot engine ships one model: 'bergamot-en-pt'"))
            pairs = ", ".join(f"{a}->{b}" for a, b in BERGAMOT_PAIRS)
            for t in p.target_langs:
                if (p.source_lang.split("_")[0], t.split("_")[0]) not in BERGAMOT_PAIRS:
                    problems.append(
                        (
                            "target_langs",
                            f"the bergamot engine cannot translate {p.source_lang} -> {t} (pairs: {pairs})",
                        )
                    )
        if p.engine == "openai" and p.prompt is not None and "{text}" not in p.prompt:
            problems.append(("prompt", "the template must contain {text}"))
        if p.engine != "openai" and (p.prompt is not None or p.system is not None):
            problems.append(("prompt", "prompt/system apply to the openai engine only"))
        if p.length_ratio and (len(p.length_ratio) != 2 or not 0 <= p.length_ratio[0] < p.length_ratio[1]):
            problems.append(("length_ratio", "expected [min, max] with 0 <= min < max"))
        for k, v in p.length_ratios.items():
            a, _, b = str(k).partition("-")
            if not (langs.is_valid(a) and langs.is_valid(b)):
                problems.append((f"length_ratios.{k}", "keys are language pairs like 'en-ky' or 'eng_Latn-kir_Cyrl'"))
            if not (
                isinstance(v, list)
                and len(v) == 2
                and all(isinstance(x, (int, float)) for x in v)
                and 0 <= v[0] < v[1]
            ):
                problems.append((f"length_ratios.{k}", "expected [min, max] with 0 <= min < max"))
        if not 0 < p.copy_threshold <= 1:
            problems.append(("copy_threshold", "expected a similarity in (0, 1]"))
        if p.max_new_tokens < 1:
            problems.append(("max_new_tokens", "expected at least 1"))
        if p.batch_size < 1:
            problems.append(("batch_size", "expected at least 1"))
        if p.repeat_min < 2:
            problems.append(("repeat_min", "expected at least 2"))
        if p.round_trip_min_chrf and not p.round_trip:
            problems.append(("round_trip_min_chrf", "needs round_trip = true"))
        targets = set(p.target_langs)
        for lang, refs in p.references.items():
            if not langs.is_valid(lang) or langs.normalize(lang) not in targets:
                problems.append((f"references.{lang}", f"not one of target_langs ({', '.join(p.target_langs)})"))
            if not isinstance(refs, dict):
                problems.append((f"references.{lang}", "expected a table { column = reference }"))
                continue
            for col, ref in refs.items():
                if col not in p.columns:
                    problems.append((f"references.{lang}.{col}", f"'{col}' is not in columns"))
                if not isinstance(ref, str):
                    problems.append((f"references.{lang}.{col}", "expected a column name or a .jsonl path"))
                elif columns is not None and not ref.endswith(".jsonl") and ref not in columns:
                    problems.append(
                        (f"references.{lang}.{col}", f"no column '{ref}' (available: {', '.join(columns)})")
                    )
        return problems

    def input_columns(self) -> list[str]:
        return list(self.params.columns)

    def output_columns(self, columns: list[str]) -> list[str]:
        p = self.params
        out = [*columns, "lang", "parallel_id", *(f"{c}_src" for c in p.columns)]
        if p.round_trip:
            out += [f"{c}_rt_chrf" for c in p.columns]
        if p.on_fail == "flag":
            out += ["mt_ok", "mt_reason"]
        return list(dict.fromkeys(out))

    # ------------------------------------------------------------------------------------ models
    def _engine_kwargs(self) -> dict[str, Any]:
        p = self.params
        if p.engine == "transformers":
            return {
                "num_beams": p.num_beams,
                "max_new_tokens": p.max_new_tokens,
                "batch_size": p.batch_size,
                **p.generation,
            }
        if p.engine == "bergamot":
            return {"threads": p.threads or None}
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
        self.mt = _load_mt(p.engine, p.model, self.ctx.recipe_dir, p.device, **self._engine_kwargs())
        self.ctx.record_model("mt", self.mt.id, self.mt.revision, engine=p.engine)
        self.back = self.mt
        if p.round_trip and p.round_trip_model and p.round_trip_model != p.model:
            self.back = _load_mt(p.engine, p.round_trip_model, self.ctx.recipe_dir, p.device, **self._engine_kwargs())
            self.ctx.record_model("mt_back", self.back.id, self.back.revision, engine=p.engine)
        self.lid = None
        if "language" in p.gates:
            self.lid = FastTextLID(p.lid_model, self.ctx.recipe_dir)
            self.ctx.record_model("lid", self.lid.id, self.lid.revision)
        self.families = families_index(p.confusable)
        self._refs = {langs.normalize(lang): refs for lang, refs in p.references.items()}
        self._ref_files: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------------------------ translation
    def _translate_texts(
        self, backend, texts: list[str | None], src: str, tgt: str, counters: dict[str, Any]
    ) -> list[dict[str, Any] | None]:
        """Translate whole texts through segments; returns per text {text, tokens, truncated} (None for None)."""
        p = self.params
        parts = [split_segments(t, p.segment, p.max_segment_chars or None) if t is not None else None for t in texts]
        segs = [s for pt in parts if pt is not None for s in pt[1::2]]
        counters["segments"] += len(segs)
        counters["unique_segments"] += len(set(segs))
        ns = {"task": "translate", **backend.config(), "src": src, "tgt": tgt}

        def call(batch: list[str]) -> list[dict[str, Any]]:
            t0 = time.perf_counter()
            res = backend.translate_detailed(batch, src, tgt)
            counters["engine_seconds"] += time.perf_counter() - t0
            counters["engine_segments"] += len(batch)
            counters["engine_chars"] += sum(len(b) for b in batch)
            out = []
            for r in res:
                if r.tokens is not None:
                    counters["output_tokens"] += r.tokens
                counters["output_words"] += len(r.text.split())
                out.append({"text": r.text, "tokens": r.tokens, "truncated": bool(r.truncated)})
            return out

        # a large window per call lets the backend sort by length across many segments
        results = cached_map(self.ctx.cache, ns, segs, call, batch_size=max(p.batch_size * 16, 256)) if segs else []
        out: list[dict[str, Any] | None] = []
        k = 0
        for pt in parts:
            if pt is None:
                out.append(None)
                continue
            n = len(pt) // 2
            rs = results[k : k + n]
            k += n
            out.append(
                {
                    "text": reassemble(pt, [r["text"] for r in rs]),
                    "truncated": any(r["truncated"] for r in rs),
                    "tokens": sum(r["tokens"] or 0 for r in rs),
                }
            )
        return out

    def _bounds(self, tgt: str) -> tuple[float, float]:
        p = self.params
        src = p.source_lang
        for k, v in p.length_ratios.items():
            a, _, b = str(k).partition("-")
            if _pair_key(a, b) == (src, tgt):
                return float(v[0]), float(v[1])
        if p.length_ratio:
            return float(p.length_ratio[0]), float(p.length_ratio[1])
        src_dense = src.split("_")[1] in _DENSE_SCRIPTS
        tgt_dense = tgt.split("_")[1] in _DENSE_SCRIPTS
        if tgt_dense and not src_dense:
            return 0.1, 1.5
        if src_dense and not tgt_dense:
            return 0.6, 10.0
        return 0.33, 3.0

    def _gate(
        self, sources: list[str | None], outs: list[dict[str, Any] | None], tgt: str, col: str
    ) -> tuple[list[str | None], list[str | None]]:
        """First failing gate per text: (reasons, details)."""
        p = self.params
        n = len(sources)
        reasons: list[str | None] = [None] * n
        details: list[str | None] = [None] * n
        lo, hi = self._bounds(tgt)
        for i, (s, o) in enumerate(zip(sources, outs)):
            if s is None or o is None or not s.strip():
                continue
            t = o["text"]
            if not t.strip():
                reasons[i], details[i] = "empty_output", f"{col}: empty translation"
            elif "truncation" in p.gates and o["truncated"]:
                reasons[i], details[i] = "truncated", f"{col}: hit max_new_tokens={p.max_new_tokens}"
            elif (
                "repetition" in p.gates
                and (rep := repetition(t, min_repeats=p.repeat_min))
                and not repetition(s, min_repeats=p.repeat_min)
            ):
                reasons[i], details[i] = "repetition", f"{col}: {rep}"
            elif (
                "copy" in p.gates
                and letters(s) >= p.copy_min_chars
                and (sim := copy_similarity(s, t)) >= p.copy_threshold
            ):
                reasons[i], details[i] = "copy", f"{col}: similarity to the source {sim:.2f}"
            elif (
                "length" in p.gates
                and len(s.strip()) >= p.length_min_chars
                and not (lo <= (r := length_ratio(s, t)) <= hi)
            ):
                reasons[i], details[i] = "length_ratio", f"{col}: ratio {r:.2f} outside [{lo}, {hi}]"
        if "language" in p.gates and self.lid is not None:
            idx = [i for i in range(n) if reasons[i] is None and outs[i] is not None and outs[i]["text"].strip()]
            if idx:
                r = check_languages(
                    self.lid,
                    [outs[i]["text"] for i in idx],
                    [tgt] * len(idx),
                    min_score=p.lid_min_score,
                    families=self.families,
                    script_check=p.script_check,
                    short_text=p.lid_short_text,
                )
                for j, i in enumerate(idx):
                    if not r["ok"][j]:
                        reasons[i], details[i] = r["reasons"][j], f"{col}: {r['details'][j]}"
        return reasons, details

    # ------------------------------------------------------------------------------------ process
    def process(self, batch: pl.DataFrame) -> StepOutput:
        p = self.params
        src = p.source_lang
        stats: dict[str, Any] = {"mt": {}}
        base = batch
        if "parallel_id" not in base.columns:
            base = base.with_columns(pl.col(ROW_ID).alias("parallel_id"))
        base = base.with_columns(pl.col("parallel_id").cast(pl.Utf8))
        sources = {c: [v if isinstance(v, str) else None for v in batch[c].cast(pl.Utf8).to_list()] for c in p.columns}
        kept: list[pl.DataFrame] = []
        rejected: list[pl.DataFrame] = []
        if p.keep_source:
            srows = base.with_columns(
                *(pl.col(c).alias(f"{c}_src") for c in p.columns),
                pl.lit(src).alias("lang"),
                pl.concat_str([pl.col(ROW_ID), pl.lit(f"/{src}")]).alias(ROW_ID),
            )
            if p.round_trip:
                srows = srows.with_columns(*(pl.lit(None, dtype=pl.Float64).alias(f"{c}_rt_chrf") for c in p.columns))
            if p.on_fail == "flag":
                srows = srows.with_columns(pl.lit(True).alias("mt_ok"), pl.lit(None, dtype=pl.Utf8).alias("mt_reason"))
            kept.append(srows)
        for tgt in p.target_langs:
            st = {
                "rows_in": batch.height,
                "rows_out": 0,
                "dropped": {},
                "segments": 0,
                "unique_segments": 0,
                "engine_segments": 0,
                "engine_chars": 0,
                "engine_seconds": 0.0,
                "output_tokens": 0,
                "output_words": 0,
                "truncated": 0,
            }
            new_cols: dict[str, list[Any]] = {}
            row_reason: list[str | None] = [None] * batch.height
            row_detail: list[str | None] = [None] * batch.height
            for c in p.columns:
                try:
                    outs = self._translate_texts(self.mt, sources[c], src, tgt, st)
                except StepError:
                    raise
                except Exception as e:  # noqa: BLE001 - named with the step and the pair
                    raise StepError(self.name, f"{src} -> {tgt}, column '{c}': {type(e).__name__}: {e}") from e
                st["truncated"] += sum(1 for o in outs if o is not None and o["truncated"])
                new_cols[c] = [o["text"] if o is not None else None for o in outs]
                reasons, details = self._gate(sources[c], outs, tgt, c)
                if p.round_trip:
                    back = self._translate_texts(self.back, new_cols[c], tgt, src, {**_zero_counters()})
                    scores = _rt_scores(sources[c], back)
                    new_cols[f"{c}_rt_chrf"] = scores
                    vals = [s for s in scores if s is not None]
                    st.setdefault("rt_chrf_sum", {})[c] = sum(vals)
                    st.setdefault("rt_chrf_n", {})[c] = len(vals)
                    if p.round_trip_min_chrf:
                        for i, s in enumerate(scores):
                            if reasons[i] is None and s is not None and s < p.round_trip_min_chrf:
                                reasons[i] = "round_trip_low"
                                details[i] = f"{c}: round-trip chrF {s:.1f} < {p.round_trip_min_chrf}"
                for i in range(batch.height):
                    if row_reason[i] is None and reasons[i] is not None:
                        row_reason[i], row_detail[i] = reasons[i], details[i]
            rows = base.with_columns(
                *(pl.col(c).alias(f"{c}_src") for c in p.columns),
                *(
                    pl.Series(name, vals, dtype=pl.Float64 if name.endswith("_rt_chrf") else pl.Utf8)
                    for name, vals in new_cols.items()
                ),
                pl.lit(tgt).alias("lang"),
                pl.concat_str([pl.col(ROW_ID), pl.lit(f"/{tgt}")]).alias(ROW_ID),
            )
            self._collect_refs(rows, tgt, st, row_reason)
            ok = pl.Series([r is None for r in row_reason], dtype=pl.Boolean)
            for r in row_reason:
                if r is not None:
                    st["dropped"][r] = st["dropped"].get(r, 0) + 1
            if p.on_fail == "flag":
                rows = rows.with_columns(ok.alias("mt_ok"), pl.Series("mt_reason", row_reason, dtype=pl.Utf8))
                kept.append(rows)
            elif p.on_fail == "keep":
                kept.append(rows)
            else:
                kept.append(rows.filter(ok))
                bad = rows.filter(~ok).with_columns(
                    pl.Series("reason", [r for r in row_reason if r is not None], dtype=pl.Utf8),
                    pl.Series("detail", [d for d, r in zip(row_detail, row_reason) if r is not None], dtype=pl.Utf8),
                )
                if bad.height:
                    rejected.append(bad)
            st["rows_out"] = int(ok.sum()) if p.on_fail == "drop" else batch.height
            stats["mt"][tgt] = st
        rows = pl.concat(kept, how="diagonal_relaxed") if kept else base.clear()
        rejects = pl.concat(rejected, how="diagonal_relaxed") if rejected else None
        return StepOutput(rows, rejects, stats)

    def _collect_refs(self, rows: pl.DataFrame, tgt: str, st: dict[str, Any], reasons: list[str | None]) -> None:
        """Keep (hypothesis, reference) pairs of rows that passed the gates, for corpus chrF/BLEU."""
        refs = self._refs.get(tgt)
        if not refs:
            return
        for col, ref in refs.items():
            if ref.endswith(".jsonl"):
                table = self._ref_file(ref, col)
                rv = [table.get(pid) for pid in rows["parallel_id"].to_list()]
            else:
                rv = rows[ref].cast(pl.Utf8).to_list()
            hyps, rfs = [], []
            for h, r, why in zip(rows[col].to_list(), rv, reasons):
                if why is None and isinstance(h, str) and isinstance(r, str) and r.strip():
                    hyps.append(h)
                    rfs.append(r)
            d = st.setdefault("refs", {}).setdefault(col, {"hyp": [], "ref": []})
            d["hyp"] += hyps
            d["ref"] += rfs

    def _ref_file(self, path: str, col: str) -> dict[str, str]:
        key = f"{path}\x1f{col}"
        if key not in self._ref_files:
            from ..sources.jsonl import read_jsonl

            f = Path(path) if Path(path).is_absolute() else self.ctx.recipe_dir / path
            records, _ = read_jsonl(f)
            self._ref_files[key] = {str(r.get("id")): r.get(col) for r in records if r.get("id") is not None}
        return self._ref_files[key]

    # ------------------------------------------------------------------------------------ report
    def finalize(self, stats: dict[str, Any]) -> StepReport:
        from ..metrics.mt import corpus_scores

        p = self.params
        per_lang: dict[str, Any] = {}
        for tgt, st in sorted(stats.get("mt", {}).items()):
            row: dict[str, Any] = {
                k: st.get(k, 0)
                for k in ("rows_in", "rows_out", "segments", "unique_segments", "engine_segments", "truncated")
            }
            row["dropped"] = dict(sorted(st.get("dropped", {}).items()))
            secs = st.get("engine_seconds", 0.0)
            row["engine_seconds"] = round(secs, 3)
            if st.get("output_tokens"):
                row["tokens_per_s"] = round(st["output_tokens"] / secs, 1) if secs else None
            row["words_per_s"] = round(st.get("output_words", 0) / secs, 1) if secs else None
            if st.get("rt_chrf_n"):
                row["round_trip_chrf"] = {
                    c: round(st["rt_chrf_sum"][c] / n, 2) for c, n in st["rt_chrf_n"].items() if n
                }
            if st.get("refs"):
                row["reference_scores"] = {
                    c: corpus_scores(d["hyp"], d["ref"], tgt) for c, d in st["refs"].items() if d["hyp"]
                }
            per_lang[tgt] = row
        report = {
            "step": self.name,
            "engine": p.engine,
            "model": p.model or ("bergamot-en-pt" if p.engine == "bergamot" else None),
            "source_lang": p.source_lang,
            "columns": p.columns,
            "gates": p.gates,
            "per_lang": per_lang,
        }
        md = _markdown(report)
        return StepReport(summary=md, data=report, markdown=md)


def _zero_counters() -> dict[str, Any]:
    return {
        "segments": 0,
        "unique_segments": 0,
        "engine_segments": 0,
        "engine_chars": 0,
        "engine_seconds": 0.0,
        "output_tokens": 0,
        "output_words": 0,
    }


def _rt_scores(sources: list[str | None], back: list[dict[str, Any] | None]) -> list[float | None]:
    from ..metrics.mt import sentence_chrf

    idx = [i for i, (s, b) in enumerate(zip(sources, back)) if s is not None and b is not None and s.strip()]
    scores = sentence_chrf([back[i]["text"] for i in idx], [sources[i] for i in idx])  # type: ignore[index]
    out: list[float | None] = [None] * len(sources)
    for i, s in zip(idx, scores):
        out[i] = round(s, 2)
    return out


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Machine translation of {', '.join(f'`{c}`' for c in report['columns'])} from "
        f"`{report['source_lang']}` with the `{report['engine']}` engine"
        + (f" (`{report['model']}`)" if report.get("model") else "")
        + ".",
        "",
        "| target | rows in | rows out | dropped (reason: n) | segments (unique, translated now) | "
        "round-trip chrF | tokens/s | words/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for tgt, r in report["per_lang"].items():
        drops = ", ".join(f"{k}: {v}" for k, v in r["dropped"].items()) or "none"
        rt = ", ".join(f"{c} {v}" for c, v in r.get("round_trip_chrf", {}).items()) or "-"
        tps = r.get("tokens_per_s")
        lines.append(
            f"| `{tgt}` | {r['rows_in']} | {r['rows_out']} | {drops} | {r['segments']} "
            f"({r['unique_segments']}, {r['engine_segments']}) | {rt} | {tps if tps else '-'} | "
            f"{r['words_per_s'] if r['words_per_s'] else '-'} |"
        )
    refs = [(tgt, c, s) for tgt, r in report["per_lang"].items() for c, s in r.get("reference_scores", {}).items()]
    if refs:
        lines += ["", "Against reference translations (sacrebleu):", ""]
        for tgt, c, s in refs:
            lines.append(
                f"- `{tgt}` `{c}` (n={s['n']}): chrF {s['chrf']} (`{s['chrf_signature']}`), "
                f"BLEU {s['bleu']} (`{s['bleu_signature']}`)"
            )
    lines += ["", "Segments translated now exclude those found in the cache; speeds count engine time only."]
    return "\n".join(lines)


def _load_mt(engine: str, model: str | None, base_dir: Path, device: str, **kw: Any):
    """The backends of :mod:`mlbuild.models.mt` (tests replace this function)."""
    from ..models.mt import load_mt

    return load_mt(engine, model, base_dir=base_dir, device=device, **kw)


__all__ = ["Translate", "TranslateParams", "ENGINES"]
