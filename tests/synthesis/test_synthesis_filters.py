"""Each synthesis filter alone (pure functions returning a Verdict), and the text parsing of staged output."""

from __future__ import annotations

import numpy as np
import pytest

from mlbuild.resources import packaged
from mlbuild.synthesis import filters as SF
from mlbuild.synthesis.prompts import load_exemplars, topic_words
from mlbuild.synthesis.roundtrip import first_occurrences, lookup, own_ranks
from mlbuild.synthesis.text import parse_generation, parse_line, parse_question

POOL = load_exemplars(packaged("exemplars/swim.v1.jsonl"))
EN = "eng_Latn"
P_RIVER = "the river carries water from the mountains to the sea every single day of the year"


# ------------------------------------------------------------------------------------------ parsing
def test_parse_generation_single_call():
    assert parse_generation(" The river is long.\nQuestion in English: How long is it?\n") == (
        "The river is long.",
        "How long is it?",
    )
    assert parse_generation("Summary: A b c.\n**Question (English):** Why?") == ("A b c.", "Why?")
    assert parse_generation(" just a summary with no question") == ("just a summary with no question", "")
    assert parse_generation("Question in English: what?")[1] == "what?"
    # the localized header of template v2 in single mode
    assert parse_generation(" Un resumen.\nPregunta: ¿Qué es?", label="Pregunta") == ("Un resumen.", "¿Qué es?")


def test_parse_staged_output_stops_at_the_end_of_the_question():
    assert parse_line(" The river   is long.\nQuestion: x") == "The river is long."
    assert parse_question(" Where does it go?\n\nPassage: more") == "Where does it go?"
    # a second question on the same line is not part of the first
    assert parse_question(" ¿Dónde está? ¿Y cuándo llegó?") == "¿Dónde está?"
    assert parse_question(" **What was the**") == "What was the"
    assert parse_question(" 東京はどこですか？ 次") == "東京はどこですか？"
    assert parse_question("\n") == ""


# ------------------------------------------------------------------------------------------ filters
def test_parse_failures():
    v = SF.parse_failures(["a b c", "a b c", "a"], ["Why?", "", "Why is it so?"], 3)
    assert v.reasons == [None, "parse_no_query", "parse_no_summary"]
    assert v.details[2] == "summary of 1 words"


@pytest.mark.parametrize(
    ("query", "lang", "reason"),
    [
        ("What was the", EN, "query_truncated"),
        ("Where does the river", EN, "query_truncated"),
        ("What was the?", EN, "query_dangling"),
        ("Who founded the city and?", EN, "query_dangling"),
        ("What is it made of?", EN, None),  # English strands prepositions
        ("Where does the river water go?", EN, None),
        ("«Where does it go?»", EN, None),
        ("¿Qué es el?", "spa_Latn", "query_dangling"),
        ("¿De dónde viene el agua de?", "spa_Latn", "query_dangling"),
        ("¿Qué destruyó el faro de Alejandría?", "spa_Latn", None),
        ("Τι είναι αυτό;", "ell_Grek", None),
        ("Where is it;", EN, "query_truncated"),
        ("", EN, None),  # no query: the parse filter's case
    ],
)
def test_unfinished_truncated_or_dangling(query, lang, reason):
    assert SF.unfinished([query], [lang]).reasons == [reason]


def test_query_length():
    long_q = " ".join(["word"] * 45) + "?"
    v = SF.query_length(["why?", "where does it go?", long_q, ""], 3, 40)
    assert v.reasons == ["query_too_short", None, "query_too_long", None]
    assert v.details[0] == "1 words < 3" and v.details[2] == "45 words > 40"


