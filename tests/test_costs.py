"""Cost accounting: token counting (tokenizer and approximation), per-language counters that add up across
shards, the price table (bounds, unknown keys), costs in the step summary and card table, and estimates
before a run (scaling, steps that cannot be estimated)."""

from __future__ import annotations

import json
import logging

import polars as pl
import pytest

from mlbuild.accounting import (
    APPROX,
    TokenCounter,
    Usage,
    approx_tokens,
    cost,
    estimate_recipe,
    estimate_step,
    load_counter,
    parse_price,
    render_estimate,
    totals,
    usage_markdown,
    usage_summary,
)
from mlbuild.pipeline.base import merge_stats


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("tok")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["the query and the passage are relevant"] * 10, vocab_size=280, special_tokens=["<s>"])
    PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>").save_pretrained(d)
    return d


@pytest.mark.parametrize(
    ("text", "n"),
    [("", 0), ("abcd", 1), ("abcde", 2), ("Привет", 3), ("日本語", 3), ("the cat sat on the mat", 6)],
)
def test_approximation_is_utf8_bytes_over_four(text, n):
    assert approx_tokens(text) == n
    assert TokenCounter().count([text]) == [n]


def test_counter_with_a_tokenizer(tiny_tokenizer):
    c = load_counter(str(tiny_tokenizer))
    assert c.method == f"tokenizer:{tiny_tokenizer}"
    texts = ["the query", "the passage are relevant", ""]
    assert c.count(texts) == [len(c.tokenizer(t)["input_ids"]) for t in texts]
    assert c.count([]) == []
    assert load_counter(None).method == APPROX


def test_counter_falls_back_offline_and_says_so(caplog):
    with caplog.at_level(logging.WARNING):
        c = load_counter("no-such-org/no-such-tokenizer")
    assert c.method == APPROX and "counting tokens as approx" in caplog.text


def test_usage_counts_per_language_and_adds_up_across_shards():
    a, b = Usage(TokenCounter()), Usage(TokenCounter())
    a.add("eng_Latn", ["abcdefgh", "abcd"], ["1", "2"])
    a.add_computed("eng_Latn", ["abcdefgh"], ["1"], reported_in=7, reported_out=1)
    b.add("eng_Latn", ["abcd"], ["3"])
    b.add(None, ["abcd"], ["3"])
    merged = merge_stats(a.stats(), b.stats())
    eng = merged["tokens"]["eng_Latn"]
    assert eng["prompts"] == 3 and eng["in"] == 4 and eng["out"] == 3
    assert eng["computed_prompts"] == 1 and eng["computed_in"] == 2 and eng["reported_in"] == 7
    assert merged["tokens"]["und"]["prompts"] == 1 and merged["token_count_method"] == APPROX
    assert totals(merged["tokens"])["prompts"] == 4
    assert Usage(TokenCounter()).stats() == {}


def test_a_mixed_language_batch_shares_the_servers_counts_in_proportion():
    u = Usage(TokenCounter())
    prompts = ["a" * 40, "b" * 40, "c" * 80, ""]  # 10, 10, 20 and 0 tokens
    u.add_computed_mixed(["en", "es", "en", None], prompts, ["x" * 4] * 4, reported_in=101, reported_out=7)
    t = u.stats()["tokens"]
    assert {k: v["computed_prompts"] for k, v in t.items()} == {"en": 2, "es": 1, "und": 1}
    assert t["en"]["computed_in"] == 30 and t["es"]["computed_in"] == 10 and t["und"]["computed_in"] == 0
    assert sum(v["reported_in"] for v in t.values()) == 101 and t["en"]["reported_in"] in (75, 76)
    assert t["und"]["reported_in"] == 0  # no counted input tokens: no share of the server's
    assert sum(v["reported_out"] for v in t.values()) == 7  # 1 token out per prompt: shares 2:1:1
    u2 = Usage(TokenCounter())
    u2.add_computed_mixed(["en"], ["abcd"], ["x"])  # no server counts: none recorded
    assert "reported_in" not in u2.stats()["tokens"]["en"]


def test_price_table_is_checked_like_params():
    price, problems = parse_price({"input": 0.15, "output": 0.6})
    assert problems == [] and price.per == 1_000_000 and price.currency == "USD"
    assert cost(price, 2_000_000, 1_000_000) == pytest.approx(0.9)
    _, problems = parse_price({"inptu": 1.0, "output": -2.0, "currency": "US dollars"}, "steps[1] -> price")
    msgs = dict(problems)
    assert "did you mean 'input'" in msgs["steps[1] -> price -> inptu"]
    assert "between 0 and 1000000" in msgs["steps[1] -> price -> output"]
    assert "does not match" in msgs["steps[1] -> price -> currency"]
    assert "missing required parameter" in msgs["steps[1] -> price -> input"]
    assert parse_price([1, 2])[1][0][0] == "price"
    assert parse_price(None) == (None, [])


