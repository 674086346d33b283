"""A tiny retrieval benchmark written by the tests: an English BEIR folder (10 documents, 6 judged
queries) and Portuguese translations of its queries (for a fake MT endpoint)."""

from __future__ import annotations

import json
from pathlib import Path

DOCS = {
    "d1": ("Tea", "Green tea is made from leaves that are not oxidized and is popular in Japan."),
    "d2": ("Coffee", "Brazil is the largest producer of coffee beans in the world."),
    "d3": ("Rivers", "The Amazon river carries more water than any other river."),
    "d4": ("Cats", "Cats sleep between twelve and sixteen hours every day."),
    "d5": ("Volcanoes", "A volcano erupts when magma rises to the surface of the earth."),
    "d6": ("Bees", "Bees make honey from the nectar of flowers."),
    "d7": ("Moon", "The moon has no atmosphere and its surface is covered in dust."),
    "d8": ("Trains", "High speed trains in France run faster than three hundred kilometres per hour."),
    "d9": ("Chess", "Chess is a board game for two players with sixteen pieces each."),
    "d10": ("Bread", "Bread is baked from flour, water, salt and yeast."),
}
QUERIES = {
    "q1": "Which country produces the most coffee?",
    "q2": "How many hours do cats sleep?",
    "q3": "Which river carries the most water?",
    "q4": "How do bees make honey?",
    "q5": "How fast are trains in France?",
    "q6": "What is bread made from?",
    "q7": "A query that nobody judged",
}
QRELS = [("q1", "d2", 1), ("q2", "d4", 1), ("q3", "d3", 1), ("q4", "d6", 2), ("q4", "d1", 0), ("q5", "d8", 1)]
QRELS += [("q6", "d10", 1)]
PT = {
    "Which country produces the most coffee?": "Qual país produz mais café?",
    "How many hours do cats sleep?": "Quantas horas os gatos dormem?",
    "Which river carries the most water?": "Qual rio carrega mais água?",
    "How do bees make honey?": "Como as abelhas fazem mel?",
    "How fast are trains in France?": "Quão rápidos são os trens na França?",
    "What is bread made from?": "De que é feito o pão?",
}


def write_benchmark(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as f:
        for d, (title, text) in DOCS.items():
            f.write(json.dumps({"_id": d, "title": title, "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as f:
        for q, text in QUERIES.items():
            f.write(json.dumps({"_id": q, "text": text}) + "\n")
    (folder / "qrels").mkdir(exist_ok=True)
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in QRELS]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def translate_reply(body: dict) -> str:
    """A fake MT endpoint: the prompt is the text itself; English -> Portuguese by the table."""
    return PT.get(body["messages"][-1]["content"].strip(), "?")


RECIPE = """
[dataset]
name = "tiny-bench"
version = "0.1.0"
license = "cc-by-4.0"

[source]
uses = "beir.v1"
path = "bench"

[[steps]]
id = "translate_queries"
uses = "translate.v1"
columns = ["query"]
source_lang = "en"
target_langs = ["pt"]
engine = "openai"
model = "fake-mt"
base_url = "{base_url}"
api_key_env = "TINY_MT_KEY"
prompt = "{{text}}"
segment = "none"
keep_source = true
gates = ["copy"]
{extra_steps}
[output]
config_by = "lang"
format = {formats}
"""


def build(tmp_path: Path, monkeypatch, formats: str = '["hf", "mteb"]', extra_steps: str = "") -> Path:
    """Run the recipe (beir.v1 -> translate.v1 with a fake endpoint) and return the version folder."""
    from helpers_http import FakeOpenAIServer

    from mlbuild.pipeline.runner import Runner
    from mlbuild.recipe import load_recipe

    write_benchmark(tmp_path / "bench")
    monkeypatch.setenv("TINY_MT_KEY", "sk-test")
    with FakeOpenAIServer(translate_reply) as srv:
        recipe = tmp_path / "recipe.toml"
        recipe.write_text(
            RECIPE.format(base_url=srv.base_url, formats=formats, extra_steps=extra_steps), encoding="utf-8"
        )
        res = Runner(load_recipe(recipe), tmp_path / "out", quiet=True).run()
    return res.dataset_dir
