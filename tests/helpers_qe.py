"""QE test doubles, clearly not models: ``WordsEmbedder`` (a TEST STAND-IN for a multilingual sentence encoder)
embeds a text as the normalised sum of fixed random vectors of its words, after mapping the words of a small
bilingual glossary to their English side, so a "translation" made of glossary words lands near its source and
far from other sources. It is a real :class:`~mlbuild.models.embed.Embedder` subclass, so the QE code runs its
real paths (normalisation, the model-call cache, margins); ``calls`` counts the texts it embedded.

``use_words_embedder(monkeypatch)`` makes :class:`~mlbuild.qe.embedding.EmbeddingQE` load it whatever the
model name, for step and recipe tests (the real encoders are exercised in the slow tests).
"""

from __future__ import annotations

import hashlib

import numpy as np

from mlbuild.models.embed import Embedder

GLOSSARY = {
    "o": "the",
    "a": "the",
    "gato": "cat",
    "senta": "sits",
    "no": "on",
    "tapete": "mat",
    "um": "a",
    "cão": "dog",
    "corre": "runs",
    "parque": "park",
    "onde": "where",
    "fica": "is",
    "estação": "station",
    "eu": "i",
    "gosto": "like",
    "de": "of",
    "chá": "tea",
    "verde": "green",
    "livro": "book",
    "bom": "good",
    "rio": "river",
    "janela": "window",
    "abra": "open",
    "tempo": "weather",
    "hoje": "today",
}


# genuine English-Portuguese pairs over the words WordsEmbedder knows (shared by the QE tests)
PAIRS = [
    ("the cat sits on the mat", "o gato senta no tapete"),
    ("a dog runs in the park", "um cão corre no parque"),
    ("where is the station", "onde fica a estação"),
    ("i like green tea", "eu gosto de chá verde"),
    ("this is a good book", "este é um livro bom"),
    ("open the window", "abra a janela"),
    ("the weather is good today", "o tempo está bom hoje"),
    ("we walk to the river", "nós andamos até o rio"),
    ("the green book", "o livro verde"),
    ("i like the park", "eu gosto do parque"),
]


class WordsEmbedder(Embedder):
    """TEST STAND-IN, not a model: bag of fixed random word vectors over glossary-mapped words."""

    engine = "test-words"
    id = "test-words"
    revision = "1"
    dim = 64

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = 0

    def _word(self, w: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(w.encode()).digest()[:4], "little")
        return np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)

    def _encode(self, texts: list[str], kind: str) -> np.ndarray:
        self.calls += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().replace(".", " ").split():
                out[i] += self._word(GLOSSARY.get(w, w))
        return out


def use_words_embedder(monkeypatch) -> WordsEmbedder:
    """Make EmbeddingQE load one shared :class:`WordsEmbedder` (returned, to count its calls)."""
    from mlbuild.qe import embedding

    emb = WordsEmbedder()
    monkeypatch.setattr(embedding, "load_embedder", lambda *a, **k: emb)
    return emb
