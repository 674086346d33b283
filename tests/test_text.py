from __future__ import annotations

import random

import pytest

from mlbuild.text import copy_similarity, length_ratio, reassemble, repetition, segments, split_segments

CASES = [
    "One. Two!\n\nThree?",
    "  Mr. Smith went to Washington. He saw the U.S. Capitol.\nThen e.g. nothing.  ",
    "J. K. Rowling wrote it. Version 3.5 is out! Really?? Yes.",
    "我喜欢茶。你呢？好的",
    'He said "Stop." Then left.',
    "Line one\n  indented line two\r\n\r\nLast paragraph.\t",
    "",
    "   \n ",
    "no punctuation at all",
    "Dr. No. Prof. X said so. Fine.",
]


@pytest.mark.parametrize("text", CASES)
@pytest.mark.parametrize("mode", ["sentence", "none"])
def test_round_trip_is_exact(text, mode):
    parts = split_segments(text, mode)
    assert "".join(parts) == text
    assert reassemble(parts, segments(parts)) == text
    assert all(s.strip() == s and s for s in segments(parts))  # segments carry no outer whitespace


def test_sentences_and_paragraphs():
    parts = split_segments("  Mr. Smith went to Washington. He saw the U.S. Capitol.\nThen e.g. nothing.  ")
    assert segments(parts) == ["Mr. Smith went to Washington.", "He saw the U.S. Capitol.", "Then e.g. nothing."]
    assert parts[0] == "  " and parts[-1] == "  " and parts[4] == "\n"
    assert segments(split_segments("J. K. Rowling wrote it. Version 3.5 is out! Really?? Yes.")) == [
        "J. K. Rowling wrote it.",
        "Version 3.5 is out!",
        "Really??",
        "Yes.",
    ]
    assert segments(split_segments("我喜欢茶。你呢？好的")) == ["我喜欢茶。", "你呢？", "好的"]
    assert segments(split_segments('He said "Stop." Then left.')) == ['He said "Stop."', "Then left."]


def test_reassembly_keeps_paragraph_breaks():
    text = "First sentence. Second one.\n\nNew paragraph here.\n  Indented."
    parts = split_segments(text)
    out = reassemble(parts, [s.upper() for s in segments(parts)])
    assert out == "FIRST SENTENCE. SECOND ONE.\n\nNEW PARAGRAPH HERE.\n  INDENTED."
    with pytest.raises(ValueError):
        reassemble(parts, ["too few"])


def test_long_segments_are_cut_and_rejoined():
    text = ("word " * 120).strip() + ". " + "Short, one; two: three, " * 20 + "end."
    parts = split_segments(text, max_chars=100)
    assert "".join(parts) == text
    assert all(len(s) <= 100 for s in segments(parts))
    random.seed(0)
    blob = " ".join("".join(random.choice("abc ,.!?\n") for _ in range(30)) for _ in range(40))
    for m in (None, 17):
        assert "".join(split_segments(blob, max_chars=m)) == blob


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown segmentation mode"):
        split_segments("x", "paragraph")


def test_repetition():
    assert repetition("the the the the cat") == "'the' x4"
    assert repetition("a b c a b c a b c a b c") == "'a b c' x4"
    assert repetition("this is a perfectly fine sentence with words") is None
    assert repetition("very very good") is None
    assert repetition("哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈") is not None
    assert repetition("... ... ... ... ...") is None  # punctuation runs are not loops
    words = "one two three four five".split()
    assert repetition(" ".join([*words * 3, "and", "then", "it", "stopped"])) == "'one two three four five' x3"


def test_copy_similarity_and_length_ratio():
    assert copy_similarity("Hello, World!", "hello world") == 1.0
    assert copy_similarity("The cat sits on the mat", "O gato senta no tapete") < 0.3
    assert 0.6 < copy_similarity("The cat sits on the mat today", "The cat sits on a mat today") < 1.0
    assert length_ratio("abcd", "ab cd ef gh") == 2.0
    assert length_ratio("", "") == 0.0 and length_ratio("", "x") == float("inf")
