"""A tiny random-weight BERT encoder for aligner tests, built offline in about a second.

``build_tiny_bert(out_dir)`` writes a folder that ``AutoTokenizer``/``AutoModel`` load: a WordPiece
tokenizer over :data:`VOCAB` (``Lisboa`` splits into ``lis ##boa``) and a 2-layer BERT of width 32 whose
position and token-type embeddings are zeroed, so the same word has the same layer-0 state anywhere:
an embedding aligner reading layer 0 must then link identical words, which makes tests able to fail.
"""

from __future__ import annotations

from pathlib import Path

VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "obama",
    "visited",
    "paris",
    "visitou",
    "em",
    "2009",
    "in",
    "lis",
    "##boa",
    "maria",
    "lives",
    "vive",
    "the",
    "city",
    "a",
    "cidade",
    ".",
]


def build_tiny_bert(path: Path) -> Path:
    """A 2-layer random BERT with a WordPiece tokenizer built from VOCAB; position and token-type embeddings
    are zeroed so the same word has the same layer-0 state anywhere."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = {w: i for i, w in enumerate(VOCAB)}
    raw = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    raw.normalizer = normalizers.BertNormalizer(lowercase=True)
    raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    raw.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    tok.save_pretrained(path)
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    model = BertModel(cfg)
    with torch.no_grad():
        model.embeddings.position_embeddings.weight.zero_()
        model.embeddings.token_type_embeddings.weight.zero_()
    model.save_pretrained(path)
    return path
