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
``copy_exact`` (alignment) puts a span whose text occurs once, verbatim, in the target there. Before
either method, rows whose source spans do not fit their text are ``invalid_source_spans``, and rows
whose translation is empty ``empty_translation``. (The checks: :mod:`mlbuild.projection.checks`.)

Reads: ``text_column`` (source text), ``spans_column`` (list of ``{start, end, label}``, character
offsets, end exclusive), ``target_column`` when the translation exists already (its language in
``target_lang`` or per row in ``target_lang_column``), ``gold_column`` (optional gold target spans, for
precision/recall/F1 in the report).

Writes: with ``target_langs`` (the step translates) one row per source row and language, ``row_id`` =
``<row_id>/<lang>``, plus ``target_lang``, ``target_text``, ``lang`` (the row's language) and
``parallel_id`` (the source row's id, shared by its translations so they land in one split), as
``translate.v1`` writes them. Always: ``target_spans`` (same struct as the input; for failed rows, the
spans that did project), ``projection_status`` (``ok``, ``low_confidence`` or a failure category),
``projection_method`` (``markers``/``align``), ``projection_confidence`` and ``projection_detail`` (what
went wrong). ``bio = true`` adds ``target_tokens`` and ``target_tags``.

``on_fail`` (failed rows; ``low_confidence`` rows always stay): ``keep`` (default: they stay, with their
status, and form the review queue, ``mlbuild review export``), ``drop`` (to ``rejects/`` with their status
as the reason; the review export reads them there too) or ``flag`` (they stay, and ``projection_ok``
says which rows passed).

Params: ``method``, ``source_lang``, ``target_langs`` + ``engine`` (+ ``model``, ``decoding``) or
``target_column`` + ``target_lang``/``target_lang_column``, ``marker_style``, ``aligner`` (+
``align_model``, ``align_layer``, ``align_method``, ``align_center``), ``verify_plain``, ``copy_exact``,
``max_gap``, ``min_confidence``, ``gold_column``, ``on_fail``, ``bio``; runtime: ``batch_size``,
``device``. ``mlbuild steps project_spans.v1`` lists them with types, defaults and bounds.

Report: ``reports/<step id>.json|md``, per language: rows in, projected, failed by category,
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from .. import langs
from .. import spans as S
from ..models.mt import engines, load_mt
from ..pipeline import filters
from ..pipeline.base import ROW_ID, Step, StepOutput, StepReport
from ..pipeline.cache import cached_map
from ..pipeline.filters import OnFail
from ..pipeline.params import param, suggest
from ..pipeline.registry import register
from ..projection import checks, counts, output
from ..projection.project import Projector

log = logging.getLogger(__name__)

# Marker style per MT engine. Only bergamot's was checked on real output (see docs/projection.md):
# it mangles XML-like tags and keeps square-bracket numbered markers.
ENGINE_MARKERS = {"bergamot": "brackets", "transformers": "brackets", "openai": "xml"}
OK_COLUMN = "projection_ok"


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
    engine: str | None = param(
        None, doc="MT engine with target_langs: transformers | bergamot | openai, or a registered one"
    )
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
    on_fail: OnFail = param(
        "keep",
        doc="failed rows (low_confidence ones always stay): keep (the review queue), drop (to rejects/) "
        "or flag (projection_ok says which passed)",
    )
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
    rows_per_shard = 2048  # MT and alignment per row: a resume repeats at most this many rows

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
            problems.append(("engine", f"required with target_langs ({', '.join(engines())})"))
        elif p.engine and p.engine not in engines():
            problems.append(
                (
                    "engine",
                    f"unknown MT engine {p.engine!r}{suggest(p.engine, list(engines()))} (known: {', '.join(engines())})",
                )
            )
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
        p = self.params
        extra = ["lang", "target_lang", "target_text", "parallel_id"] if p.target_langs else []
        bio = output.BIO_COLUMNS if p.bio else []
        flag = [OK_COLUMN] if p.on_fail == "flag" else []
        return list(dict.fromkeys([*columns, *extra, *output.COLUMNS, *bio, *flag]))

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
        """MT through the run's call cache; blank texts stay blank without a call."""
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
        proj = Projector(p, self._translate, getattr(self, "aligner", None), self.style)
        if p.target_langs:
            # translations of one source row share a parallel_id (kept in one split by the writer)
            pid = (
                pl.coalesce(pl.col("parallel_id").cast(pl.Utf8), pl.col(ROW_ID))
                if "parallel_id" in batch.columns
                else pl.col(ROW_ID)
            )
            batch = batch.with_columns(pid.alias("parallel_id"))
            parts, rows = [], []
            for lang in p.target_langs:
                res = proj.onto_translations(texts, src_spans, lang)
                parts.append(
                    batch.with_columns(
                        (pl.col(ROW_ID) + f"/{lang}").alias(ROW_ID),
                        pl.lit(lang).alias("target_lang"),
                        pl.lit(lang).alias("lang"),  # the row's language, as translate.v1 writes it
                        pl.Series("target_text", [r.text for r in res], dtype=pl.Utf8),
                    )
                )
                rows += res
            part = pl.concat(parts, how="vertical_relaxed")
            row_langs = [lang for lang in p.target_langs for _ in texts]
            golds = golds * len(p.target_langs)
        else:
            targets = batch[p.target_column].cast(pl.Utf8).fill_null("").to_list()
            rows = proj.onto_targets(texts, src_spans, targets)
            part = batch
            if p.target_lang_column:
                row_langs = [_norm_lang(v) for v in batch[p.target_lang_column].to_list()]
            else:
                row_langs = [p.target_lang or "und"] * batch.height
        stats = {"projection": counts.count(rows, golds, row_langs)}
        kept, rejects, stats = filters.apply(
            part.with_columns(output.columns(rows, p.bio)),
            checks.acceptance(rows),
            p.on_fail,
            ok_column=OK_COLUMN,
            stats=stats,
        )
        return StepOutput(kept, rejects, stats)

    # --------------------------------------------------------------------------------- report
    def finalize(self, stats: dict[str, Any]) -> StepReport | None:
        p = self.params
        return counts.report(
            stats.get("projection", {}),
            method=p.method,
            marker_style=self.style.name if p.method != "align" else None,
            aligner=p.aligner if p.method != "markers" else None,
        )


def _norm_lang(v: Any) -> str:
    return langs.normalize(v) if isinstance(v, str) and langs.is_valid(v) else (str(v) if v else "und")


def _load_mt(engine: str | None, model: str | None, base_dir: Path, device: str, **decoding: Any):
    """The translate backend named ``engine`` (:func:`mlbuild.models.mt.load_mt`; tests register a fake one)."""
    return load_mt(engine, model, base_dir=base_dir, device=device, **decoding)
