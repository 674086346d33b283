"""The gates of translate.v1, each alone: a pure function from sources and outputs to a Verdict."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from helpers_mt import ScriptedLID

from mlbuild.models.lid import check_languages
from mlbuild.pipeline.filters import first_failure
from mlbuild.steps import translate_gates as g

# Real bergamot en->pt outputs and what lid.176 said about them (top 3): genuine Portuguese that an
# earlier rule rejected as Spanish or Esperanto, next to wrong-language outputs that must stay rejected.
CLOSE_CALLS = {
    "O tratamento requer o uso de múltiplos antibióticos durante um longo período de tempo.": [
        ("spa_Latn", 0.48),
        ("por_Latn", 0.39),
        ("glg_Latn", 0.06),
    ],
    "Os navios de guerra japoneses abriram fogo contra Dakota do Sul.": [
        ("spa_Latn", 0.32),
        ("por_Latn", 0.32),
        ("glg_Latn", 0.04),
    ],
    "Os lactentes podem transportar estas bactérias sem desenvolver sintomas.": [
        ("epo_Latn", 0.30),
        ("spa_Latn", 0.20),
        ("por_Latn", 0.13),
    ],
}
WRONG = {
    # Spanish read as Spanish, Portuguese far behind: a confident other language
    "El tratamiento requiere el uso de varios antibióticos durante mucho tiempo.": [
        ("spa_Latn", 0.93),
        ("por_Latn", 0.04),
        ("glg_Latn", 0.02),
    ],
    # an English copy: Portuguese not even in the top 3
    "The treatment requires the use of multiple antibiotics over a long period.": [
        ("eng_Latn", 0.97),
        ("fra_Latn", 0.01),
        ("ita_Latn", 0.01),
    ],
}
LID = ScriptedLID({**CLOSE_CALLS, **WRONG})


def test_judged_rows_skip_nulls_and_blank_sources():
    assert g.judged(["a", None, "  ", "b"], ["x", "y", "z", None]) == [True, False, False, False]


def test_empty_output():
    v = g.empty_output(["a source", "another", None, ""], ["", "saída", None, ""])
    assert v.reasons == ["empty_output", None, None, None]
    assert v.details[0] == "empty translation"


def test_truncation():
    v = g.truncation(["a", "b", None], ["x", "y", None], [True, False, True], 8)
    assert v.reasons == ["truncated", None, None] and v.details[0] == "hit max_new_tokens=8"


def test_repetition_only_when_the_source_has_none():
    loop = "o gato " * 8
    v = g.repetition_loop(["the cat", "the cat " * 8, "the cat"], [loop, loop, "o gato"], 4)
    assert v.reasons == ["repetition", None, None] and v.details[0]


def test_copy_of_source_threshold_and_min_letters():
    src = ["This query stays in English", "ok", "The cat sits on the mat"]
    out = ["This query stays in English", "ok", "O gato está no tapete"]
    v = g.copy_of_source(src, out, threshold=0.9, min_chars=10)
    assert v.reasons == ["copy", None, None]
    assert v.details[0] == "similarity to the source 1.00"


def test_length_out_of_bounds_and_settings_problems():
    src = ["the cat sat there for a while", "short", "the cat sat there for a while"]
    out = ["o gato " * 20, "um texto muito mais comprido que a fonte", "o gato ficou lá por um tempo"]
    v = g.length_out_of_bounds(src, out, (0.33, 3.0), min_chars=15)
    assert v.reasons == ["length_ratio", None, None] and "outside [0.33, 3.0]" in v.details[0]
    assert g.length_problems([3, 1], {"en-ky": [0.5, 2]}) == [
        ("length_ratio", "expected [min, max] with 0 <= min < max")
    ]
    assert [w for w, _ in g.length_problems([], {"xx-yy": [1, 2], "en-pt": [2, 1]})] == [
        "length_ratios.xx-yy",
        "length_ratios.en-pt",
    ]
    # the per-pair values have the same declared bounds as length_ratio's
    assert "<= 1000" in g.length_problems([], {"en-pt": [0.5, 5000]})[0][1]
    assert g.length_problems([], {"en-pt": [True, 2]}) and not g.length_problems([], {"en-pt": [0.5, 2.5]})


def test_language_gate_accepts_close_calls_and_rejects_confident_other_languages():
    texts = [*CLOSE_CALLS, *WRONG]
    chk = g.language(LID, texts, texts, "por_Latn")
    assert chk.verdict.reasons == [None, None, None, "lang_mismatch", "lang_mismatch"]
    assert chk.codes == ["spa_Latn", "spa_Latn", "epo_Latn", "spa_Latn", "eng_Latn"]
    assert chk.scores[0] == pytest.approx(0.48)
    assert "por_Latn 0.04" in chk.verdict.details[3]  # the target's own probability is in the detail
    # without the ratio rule (min_ratio = 0) the close calls are rejected as before
    strict = g.language(LID, texts, texts, "por_Latn", min_ratio=0.0)
    assert strict.verdict.reasons == ["lang_mismatch"] * 5


def test_language_gate_ratio_bound_and_top_k():
    text = next(iter(CLOSE_CALLS))  # spa 0.48, por 0.39: ratio 0.81
    assert g.language(LID, [text], [text], "por_Latn", min_ratio=0.8).verdict.ok == [True]
    assert g.language(LID, [text], [text], "por_Latn", min_ratio=0.85).verdict.ok == [False]
    assert g.language(LID, [text], [text], "por_Latn", top_k=1).verdict.ok == [False]  # por not in the top 1


def test_language_gate_skips_null_and_blank_and_checks_script():
    chk = g.language(LID, ["a", None, "b", "c"], ["", None, "The treatment requires", "бул китеп"], "por_Latn")
    assert chk.codes[:2] == [None, None] and chk.verdict.reasons[:2] == [None, None]
    assert chk.verdict.reasons[3] == "wrong_script"


def test_check_languages_ratio_rule_is_off_by_default():
    # langid.v1 and synthesis call check_languages without min_ratio: their rule is unchanged
    texts = list(CLOSE_CALLS)
    r = check_languages(LID, texts, ["por_Latn"] * 3, short_text=0)
    assert r["reasons"] == ["lang_mismatch"] * 3 and "ratio_accepted" not in r["counts"]
    r = check_languages(LID, texts, ["por_Latn"] * 3, short_text=0, min_ratio=0.3)
    assert r["ok"].tolist() == [True] * 3 and r["counts"]["ratio_accepted"] == 3


def test_identify():
    codes, scores = g.identify(LID, [None, " ", next(iter(WRONG))])
    assert codes == [None, None, "spa_Latn"] and scores[2] == pytest.approx(0.93)


def test_round_trip_low():
    v = g.round_trip_low([80.0, 20.0, None], 50.0)
    assert v.reasons == [None, "round_trip_low", None] and v.details[1] == "round-trip chrF 20.0 < 50.0"
    assert g.round_trip_low([1.0], 0.0).ok == [True]


def test_prefixed_names_the_column():
    v = g.prefixed(g.empty_output(["x", "y"], ["", "z"]), "query")
    assert v.details == ["query: empty translation", None]


def test_run_gates_order_and_switches():
    p = SimpleNamespace(
        gates=["copy", "length", "truncation", "repetition"],
        source_lang="eng_Latn",
        max_new_tokens=8,
        repeat_min=4,
        copy_threshold=0.9,
        copy_min_chars=10,
        length_ratio=[],
        length_ratios={},
        length_min_chars=15,
    )
    src = ["This query stays in English", "another source sentence here"]
    out = ["This query stays in English", ""]
    verdicts, lang = g.run_gates(p, None, {}, src, out, [True, False], "por_Latn")
    assert lang is None and len(verdicts) == 5
    # empty output comes first, then truncation (before copy): each row keeps its first failure
    assert first_failure(verdicts).reasons == ["truncated", "empty_output"]
    p.gates = ["copy"]
    verdicts, _ = g.run_gates(p, None, {}, src, out, [True, False], "por_Latn")
    assert first_failure(verdicts).reasons == ["copy", "empty_output"]
