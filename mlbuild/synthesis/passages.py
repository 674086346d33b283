"""What every stage reads from a passage row: its text, id and language; and the internal columns the
stages pass to each other (dropped before the step's output)."""

from __future__ import annotations

from typing import Any

import polars as pl

from .. import langs
from ..pipeline.base import ROW_ID

# a passage row that only feeds the round-trip corpus (left out by `sample`): no query is asked for it
CORPUS_ONLY = "_synth_corpus_only"
# a corpus entry for the round-trip filter (its passage's embedding in VECTOR), not an output row
CORPUS = "_synth_corpus"
# the embedding of a query (or of a corpus entry's passage) for the round-trip filter
VECTOR = "_synth_vector"
INTERNAL = (CORPUS_ONLY, CORPUS, VECTOR)


def roundtrip_on(p: Any) -> bool:
    """Whether the round-trip filter runs (``embed_model`` already resolved from ``auto`` by the step)."""
    return bool(p.embed_model) and p.embed_model != "auto" and bool(p.roundtrip)


def corpus_rows(p: Any) -> bool:
    """Whether the step's own input passages ride along as the round-trip corpus (no side table)."""
    return roundtrip_on(p) and not p.corpus


def passage_texts(batch: pl.DataFrame, p: Any) -> list[str]:
    return batch[p.passage_column].cast(pl.Utf8).fill_null("").to_list()


def titles(batch: pl.DataFrame, p: Any) -> list[str]:
    if not p.title_column:
        return [""] * batch.height
    return batch[p.title_column].cast(pl.Utf8).fill_null("").to_list()


def doc_id_column(batch: pl.DataFrame, p: Any) -> str:
    return p.doc_id_column or ("doc_id" if "doc_id" in batch.columns else ROW_ID)


def doc_ids(batch: pl.DataFrame, p: Any) -> list[str]:
    """The passage id: ``doc_id_column``, else a ``doc_id`` column, else ``row_id`` (row_id when null)."""
    c = doc_id_column(batch, p)
    return [str(v) if v is not None else str(r) for v, r in zip(batch[c].to_list(), batch[ROW_ID].to_list())]


def passage_langs(batch: pl.DataFrame, p: Any, texts: list[str], lid: Any) -> list[str | None]:
    """The passage language per row: from the ``passage_lang`` column, the ``passage_lang`` code, or
    language ID of the (non-empty) text; None when unknown."""
    pl_ = p.passage_lang
    if pl_ is not None and pl_ in batch.columns:
        return [langs.normalize(v) if isinstance(v, str) and langs.is_valid(v) else None for v in batch[pl_].to_list()]
    if pl_ is not None:
        return [langs.normalize(pl_)] * batch.height
    idx = [i for i in range(len(texts)) if texts[i].strip()]
    codes, _ = lid.predict([texts[i] for i in idx], k=1)
    out: list[str | None] = [None] * len(texts)
    for i, c in zip(idx, codes):
        out[i] = c[0] if c and langs.is_valid(c[0]) else None
    return out
