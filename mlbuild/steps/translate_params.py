"""The parameters of ``translate.v1`` (declared with bounds and choices; see :mod:`mlbuild.steps.translate`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..models.lid import DEFAULT_CONFUSABLE
from ..models.mt_ct2 import COMPUTE_TYPES
from ..pipeline.filters import OnFail
from ..pipeline.params import param
from ..qe import DEFAULT_MIN_MARGIN
from . import translate_gates as gates

GATES = (*gates.GATES, "qe")


@dataclass
class TranslateParams:
    columns: list[str] = param(doc="text columns to translate", min_items=1)
    source_lang: str = param(doc="language of the source text (a code: en, eng, eng_Latn)", kind="lang")
    target_langs: list[str] = param(doc="languages to translate into", kind="langs", min_items=1)
    engine: str = param(
        "transformers", doc="MT engine: transformers | ctranslate2 | bergamot | openai (or a registered one)"
    )
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
    compute_type: str = param(
        "auto",
        doc="ctranslate2: weight/compute type (auto = int8 on CPU, int8_float16 on CUDA; float32 = exact)",
        choices=COMPUTE_TYPES,
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
    price: dict | None = param(None, doc="openai engine: { input, output, per = 1e6, currency }: cost in the card")
    # gates
    gates: list[str] = param(
        list(gates.GATES), doc=f"quality gates to apply: {', '.join(GATES)} (qe is off by default)", choices=GATES
    )
    on_fail: OnFail = param(
        "drop", doc="rows failing a gate: drop (to rejects/), keep (count only) or flag (mt_ok, mt_reason)"
    )
    lid_model: str = param("lid.176", doc="fastText LID model for the language gate", kind="path")
    lid_min_score: float = param(0.0, doc="language gate: minimum top-1 probability", ge=0.0, le=1.0)
    lid_min_ratio: float = param(
        0.3,
        doc="language gate: another top language passes when the target is in the top 3 with at least this "
        "share of its probability (0 = off)",
        ge=0.0,
        le=1.0,
    )
    confusable: list[list[str]] = param(DEFAULT_CONFUSABLE, doc="language families fastText confuses")
    script_check: bool = param(True, doc="language gate: output must be in the target's script")
    lid_short_text: int = param(
        0, doc="language gate: outputs shorter than this pass when the target is in the top 3", ge=0, le=10_000
    )
    copy_threshold: float = param(
        0.9, doc="copy gate: similarity to the source at or above this is a copy", gt=0.0, le=1.0
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
    qe: Literal["embedding", "comet"] = param(
        "embedding", doc="qe gate: embedding (cosine + margin over the batch's other sources) or comet (CometKiwi)"
    )
    qe_model: str | None = param(
        None,
        doc="qe gate: encoder (default multilingual-e5-small) or COMET checkpoint (path or Hub id)",
        kind="path",
    )
    qe_min_score: float | None = param(
        None,
        doc="qe gate: minimum score (cosine or COMET) for every target (None = no absolute test)",
        ge=-1.0,
        le=1.0,
    )
    qe_min_scores: dict = param({}, doc="qe gate: minimum score per target language, e.g. { de = 0.85, tr = 0.82 }")
    qe_min_margin: float | None = param(
        DEFAULT_MIN_MARGIN,
        doc="qe gate (embedding): minimum cosine margin over the mean of the batch's other sources (None = off)",
        ge=-1.0,
        le=1.0,
    )
    qe_min_batch: int = param(
        8,
        doc="qe gate: distinct sources a batch needs for the margin test (smaller batches: no margin)",
        ge=2,
        le=1_000_000,
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
    threads: int = param(
        0,
        doc="bergamot worker threads (0 = up to 4); ctranslate2 intra-op threads (0 = its default)",
        runtime=True,
        ge=0,
        le=1024,
    )
    max_batch_tokens: int | None = param(
        None,
        doc="padded tokens per engine batch (transformers: unset = no limit; ctranslate2: 4096)",
        runtime=True,
        ge=1,
        le=10_000_000,
    )
