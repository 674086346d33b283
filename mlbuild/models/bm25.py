"""BM25 for multilingual text: ``bm25s`` (sparse-matrix BM25) behind a per-language analyzer.

The analyzer lower-cases, splits text into Unicode words (runs of letters and digits; scripts written
without spaces, such as Chinese, Japanese kana, Thai, Lao, Khmer and Myanmar, become overlapping
character bigrams, as Lucene's CJK analyzer does), and stems with the Snowball stemmer of the language
when PyStemmer has one (:data:`SNOWBALL`: Arabic, Turkish, Russian, English, French... ; Kyrgyz and
Uyghur have none and are only split). The index and the queries must use the same analyzer, so it
belongs to the index: its language is the corpus's language.

API (also what a negative miner pools candidates from)::

    from mlbuild.models.bm25 import BM25

    bm25 = BM25(lang="tur_Latn").index(corpus_texts)       # any iterable of str, streamed
    scores, indices = bm25.search(query_texts, k=100)       # float32 [Q, k], int64 [Q, k]

Rows of the result are sorted by score (desc) then corpus index (asc); when the corpus has fewer than
``k`` documents the tail is ``-inf`` / ``-1`` (the layout of :func:`mlbuild.models.search.exact_topk`).
Documents that share no term with a query score 0 and are not returned (their slots are padding).
Memory: the token ids of the corpus while indexing, then bm25s's sparse score matrix.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .. import langs
from ..errors import requires

log = logging.getLogger(__name__)

BM25S_PIN = "bm25s==0.3.16"
PYSTEMMER_PIN = "PyStemmer==3.1.0"

# ISO 639-3 -> PyStemmer (Snowball) algorithm
SNOWBALL = {
    "ara": "arabic",
    "arb": "arabic",
    "hye": "armenian",
    "eus": "basque",
    "cat": "catalan",
    "ces": "czech",
    "dan": "danish",
    "nld": "dutch",
    "eng": "english",
    "epo": "esperanto",
    "est": "estonian",
    "ekk": "estonian",
    "fin": "finnish",
    "fra": "french",
    "deu": "german",
    "ell": "greek",
    "hin": "hindi",
    "hun": "hungarian",
    "ind": "indonesian",
    "gle": "irish",
    "ita": "italian",
    "lit": "lithuanian",
    "nep": "nepali",
    "npi": "nepali",
    "nor": "norwegian",
    "nob": "norwegian",
    "nno": "norwegian",
    "fas": "persian",
    "pes": "persian",
    "pol": "polish",
    "por": "portuguese",
    "ron": "romanian",
    "rus": "russian",
    "srp": "serbian",
    "sot": "sesotho",
    "spa": "spanish",
    "swe": "swedish",
    "tam": "tamil",
    "tur": "turkish",
    "yid": "yiddish",
}

# scripts written without spaces between words: split into character bigrams
_NOSPACE = "\u0e00-\u0e7f\u0e80-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"([{_NOSPACE}]+)|([^\W_{_NOSPACE}]+)")


def stemmer_name(lang: str | None) -> str | None:
    """The Snowball algorithm for a language code (any form mlbuild accepts), or None."""
    if not lang:
        return None
    try:
        code = langs.normalize(lang)
    except ValueError:
        return None
    return SNOWBALL.get(code.split("_")[0])


def _bm25s():
    mod = requires("bm25s", f"pip install {BM25S_PIN}", "BM25 retrieval")
    # bm25s sets its logger to DEBUG on import; let it follow the application's level again
    logging.getLogger("bm25s").setLevel(logging.NOTSET)
    return mod


class Analyzer:
    """Text -> tokens for one language: lower-case, Unicode words (bigrams for unspaced scripts), Snowball
    stems where a stemmer exists. ``stem=False`` keeps the surface forms."""

    def __init__(self, lang: str | None = None, stem: bool = True):
        self.lang = lang
        self.stemmer_name = stemmer_name(lang) if stem else None
        self._stem = None
        if self.stemmer_name:
            Stemmer = requires("Stemmer", f"pip install {PYSTEMMER_PIN}", "BM25 stemming")
            self._stem = Stemmer.Stemmer(self.stemmer_name)
        self._memo: dict[str, str] = {}

    def words(self, text: str) -> list[str]:
        out: list[str] = []
        for nospace, word in _TOKEN.findall(text.lower()):
            if word:
                out.append(word)
            elif len(nospace) == 1:
                out.append(nospace)
            else:
                out.extend(nospace[i : i + 2] for i in range(len(nospace) - 1))
        return out

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        docs = [self.words(t or "") for t in texts]
        if self._stem is None:
            return docs
        memo = self._memo
        new = list({w for d in docs for w in d if w not in memo})
        if new:
            for w, s in zip(new, self._stem.stemWords(new)):
                memo[w] = s
            if len(memo) > 2_000_000:  # bound the memo on huge vocabularies
                memo.clear()
                return self(texts)
        return [[memo[w] for w in d] for d in docs]

    def describe(self) -> str:
        return f"unicode words, {'snowball ' + self.stemmer_name if self.stemmer_name else 'no stemmer'}"


class BM25:
    """BM25 (bm25s, Lucene's variant by default) over one corpus; ``lang`` picks the analyzer."""

    def __init__(
        self,
        lang: str | None = None,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        stem: bool = True,
        block: int = 10_000,
        threads: int = 0,
    ):
        if not 0.0 <= b <= 1.0 or k1 < 0:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.lang, self.k1, self.b, self.method, self.stem = lang, k1, b, method, stem
        self.block, self.threads = block, threads
        self.analyzer = Analyzer(lang, stem)
        self._index: Any = None
        self._vocab: dict[str, int] = {}
        self.n_docs = 0

    def describe(self) -> dict[str, Any]:
        """Declared config (for manifests and report headers)."""
        return {
            "retriever": "bm25",
            "implementation": "bm25s",
            "method": self.method,
            "k1": self.k1,
            "b": self.b,
            "lang": self.lang,
            "analyzer": self.analyzer.describe(),
        }

    def index(self, texts: Iterable[str], lang: str | None = None) -> BM25:
        """Index the corpus (streamed in blocks of ``block`` texts); returns self. ``lang`` (when given)
        replaces the analyzer's language."""
        bm25s = _bm25s()
        if lang is not None and lang != self.lang:
            self.lang = lang
            self.analyzer = Analyzer(lang, self.stem)
        vocab: dict[str, int] = {}
        ids: list[list[int]] = []
        buf: list[str] = []

        def flush() -> None:
            for toks in self.analyzer(buf):
                ids.append([vocab.setdefault(t, len(vocab)) for t in toks])
            buf.clear()

        for t in texts:
            buf.append(t)
            if len(buf) >= self.block:
                flush()
        flush()
        self.n_docs = len(ids)
        self._vocab = vocab
        if not ids:
            self._index = None
            return self
        vocab.setdefault("", len(vocab))  # the token of queries with no known term (a column of zeros)
        model = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        model.index((ids, dict(vocab)), create_empty_token=False, show_progress=False)
        self._vocab = model.vocab_dict
        self._index = model
        return self

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` documents per query: (scores float32 [Q, k], corpus indices int64 [Q, k])."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        nq = len(queries)
        out_s = np.full((nq, k), -np.inf, dtype=np.float32)
        out_i = np.full((nq, k), -1, dtype=np.int64)
        if nq == 0 or self._index is None:
            return out_s, out_i
        kk = min(k, self.n_docs)
        empty = self._vocab.get("")
        qids = []
        for toks in self.analyzer(list(queries)):
            ids = [self._vocab[t] for t in toks if t in self._vocab]
            qids.append(ids or [empty])
        docs, scores = self._index.retrieve(qids, k=kk, show_progress=False, n_threads=self.threads, return_as="tuple")
        docs = np.asarray(docs, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float32)
        order = np.lexsort((docs, -scores), axis=1)  # score desc, then index asc
        docs = np.take_along_axis(docs, order, axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
        hit = scores > 0
        out_s[:, :kk] = np.where(hit, scores, -np.inf)
        out_i[:, :kk] = np.where(hit, docs, -1)
        return out_s, out_i
