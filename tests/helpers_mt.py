"""MT for tests: a deterministic fake engine registered by name, and tiny random-weight seq2seq models.

``LookupMT(table)`` translates by dict lookup (``text`` or ``(target language, text)`` keys, e.g.
``("por", "the cat")``), with a fallback for the rest, and records its calls. ``fake_mt_engine(backend,
name="fake")`` registers it as an MT engine for the duration of a ``with`` block, so recipes and steps
say ``engine = "fake"`` and go through the real ``load_mt`` path (no monkeypatching of private
functions); the library's own registry never ships it.

``build_tiny_mt(out_dir, family)`` writes a model folder that ``AutoTokenizer`` and
``AutoModelForSeq2SeqLM`` load: a word-level ``tokenizers`` tokenizer trained on a few sentences (with
the family's language tokens: ``__pt__`` for M2M100, ``por_Latn`` for NLLB, ``<2pt>`` for T5/MADLAD,
``>>por<<`` for multi-target Marian) and a 1-layer model of width 16. Outputs are random words, but
generation, batching, forced BOS and truncation run the real code paths.

``build_tiny_opus_mt(out_dir)`` writes a Marian model laid out as real OPUS-MT checkpoints are (``</s>`` = 0,
``<unk>`` = 1, ``<pad>`` last and the decoder start, ``forced_eos_token_id``), which CTranslate2's converter
expects (it drops the trailing ``<pad>`` row and starts the decoder from a zero embedding).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlbuild.models.mt import MTBackend, Translation, register_engine, unregister_engine


class LookupMT(MTBackend):
    """A fake MT backend: a dict lookup, else ``fallback(text, src, tgt)`` (default: the text itself)."""

    engine = "fake"

    def __init__(
        self,
        table: dict[Any, str | Translation] | None = None,
        fallback: Callable[[str, str, str], str | Translation] | None = None,
        model_id: str = "fake-mt",
        revision: str = "r1",
    ):
        self.table = dict(table or {})
        self.fallback = fallback or (lambda text, src, tgt: text)
        self._id, self._revision = model_id, revision
        self.calls: list[list[str]] = []

    @property
    def id(self) -> str:
        return self._id

    @property
    def revision(self) -> str:
        return self._revision

    def translate_detailed(self, texts: list[str], src: str, tgt: str) -> list[Translation]:
        self.calls.append(list(texts))
        out = []
        for t in texts:
            hit = self.table.get((tgt.split("_")[0], t), self.table.get(t))
            res = self.fallback(t, src, tgt) if hit is None else hit
            out.append(res if isinstance(res, Translation) else Translation(res, len(res.split())))
        return out


@contextmanager
def fake_mt_engine(backend: Any, name: str = "fake") -> Iterator[Any]:
    """Register ``backend`` as the MT engine ``name`` inside the block (every ``load_mt(name, ...)`` returns
    it); the engine that had the name before, if any, comes back afterwards."""
    previous = register_engine(name, lambda *args, **kwargs: backend, replace=True)
    try:
        yield backend
    finally:
        if previous is None:
            unregister_engine(name)
        else:
            register_engine(name, previous, replace=True)


CORPUS = [
    "the cat sits on the mat",
    "a dog runs in the park",
    "where is the station",
    "i like green tea",
    "o gato senta no tapete",
    "um cão corre no parque",
    "onde fica a estação",
    "eu gosto de chá verde",
    "hello world this is a test",
    "translation of long passages is slow",
    "we sort inputs by length",
    "кошка сидит на ковре",
    "собака бежит в парке",
    "мен чай ичем",
    "бул сынак",
]
LANG_TOKENS = {
    "marian": [],
    "marian-multi": [">>por<<", ">>kir<<", ">>eng<<"],
    "m2m100": ["__en__", "__pt__", "__ky__"],
    "nllb": ["eng_Latn", "por_Latn", "kir_Cyrl"],
    "t5": ["<2en>", "<2pt>", "<2ky>"],
}


def build_tiny_mt(out_dir: str | Path, family: str = "marian", seed: int = 0, fairseq_ids: bool = False) -> Path:
    """``fairseq_ids``: M2M100/NLLB with the special-token ids of the real checkpoints (``<s>`` 0, ``<pad>`` 1,
    ``</s>`` 2, ``<unk>`` 3; sinusoidal positions start after the pad id), as CTranslate2's converter expects."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fairseq_ids = fairseq_ids and family in ("m2m100", "nllb")
    order = ["<s>", "<pad>", "</s>", "<unk>"] if fairseq_ids else ["<pad>", "</s>", "<unk>", "<s>"]
    specials = [*order, *LANG_TOKENS[family]]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=specials))
    eos = order.index("</s>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        bos_token="<s>",
        additional_special_tokens=LANG_TOKENS[family] or None,
    )
    fast.save_pretrained(out)
    torch.manual_seed(seed)
    ids = dict(pad_token_id=1, eos_token_id=2, bos_token_id=0) if fairseq_ids else None
    model = _tiny_model(family, tok.get_vocab_size(), ids)
    model.generation_config.num_beams = 1
    model.generation_config.max_length = None
    model.save_pretrained(out)
    return out


