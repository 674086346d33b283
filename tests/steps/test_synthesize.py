from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers_http import FakeOpenAIServer

from mlbuild.errors import RecipeError
from mlbuild.pipeline.base import RunContext
from mlbuild.pipeline.cache import CallCache
from mlbuild.pipeline.runner import Runner
from mlbuild.recipe import load_recipe
from mlbuild.resources import packaged
from mlbuild.steps import synthesize as S
from mlbuild.steps.synthesize import (
    PromptBuilder,
    SynthesizeParams,
    SynthesizeQueries,
    load_exemplars,
    parse_generation,
    pick_exemplars,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "synthesize"
TEMPLATE = packaged("prompts/summarize-then-ask.v1.j2")
EXEMPLARS = packaged("exemplars/swim.v1.jsonl")
PASSAGE = (
    "The Amazon River carries more water than any other river on Earth. Its basin covers about seven "
    "million square kilometres across nine countries."
)


# ------------------------------------------------------------------------------------------ prompts
def builder() -> PromptBuilder:
    return PromptBuilder(TEMPLATE, load_exemplars(EXEMPLARS))


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
def test_rendered_prompts_match_golden(name, plang, target, shots, title, passage):
    b = builder()
    text = b.render(passage, plang, target, title, pick_exemplars(b.exemplars, plang, target, shots))
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("MLBUILD_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")
    assert text.endswith("Summary:") and b.version == "v1" and b.name == "summarize-then-ask.v1"
    assert text.count(f"Question in {S.langs.display_name(target)}:") == shots


def test_exemplar_choice_prefers_passage_language_then_others():
    pool = load_exemplars(EXEMPLARS)
    mono = pick_exemplars(pool, "spa_Latn", "spa_Latn", 3)
    assert [e.lang for e in mono] == ["spa_Latn"] * 3
    cross = pick_exemplars(pool, "por_Latn", "eng_Latn", 5)
    assert [e.lang for e in cross] == ["por_Latn"] * 3 + ["spa_Latn"] * 2
    assert pick_exemplars(pool, "kir_Cyrl", "kir_Cyrl", 3) == []
    import random

    rotated = pick_exemplars(pool, "eng_Latn", "eng_Latn", 3, random.Random(1))
    assert {e.lang for e in rotated} == {"eng_Latn"}


def test_parse_generation():
    assert parse_generation(" The river is long.\nQuestion in English: How long is it?\n") == (
        "The river is long.",
        "How long is it?",
    )
    assert parse_generation("Summary: A b c.\n**Question (English):** Why?") == ("A b c.", "Why?")
    assert parse_generation(" just a summary with no question") == ("just a summary with no question", "")
    assert parse_generation("Question in English: what?")[1] == "what?"


# ------------------------------------------------------------------------------------------ fakes
class FakeLLM:
    """Answers by the passage of the prompt (its last 'Passage (...):' line)."""

    id, revision = "fake-lm", "r1"

    def __init__(self, answers):
        self.answers = answers
        self.usage = {"generated_tokens": 0, "seconds": 0.0, "prompts": 0}
        self.calls: list[str] = []

    def generate(self, prompts, **kw):
        out = []
        for p in prompts:
            self.calls.append(p)
            passage = re.findall(r"Passage \([^)]*\): (.*)", p)[-1]
            a = self.answers(passage, p) if callable(self.answers) else self.answers[passage]
            out.append(a)
            self.usage["generated_tokens"] += len(a.split())
        self.usage["seconds"] += 0.5
        self.usage["prompts"] += len(prompts)
        return out


class FakeEmbedder:
    """Bag of hashed words, L2-normalised: a query shares words with its passage."""

    id, revision = "fake-embed", "e1"

    def embed(self, texts, kind="passage"):
        out = np.zeros((len(texts), 256), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in S.words(t):
                if len(w) > 3:
                    out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 256] += 1
        n = np.linalg.norm(out, axis=1, keepdims=True)
        n[n == 0] = 1
        return out / n


def make_step(
    monkeypatch, answers, *, tiny_lid=None, embed=False, ctx=None, **kw
) -> tuple[SynthesizeQueries, FakeLLM]:
    fake = FakeLLM(answers)
    monkeypatch.setattr(S, "_load_llm", lambda p, base, device, **kw: fake)
    monkeypatch.setattr(S, "_load_embedder", lambda p, base, device, cache_dir: FakeEmbedder())
    kw.setdefault("lid_model", str(tiny_lid) if tiny_lid else None)
    if embed:
        kw.setdefault("embed_model", "fake")
    step = SynthesizeQueries(SynthesizeParams(**kw), ctx or RunContext())
    step.setup()
    return step, fake


def passages(texts: list[str], **cols) -> pl.DataFrame:
    n = len(texts)
    return pl.DataFrame(
        {"row_id": [f"r{i}" for i in range(n)], "doc_id": [f"d{i}" for i in range(n)], "passage": texts, **cols}
    )


ANS = " {s}\nQuestion in English: {q}\n"
P_RIVER = "the river carries water from the mountains to the sea every single day of the year"
P_BEES = "honey bees dance in the hive to show the other bees where the flowers are found"
P_TRAIN = "the train station is in the middle of the town next to the old market square"


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
    }
    texts = [f"{P_RIVER} ({k})" for k in crafted]

    def answers(passage, prompt):
        key = passage.rsplit("(", 1)[1].rstrip(")")
        s, q = crafted[key]
        return f" {s}" if q is None else ANS.format(s=s, q=q)

    step, fake = make_step(monkeypatch, answers, tiny_lid=tiny_lid, passage_lang="en")
    out = step.process_table(passages(texts))
    reasons = dict(zip(out.rejects["doc_id"].to_list(), out.rejects["reason"].to_list()))
    want = {
        "d1": "parse_no_query",
        "d2": "parse_no_summary",
        "d3": "query_too_short",
        "d4": "query_too_long",
        "d5": "template_echo",
        "d6": "template_echo",
        "d7": "template_echo",
        "d8": "copied_from_passage",
        "d9": "wrong_language",
    }
    assert reasons == want
    assert out.rows["doc_id"].to_list() == ["d0"]
    row = out.rows.row(0, named=True)
    assert row["query"] == "where does the river water go?" and row["summary"] == "the river carries water to the sea"
    assert row["lang"] == "eng_Latn" and row["passage_lang"] == "eng_Latn"
    assert row["row_id"] == "r0/eng_Latn/0" and row["query_id"] == "d0/eng_Latn/0"
    assert row["generator"] == "fake-lm|summarize-then-ask.v1"
    assert "generation" in out.rejects.columns and out.rejects["detail"].null_count() == 0
    s = out.stats["synthesis"]["eng_Latn"]
    assert s["generated"] == 10 and s["kept"] == 1 and sum(s["dropped"].values()) == 9
    assert s["lid_checked"] == 2 and s["lid_passed"] == 1


