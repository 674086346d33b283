"""``language_similarity.v1``: how close a model puts each language to a pivot (English), per layer.

For parallel sentences (the pivot's and each language's, tied by an id), it pools the hidden states of
every layer of a model (the packaged Gemma-3-270m by default; any transformers model by Hub id, path or
GGUF file) into one vector per sentence and layer, then scores each language and layer with
:mod:`mlbuild.metrics.langsim`:

- ``ranker``: mean cosine of parallel pairs (the Language Ranker score), and ``nonparallel``: the same
  for non-parallel pairs, the baseline it must beat (decoder states are anisotropic: raw cosines are
  near 1 for everything);
- ``ranker_centered`` / ``nonparallel_centered``: the same after subtracting the mean vector over all
  languages; ``margin(_centered)`` = parallel - non-parallel; ``auc(_centered)``: P(parallel cosine >
  non-parallel cosine), 0.5 = no separation;
- ``mexa`` (and ``mexa_centered``): MEXA alignment, the share of pairs whose cosine is strictly the
  largest in its row and its column.

The ``score`` of a language is one of those per-pair metrics aggregated over layers (``mean`` or
``max``), with a bootstrap confidence interval over sentences; the ranking gives each language a rank
range, so languages the bootstrap cannot tell apart share ranks. MEXA depends on the number of pairs:
languages are compared at the same ``max_sentences`` where the data allows.

Reads (long form, the default): ``id_column`` (``parallel_id``), ``text_column``, ``lang_column`` (rows
of one parallel unit share the id; one row per language). Wide form: ``columns = {eng_Latn = "passage",
por_Latn = "passage_pt"}`` (one row per unit). Pairs with an empty side, and repeated pivot or language
sentences (they would tie in MEXA), are dropped and counted.

The table is read twice, batch by batch: first the ids, languages and a hash of each text (to find the
usable pairs and choose the seeded sample), then the texts of the chosen sentences only; memory grows
with the sample, and with the rows only by those keys (:mod:`mlbuild.similarity.sample`).

Writes, like a step's report (a :class:`~mlbuild.pipeline.base.StepReport` filed by the writer):
``reports/<name>.json`` (every number, model id and revision, checksums of the sentences), ``<name>.md``
(table), ``<name>.heatmap.png`` (layers x languages), ``<name>.layers.png`` (curves over layers) and
``<name>.separation.png`` (parallel vs non-parallel). The card shows the table.

Parameters: ``model``, ``gguf_file``, ``revision``, ``pivot``, ``langs`` (empty: every language
found), ``columns`` or ``text_column``/``lang_column``/``id_column``, ``pooling`` (list; the first one
is scored: ``mean`` drops BOS and masks padding, ``last_token``, ``weighted_mean``), ``score``,
``aggregate``, ``max_sentences``, ``min_sentences``, ``bootstrap``, ``confidence``, ``seed``,
``max_length``, ``dtype``, ``name``; runtime: ``device``, ``batch_size``.

Example (English passages and their Portuguese translations, tied by ``parallel_id``)::

    [[reports]]
    uses = "language_similarity.v1"
    text_column = "passage"
    lang_column = "lang"
    pivot = "en"
    max_sentences = 100

Standalone: ``mlbuild report language-similarity --parallel DIR_OR_DATASET --langs fr de sw --out DIR``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .. import langs
from ..pipeline.base import Report
from ..pipeline.params import param
from ..pipeline.registry import register
from ..similarity import render
from ..similarity.inputs import table_source
from ..similarity.sample import sample_sets
from ..similarity.scores import build_report

log = logging.getLogger(__name__)


@dataclass
class LanguageSimilarityParams:
    model: str = param(
        "gemma-3-270m", doc="transformers model: packaged name, folder, .gguf file or Hub id", kind="path"
    )
    gguf_file: str | None = param(None, doc="GGUF file inside the model folder or Hub repo")
    revision: str | None = param(None, doc="Hub revision (local models are hashed)")
    pivot: str = param("eng_Latn", doc="language every other language is compared with", kind="lang")
    langs: list[str] = param([], doc="languages to score (empty: every language found)", kind="langs")
    columns: dict[str, str] = param({}, doc="wide form: language -> text column, one row per parallel unit")
    text_column: str = param("text", doc="long form: the text column")
    lang_column: str = param("lang", doc="long form: the language column (else <text_column>_lang)")
    id_column: str = param("parallel_id", doc="long form: rows of one parallel unit share this id")
    pooling: list[Literal["mean", "last_token", "weighted_mean"]] = param(
        ["mean"], doc="poolings to compute; the first is scored and ranked", min_items=1
    )
    score: Literal["mexa", "mexa_centered", "ranker_centered", "ranker"] = param(
        "mexa", doc="per-pair metric behind the score and ranking"
    )
    aggregate: Literal["mean", "max"] = param("mean", doc="aggregate of the score over layers")
    max_sentences: int = param(200, doc="pairs per language at most (seeded choice by id)", ge=2, le=10_000_000)
    min_sentences: int = param(
        10,
        doc="skip languages with fewer usable pairs (MEXA and the non-parallel baseline need 2)",
        ge=2,
        le=10_000_000,
    )
    bootstrap: int = param(1000, doc="bootstrap resamples for the confidence interval", ge=10, le=1_000_000)
    confidence: float = param(0.95, doc="confidence level of the interval", ge=0.5, lt=1.0)
    seed: int = param(0, doc="seed of the sentence choice and the bootstrap", ge=0, le=2**63 - 1)
    max_length: int = param(256, doc="tokens per sentence at most", ge=1, le=1_000_000)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = param(
        "auto",
        doc="precision: auto = float32 on CPU, bfloat16 on CUDA (bfloat16 vectors differ slightly from float32)",
    )
    name: str = param("language_similarity", doc="file name prefix under reports/", pattern=r"[A-Za-z0-9_.-]+")
    trust_remote_code: bool = param(False, doc="allow model code from the Hub repo")
    device: str = param("auto", doc="auto, cpu, cuda", runtime=True)
    batch_size: int = param(
        0, doc="sentences per forward pass (0: 32 on CPU, 256 on CUDA)", runtime=True, ge=0, le=1_000_000
    )


def check_params(p: Any) -> list[tuple[str, str]]:
    problems = []
    for k in p.columns:
        if not langs.is_valid(k):
            problems.append(("columns", f"unknown language code {k!r}"))
    if (
        p.columns
        and langs.is_valid(p.pivot)
        and langs.normalize(p.pivot) not in {langs.normalize(k) for k in p.columns if langs.is_valid(k)}
    ):
        problems.append(("columns", f"no column for the pivot {p.pivot}"))
    return problems


@register("report")
class LanguageSimilarity(Report):
    __doc__ = __doc__
    name = "language_similarity.v1"
    Params = LanguageSimilarityParams

    @classmethod
    def check(cls, params: LanguageSimilarityParams, columns: list[str] | None) -> list[tuple[str, str]]:
        return check_params(params)

    def input_columns(self) -> list[str]:
        p = self.params
        if p.columns:
            return list(dict.fromkeys(p.columns.values()))
        return [p.id_column, p.text_column]  # the language column may be <text_column>_lang: checked at run time

    def run(self, table: Any, reports_dir: Path) -> dict[str, Any]:
        """``table``: the final stage (a TableRef, read twice batch by batch) or a DataFrame."""
        p = self.params
        sets, skipped = sample_sets(
            table_source(table),
            p.pivot,
            p.langs,
            columns=p.columns or None,
            text_column=p.text_column,
            lang_column=p.lang_column,
            id_column=p.id_column,
            max_sentences=p.max_sentences,
            min_sentences=p.min_sentences,
            seed=p.seed,
        )
        encoder = load_encoder(p, self.ctx.recipe_dir, self.ctx.device)
        self.ctx.record_model("hidden_states", encoder.id, encoder.revision)
        result = build_report(
            sets,
            encoder,
            pivot=p.pivot,
            poolings=p.pooling,
            score=p.score,
            aggregate=p.aggregate,
            bootstrap=p.bootstrap,
            confidence=p.confidence,
            seed=p.seed,
            cache=self.ctx.cache,
            quiet=self.ctx.quiet,
            skipped=skipped,
        )
        if not result["languages"]:
            log.warning("language_similarity: no language besides the pivot %s had enough pairs", p.pivot)
        return render.write(result, reports_dir, p.name, link_dir="reports/")


def load_encoder(p: Any, base_dir: Path | None, device: str | None) -> Any:
    from ..models.hidden import HiddenStates

    dev = p.device if p.device != "auto" else (device or "auto")
    return HiddenStates(
        p.model,
        base_dir=base_dir,
        device=dev,
        revision=p.revision,
        gguf_file=p.gguf_file,
        max_length=p.max_length,
        batch_size=p.batch_size or None,
        dtype=None if p.dtype == "auto" else p.dtype,
        trust_remote_code=p.trust_remote_code,
    )