def build_tiny_opus_mt(
    out_dir: str | Path,
    seed: int = 0,
    d_model: int = 32,
    layers: int = 1,
    eos_bias: float = 0.0,
    init_std: float = 0.3,
    multi_target: bool = False,
) -> Path:
    """A random Marian with the OPUS-MT vocabulary layout over the words of :data:`CORPUS` (see the module doc);
    ``multi_target`` adds the ``>>por<<`` target tags of multi-target models (opus-mt-en-ROMANCE)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

    out = Path(out_dir)
    words = sorted({w for s in CORPUS for w in s.split()})
    tags = LANG_TOKENS["marian-multi"] if multi_target else []
    vocab = ["</s>", "<unk>", *tags, *words, "<pad>"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 0)])
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=tags or None,
    ).save_pretrained(out)
    v, pad = len(vocab), len(vocab) - 1
    torch.manual_seed(seed)
    cfg = MarianConfig(
        vocab_size=v,
        decoder_vocab_size=v,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model,
        max_position_embeddings=256,
        pad_token_id=pad,
        eos_token_id=0,
        decoder_start_token_id=pad,
        forced_eos_token_id=0,
        share_encoder_decoder_embeddings=True,
        init_std=init_std,  # larger than the default 0.02, so outputs depend on the input
    )
    model = MarianMTModel(cfg)
    with torch.no_grad():  # random weights rarely stop; an EOS bias gives varied output lengths
        model.final_logits_bias[0, 0] = eos_bias
    model.generation_config.num_beams = 1
    model.generation_config.max_length = None
    model.save_pretrained(out)
    return out


def _tiny_model(family: str, v: int, ids: dict[str, int] | None = None):
    """A 1-layer, width-16 seq2seq model of ``family`` over a vocabulary of ``v`` tokens (random weights)."""
    from transformers import (
        M2M100Config,
        M2M100ForConditionalGeneration,
        MarianConfig,
        MarianMTModel,
        T5Config,
        T5ForConditionalGeneration,
    )

    common = dict(vocab_size=v, **(ids or dict(pad_token_id=0, eos_token_id=1, bos_token_id=3)))
    size = dict(
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=256,
    )
    if family in ("marian", "marian-multi"):
        cfg = MarianConfig(
            **size,
            decoder_start_token_id=0,
            forced_eos_token_id=1,
            decoder_vocab_size=v,
            share_encoder_decoder_embeddings=True,
            **common,
        )
        return MarianMTModel(cfg)
    if family in ("m2m100", "nllb"):
        start = common["eos_token_id"]
        return M2M100ForConditionalGeneration(M2M100Config(**size, decoder_start_token_id=start, **common))
    if family == "t5":
        cfg = T5Config(
            d_model=16,
            d_kv=8,
            d_ff=32,
            num_layers=1,
            num_decoder_layers=1,
            num_heads=2,
            decoder_start_token_id=0,
            **{k: common[k] for k in ("vocab_size", "pad_token_id", "eos_token_id")},
        )
        return T5ForConditionalGeneration(cfg)
    raise ValueError(family)


class ScriptedLID:
    """A stand-in for a fastText LID model with the predictions fastText gave on real text: ``table`` maps
    a text to its ranked ``[(code, probability), ...]``; other texts are read as ``default``."""

    id, revision = "scripted-lid", "1"

    def __init__(self, table: dict[str, list[tuple[str, float]]], default: str = "eng_Latn"):
        self.table = table
        self.default = [(default, 0.99)]

    def predict(self, texts: list[str], k: int = 1):
        import numpy as np

        ranked = [self.table.get(t, self.default)[:k] for t in texts]
        probs = np.zeros((len(texts), k), dtype=np.float32)
        for i, r in enumerate(ranked):
            probs[i, : len(r)] = [p for _, p in r]
        return [[c for c, _ in r] for r in ranked], probs