def _stats(reported: bool) -> dict:
    u = Usage(TokenCounter())
    u.add("eng_Latn", ["a" * 400_000], ["b" * 40_000])  # 100k in, 10k out
    u.add("spa_Latn", ["a" * 40_000], ["b" * 4_000])  # 10k in, 1k out
    u.add_computed("spa_Latn", ["a" * 40_000], ["b" * 4_000], *((9_000, 900) if reported else (None, None)))
    return u.stats()


def test_usage_summary_prices_the_dataset_and_this_run():
    s = usage_summary(_stats(reported=False), {"price": {"input": 1.0, "output": 10.0}})
    assert s["total"]["in"] == 110_000 and s["total"]["out"] == 11_000
    c = s["cost"]
    assert c["dataset"] == pytest.approx(0.11 + 0.11) and c["this_run"] == pytest.approx(0.01 + 0.01)
    assert c["this_run_counts"] == "counted" and c["by_lang"]["eng_Latn"] == pytest.approx(0.2)
    r = usage_summary(_stats(reported=True), {"price": {"input": 1.0, "output": 10.0}})
    assert r["cost"]["this_run"] == pytest.approx(0.009 + 0.009) and r["cost"]["this_run_counts"].startswith(
        "reported"
    )
    assert usage_summary({}, None) is None
    assert "cost" not in usage_summary(_stats(False), None)
    md = usage_markdown([{"id": "judge", "tokens": s}, {"id": "langid", "tokens": None}])
    assert "| `judge` | eng_Latn | 1 | 100000 | 10000 | 0 | 0.2000 USD |" in md
    assert "whole dataset 0.2200 USD, this run 0.0200 USD (counted)" in md
    assert usage_markdown([{"id": "x"}]) == ""


class FakeStep:
    name = "fake.v1"

    class params:  # noqa: N801 - stands in for a params dataclass
        price = {"input": 2.0, "output": 4.0, "per": 1000}

    def estimate_prompts(self, batch):
        return [(lang, t * 2) for lang, t in zip(batch["lang"], batch["text"])]

    def estimate_counter(self):
        return TokenCounter()

    def estimate_output_tokens(self):
        return 5


def test_estimate_scales_a_sample_to_the_whole_input():
    sample = pl.DataFrame({"lang": ["a", "a", "b", "b"], "text": ["abcd", "abcd", "abcdefgh", "abcd"]})
    e = estimate_step(FakeStep(), sample, rows_total=400)
    assert e.by_lang == {
        "a": {"prompts": 200, "in": 400, "out_max": 1000},
        "b": {"prompts": 200, "in": 600, "out_max": 1000},
    }
    assert e.prompts == 400 and e.tokens_in == 1000 and e.tokens_out_max == 2000
    assert e.cost == {"currency": "USD", "min": pytest.approx(2.0), "max": pytest.approx(10.0)}
    text = render_estimate([e])
    assert "~400 calls, ~1,000 tokens in, at most 2,000 out (from 4 of 400 source rows" in text
    assert "cost 2.0000 to 10.0000 USD" in text
    assert estimate_step(FakeStep(), sample.clear(), 0).note == "no rows to sample"


def test_estimate_recipe_names_steps_it_cannot_estimate(write_recipe):
    recipe = """
[dataset]
name = "est"
version = "0.1.0"

[source]
uses = "jsonl.v1"
path = "p.jsonl"

[[steps]]
uses = "synthesize_queries.v1"
passage_column = "passage"
passage_lang = "en"
engine = "openai"
model = "m"
base_url = "http://127.0.0.1:9/v1"
lid_model = ""

[[steps]]
uses = "judge_relevance.v1"
passage_column = "passage"
mode = "qrels"
engine = "openai"
model = "m"
base_url = "http://127.0.0.1:9/v1"
"""
    from mlbuild.recipe import load_recipe

    rows = "".join(json.dumps({"passage": f"passage {i}"}) + "\n" for i in range(5))
    path = write_recipe(recipe, {"p.jsonl": rows})
    synth, judge = estimate_recipe(load_recipe(path))
    assert not synth.estimated and synth.note == "this step does not estimate its prompts"
    assert not judge.estimated and "needs query, made by an earlier step" in judge.note
    assert "judge_relevance: needs query" in render_estimate([synth, judge]).replace(" (judge_relevance.v1)", "")
    assert render_estimate([]) == "no model-backed step: nothing to estimate"
