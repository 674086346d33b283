from __future__ import annotations

import threading
from pathlib import Path

import pytest
from helpers_http import FakeOpenAIServer

from mlbuild.models import llm
from mlbuild.models.llm import OpenAILM, TransformersLM, cut_at_stop, load_llm

CORPUS = [
    "Passage: the river carries water to the sea. Summary: the river carries water. Question: where does it go?",
    "Passage: bees dance to show flowers. Summary: bees dance. Question: how do bees show flowers?",
    "o gato está no tapete e o rio corre para o mar",
] * 20


def build_tokenizer(d: Path):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=300, min_frequency=1, special_tokens=["<pad>", "<s>", "</s>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.save_pretrained(d)
    return tok


def build_causal(d: Path) -> Path:
    """A tiny random Llama (2 layers, width 32) with a byte-level BPE tokenizer, saved as a folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer(d)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def tiny_causal(tmp_path_factory) -> Path:
    return build_causal(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def tiny_seq2seq(tmp_path_factory) -> Path:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    d = tmp_path_factory.mktemp("tiny-t5")
    tok = build_tokenizer(d)
    torch.manual_seed(0)
    cfg = T5Config(
        vocab_size=len(tok),
        d_model=32,
        d_ff=64,
        d_kv=16,
        num_layers=2,
        num_heads=2,
        decoder_start_token_id=tok.pad_token_id,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    T5ForConditionalGeneration(cfg).save_pretrained(d)
    return d


PROMPTS = ["Passage: the river carries water.", "Passage: bees", "Passage: o gato está no tapete e o rio corre"]


def test_batched_left_padding_matches_one_by_one(tiny_causal):
    lm = TransformersLM(str(tiny_causal), device="cpu", batch_size=8)
    assert lm.tokenizer.padding_side == "left" and not lm.is_seq2seq
    batched = lm.generate(PROMPTS, max_new_tokens=8)
    single = [lm.generate([p], max_new_tokens=8)[0] for p in PROMPTS]
    assert batched == single
    assert all(isinstance(t, str) for t in batched) and any(batched)
    assert lm.usage["prompts"] == 6 and 0 < lm.usage["generated_tokens"] <= 48
    assert lm.revision.startswith("sha256:")


def test_stop_strings_cut_the_output(tiny_causal):
    lm = TransformersLM(str(tiny_causal), device="cpu")
    full = lm.generate([PROMPTS[0]], max_new_tokens=12)[0]
    assert len(full) > 4
    stop = full[3:5]
    first = full.find(stop)
    out = lm.generate([PROMPTS[0]], max_new_tokens=12, stop=[stop])[0]
    assert out == full[:first]


def test_sampling_is_seeded(tiny_causal):
    lm = TransformersLM(str(tiny_causal), device="cpu")
    a = lm.generate(PROMPTS, max_new_tokens=6, temperature=1.0, seed=3)
    b = lm.generate(PROMPTS, max_new_tokens=6, temperature=1.0, seed=3)
    assert a == b


def test_seq2seq(tiny_seq2seq):
    lm = load_llm("transformers", str(tiny_seq2seq), device="cpu")
    assert lm.is_seq2seq
    out = lm.generate(PROMPTS, max_new_tokens=5)
    assert len(out) == 3 and lm.usage["generated_tokens"] > 0


def test_cut_at_stop():
    assert cut_at_stop("a b\n\nPassage: x", ["\n\n", "\nPassage"]) == "a b"
    assert cut_at_stop("no stop here", ["\n\n"]) == "no stop here"
    assert cut_at_stop("x", []) == "x"


def test_cache_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MLBUILD_CACHE", str(tmp_path / "c"))
    assert llm.cache_root() == tmp_path / "c" / "models"
    monkeypatch.delenv("MLBUILD_CACHE")
    assert llm.cache_root() == Path.home() / ".cache" / "mlbuild" / "models"


def test_gguf_conversion_once_under_concurrency(monkeypatch, tmp_path, tiny_causal):
    """Two concurrent callers: one converts (into a temp folder renamed into place), the other reuses it."""
    import transformers

    monkeypatch.setenv("MLBUILD_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF-not-really")
    calls = []
    real_model = transformers.AutoModelForCausalLM.from_pretrained
    real_tok = transformers.AutoTokenizer.from_pretrained

    def fake_model(d, gguf_file=None, **kw):
        assert Path(d) == tmp_path and gguf_file == "m.gguf"
        calls.append(1)
        threading.Event().wait(0.3)  # hold the lock a while so the other caller has to wait
        return real_model(tiny_causal)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake_model)
    monkeypatch.setattr(
        transformers.AutoTokenizer, "from_pretrained", lambda d, gguf_file=None, **kw: real_tok(tiny_causal)
    )
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(llm.gguf_to_folder(gguf, "tiny"))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert results[0] == results[1] == tmp_path / "cache" / "models" / "tiny"
    assert (results[0] / "config.json").exists() and (results[0] / ".mlbuild-complete").exists()
    assert not [p for p in (tmp_path / "cache" / "models").iterdir() if p.name.startswith(".tiny.") and p.is_dir()]
    monkeypatch.undo()
    lm = TransformersLM(str(results[0]), device="cpu")  # the converted folder loads as a plain model
    assert lm.generate(["Passage: bees"], max_new_tokens=3)


def test_local_gguf_path_goes_through_the_conversion_cache(monkeypatch, tmp_path, tiny_causal):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    seen = {}

    def fake_convert(path, name, dtype="bfloat16"):
        seen["args"] = (path, name)
        return tiny_causal

    monkeypatch.setattr(llm, "gguf_to_folder", fake_convert)
    lm = TransformersLM(str(gguf), device="cpu")
    assert seen["args"][0] == gguf.resolve() and seen["args"][1].startswith("model-")
    assert lm.revision.startswith("sha256:")


def test_openai_engine_completions_and_chat(monkeypatch):
    monkeypatch.setenv("SYNTH_TEST_KEY", "sk-secret-123")
    with FakeOpenAIServer(lambda b: " a summary\nQuestion in English: what is it?\n\nPassage: more") as srv:
        lm = load_llm("openai", "m", base_url=srv.base_url, api_key_env="SYNTH_TEST_KEY", max_concurrency=2)
        out = lm.generate(["p1", "p2"], max_new_tokens=20, stop=["\n\n"], seed=7)
        assert out == [" a summary\nQuestion in English: what is it?"] * 2
        body = srv.requests[0].body
        assert srv.requests[0].path == "/v1/completions"
        assert body["max_tokens"] == 20 and body["stop"] == ["\n\n"] and body["temperature"] == 0.0
        assert body["seed"] == 7
        assert srv.requests[0].headers.get("Authorization") == "Bearer sk-secret-123"
        assert lm.usage["generated_tokens"] > 0
        chat = OpenAILM(srv.base_url, "m", api="chat", api_key_env="SYNTH_TEST_KEY")
        chat.generate(["hello"])
        assert srv.requests[-1].path == "/v1/chat/completions"
        assert srv.requests[-1].body["messages"] == [{"role": "user", "content": "hello"}]
        assert "sk-secret" not in repr(lm) and "sk-secret" not in repr(chat)


def test_unknown_engine_and_missing_base_url():
    with pytest.raises(ValueError, match="known: transformers, openai"):
        load_llm("vllm", "m")
    with pytest.raises(ValueError, match="base_url"):
        load_llm("openai", "m")


@pytest.mark.slow
def test_packaged_gemma_writes_a_question():
    d = llm.gemma_270m_dir()
    assert (d / "config.json").exists()
    lm = TransformersLM(str(d), device="cpu")
    prompt = (
        "Passage: The Amazon River carries more water than any other river on Earth.\n"
        "Question: Which river carries the most water?\n\n"
        "Passage: Honey bees communicate the location of flowers through a waggle dance.\nQuestion:"
    )
    out = lm.generate([prompt], max_new_tokens=20, stop=["\n"])[0]
    assert "?" in out or len(out.split()) >= 3


@pytest.mark.slow
def test_packaged_smollm2_loads():
    d = llm.smollm2_dir()
    lm = TransformersLM(str(d), device="cpu")
    assert lm.generate(["The capital of France is"], max_new_tokens=5)[0].strip()


# ---------------------------------------------------------------------------- loader keys at run time
def test_only_explicit_settings_reach_from_pretrained(tiny_causal, monkeypatch):
    import transformers

    seen: list[dict] = []
    depth = [0]  # record mlbuild's calls, not the ones transformers makes inside them
    for cls in (transformers.AutoConfig, transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
        original = cls.from_pretrained.__func__

        def spy(klass, src, *a, _orig=original, **kw):
            if not depth[0]:
                seen.append(dict(kw))
            depth[0] += 1
            try:
                return _orig(klass, src, *a, **kw)
            finally:
                depth[0] -= 1

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    TransformersLM(str(tiny_causal), device="cpu")
    assert len(seen) == 3
    assert all(kw.get("trust_remote_code") is False for kw in seen)
    assert set().union(*seen) <= {"trust_remote_code", "dtype"}


def test_decoding_kwargs_with_loader_keys_are_refused(tiny_causal):
    from mlbuild.errors import RecipeError

    lm = TransformersLM(str(tiny_causal), device="cpu")
    ok = lm.generate(PROMPTS[:1], max_new_tokens=3, repetition_penalty=1.3, no_repeat_ngram_size=2)
    assert len(ok) == 1  # real decoding settings pass through to generate()
    for bad in ({"trust_remote_code": True}, {"revision": "main", "token": "hf_x"}, {"device_map": "auto"}):
        with pytest.raises(RecipeError, match="model loading settings are not decoding settings"):
            lm.generate(PROMPTS[:1], max_new_tokens=3, **bad)
    with pytest.raises(RecipeError, match="'do_sample': set by the backend's own parameters"):
        lm.generate(PROMPTS[:1], do_sample=True)


def test_load_llm_refuses_loader_keys_and_unknown_options(tiny_causal):
    from mlbuild.errors import RecipeError

    with pytest.raises(RecipeError, match="'token'.*model loading settings"):
        load_llm("transformers", str(tiny_causal), device="cpu", token="hf_secret")
    with pytest.raises(RecipeError, match="'device_map'"):
        load_llm("transformers", str(tiny_causal), device="cpu", device_map="auto")
    with pytest.raises(ValueError, match=r"unknown transformers LLM option\(s\) beams \(known: .*trust_remote_code"):
        load_llm("transformers", str(tiny_causal), device="cpu", beams=4)
    with pytest.raises(TypeError, match="trust_remote_code must be True or False"):
        TransformersLM(str(tiny_causal), device="cpu", trust_remote_code="false")  # a truthy string


def test_openai_decoding_with_loader_keys_is_refused_before_any_request():
    from mlbuild.errors import RecipeError

    with FakeOpenAIServer() as srv:
        lm = OpenAILM(srv.base_url, "m")
        assert lm.generate(["p"], max_new_tokens=5, frequency_penalty=0.5) == ["p"]
        assert srv.requests[-1].body["frequency_penalty"] == 0.5
        n = len(srv.requests)
        with pytest.raises(RecipeError, match="'token'"):
            lm.generate(["p"], token="sk-x")
        assert len(srv.requests) == n