def test_duplicates_per_passage_and_language(monkeypatch):
    step, fake = make_step(
        monkeypatch,
        lambda passage, p: ANS.format(s="the river carries water", q="Where does the river water go?"),
        passage_lang="en",
        queries_per_passage=3,
    )
    out = step.process_table(passages([P_RIVER]))
    assert out.rows.height == 1
    assert out.rejects["reason"].to_list() == ["duplicate_exact", "duplicate_exact"]
    assert out.rejects["row_id"].to_list() == ["r0/eng_Latn/1", "r0/eng_Latn/2"]
    # near duplicates, checked on the filter itself
    jobs = [(0, "eng_Latn", q, []) for q in range(3)]
    queries = ["Where does the river water go?", "Where does the river water go to?", "Who built the old bridge?"]
    reasons, details = [None] * 3, [None] * 3
    step._dedupe(jobs, ["d0"], queries, reasons, details)
    assert reasons == [None, "duplicate_near", None]


def test_roundtrip_rank_column_and_filter(monkeypatch):
    texts = [P_RIVER, P_BEES, P_TRAIN]
    qs = {
        P_RIVER: "where does the river water go?",
        P_BEES: "where is the train station in town?",
        P_TRAIN: "where is the train station located?",
    }
    step, _ = make_step(
        monkeypatch,
        lambda passage, p: ANS.format(s="a b c d", q=qs[passage]),
        passage_lang="en",
        embed=True,
        roundtrip_top_k=1,
    )
    assert "roundtrip_rank" in step.output_columns(["passage"])
    out = step.process_table(passages(texts))
    assert out.rows["doc_id"].to_list() == ["d0", "d2"]
    assert out.rows["roundtrip_rank"].to_list() == [1, 1]
    rej = out.rejects.row(0, named=True)
    assert rej["reason"] == "roundtrip_failed" and rej["roundtrip_rank"] == 2
    s = out.stats["synthesis"]["eng_Latn"]
    assert s["roundtrip_checked"] == 3 and s["roundtrip_passed"] == 2
    assert step.ctx.models["embedder"]["id"] == "fake-embed"


