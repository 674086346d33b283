"""Tiny random-weight seq2seq MT models for tests, built offline in about a second each.

``build_tiny_mt(out_dir, family)`` writes a model folder that ``AutoTokenizer`` and
``AutoModelForSeq2SeqLM`` load: a word-level ``tokenizers`` tokenizer trained on a few sentences (with
the family's language tokens: ``__pt__`` for M2M100, ``por_Latn`` for NLLB, ``<2pt>`` for T5/MADLAD,
``>>por<<`` for multi-target Marian) and a 1-layer model of width 16. Outputs are random words, but
generation, batching, forced BOS and truncation run the real code paths.
"""

from __future__ import annotations

from pathlib import Path

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


def build_tiny_mt(out_dir: str | Path, family: str = "marian", seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import (
        M2M100Config,
        M2M100ForConditionalGeneration,
        MarianConfig,
        MarianMTModel,
        PreTrainedTokenizerFast,
        T5Config,
        T5ForConditionalGeneration,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<pad>", "</s>", "<unk>", "<s>", *LANG_TOKENS[family]]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        bos_token="<s>",
        additional_special_tokens=LANG_TOKENS[family] or None,
    )
    fast.save_pretrained(out)
    v = tok.get_vocab_size()
    torch.manual_seed(seed)
    common = dict(vocab_size=v, pad_token_id=0, eos_token_id=1, bos_token_id=3)
    if family in ("marian", "marian-multi"):
        cfg = MarianConfig(
            d_model=16,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            max_position_embeddings=256,
            decoder_start_token_id=0,
            forced_eos_token_id=1,
            decoder_vocab_size=v,
            share_encoder_decoder_embeddings=True,
            **common,
        )
        model = MarianMTModel(cfg)
    elif family in ("m2m100", "nllb"):
        cfg = M2M100Config(
            d_model=16,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            max_position_embeddings=256,
            decoder_start_token_id=1,
            **common,
        )
        model = M2M100ForConditionalGeneration(cfg)
    elif family == "t5":
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
        model = T5ForConditionalGeneration(cfg)
    else:
        raise ValueError(family)
    model.generation_config.num_beams = 1
    model.generation_config.max_length = None
    model.save_pretrained(out)
    return out
