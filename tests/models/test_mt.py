from __future__ import annotations

import pytest
from helpers_http import FakeOpenAIServer
from helpers_mt import build_tiny_mt

from mlbuild.models.mt import (
    BergamotMT,
    MTBackend,
    OpenAIMT,
    TransformersMT,
    Translation,
    engines,
    load_mt,
    register_engine,
    unregister_engine,
)

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
    with pytest.raises(ValueError, match="unknown MT engine 'bergamott'; did you mean 'bergamot'"):
        load_mt("bergamott")
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


# ---------------------------------------------------------------------------------------------- loader keys
@pytest.mark.parametrize("key", ["trust_remote_code", "revision", "token", "device_map", "gguf_file"])
@pytest.mark.parametrize("engine,model", [("transformers", "marian"), ("bergamot", None), ("openai", "m")])
def test_decoding_settings_never_carry_loader_keys(tiny_models, engine, model, key):
    model = str(tiny_models[model]) if model in tiny_models else model
    with pytest.raises(ValueError, match=f"model-loading keys \\('{key}'\\)"):
        load_mt(engine, model, device="cpu", **{key: True})


def test_only_explicit_arguments_reach_from_pretrained(tiny_models, monkeypatch):
    import transformers

    seen = []
    for cls in (transformers.AutoTokenizer, transformers.AutoModelForSeq2SeqLM):
        real = cls.from_pretrained

        def spy(src, *args, _real=real, _cls=cls, **kw):
            seen.append((_cls.__name__, args, dict(kw)))
            return _real(src, *args, **kw)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    mt = load_mt("transformers", str(tiny_models["marian"]), device="cpu", num_beams=2, length_penalty=1.0)
    assert [(name, args, sorted(kw)) for name, args, kw in seen] == [
        ("AutoTokenizer", (), ["trust_remote_code"]),
        ("AutoModelForSeq2SeqLM", (), ["dtype", "trust_remote_code"]),
    ]
    assert all(kw["trust_remote_code"] is False for _, _, kw in seen)
    assert mt.generate_kwargs == {"length_penalty": 1.0} and mt.num_beams == 2
    with pytest.raises(ValueError, match="generate settings may not carry model-loading keys"):
        TransformersMT(str(tiny_models["marian"]), device="cpu", generate_kwargs={"trust_remote_code": True})


# ---------------------------------------------------------------------------------------------- registry
class Echo(MTBackend):
    engine = "echo"

    def __init__(self, model=None, **settings):
        self.model, self.settings = model, settings

    @property
    def id(self):
        return f"echo:{self.model}"

    @property
    def revision(self):
        return None

    def translate_detailed(self, texts, src, tgt):
        return [Translation(f"{tgt}:{t}") for t in texts]


def test_register_engine_and_use_it_by_name():
    assert engines() == ("transformers", "ctranslate2", "bergamot", "openai")

    def factory(model, base_dir, device, **settings):
        return Echo(model, **settings)

    assert register_engine("echo", factory) is None
    try:
        mt = load_mt("echo", "m", num_beams=3)
        assert mt.translate(["a"], "eng_Latn", "por_Latn") == ["por_Latn:a"] and mt.settings == {"num_beams": 3}
        assert engines()[-1] == "echo"
        with pytest.raises(ValueError, match="already registered"):
            register_engine("echo", lambda *a, **k: Echo())
        other = lambda *a, **k: Echo("other")  # noqa: E731
        assert register_engine("echo", other, replace=True) is factory
        assert load_mt("echo").id == "echo:other"
    finally:
        unregister_engine("echo")
    assert "echo" not in engines()
    with pytest.raises(ValueError, match="needs a name"):
        register_engine("", factory)


def test_backends_have_no_supports_helper():
    # translate.v1 checks pairs at validation (BERGAMOT_PAIRS); the unused per-backend helper is gone
    for cls in (MTBackend, TransformersMT, BergamotMT, OpenAIMT):
        assert not hasattr(cls, "supports")
