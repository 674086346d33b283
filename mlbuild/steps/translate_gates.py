"""The quality gates of ``translate.v1``: one small pure function per gate, each returning a
:class:`~mlbuild.pipeline.filters.Verdict` over the rows of one translated column.

Every gate judges a row only when its source is a non-blank text and it has an output (null cells
are never judged). ``translate.v1`` runs them in this order and keeps each row's first failure
(:func:`~mlbuild.pipeline.filters.first_failure`), then applies ``on_fail`` with
:func:`~mlbuild.pipeline.filters.apply`:

==================  =====================================  ============================================
gate                reason                                 function
==================  =====================================  ============================================
(always on)         ``empty_output``                       :func:`empty_output`
``truncation``      ``truncated``                          :func:`truncation`
``repetition``      ``repetition``                         :func:`repetition_loop`
``copy``            ``copy``                               :func:`copy_of_source`
``length``          ``length_ratio``                       :func:`length_out_of_bounds`
``language``        ``lang_mismatch`` / ``wrong_script``   :func:`language` (also returns what it
                    / ``lang_low_score``                   detected, for the ``<column>_lang`` columns)
``round_trip``      ``round_trip_low``                     :func:`round_trip_low`
==================  =====================================  ============================================

Used alone::

    from mlbuild.steps import translate_gates as g
    v = g.copy_of_source(["The cat sat."], ["The cat sat."], threshold=0.9, min_chars=5)
    v.reasons  # ['copy']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import langs
from ..models.lid import FastTextLID, check_languages
from ..pipeline.filters import Verdict
from ..text import copy_similarity, length_ratio, letters, repetition

GATES = ("language", "copy", "length", "repetition", "truncation")
LANGUAGE_REASONS = ("lang_mismatch", "wrong_script", "lang_low_score")
# scripts whose texts are much shorter in characters than alphabetic ones
DENSE_SCRIPTS = frozenset({"Hans", "Hant", "Hani", "Jpan", "Kore", "Hang"})

Texts = Sequence[str | None]


def judged(sources: Texts, outputs: Texts) -> list[bool]:
    """Rows a gate looks at: a non-blank source that has an output."""
    return [s is not None and o is not None and bool(s.strip()) for s, o in zip(sources, outputs, strict=True)]


def _produced(sources: Texts, outputs: Texts) -> list[bool]:
    """Judged rows whose output is not blank (the gates that read the output's text)."""
    return [j and bool(o.strip()) for j, o in zip(judged(sources, outputs), outputs)]


def empty_output(sources: Texts, outputs: Texts) -> Verdict:
    """An empty translation of a non-empty source (``empty_output``)."""
    failed = [j and not o.strip() for j, o in zip(judged(sources, outputs), outputs)]
    return Verdict.from_mask(failed, "empty_output", ["empty translation"] * len(failed))


def truncation(sources: Texts, outputs: Texts, truncated: Sequence[bool], max_new_tokens: int) -> Verdict:
    """A segment used the whole generation budget, or its input was cut (``truncated``)."""
    failed = [j and bool(t) for j, t in zip(judged(sources, outputs), truncated, strict=True)]
    return Verdict.from_mask(failed, "truncated", [f"hit max_new_tokens={max_new_tokens}"] * len(failed))


def repetition_loop(sources: Texts, outputs: Texts, min_repeats: int) -> Verdict:
    """A generation loop in the output that the source does not have (``repetition``)."""
    reasons: list[str | None] = []
    details: list[str | None] = []
    for s, o, j in zip(sources, outputs, _produced(sources, outputs)):
        rep = repetition(o, min_repeats=min_repeats) if j else None
        bad = bool(rep) and not repetition(s, min_repeats=min_repeats)
        reasons.append("repetition" if bad else None)
        details.append(rep if bad else None)
    return Verdict(reasons, details)


def copy_of_source(sources: Texts, outputs: Texts, threshold: float, min_chars: int) -> Verdict:
    """Output (nearly) equal to the source, for sources with at least ``min_chars`` letters (``copy``)."""
    reasons: list[str | None] = []
    details: list[str | None] = []
    for s, o, j in zip(sources, outputs, _produced(sources, outputs)):
        sim = copy_similarity(s, o) if j and letters(s) >= min_chars else None
        bad = sim is not None and sim >= threshold
        reasons.append("copy" if bad else None)
        details.append(f"similarity to the source {sim:.2f}" if bad else None)
    return Verdict(reasons, details)


def length_bounds(
    src: str, tgt: str, ratio: Sequence[float] = (), ratios: dict[str, Sequence[float]] | None = None
) -> tuple[float, float]:
    """[min, max] output/source character ratio for a pair: a per-pair entry of ``ratios`` (keys like
    ``en-ky``), else ``ratio``, else [0.33, 3.0] ([0.1, 1.5] into dense scripts, [0.6, 10] out of them)."""
    for k, v in (ratios or {}).items():
        a, _, b = str(k).partition("-")
        if (langs.normalize(a), langs.normalize(b)) == (src, tgt):
            return float(v[0]), float(v[1])
    if ratio:
        return float(ratio[0]), float(ratio[1])
    src_dense = src.split("_")[1] in DENSE_SCRIPTS
    tgt_dense = tgt.split("_")[1] in DENSE_SCRIPTS
    if tgt_dense and not src_dense:
        return 0.1, 1.5
    if src_dense and not tgt_dense:
        return 0.6, 10.0
    return 0.33, 3.0


MAX_RATIO = 1000.0  # the bound of length_ratio's values, for length_ratios' values too


def length_problems(ratio: Sequence[float], ratios: dict[str, Any]) -> list[tuple[str, str]]:
    """Problems of the ``length_ratio`` / ``length_ratios`` settings as (place, message) pairs."""
    problems: list[tuple[str, str]] = []
    if ratio and (len(ratio) != 2 or not 0 <= ratio[0] < ratio[1]):
        problems.append(("length_ratio", "expected [min, max] with 0 <= min < max"))
    for k, v in ratios.items():
        a, _, b = str(k).partition("-")
        if not (langs.is_valid(a) and langs.is_valid(b)):
            problems.append((f"length_ratios.{k}", "keys are language pairs like 'en-ky' or 'eng_Latn-kir_Cyrl'"))
        numbers = isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
        if not (numbers and len(v) == 2 and 0 <= v[0] < v[1] <= MAX_RATIO):
            problems.append(
                (f"length_ratios.{k}", f"expected [min, max] with 0 <= min < max <= {MAX_RATIO:g}, got {v!r}")
            )
    return problems


def length_out_of_bounds(sources: Texts, outputs: Texts, bounds: tuple[float, float], min_chars: int) -> Verdict:
    """Output/source character ratio outside ``bounds``, for sources at least ``min_chars`` long
    (``length_ratio``)."""
    lo, hi = bounds
    reasons: list[str | None] = []
    details: list[str | None] = []
    for s, o, j in zip(sources, outputs, _produced(sources, outputs)):
        r = length_ratio(s, o) if j and len(s.strip()) >= min_chars else None
        bad = r is not None and not lo <= r <= hi
        reasons.append("length_ratio" if bad else None)
        details.append(f"ratio {r:.2f} outside [{lo}, {hi}]" if bad else None)
    return Verdict(reasons, details)


@dataclass
class LanguageCheck:
    """The language gate's verdict, and what it detected per row (None where it looked at nothing)."""

    verdict: Verdict
    codes: list[str | None]
    scores: list[float | None]


def language(
    lid: FastTextLID,
    sources: Texts,
    outputs: Texts,
    target: str,
    *,
    min_score: float = 0.0,
    families: dict[str, frozenset[str]] | None = None,
    script_check: bool = True,
    short_text: int = 0,
    min_ratio: float = 0.3,
    top_k: int = 3,
) -> LanguageCheck:
    """fastText language ID of each non-blank output against ``target``, with the rules of
    :func:`mlbuild.models.lid.check_languages` (``lang_mismatch``, ``wrong_script``, ``lang_low_score``)."""
    idx = [i for i, ok in enumerate(_produced(sources, outputs)) if ok]
    n = len(outputs)
    codes: list[str | None] = [None] * n
    scores: list[float | None] = [None] * n
    if not idx:
        return LanguageCheck(Verdict.passing(n), codes, scores)
    r = check_languages(
        lid,
        [outputs[i] for i in idx],
        [target] * len(idx),
        min_score=min_score,
        families=families,
        script_check=script_check,
        short_text=short_text,
        top_k=top_k,
        min_ratio=min_ratio,
    )
    for j, i in enumerate(idx):
        codes[i], scores[i] = r["codes"][j], float(r["scores"][j])
    verdict = Verdict(
        [None if ok else why for ok, why in zip(r["ok"], r["reasons"])],
        [None if ok else d for ok, d in zip(r["ok"], r["details"])],
    )
    return LanguageCheck(verdict.take(idx, n), codes, scores)


def identify(lid: FastTextLID, texts: Texts) -> tuple[list[str | None], list[float | None]]:
    """Top-1 language and probability of each non-blank text (None for null or blank ones)."""
    idx = [i for i, t in enumerate(texts) if t is not None and t.strip()]
    codes: list[str | None] = [None] * len(texts)
    scores: list[float | None] = [None] * len(texts)
    if idx:
        got, probs = lid.predict([texts[i] for i in idx], k=1)
        for j, i in enumerate(idx):
            codes[i], scores[i] = (got[j][0] if got[j] else None), float(probs[j, 0])
    return codes, scores


def round_trip_low(scores: Sequence[float | None], min_chrf: float) -> Verdict:
    """Round-trip chrF below ``min_chrf`` (``round_trip_low``; ``min_chrf = 0`` judges nothing)."""
    failed = [bool(min_chrf) and s is not None and s < min_chrf for s in scores]
    return Verdict.from_mask(
        failed, "round_trip_low", [f"round-trip chrF {s:.1f} < {min_chrf}" if s is not None else None for s in scores]
    )


def prefixed(verdict: Verdict, column: str) -> Verdict:
    """The verdict with each detail prefixed by the column it is about (``query: copy ...``)."""
    return Verdict(
        verdict.reasons,
        [f"{column}: {d}" if r is not None else None for r, d in zip(verdict.reasons, verdict.details)],
    )


def run_gates(
    params: Any,
    lid: FastTextLID | None,
    families: dict[str, frozenset[str]],
    sources: Texts,
    outputs: Texts,
    truncated: Sequence[bool],
    target: str,
) -> tuple[list[Verdict], LanguageCheck | None]:
    """The verdicts of the gates ``params.gates`` switches on (``translate.v1``'s params), in the fixed
    order of the table above, and what the language gate detected (None when it is off)."""
    p = params
    on = set(p.gates)
    verdicts = [empty_output(sources, outputs)]
    if "truncation" in on:
        verdicts.append(truncation(sources, outputs, truncated, p.max_new_tokens))
    if "repetition" in on:
        verdicts.append(repetition_loop(sources, outputs, p.repeat_min))
    if "copy" in on:
        verdicts.append(copy_of_source(sources, outputs, p.copy_threshold, p.copy_min_chars))
    if "length" in on:
        bounds = length_bounds(p.source_lang, target, p.length_ratio, p.length_ratios)
        verdicts.append(length_out_of_bounds(sources, outputs, bounds, p.length_min_chars))
    lang = None
    if "language" in on and lid is not None:
        lang = language(
            lid,
            sources,
            outputs,
            target,
            min_score=p.lid_min_score,
            families=families,
            script_check=p.script_check,
            short_text=p.lid_short_text,
            min_ratio=p.lid_min_ratio,
        )
        verdicts.append(lang.verdict)
    return verdicts, lang


def lang_series(col: str, codes: list[str | None], scores: list[float | None]) -> list:
    """The language gate's columns for ``col``: ``<col>_lang`` and ``<col>_lang_score``."""
    import polars as pl

    return [pl.Series(f"{col}_lang", codes, dtype=pl.Utf8), pl.Series(f"{col}_lang_score", scores, dtype=pl.Float32)]