def test_template_echo_each_rule():
    exs = POOL[:3]  # lighthouse, octopus, printing press
    topic = topic_words(POOL)
    queries = [
        "Passage: where does the river go?",  # a template label
        "Why is octopus blood blue?",  # an exemplar's question
        "Do honey bees have three hearts like an octopus?",  # two topic words of the octopus exemplar
        "Who invented the river?",  # 3 of 4 words from the printing-press question
        "Where does the river water go?",
    ]
    v = SF.template_echo(queries, [P_RIVER] * 5, [exs] * 5, [EN] * 5, topic, 0.75)
    assert v.reasons == ["template_echo"] * 4 + [None]
    assert "label" in v.details[0] and "en-octopus's question" in v.details[1]
    assert v.details[2].startswith("words from exemplar en-octopus") and "from exemplar en-printing" in v.details[3]
    # a word the passage has is not borrowed
    v = SF.template_echo(["Why is the octopus blood blue here?"], ["octopus blood is blue"], [exs], [EN], topic, 0.9)
    assert v.reasons == [None]


def test_copied_from_passage():
    qs = ["the river carries water from the mountains to the sea every single day?", "where does the water go?"]
    v = SF.copied_from_passage(qs, [P_RIVER, P_RIVER], 10, 0.8)
    assert v.reasons == ["copied_from_passage", None]
    assert v.details[0] == "13 of 13 words verbatim from the passage"
    # a short query mostly made of a passage run
    assert SF.copied_from_passage(["the mountains to the sea?"], [P_RIVER], 10, 0.8).reasons == ["copied_from_passage"]


def test_wrong_language(tiny_lid):
    from mlbuild.models.lid import DEFAULT_CONFUSABLE, FastTextLID, families_index

    lid = FastTextLID(str(tiny_lid))
    v, counts = SF.wrong_language(
        lid,
        ["where is the train station?", "onde fica a estação de trem?"],
        [EN, EN],
        0.0,
        families_index(DEFAULT_CONFUSABLE),
    )
    assert v.reasons == [None, "wrong_language"] and "por" in v.details[1]
    assert set(counts) == {"confusable_accepted", "short_text_accepted"}
    assert SF.wrong_language(lid, [], [], 0.0, {})[0].reasons == []


def test_near_duplicates_per_key():
    qs = [
        "Where does the river water go?",
        "Where does the river water go to?",
        "where does the river water go",
        "Who built the old bridge?",
        "Where does the river water go?",
    ]
    keys = [("d0", EN)] * 4 + [("d1", EN)]
    v = SF.near_duplicates(keys, qs, [0, 1, 2, 3, 0], 0.8)
    assert v.reasons == [None, "duplicate_near", "duplicate_exact", None, None]
    assert v.details[2] == "same as 0" and v.details[1].startswith("3-gram Jaccard")


def test_roundtrip_verdict_and_ranks():
    v = SF.roundtrip([1, None, 3, None], [True, True, True, False], 2)
    assert v.reasons == [None, "roundtrip_failed", "roundtrip_failed", None]
    # ranks from a top-k list: 1 + the passages scoring strictly above the own one, -1 below the top k
    scores = np.array([[0.9, 0.8], [0.9, 0.8], [0.9, 0.8], [0.5, -np.inf]], dtype=np.float32)
    idx = np.array([[3, 0], [3, 0], [3, 0], [0, -1]])
    own = np.array([0, 3, 5, 0])
    own_score = np.array([0.8, 0.9, 0.1, 0.5], dtype=np.float32)
    assert own_ranks(scores, idx, own, own_score, 2).tolist() == [2, 1, -1, 1]
    assert own_ranks(scores[:1], idx[:1], np.array([-1]), np.array([np.inf]), 2).tolist() == [-1]


def test_corpus_ids_first_occurrence_and_lookup():
    h = np.array([7, 3, 7, 9, 3], dtype=np.uint64)
    keep, uniq, pos = first_occurrences(h)
    assert keep.tolist() == [True, True, False, True, False]
    # kept entries in order: 7 -> 0, 3 -> 1, 9 -> 2
    assert lookup(uniq, pos, np.array([3, 7, 9, 4], dtype=np.uint64)).tolist() == [1, 0, 2, -1]
    assert lookup(uniq[:0], pos[:0], np.array([3], dtype=np.uint64)).tolist() == [-1]
