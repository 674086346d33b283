"""Hidden states of every layer: tiny random Gemma3 / Llama / GPT-2 / BERT models with a word-level
tokenizer built offline; pooling with padding checked by hand; the vector cache; the bare-base-model
path matches a plain ``AutoModelForCausalLM`` forward.

``make_tiny_model`` is also used by the report and command tests (loaded by path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

WORDS = (
    "the a cat dog sits runs on mat house big small red o gato cão senta no tapete casa grande "
    "pequeno vermelho le chat chien est sur tapis maison rouge der hund katze ist auf haus rot . ,"
).split()


def make_tokenizer(kind: str = "decoder"):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    specials = ["<pad>", "<unk>", "<bos>", "<eos>"] if kind == "decoder" else ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {t: i for i, t in enumerate([*specials, *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=specials[1]))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if kind == "decoder":
        tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
        return transformers.PreTrainedTokenizerFast(
            tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>", eos_token="<eos>"
        )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )


def make_tiny_model(path: Path, arch: str = "gemma3", layers: int = 2, seed: int = 0) -> Path:
    """A random-weight model of ``arch`` (gemma3, llama, gpt2, bert) saved with its tokenizer."""
    torch.manual_seed(seed)
    v = len(WORDS) + 4
    decoder = dict(  # what the gemma3 and llama configs share
        vocab_size=v,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    if arch == "gemma3":
        cfg = transformers.Gemma3TextConfig(**decoder, head_dim=16, sliding_window=8)
        model = transformers.Gemma3ForCausalLM(cfg)
    elif arch == "llama":
        cfg = transformers.LlamaConfig(**decoder)
        model = transformers.LlamaForCausalLM(cfg)
    elif arch == "gpt2":
        cfg = transformers.GPT2Config(
            vocab_size=v, n_embd=32, n_layer=layers, n_head=2, n_positions=64, bos_token_id=2, eos_token_id=3
        )
        model = transformers.GPT2LMHeadModel(cfg)
    elif arch == "bert":
        cfg = transformers.BertConfig(
            vocab_size=v,
            hidden_size=32,
            num_hidden_layers=layers,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            pad_token_id=0,
        )
        model = transformers.BertModel(cfg)
    else:
        raise ValueError(arch)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    make_tokenizer("encoder" if arch == "bert" else "decoder").save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hidden_models")
    return {a: make_tiny_model(root / a, a) for a in ("gemma3", "llama", "gpt2", "bert")}


# ---------------------------------------------------------------- pooling by hand


def test_pool_by_hand():
    from mlbuild.models.hidden import pool

    h = torch.tensor(
        [[[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [100.0, 100.0]], [[2.0, 2.0], [4.0, 0.0], [9.0, 9.0], [9.0, 9.0]]]
    )
    # row 0: tokens 1..2 used (0 = BOS, 3 = padding); row 1: tokens 0..1 used
    use = torch.tensor([[False, True, True, False], [True, True, False, False]])
    assert pool(h, use, "mean").tolist() == [[4.0, 3.0], [3.0, 1.0]]
    assert pool(h, use, "last_token").tolist() == [[5.0, 4.0], [4.0, 0.0]]
    # weights 1/3 and 2/3 on the used tokens
    wm = pool(h, use, "weighted_mean")
    assert torch.allclose(wm, torch.tensor([[13 / 3, 10 / 3], [10 / 3, 2 / 3]]))
    with pytest.raises(ValueError, match="unknown pooling"):
        pool(h, use, "max")


def test_vectors_round_trip_exactly_through_the_call_cache(tmp_path):
    from mlbuild.pipeline.cache import CallCache

    a = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32) * 1e4
    cache = CallCache(tmp_path / "c.sqlite")
    cache.put_vectors("ns", [("x", a)])
    assert np.array_equal(cache.get_vectors("ns", ["x"])["x"], a)


# ---------------------------------------------------------------- real code paths on tiny models


@pytest.mark.parametrize("arch", ["gemma3", "llama", "gpt2", "bert"])
def test_every_layer_and_padding_does_not_change_vectors(tiny_models, arch):
    from mlbuild.models.hidden import POOLINGS, HiddenStates

    hs = HiddenStates(str(tiny_models[arch]), device="cpu", batch_size=8)
    assert hs.n_layers == 2 and hs.hidden_size == 32
    texts = ["the cat sits on the mat .", "o gato", "le chien est sur le tapis rouge , le chat", "der hund"]
    together = hs.compute(texts, POOLINGS)
    for i, t in enumerate(texts):  # alone = no padding at all
        alone = hs.compute([t], POOLINGS)
        for p in POOLINGS:
            assert together[p].shape == (4, 2, 32)
            np.testing.assert_allclose(together[p][i], alone[p][0], rtol=1e-4, atol=1e-5)
    # layers differ from each other and texts from each other
    assert not np.allclose(together["mean"][:, 0], together["mean"][:, 1])
    assert not np.allclose(together["mean"][0], together["mean"][1])


def test_matches_plain_causal_lm_forward(tiny_models):
    """The base model without the LM head gives the hidden states of the plain AutoModelForCausalLM forward
    (every layer but the embeddings), with the BOS dropped for mean pooling."""
    from mlbuild.models.hidden import HiddenStates

    path = tiny_models["gemma3"]
    hs = HiddenStates(str(path), device="cpu")
    text = "the big red dog runs on the mat"
    got = hs.compute([text], ["mean", "last_token"])
    lm = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    enc = tok([text], return_tensors="pt")
    assert enc["input_ids"][0, 0].item() == tok.bos_token_id
    with torch.no_grad():
        out = lm(**enc, output_hidden_states=True)
    ref = torch.stack(out.hidden_states[1:], dim=1)[0]  # (layers, tokens, dim)
    np.testing.assert_allclose(got["mean"][0], ref[:, 1:].mean(dim=1).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["last_token"][0], ref[:, -1].numpy(), rtol=1e-4, atol=1e-5)


def test_batches_sorted_by_length_under_budget(tiny_models):
    from mlbuild.models.hidden import HiddenStates

    hs = HiddenStates(str(tiny_models["llama"]), device="cpu", batch_size=3, max_batch_tokens=20)
    texts = ["a", "the cat sits on the mat", "o gato", "the big red dog runs on the mat .", "le chat", "a b"]
    batches = hs.batches(texts)
    assert sorted(i for b in batches for i in b) == list(range(len(texts)))
    lengths = hs._lengths(texts)
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat, reverse=True)
    for b in batches:
        assert len(b) <= 3 and max(lengths[i] for i in b) * len(b) <= 20 or len(b) == 1


def test_cache_reuses_vectors(tiny_models, tmp_path):
    from mlbuild.models.hidden import HiddenStates
    from mlbuild.pipeline.cache import CallCache

    cache = CallCache(tmp_path / "c.sqlite")
    hs = HiddenStates(str(tiny_models["gpt2"]), device="cpu")
    texts = ["the cat", "o gato", "the cat", ""]
    first = hs.encode(texts, ["mean", "last_token"], cache=cache)
    assert hs.computed == 3  # distinct texts only
    hs2 = HiddenStates(str(tiny_models["gpt2"]), device="cpu")
    again = hs2.encode(texts, ["mean", "last_token"], cache=cache)
    assert hs2.computed == 0 and hs2.cached == 3
    assert hs2._model is None  # everything came from the cache: the model was never loaded
    for p in first:
        assert np.array_equal(first[p], again[p])
    np.testing.assert_array_equal(first["mean"][0], first["mean"][2])
    # a new pooling is a new namespace: computed, old ones untouched
    hs2.encode(texts, ["weighted_mean"], cache=cache)
    assert hs2.computed == 3
    cache.close()


def test_gguf_file_path_is_split_into_folder_and_file(tmp_path):
    from mlbuild.models.hidden import _source
    from mlbuild.models.resolve import ModelRef

    f = tmp_path / "m.gguf"
    f.write_bytes(b"x")
    assert _source(ModelRef(str(f), f, "r", "path"), None).gguf_file == "m.gguf"
    assert _source(ModelRef("org/model", None, "main", "hub"), "q.gguf").src == "org/model"
    bad = tmp_path / "m.bin"
    bad.write_bytes(b"x")
    with pytest.raises(ValueError, match="gguf"):
        _source(ModelRef(str(bad), bad, "r", "path"), None)
