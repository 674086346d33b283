"""Word aligners: symmetrization, IterMax/argmax, span projection rules, eflomal on a small corpus, and the
embedding aligner on a tiny BERT whose identical words have identical layer-0 states."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_tiny_bert import build_tiny_bert

from mlbuild.metrics.projection import aer, alignment_prf, span_prf
from mlbuild.models.align import (
    EflomalAligner,
    EmbeddingAligner,
    argmax_links,
    itermax,
    load_aligner,
    project_span,
    symmetrize,
)
from mlbuild.spans import Span, tokenize


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def test_symmetrize_variants():
    fwd = {(0, 0), (1, 1), (2, 1)}
    rev = {(0, 0), (1, 1), (2, 2)}
    assert symmetrize(fwd, rev, "intersection") == {(0, 0), (1, 1)}
    assert symmetrize(fwd, rev, "union") == fwd | rev
    gdfa = symmetrize(fwd, rev, "grow-diag-final-and")
    assert {(0, 0), (1, 1), (2, 2)} <= gdfa  # (2, 2) is a diagonal neighbour of (1, 1) with both ends free
    with pytest.raises(ValueError):
        symmetrize(fwd, rev, "nope")


def test_argmax_and_itermax():
    sim = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.1], [0.0, 0.1, 0.7]])
    assert set(zip(*np.nonzero(argmax_links(sim)))) == {(0, 0), (2, 2)}
    # itermax gives row 1 its best free column in a second round
    assert set(zip(*np.nonzero(itermax(sim)))) >= {(0, 0), (2, 2)}
    assert len(set(zip(*np.nonzero(itermax(sim))))) == 3


def test_project_span_rules():
    src = tokenize("Maria lives in the city of Lisbon")
    tgt = tokenize("Maria vive na cidade de Lisboa")
    links = {(0, 0), (1, 1), (2, 2), (3, 2), (4, 3), (5, 4), (6, 5)}
    # "the city of Lisbon" -> tokens 3..6 -> target 2..5
    assert project_span(src, tgt, links, 15, 33) == ((11, 30), "ok", 1.0)
    assert project_span(src, tgt, set(), 0, 5) == (None, "unaligned", 0.0)
    assert project_span(src, tgt, links, 5, 6)[1] == "no_tokens"
    # "Maria" aligned to target 0 and 5, with words aligned elsewhere between: discontinuous
    assert project_span(src, tgt, {(0, 0), (0, 5), (1, 1), (5, 3)}, 0, 5)[1] == "discontinuous"
    # a gap of one unaligned target word is bridged; the biggest block wins when one dominates
    span, status, conf = project_span(src, tgt, {(6, 3), (6, 5)}, 27, 33, max_gap=1)
    assert status == "ok" and span == (14, 30)
    span, status, conf = project_span(src, tgt, {(3, 0), (4, 2), (4, 3), (5, 4)}, 15, 26, max_gap=0)
    assert (span, status) == ((11, 23), "ok") and conf == pytest.approx(0.75)


def test_metrics():
    gold = [{(0, 0), (1, 1)}]
    assert aer([{(0, 0), (1, 1)}], gold) == 0.0
    assert aer([{(0, 0), (1, 0)}], gold) == pytest.approx(0.5)
    assert alignment_prf([{(0, 0), (1, 0)}], gold)["precision"] == 0.5
    r = span_prf([[Span(0, 3, "A"), Span(4, 6, "B")]], [[Span(0, 3, "A"), Span(4, 7, "B")]])
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 1) and r["f1"] == 0.5


def test_eflomal_learns_a_tiny_corpus():
    pairs = [
        ("the cat sleeps", "o gato dorme"),
        ("the dog sleeps", "o cão dorme"),
        ("the cat eats", "o gato come"),
        ("the dog eats", "o cão come"),
        ("a cat", "um gato"),
        ("a dog", "um cão"),
    ] * 20
    src = [s.split() for s, _ in pairs]
    tgt = [t.split() for _, t in pairs]
    out = EflomalAligner().align(src, tgt)
    gold = [{(0, 0), (1, 1), (2, 2)}] * 4 + [{(0, 0), (1, 1)}] * 2
    assert aer(out[:6], gold) < 0.2
    assert EflomalAligner().align([["x"], []], [["y"], ["z"]])[1] == set()


@pytest.mark.parametrize("method", ["argmax", "itermax"])
def test_embedding_aligner_tiny_bert(tiny_bert, method):
    al = load_aligner("embedding", model=str(tiny_bert), layer=0, method=method, device="cpu")
    assert isinstance(al, EmbeddingAligner) and al.revision.startswith("sha256:")
    # identical words align; "Lisboa" is two subwords (lis ##boa) that map back to one word
    src = [["Obama", "visited", "Lisboa", "in", "2009"], ["Maria", "lives", "in", "the", "city"]]
    tgt = [["Obama", "visitou", "Lisboa", "em", "2009"], ["the", "city", "Maria", "lives", "in"]]
    links = al.align(src, tgt)
    assert {(0, 0), (2, 2), (4, 4)} <= links[0]
    assert {(0, 2), (1, 3), (2, 4), (3, 0), (4, 1)} <= links[1]


def test_embedding_aligner_checks_layer(tiny_bert):
    with pytest.raises(ValueError, match="layer 9 out of range"):
        EmbeddingAligner(str(tiny_bert), layer=9, device="cpu")