def test_cross_lingual_languages_ids_and_shots(monkeypatch):
    def answers(passage, prompt):
        lang = re.findall(r"Question in (\w+):", prompt)[-1]
        q = {
            "English": "where does the river water go?",
            "Spanish": "¿adónde va el agua del río?",
            "Portuguese": "para onde vai a água do rio?",
        }[lang]
        return f" the river carries water\nQuestion in {lang}: {q}"

    step, fake = make_step(monkeypatch, answers, passage_lang="en", target_langs=["spa_Latn", "por_Latn"])
    out = step.process_table(passages([P_RIVER]))
    assert out.rows["lang"].to_list() == ["eng_Latn", "spa_Latn", "por_Latn"]
    assert out.rows["query_id"].to_list() == ["d0/eng_Latn/0", "d0/spa_Latn/0", "d0/por_Latn/0"]
    shots = {re.findall(r"Question in (\w+):", p)[-1]: len(re.findall(r"Question in", p)) for p in fake.calls}
    assert shots == {"English": 3, "Spanish": 5, "Portuguese": 5}
    assert set(out.stats["synthesis"]) == {"eng_Latn", "spa_Latn", "por_Latn"}


def test_passage_language_by_lid_sample_and_no_exemplars(monkeypatch, tiny_lid):
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
    )
    out = step.process_table(passages(texts))
    reasons = out.rejects.group_by("reason").len().sort("reason").rows()
    # English: 4 non-empty passages -> 2 sampled; Kyrgyz: sampled but no exemplar has a Kyrgyz query
    assert dict(reasons) == {"empty_passage": 1, "no_exemplars": 1, "not_sampled": 2}
    assert out.stats["passages_not_sampled"] == 2
    assert out.stats["synthesis"]["kir_Cyrl"]["dropped"] == {"no_exemplars": 1}
    assert len(fake.calls) == out.stats["synthesis"]["eng_Latn"]["generated"] <= 2
    # the sample is seeded: the same passages again
    step2, _ = make_step(
        monkeypatch,
        lambda passage, p: ANS.format(s="the cat sits", q="where does the cat sit?"),
        tiny_lid=tiny_lid,
        sample=2,
    )
    again = step2.process_table(passages(texts))
    assert (
        again.rejects.filter(pl.col("reason") == "not_sampled")["doc_id"].to_list()
        == out.rejects.filter(pl.col("reason") == "not_sampled")["doc_id"].to_list()
    )


def test_generations_are_cached(monkeypatch, tmp_path):
    cache = CallCache(tmp_path / "c.sqlite")
    ans = lambda passage, p: ANS.format(s="the river carries water", q="where does the river water go?")  # noqa: E731
    step, fake = make_step(monkeypatch, ans, passage_lang="en", ctx=RunContext(cache=cache))
    step.process_table(passages([P_RIVER, P_BEES]))
    assert len(fake.calls) == 2
    step2, fake2 = make_step(monkeypatch, ans, passage_lang="en", ctx=RunContext(cache=cache))
    out = step2.process_table(passages([P_RIVER, P_BEES]))
    assert fake2.calls == [] and out.rows.height == 2
    cache.close()


