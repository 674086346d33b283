from __future__ import annotations

import pytest
from helpers_http import FakeOpenAIServer
from helpers_mt import build_tiny_mt

from mlbuild.models.mt import OpenAIMT, Translation, load_mt

TEXTS = [
    "the cat sits on the mat",
    "a dog runs in the park",
    "where is the station",
    "i like green tea",
    "hello world this is a test",
    "we sort inputs by length and then some more words here",
    "бул сынак",
    "translation of long passages is slow",
    "",
    "the cat sits on the mat",
]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("mt")
    return {fam: build_tiny_mt(root / fam, fam) for fam in ("marian", "marian-multi", "m2m100", "nllb", "t5")}


def test_marian_batched_equals_one_by_one(tiny_models):
    mt = load_mt("transformers", str(tiny_models["marian"]), device="cpu", max_new_tokens=8, batch_size=4)
    assert mt.id == str(tiny_models["marian"]) and mt.revision.startswith("sha256:")
    batched = mt.translate_detailed(TEXTS, "eng_Latn", "por_Latn")
    assert mt.batches == 3  # 9 non-empty texts, sorted by length, 4 per batch
    mt.batch_size = 1
    one = [mt.translate_detailed([t], "eng_Latn", "por_Latn")[0] for t in TEXTS]
    assert [t.text for t in batched] == [t.text for t in one]
    assert batched[8] == Translation("", 0, False)  # empty input, no model call
    assert all(isinstance(t.tokens, int) for t in batched)
    assert mt.translate(TEXTS[:2], "eng_Latn", "por_Latn") == [t.text for t in batched[:2]]
    assert mt.batches == 3 + 9 + 2


def test_truncation_and_token_budget(tiny_models):
    mt = load_mt("transformers", str(tiny_models["marian"]), device="cpu", max_new_tokens=2)
    res = mt.translate_detailed(TEXTS[:3], "eng_Latn", "por_Latn")
    assert all(r.truncated and r.tokens == 2 for r in res)
    assert mt.config()["max_new_tokens"] == 2


def test_max_batch_tokens_splits_batches(tiny_models):
    mt = load_mt(
        "transformers", str(tiny_models["marian"]), device="cpu", max_new_tokens=4, batch_size=64, max_batch_tokens=16
    )
    mt.translate(TEXTS, "eng_Latn", "por_Latn")
    assert mt.batches > 1


@pytest.mark.parametrize(
    "family,expect",
    [("marian", "plain"), ("marian-multi", "marian-multi"), ("m2m100", "m2m100"), ("nllb", "nllb"), ("t5", "t5-tag")],
)
def test_language_code_conventions(tiny_models, family, expect):
    mt = load_mt("transformers", str(tiny_models[family]), device="cpu", max_new_tokens=6)
    fam, prefix, forced = mt.convention("eng_Latn", "kir_Cyrl")
    assert fam == expect
    tok = mt.tok
    if fam == "m2m100":
        assert forced == tok.convert_tokens_to_ids("__ky__")
    elif fam == "nllb":
        assert forced == tok.convert_tokens_to_ids("kir_Cyrl")
    elif fam == "t5-tag":
        assert prefix == "<2ky> " and forced is None
    elif fam == "marian-multi":
        assert prefix == ">>kir<< "
    out = mt.translate_detailed(TEXTS[:4], "eng_Latn", "kir_Cyrl")
    assert len(out) == 4


def test_forced_bos_is_the_first_generated_token(tiny_models):
    mt = load_mt("transformers", str(tiny_models["m2m100"]), device="cpu", max_new_tokens=5)
    seen = {}
    real = mt.model.generate

    def spy(**kw):
        out = real(**kw)
        seen["first"] = out[:, 1].tolist()
        seen["input"] = kw["input_ids"][0].tolist()
        return out

    mt.model.generate = spy
    mt.translate(["the cat sits on the mat"], "eng_Latn", "por_Latn")
    assert seen["first"] == [mt.tok.convert_tokens_to_ids("__pt__")]
    assert seen["input"][0] == mt.tok.convert_tokens_to_ids("__en__")  # source tag on a generic tokenizer


def test_load_mt_errors():
    with pytest.raises(ValueError, match="unknown MT engine"):
        load_mt("moses")
    with pytest.raises(ValueError, match="needs a model"):
        load_mt("transformers")
    with pytest.raises(ValueError, match="bergamot-en-pt"):
        load_mt("bergamot", "opus-mt-en-de")


def test_openai_engine_prompt_and_truncation():
    seen = []

    def reply(body):
        seen.append(body)
        text = body["messages"][-1]["content"].split("\n\n", 1)[1]
        return "  tradução: " + text + "  " if "long" not in text else "palavra " * 10

    with FakeOpenAIServer(reply) as srv:
        mt = load_mt("openai", "qwen", base_url=srv.base_url, max_new_tokens=10, system="You translate to {tgt_name}.")
        assert isinstance(mt, OpenAIMT)
        res = mt.translate_detailed(["hello", "", "a long one"], "eng_Latn", "por_Latn")
    assert res[0].text == "tradução: hello" and res[1].text == "" and res[2].truncated
    assert len(seen) == 2  # the empty text was not sent
    msgs = seen[0]["messages"]
    assert msgs[0] == {"role": "system", "content": "You translate to Portuguese."}
    assert "English" in msgs[1]["content"] and "Portuguese" in msgs[1]["content"]
    assert seen[0]["temperature"] == 0.0 and seen[0]["max_tokens"] == 10 and seen[0]["model"] == "qwen"
    cfg = mt.config()
    assert cfg["model"] == "qwen" and "base_url" not in cfg and "prompt" in cfg


@pytest.mark.slow
def test_bergamot_real_package():
    mt = load_mt("bergamot")
    assert mt.id == "bergamot-en-pt" and mt.revision.startswith("sha256:")
    out = mt.translate(["The cat sits on the mat.", ""], "eng_Latn", "por_Latn")
    assert "gato" in out[0].lower() and out[1] == ""
    back = mt.translate([out[0]], "por_Latn", "eng_Latn")
    assert "cat" in back[0].lower()
    with pytest.raises(ValueError, match="en<->pt"):
        mt.translate(["x"], "eng_Latn", "kir_Cyrl")


@pytest.mark.slow
def test_bergamot_package_dir_resolves():
    from mlbuild.models.resolve import resolve_model

    ref = resolve_model("bergamot-en-pt")
    assert ref.kind == "packaged" and (ref.path / "enpt-1693087644").is_dir()


def test_overlong_input_counts_as_truncated(tiny_models):
    mt = load_mt("transformers", str(tiny_models["marian"]), device="cpu", max_new_tokens=30, max_input_tokens=5)
    long, short = mt.translate_detailed(["the cat sits on the mat and a dog runs", "i like"], "eng_Latn", "por_Latn")
    assert long.truncated
    assert not short.truncated or short.tokens == 30
