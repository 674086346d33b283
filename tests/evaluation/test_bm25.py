"""BM25 (bm25s behind a per-language analyzer): tokenisation, stemming, Lucene scores, result layout."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlbuild.models.bm25 import BM25, Analyzer, stemmer_name


def test_analyzer_stems_where_snowball_has_the_language_and_splits_otherwise():
    assert stemmer_name("tr") == "turkish" and stemmer_name("tur_Latn") == "turkish"
    assert stemmer_name("ky") is None and stemmer_name("ug") is None and stemmer_name(None) is None
    assert Analyzer("tr")(["Kitapları okuyorum"]) == [["kitap", "okuyor"]]
    assert Analyzer("en")(["The running cats"]) == [["the", "run", "cat"]]
    # no stemmer: plain Unicode words, lower-cased, punctuation and underscores dropped
    assert Analyzer("ky")(["Китептерди окуйм, 2024-жылы!"]) == [["китептерди", "окуйм", "2024", "жылы"]]
    assert Analyzer("ug")(["ئۇيغۇر تىلى"]) == [["ئۇيغۇر", "تىلى"]]
    # scripts without spaces: character bigrams
    assert Analyzer("ja")(["東京に行く"]) == [["東京", "京に", "に行", "行く"]]
    assert Analyzer(None)(["a_b 猫"]) == [["a", "b", "猫"]]


def _lucene(corpus: list[list[str]], query: list[str], k1: float = 1.5, b: float = 0.75) -> list[float]:
    """Lucene's BM25 by its formula (the test oracle): idf = ln(1 + (N - df + 0.5) / (df + 0.5))."""
    n = len(corpus)
    avgdl = sum(len(d) for d in corpus) / n
    out = []
    for d in corpus:
        s = 0.0
        for t in set(query):
            df = sum(t in x for x in corpus)
            if not df:
                continue
            tf = d.count(t)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            s += idf * tf / (tf + k1 * (1 - b + b * len(d) / avgdl))
        out.append(s)
    return out


def test_scores_are_lucene_bm25_and_rows_are_sorted_and_padded():
    docs = ["red apple red pie", "green apple", "blue sky over the sea", "apple apple apple tree", "pie"]
    bm = BM25(lang=None).index(docs)
    assert bm.n_docs == 5
    scores, idx = bm.search(["apple pie", "sky", "unknownword", "red"], k=7)
    assert scores.shape == (4, 7) and idx.dtype == np.int64
    an = Analyzer(None)
    oracle = _lucene(an(docs), an(["apple pie"])[0])
    want = sorted(((-s, i) for i, s in enumerate(oracle) if s > 0))
    assert idx[0, : len(want)].tolist() == [i for _, i in want]
    assert scores[0, : len(want)] == pytest.approx([-s for s, _ in want], rel=1e-5)
    assert idx[0, len(want) :].tolist() == [-1] * (7 - len(want)) and np.isneginf(scores[0, len(want) :]).all()
    assert idx[1, 0] == 2 and (idx[1, 1:] == -1).all()
    assert (idx[2] == -1).all()  # no known term: nothing retrieved
    assert idx[3, 0] == 0


def test_ties_break_by_corpus_index_and_empty_corpus():
    bm = BM25().index(["same words", "same words", "same words", "other"])
    _, idx = bm.search(["same"], k=3)
    assert idx[0].tolist() == [0, 1, 2]
    s, i = BM25().index([]).search(["x"], k=2)
    assert (i == -1).all() and np.isneginf(s).all()
    with pytest.raises(ValueError, match="k must be"):
        bm.search(["x"], k=0)


def test_stemming_makes_inflected_forms_match():
    docs = ["evlerde kitaplar var", "arabalar yolda"]
    stemmed = BM25(lang="tr").index(docs)
    plain = BM25(lang="tr", stem=False).index(docs)
    assert stemmed.search(["kitap"], k=1)[1][0, 0] == 0
    assert plain.search(["kitap"], k=1)[1][0, 0] == -1
    assert stemmed.describe()["analyzer"] == "unicode words, snowball turkish"
