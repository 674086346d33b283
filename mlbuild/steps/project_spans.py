"""``project_spans.v1``: carry character-span annotations (NER entities, relation heads/tails, answer spans)
from a source text onto its translation.

Two methods, and a fallback between them:

- ``markers``: wrap each span in numbered markers (``[1]..[/1]`` or ``<a>..</a>``), translate, repair
  what MT did to the markers (split tags, stray or lost spaces, punctuation pulled inside a span, markers
  moved around articles), remove them and compute the target offsets. A row is accepted only when each
  span has exactly one start and one end marker, start < end, and no spans cross; otherwise it fails
  with a category (``missing_marker``, ``duplicated_marker``, ``wrong_order``, ``crossed_spans``,
  ``empty_span``).
- ``align``: word-align source and target (eflomal, or an embedding aligner over a transformers model's
  subword states) and map source span -> source words -> aligned target words -> one contiguous target
  span; failures are ``unaligned``, ``discontinuous``, ``no_tokens``, ``crossed_spans``.
- ``fallback``: markers first; rows whose markers fail are aligned onto the translation with the markers
  removed (spans whose own markers were fine are kept).

``verify_plain`` also translates each text without markers: the plain text is used when every span is
found in it verbatim, else the row is ``low_confidence`` (markers can bend a name: ``Sofia`` -> ``Sfia``).
``copy_exact`` (alignment) puts a span whose text occurs once, verbatim, in the target there.

Input: ``text_column`` (source text), ``spans_column`` (list of ``{start, end, label}``, character offsets,
end exclusive), ``target_column`` when the translation exists already, ``gold_column`` (optional gold
target spans, for precision/recall/F1 in the report).

Output: with ``target_langs`` (the step translates) one row per source row and language, ``row_id`` =
``<row_id>/<lang>``, plus ``target_lang``, ``target_text``, ``lang`` (the row's language) and ``parallel_id``
(the source row's id, shared by its translations so they land in one split), as ``translate.v1`` writes them. Always: ``target_spans`` (same struct as the
input; for failed rows, the spans that did project), ``projection_status`` (``ok``, ``low_confidence``
or a failure category), ``projection_method`` (``markers``/``align``), ``projection_confidence`` and
``projection_detail`` (what went wrong). ``bio = true`` adds ``target_tokens`` and ``target_tags``.
Rows that are not ``ok`` form the review queue (``mlbuild review export``); ``on_failure = "drop"`` moves
failed rows to ``rejects/`` instead (the review export reads them there too).

Report: ``reports/projection.json|md``, per language: rows in, projected, failed by category,
review-queued, marker repairs, and span P/R/F1 when ``gold_column`` is set.

Example::

    [[steps]]
    uses = "project_spans.v1"
    text_column = "text"
    spans_column = "spans"
    source_lang = "en"
    target_langs = ["pt"]
    engine = "bergamot"
    method = "fallback"
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from .. import langs
from .. import spans as S
from ..metrics.projection import prf, span_counts
from ..pipeline.base import ROW_ID, Step, StepOutput, StepReport
from ..pipeline.cache import cached_map
from ..pipeline.params import param
from ..pipeline.registry import register

log = logging.getLogger(__name__)

# Marker style per MT engine. Only bergamot's was checked on real output (see docs/projection.md):
# it mangles XML-like tags and keeps square-bracket numbered markers.
ENGINE_MARKERS = {"bergamot": "brackets", "transformers": "brackets", "openai": "xml"}
OUT_COLUMNS = ["target_spans", "projection_status", "projection_method", "projection_confidence", "projection_detail"]


@dataclass
class ProjectSpansParams:
    text_column: str = param(doc="source text column")
    spans_column: str = param(doc="source spans: list of {start, end, label} character offsets (end exclusive)")
    source_lang: str = param(doc="language of the source text", kind="lang")
    method: Literal["markers", "align", "fallback"] = param("markers", doc="markers, align, or markers then align")
    target_column: str | None = param(None, doc="existing translation column (parallel data; method align)")
    target_lang: str | None = param(None, doc="language of target_column", kind="lang")
    target_lang_column: str | None = param(
        None, doc="column holding each row's target language instead (e.g. 'lang' after translate.v1)"
    )
    target_langs: list[str] = param([], doc="languages to translate into (the step translates)", kind="langs")
    engine: Literal["transformers", "bergamot", "openai"] | None = param(None, doc="MT engine (with target_langs)")
    model: str | None = param(
        None, doc="MT model: path, packaged name or Hub id (engine default if unset)", kind="path"
    )
    decoding: dict[str, Any] = param(
        {}, doc="decoding params passed to the MT backend (num_beams, ...)", kind="decoding"
    )
    marker_style: Literal["auto", "brackets", "xml"] = param("auto", doc="marker look; auto = per engine")
    aligner: Literal["eflomal", "embedding"] = param("eflomal", doc="word aligner for method align/fallback")
    align_model: str | None = param(None, doc="transformers model for the embedding aligner", kind="path")
    align_layer: int = param(8, doc="hidden layer the embedding aligner reads (0 = embeddings)", ge=0, le=1000)
    align_method: Literal["argmax", "itermax"] = param("itermax", doc="embedding aligner's matching")
    align_center: bool = param(False, doc="centre hidden states before comparing (decoder LMs)")
    verify_plain: bool = param(
        False,
        doc="markers: also translate without markers; use that text when every "
        "span is found in it, else flag the row low_confidence (2x MT calls)",
    )
    copy_exact: bool = param(True, doc="align: a span whose text occurs once, verbatim, in the target goes there")
    max_gap: int = param(2, doc="unaligned target words bridged inside a projected span", ge=0, le=100)
    min_confidence: float = param(
        0.5, doc="aligned rows below this confidence are flagged low_confidence", ge=0.0, le=1.0
    )
    gold_column: str | None = param(None, doc="gold target spans, for precision/recall/F1 in the report")
    on_failure: Literal["keep", "drop"] = param("keep", doc="keep failed rows flagged, or drop them to rejects/")
    bio: bool = param(False, doc="also write target_tokens and target_tags (IOB2)")
    batch_size: int = param(32, doc="texts per MT call", runtime=True, ge=1, le=100_000)
    device: str = param("auto", doc="device for MT and the embedding aligner", runtime=True)


@register("step")
class ProjectSpans(Step):
    __doc__ = __doc__
    name = "project_spans.v1"
    Params = ProjectSpansParams
    machine_generated_annotations = True
    task_categories = ("token-classification",)

    def __init__(self, params: ProjectSpansParams, ctx=None):
        super().__init__(params, ctx)
        if params.target_langs:  # the card says so only when this step made the translations
            self.machine_generated_text = True
            self.multilinguality = "translation"

    # --------------------------------------------------------------------------------- contract
    @classmethod
    def check(cls, params: ProjectSpansParams, columns: list[str] | None) -> list[tuple[str, str]]:
        p = params
        problems = []
        translating = bool(p.target_langs)
        if translating == bool(p.target_column):
            problems.append(
                (
                    "target_column",
                    "give either target_column (+ target_lang) for an existing "
                    "translation, or target_langs (+ engine) to translate",
                )
            )
        if p.target_column and not (p.target_lang or p.target_lang_column):
            problems.append(("target_lang", "required with target_column (or target_lang_column)"))
        if translating and not p.engine:
            problems.append(("engine", "required with target_langs (transformers, bergamot or openai)"))
        if p.method in ("markers", "fallback") and not translating:
            problems.append(
                (
                    "method",
                    f"{p.method!r} translates marked text: it needs target_langs; "
                    "use method = 'align' with an existing target_column",
                )
            )
        if p.method in ("align", "fallback") and p.aligner == "embedding" and not p.align_model:
            problems.append(("align_model", "the embedding aligner needs a transformers model"))
        if columns is not None:
            for key in ("text_column", "spans_column", "target_column", "gold_column", "target_lang_column"):
                c = getattr(p, key)
                if c and c not in columns:
                    problems.append((key, f"no column {c!r} (columns: {', '.join(columns)})"))
        return problems

    def input_columns(self) -> list[str]:
        p = self.params
        cols = (p.text_column, p.spans_column, p.target_column, p.gold_column, p.target_lang_column)
        return [c for c in cols if c]

    def output_columns(self, columns: list[str]) -> list[str]:
        extra = ["lang", "target_lang", "target_text", "parallel_id"] if self.params.target_langs else []
        bio = ["target_tokens", "target_tags"] if self.params.bio else []
        return list(dict.fromkeys([*columns, *extra, *OUT_COLUMNS, *bio]))

    @property
    def style(self) -> S.MarkerStyle:
        p = self.params
        return S.style(ENGINE_MARKERS.get(p.engine or "", "brackets") if p.marker_style == "auto" else p.marker_style)

    # --------------------------------------------------------------------------------- models
    def setup(self) -> None:
        p = self.params
        if p.target_langs and getattr(self, "mt", None) is None:
            self.mt = _load_mt(p.engine, p.model, self.ctx.recipe_dir, p.device, **p.decoding)
            self.ctx.record_model(
                "mt",
                self.mt.id,
                getattr(self.mt, "revision", None),
                engine=p.engine,
                marker_style=self.style.name if p.method != "align" else None,
            )
        if p.method in ("align", "fallback") and getattr(self, "aligner", None) is None:
            from ..models.align import load_aligner

            self.aligner = load_aligner(
                p.aligner,
                model=p.align_model,
                layer=p.align_layer,
                method=p.align_method,
                device=p.device,
                base_dir=self.ctx.recipe_dir,
                center=p.align_center,
            )
            self.ctx.record_model(
                "aligner",
                self.aligner.id,
                self.aligner.revision,
                layer=p.align_layer if p.aligner == "embedding" else None,
            )

    def _translate(self, texts: list[str], tgt: str) -> list[str]:
        p = self.params
        conf = (
            self.mt.config()
            if hasattr(self.mt, "config")
            else {"engine": p.engine, "model": self.mt.id, "revision": getattr(self.mt, "revision", None)}
        )
        ns = {"task": "translate", **conf, "decoding": p.decoding, "src": p.source_lang, "tgt": tgt}
        todo = [t for t in texts if t.strip()]
        done = dict(
            zip(
                todo,
                cached_map(self.ctx.cache, ns, todo, lambda b: self.mt.translate(b, p.source_lang, tgt), p.batch_size),
            )
        )
        return [done.get(t, "") for t in texts]

    # --------------------------------------------------------------------------------- rows
    def process(self, batch: pl.DataFrame) -> StepOutput:
        p = self.params
        texts = batch[p.text_column].cast(pl.Utf8).fill_null("").to_list()
        src_spans = [S.to_spans(v) for v in batch[p.spans_column].to_list()]
        golds = (
            [S.to_spans(v) if v is not None else None for v in batch[p.gold_column].to_list()]
            if p.gold_column
            else [None] * batch.height
        )
        frames, rejects, stats = [], [], {"projection": {}}
        if p.target_langs:
            # translations of one source row share a parallel_id (kept in one split by the writer)
            pid = (
                pl.coalesce(pl.col("parallel_id").cast(pl.Utf8), pl.col(ROW_ID))
                if "parallel_id" in batch.columns
                else pl.col(ROW_ID)
            )
            batch = batch.with_columns(pid.alias("parallel_id"))
            for lang in p.target_langs:
                res = self._project_translating(texts, src_spans, lang)
                part = batch.with_columns(
                    (pl.col(ROW_ID) + f"/{lang}").alias(ROW_ID),
                    pl.lit(lang).alias("target_lang"),
                    pl.lit(lang).alias("lang"),  # the row's language, as translate.v1 writes it
                    pl.Series("target_text", [r["text"] for r in res], dtype=pl.Utf8),
                )
                self._finish(part, res, golds, [lang] * len(res), frames, rejects, stats)
        else:
            tgt_texts = batch[p.target_column].cast(pl.Utf8).fill_null("").to_list()
            res = [_blank(t) for t in tgt_texts]
            todo = []
            for k, (t, sp) in enumerate(zip(texts, src_spans)):
                problem = S.check_spans(t, sp)
                if problem:
                    res[k].update(status="invalid_source_spans", detail=problem)
                elif not tgt_texts[k].strip():
                    res[k].update(status="empty_translation", detail="the target text is empty")
                else:
                    todo.append(k)
            self._align_rows(texts, src_spans, res, todo, context=list(range(len(texts))))
            if p.target_lang_column:
                row_langs = [_norm_lang(v) for v in batch[p.target_lang_column].to_list()]
            else:
                row_langs = [p.target_lang or "und"] * batch.height
            self._finish(batch, res, golds, row_langs, frames, rejects, stats)
        rows = pl.concat(frames, how="vertical_relaxed") if frames else batch.clear()
        rej = pl.concat(rejects, how="diagonal_relaxed") if rejects else None
        return StepOutput(rows, rej, stats)

    def _project_translating(self, texts: list[str], src_spans: list[list[S.Span]], lang: str) -> list[dict]:
        p = self.params
        st = self.style
        res = [_blank("") for _ in texts]
        valid = []
        for k, (t, sp) in enumerate(zip(texts, src_spans)):
            problem = S.check_spans(t, sp)
            if problem:
                res[k].update(status="invalid_source_spans", detail=problem)
            else:
                valid.append(k)
        if p.method == "align":
            out = self._translate([texts[k] for k in valid], lang)
            for k, t in zip(valid, out):
                res[k]["text"] = t
            todo = [k for k in valid if res[k]["text"].strip() or not src_spans[k]]
            for k in set(valid) - set(todo):
                res[k].update(status="empty_translation", detail="MT returned an empty text")
            self._align_rows(texts, src_spans, res, todo, context=valid)
            return res
        marked = [S.insert_markers(texts[k], src_spans[k], st) for k in valid]
        out = self._translate(marked, lang)
        failed = []
        for k, mt_out in zip(valid, out):
            r = res[k]
            r["method"] = "markers"
            if not mt_out.strip():
                r.update(status="empty_translation", detail="MT returned an empty text")
                continue
            info = [S.SourceSpanInfo.of(texts[k], s, p.source_lang) for s in src_spans[k]]
            fixed, repairs = S.repair_markers(mt_out, st, info, tgt_lang=lang, src_lang=p.source_lang)
            ex = S.extract_markers(fixed, st, [s.label for s in src_spans[k]], source_nested=_nested(src_spans[k]))
            r.update(
                text=ex.text,
                repairs=repairs,
                status=ex.status,
                detail="; ".join(ex.problems) or None,
                spans=[s for s in ex.spans if s is not None],
                marker_spans=ex.spans,
                confidence=1.0 if ex.status == "ok" else 0.0,
            )
            if ex.status != "ok":
                r["markers_failure"] = ex.status
                failed.append(k)
        if p.verify_plain:
            self._verify_plain(texts, res, [k for k in valid if res[k]["status"] == "ok" and src_spans[k]], lang)
        if p.method == "fallback" and failed:
            # align every translated row of the batch (more text for a statistical aligner), use the failed ones
            context = [k for k in valid if res[k]["text"].strip()]
            self._align_rows(texts, src_spans, res, failed, context=context)
        return res

    def _verify_plain(self, texts: list[str], res: list[dict], rows: list[int], lang: str) -> None:
        """Translate ``rows`` again without markers. When every projected span's text occurs once, verbatim,
        in that plain translation, take the plain text (markers can bend a translation); otherwise flag the
        row ``low_confidence`` (a name changed under the markers, or the span is not where MT put it)."""
        plain = self._translate([texts[k] for k in rows], lang)
        for k, pt in zip(rows, plain):
            r = res[k]
            if pt == r["text"]:
                continue
            moved, missing = [], []
            for sp in r["spans"]:
                hit = _verbatim(r["text"][sp.start : sp.end], pt)
                if hit is None:
                    missing.append(r["text"][sp.start : sp.end])
                else:
                    moved.append(S.Span(hit[0], hit[1], sp.label))
            if not missing and not S.crossing(moved) and len(set(moved)) == len(moved):
                r.update(text=pt, spans=moved, repairs=[*r["repairs"], "plain_text"])
            else:
                r.update(
                    status="low_confidence",
                    confidence=0.5,
                    detail="not in the translation made without markers: "
                    + ", ".join(map(repr, missing))
                    + f" (that translation: {pt!r})",
                )

    def _align_rows(
        self, texts: list[str], src_spans: list[list[S.Span]], res: list[dict], todo: list[int], context: list[int]
    ) -> None:
        """Align rows ``todo`` (the aligner sees ``context`` rows too) and set their spans and status."""
        if not todo:
            return
        from ..models.align import project_span

        p = self.params
        ctx_rows = sorted(set(context) | set(todo))
        src_tok = {k: S.tokenize(texts[k]) for k in ctx_rows}
        tgt_tok = {k: S.tokenize(res[k]["text"]) for k in ctx_rows}
        links = self.aligner.align(
            [[texts[k][a:b] for a, b in src_tok[k]] for k in ctx_rows],
            [[res[k]["text"][a:b] for a, b in tgt_tok[k]] for k in ctx_rows],
        )
        by_row = dict(zip(ctx_rows, links))
        for k in todo:
            r = res[k]
            got, problems, confs = [], [], []
            kept = r.get("marker_spans") or [None] * len(src_spans[k])
            for i, sp in enumerate(src_spans[k], start=1):
                if kept[i - 1] is not None:  # the markers of this span were fine
                    got.append(kept[i - 1])
                    confs.append(1.0)
                    continue
                if p.copy_exact:
                    found = _verbatim(texts[k][sp.start : sp.end], r["text"])
                    if found is not None:
                        got.append(S.Span(found[0], found[1], sp.label))
                        confs.append(1.0)
                        continue
                span, status, conf = project_span(src_tok[k], tgt_tok[k], by_row[k], sp.start, sp.end, p.max_gap)
                if span is None:
                    problems.append(f"{status}: span {i} ({texts[k][sp.start : sp.end]!r})")
                else:
                    got.append(S.Span(span[0], span[1], sp.label))
                    confs.append(conf)
            status = problems[0].split(":")[0] if problems else "ok"
            if status == "ok" and (S.crossing(got) or _overlap_new(got, src_spans[k])):
                status = "crossed_spans"
                problems.append("crossed_spans: projected spans overlap")
            conf = min(confs) if confs else 1.0
            if status == "ok" and conf < p.min_confidence:
                status = "low_confidence"
                problems.append(f"low_confidence: {conf:.2f} < {p.min_confidence}")
            prior = r.get("detail")
            r.update(
                method="align",
                spans=got,
                status=status,
                confidence=round(conf, 4) if not problems or status == "low_confidence" else 0.0,
                detail="; ".join(([f"markers: {prior}"] if prior else []) + problems) or None,
            )

    def _finish(
        self,
        part: pl.DataFrame,
        res: list[dict],
        golds: list,
        row_langs: list[str],
        frames: list,
        rejects: list,
        stats: dict,
    ) -> None:
        p = self.params
        status = [r["status"] for r in res]
        cols = [
            S.spans_series("target_spans", [r["spans"] for r in res]),
            pl.Series("projection_status", status, dtype=pl.Utf8),
            pl.Series("projection_method", [r["method"] for r in res], dtype=pl.Utf8),
            pl.Series("projection_confidence", [float(r["confidence"]) for r in res], dtype=pl.Float64),
            pl.Series("projection_detail", [r["detail"] for r in res], dtype=pl.Utf8),
        ]
        if p.bio:
            toks, tags = [], []
            for r in res:
                offs = S.tokenize(r["text"])
                toks.append([r["text"][a:b] for a, b in offs])
                try:
                    tags.append(
                        S.spans_to_bio(S.snap_to_tokens(r["spans"], offs), offs)
                        if r["status"] in ("ok", "low_confidence")
                        else None
                    )
                except S.SpanError:
                    tags.append(None)
            cols += [
                pl.Series("target_tokens", toks, dtype=pl.List(pl.Utf8)),
                pl.Series("target_tags", tags, dtype=pl.List(pl.Utf8)),
            ]
        part = part.with_columns(cols)
        # stats per language
        for r, g, lang in zip(res, golds, row_langs):
            s = stats["projection"].setdefault(lang or "und", _new_stats())
            s["rows_in"] += 1
            st = r["status"]
            if st == "ok":
                s["projected"] += 1
            elif st == "low_confidence":
                s["low_confidence"] += 1
            else:
                s["failed"][st] = s["failed"].get(st, 0) + 1
            if st != "ok":
                s["review_queued"] += 1
            if r["method"]:
                s["by_method"][r["method"]] = s["by_method"].get(r["method"], 0) + 1
            for rep in r.get("repairs", []):
                s["repairs"][rep] = s["repairs"].get(rep, 0) + 1
            mf = r.get("markers_failure")
            if mf:
                s["markers_failed"][mf] = s["markers_failed"].get(mf, 0) + 1
                if st in ("ok", "low_confidence"):
                    s["recovered_by_align"] += 1
            if st in ("ok", "low_confidence"):
                s["spans_projected"] += len(r["spans"])
            if g is not None:
                gold = s.setdefault("gold", {"rows": 0, "tp": 0, "fp": 0, "fn": 0})
                gold["rows"] += 1
                pred = r["spans"] if st in ("ok", "low_confidence") else []
                for k2, v in span_counts(pred, g).items():
                    gold[k2] += v
        if p.on_failure == "drop":
            bad = pl.Series([x not in ("ok", "low_confidence") for x in status])
            if bad.any():
                rejects.append(
                    part.filter(bad).with_columns(
                        pl.col("projection_status").alias("reason"), pl.col("projection_detail").alias("detail")
                    )
                )
            part = part.filter(~bad)
        frames.append(part)

    # --------------------------------------------------------------------------------- report
    def finalize(self, stats: dict[str, Any]) -> StepReport | None:
        per = stats.get("projection", {})
        if not per:
            return None
        report = {
            "method": self.params.method,
            "marker_style": self.style.name if self.params.method != "align" else None,
            "aligner": self.params.aligner if self.params.method != "markers" else None,
            "languages": {},
        }
        lines = [
            "| language | rows in | projected | low confidence | failed (category: rows) | review-queued "
            "| marker repairs | P / R / F1 |",
            "|---|---:|---:|---:|---|---:|---|---|",
        ]
        for lang, s in sorted(per.items()):
            entry = dict(s)
            if "gold" in s:
                entry["gold"] = {**s["gold"], **{k: round(v, 4) for k, v in prf(s["gold"]).items()}}
            report["languages"][lang] = entry
            failed = "; ".join(f"{k}: {v}" for k, v in sorted(s["failed"].items())) or "none"
            if s.get("markers_failed"):
                failed += (
                    " (markers failed: "
                    + ", ".join(f"{k} {v}" for k, v in sorted(s["markers_failed"].items()))
                    + f"; recovered by alignment: {s['recovered_by_align']})"
                )
            reps = ", ".join(f"{k} {v}" for k, v in sorted(s["repairs"].items())) or "none"
            g = entry.get("gold")
            score = f"{g['precision']:.3f} / {g['recall']:.3f} / {g['f1']:.3f} ({g['rows']} rows)" if g else "no gold"
            name = langs.display_name(lang) if langs.is_valid(lang) else lang
            lines.append(
                f"| `{lang}` ({name}) | {s['rows_in']} | {s['projected']} | {s['low_confidence']} | {failed} "
                f"| {s['review_queued']} | {reps} | {score} |"
            )
        md = "\n".join(lines)
        page = (
            "# Span projection\n\n" + md + "\n\nRows not `ok` form the review "
            "queue: `mlbuild review export OUTDIR --to queue.jsonl`.\n"
        )
        return StepReport(summary="Span projection:\n\n" + md, data=report, markdown=page)


def _new_stats() -> dict[str, Any]:
    return {
        "rows_in": 0,
        "projected": 0,
        "low_confidence": 0,
        "failed": {},
        "review_queued": 0,
        "by_method": {},
        "repairs": {},
        "markers_failed": {},
        "recovered_by_align": 0,
        "spans_projected": 0,
    }


def _norm_lang(v: Any) -> str:
    return langs.normalize(v) if isinstance(v, str) and langs.is_valid(v) else (str(v) if v else "und")


def _blank(text: str) -> dict[str, Any]:
    return {
        "text": text,
        "spans": [],
        "status": "ok",
        "method": None,
        "confidence": 1.0,
        "detail": None,
        "repairs": [],
    }


def _verbatim(needle: str, text: str) -> tuple[int, int] | None:
    """Where ``needle`` occurs in ``text`` as whole words, when it occurs exactly once."""
    if not needle.strip():
        return None
    hits = [m.span() for m in re.finditer(rf"(?<!\w){re.escape(needle)}(?!\w)", text)]
    return hits[0] if len(hits) == 1 else None


def _nested(spans: list[S.Span]) -> bool:
    return any(a is not b and a.start <= b.start and b.end <= a.end for a in spans for b in spans)


def _overlap_new(got: list[S.Span], src: list[S.Span]) -> bool:
    """Projected spans that overlap where the source spans did not."""
    if _nested(src):
        return False
    return any(a is not b and a.start < b.end and b.start < a.end for a in got for b in got)


def _load_mt(engine: str | None, model: str | None, base_dir: Path, device: str, **decoding: Any):
    """The translate backends of :mod:`mlbuild.models.mt` (tests replace this function)."""
    from ..models.mt import load_mt

    return load_mt(engine, model, base_dir=base_dir, device=device, **decoding)