def test_report_files(monkeypatch, tmp_path):
    step, _ = make_step(
        monkeypatch,
        lambda passage, p: ANS.format(s="the river carries water", q="where does the river water go?"),
        passage_lang="en",
    )
    out = step.process_table(passages([P_RIVER, P_BEES]))
    report = step.finalize(out.stats)
    rep = report.data
    en = rep["languages"]["eng_Latn"]
    assert en["generated"] == 2 and en["kept"] == 2 and en["kept_rate"] == 1.0
    assert en["mean_query_words"] == 6.0 and en["tokens_per_s"] > 0
    assert "| eng_Latn | 2 | 2 |" in report.summary
    assert report.markdown.startswith("Query synthesis")
    assert step.ctx.extra["template"]["version"] == "v1"
    assert len(step.ctx.extra["template"]["sha256"]) == 64


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
    lang = re.findall(r"Question in (\w+):", prompt)[-1]
    q = {"English": "where is the train station in the town?", "Portuguese": "onde fica a estação de trem na cidade?"}[
        lang
    ]
    return f" the station is in the town\nQuestion in {lang}: {q}\n\nPassage: more"


def test_recipe_with_http_engine_runs_and_resumes(write_recipe, tiny_lid, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTH_TEST_KEY", "sk-never-in-files")
    with FakeOpenAIServer(_reply) as srv:
        engine = f'engine = "openai"\nmodel = "test-model"\nbase_url = "{srv.base_url}"'
        path = write_recipe(RECIPE.format(engine=engine, lid=tiny_lid), _files())
        res = Runner(load_recipe(path), tmp_path / "out", quiet=True).run()
        n = len(srv.requests)
        assert n == 6  # 3 passages x (English + Portuguese)
        assert srv.requests[0].body["prompt"].endswith("Summary:")
        assert srv.requests[0].headers["Authorization"] == "Bearer sk-never-in-files"
        m = res.manifest
        (tpl,) = [v["template"] for v in m["extra"].values() if "template" in v]
        assert tpl["version"] == "v1" and tpl["file"] == "summarize-then-ask.v1.j2" and len(tpl["sha256"]) == 64
        assert any(v["id"] == "test-model" for v in m["models"].values())
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


def test_recipe_with_tiny_random_lm(write_recipe, tiny_lid, tmp_path):
    """Plumbing with the transformers engine: a random LM writes no parsable question, every query is
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
    engine = f'model = "{d}"\nmax_new_tokens = 6\nshots_cross_lingual = 1\nshots_monolingual = 1'
    path = write_recipe(RECIPE.format(engine=engine, lid=tiny_lid), _files())
    step = load_recipe(path).steps[0]
    st = SynthesizeQueries(step.params, RunContext(recipe_dir=path.parent, device="cpu"))
    st.setup()
    out = st.process_table(passages([P_RIVER, P_BEES]))
    assert out.rows.height + out.rejects.height == 4
    assert set(out.rejects["reason"]) <= {
        "parse_no_query",
        "parse_no_summary",
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


def test_recipe_errors_are_reported_before_loading(write_recipe, tiny_lid):
    bad = RECIPE.format(engine='engine = "openai"\ntemplate = "prompts/nope.v1.j2"', lid=tiny_lid)
    bad = bad.replace('target_langs = ["pt"]', 'target_langs = ["pt"]\nmonolingual = false\nsample = 0')
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe(bad, _files()))
    msg = str(e.value)
    assert "3 problems" in msg and "base_url" in msg and "nope.v1.j2" in msg and "sample" in msg


def test_seed_defaults_to_the_dataset_seed(monkeypatch):
    ans = lambda passage, p: ANS.format(s="the river carries water", q="where does the river water go?")  # noqa: E731
    step, _ = make_step(monkeypatch, ans, passage_lang="en", ctx=RunContext(seed=7))
    assert step.seed == 7 and step.ctx.extra["seed"] == 7
    step, _ = make_step(monkeypatch, ans, passage_lang="en", seed=3, ctx=RunContext(seed=7))
    assert step.seed == 3
