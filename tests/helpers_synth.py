"""Fakes and a fixed scenario for the ``synthesize_queries.v1`` tests.

:func:`scenario` is the input, parameters and model answers that ``tests/golden/synthesize/split-fixture.json``
was made from: the single global step of commit 96d11aa (before the step ran as stages) run on it with
:class:`FakeLLM` and :class:`FakeEmbedder` (see :func:`outputs_of`). The test compares today's staged
step on the same scenario with that file."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np
import polars as pl

WORD = re.compile(r"\w+")


class FakeLLM:
    """Answers from the prompt: ``answers(passage, prompt)`` where ``passage`` is the prompt's last passage
    line (the summary stage and the question stage both show it)."""

    id, revision = "fake-lm", "r1"

    def __init__(self, answers):
        self.answers = answers
        self.usage = {"generated_tokens": 0, "seconds": 0.0, "prompts": 0}
        self.calls: list[str] = []

    def generate(self, prompts, **kw):
        out = []
        for p in prompts:
            self.calls.append(p)
            found = re.findall(r"Passage \([^)]*\): (.*)", p)
            a = self.answers(found[-1] if found else "", p)
            out.append(a)
            self.usage["generated_tokens"] += len(a.split())
        self.usage["seconds"] += 0.5
        self.usage["prompts"] += len(prompts)
        return out


class FakeEmbedder:
    """Bag of hashed words (4+ letters), L2-normalised: a query shares words with its passage."""

    id, revision = "fake-embed", "e1"

    def __init__(self):
        self.calls: list[tuple[str, int]] = []

    def embed(self, texts, kind="passage"):
        self.calls.append((kind, len(texts)))
        out = np.zeros((len(texts), 256), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in WORD.findall(t.casefold()):
                if len(w) > 3:
                    out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 256] += 1
        n = np.linalg.norm(out, axis=1, keepdims=True)
        n[n == 0] = 1
        return out / n


# ------------------------------------------------------------------------------------------ the scenario
EN = [
    ("river", "the river carries water from the mountains to the sea every single day of the year"),
    ("bees", "honey bees dance in the hive to show the other bees where the flowers are found"),
    ("train", "the train station is in the middle of the town next to the old market square"),
    ("castle", "the old castle on the hill was built by a king who loved tall stone towers"),
    ("bread", "fresh bread is baked every morning in the small bakery at the corner of the street"),
    ("moon", "the moon pulls on the oceans and makes the tides rise and fall twice a day"),
    ("forest", "tall pine trees cover the northern forest where wolves and bears still live"),
    ("library", "the city library lends books and films and has a quiet reading room upstairs"),
]
PT = [
    ("rio", "o rio leva a água das montanhas até o mar todos os dias do ano inteiro"),
    ("abelhas", "as abelhas dançam na colmeia para mostrar onde estão as flores do campo"),
    ("praia", "a praia tem areia branca e água morna durante todo o verão no nordeste"),
    ("feira", "a feira da cidade vende frutas e legumes frescos todas as manhãs de sábado"),
]
# per topic and query language: the questions the fake model writes (q0 / q1 chosen by the prompt hash)
ANSWERS: dict[tuple[str, str], Any] = {
    ("river", "English"): "Where does the river water go?",
    ("river", "Portuguese"): "Para onde vai a água do rio?",
    ("bees", "English"): ("Why do honey bees dance in the hive?", "Why do the honey bees dance in their hive?"),
    ("bees", "Portuguese"): "Por que as abelhas dançam?",
    ("train", "English"): "Where is the train station?",
    ("train", "Portuguese"): "Onde fica a estação de trem?",
    ("castle", "English"): None,  # no question line
    ("castle", "Portuguese"): "Quem construiu o castelo?",
    ("bread", "English"): "why?",  # too short
    ("bread", "Portuguese"): "Onde fica a padaria da esquina?",
    ("moon", "English"): "Passage: what pulls the oceans?",  # template label
    ("moon", "Portuguese"): "O que puxa os oceanos?",
    ("forest", "English"): "Why is octopus blood blue?",  # an exemplar's question
    ("forest", "Portuguese"): "Que animais vivem na floresta?",
    ("library", "English"): "the city library lends books and films and has a quiet reading room?",  # copied
    ("library", "Portuguese"): "Onde fica a estação de trem?",  # round trip: names another passage
    ("rio", "Portuguese"): "Para onde vai a água do rio?",
    ("abelhas", "Portuguese"): ("Por que as abelhas dançam na colmeia?", "Onde estão as flores do campo?"),
    ("praia", "Portuguese"): "Como é a areia da praia?",
    ("feira", "Portuguese"): "O que vende a feira da cidade?",
}
TOPIC = {text: topic for topic, text in EN + PT}


def scenario_table() -> pl.DataFrame:
    rows = [(f"en-{t}", text, "en") for t, text in EN] + [(f"pt-{t}", text, "pt") for t, text in PT]
    rows.insert(3, ("en-empty", "", "en"))
    return pl.DataFrame(
        {
            "row_id": [f"r{i:02d}" for i in range(len(rows))],
            "doc_id": [r[0] for r in rows],
            "passage": [r[1] for r in rows],
            "plang": [r[2] for r in rows],
        }
    )


SCENARIO_PARAMS = {
    "passage_lang": "plang",
    "target_langs": ["por_Latn"],
    "queries_per_passage": 2,
    "sample": 7,
    "lid_model": None,
    "embed_model": "fake",
    "roundtrip_top_k": 1,
    "seed": 2,
}


def _question(passage: str, lang: str, prompt: str) -> str | None:
    a = ANSWERS[(TOPIC[passage], lang)]
    if isinstance(a, tuple):
        a = a[int(hashlib.md5(prompt.encode()).hexdigest(), 16) % 2]
    return a


def single_answer(passage: str, prompt: str) -> str:
    """The v1-style answer: a summary line, then ``Question in <lang>: ...``."""
    lang = re.findall(r"Question in (\w+):", prompt)[-1]
    q = _question(passage, lang, prompt)
    summary = " ".join(passage.split()[:6])
    return f" {summary}" if q is None else f" {summary}\nQuestion in {lang}: {q}\n"


def outputs_of(out) -> dict[str, Any]:
    """What the golden file holds: kept rows (sorted by row_id) and (row_id, reason) of the rejects."""
    cols = ["row_id", "query", "summary", "lang", "query_id", "doc_id", "passage_lang", "generator", "roundtrip_rank"]
    rows = out.rows.select(cols).sort("row_id").to_dicts()
    rej = sorted(zip(out.rejects["row_id"].to_list(), out.rejects["reason"].to_list()))
    return {"rows": rows, "rejects": [list(r) for r in rej]}
