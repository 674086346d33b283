"""``conll.v1``: read CoNLL/BIO NER files (one token per line, the tag in a column, a blank line between
sentences; ``-DOCSTART-`` lines and ``#`` comments skipped; ``.gz`` read directly).

Output columns: ``row_id`` (``<file stem>-<sentence number>``, stable), ``tokens``, ``tags`` (as read),
``text`` (tokens joined by ``token_sep``) and ``spans`` (character offsets into ``text``, from the BIO tags,
exact: :func:`mlbuild.spans.spans_to_bio` gives the tags back), plus ``lang`` when ``lang`` is set.
A malformed line (no tag column, a tag that is not BIO) is an input error naming file and line.

Parameters: ``path``, ``token_column``, ``tag_column``, ``token_sep``, ``lang``.

Example::

    [source]
    uses = "conll.v1"
    path = "data/ner/train.conll"
    tag_column = -1
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from .. import langs
from .. import spans as S
from ..errors import InputError
from ..pipeline.base import ROW_ID, Source, StepOutput
from ..pipeline.params import param
from ..pipeline.registry import register
from ._common import existing

COLUMNS = [ROW_ID, "tokens", "tags", "text", "spans"]


@dataclass
class ConllParams:
    path: str = param(doc="CoNLL file, optionally .gz", kind="path")
    token_column: int = param(0, doc="column of the token (0-based; whitespace-separated columns)", ge=-64, le=64)
    tag_column: int = param(-1, doc="column of the BIO tag (-1 = last)", ge=-64, le=64)
    token_sep: str = param(" ", doc="what joins tokens into the text column")
    lang: str | None = param(None, doc="language of the file; adds a 'lang' column", kind="lang")


def read_conll(path: Path, token_column: int = 0, tag_column: int = -1) -> list[tuple[int, list[str], list[str]]]:
    """Sentences of a CoNLL file as (first line number, tokens, tags)."""
    opener = gzip.open if path.suffix == ".gz" else open
    sents: list[tuple[int, list[str], list[str]]] = []
    toks: list[str] = []
    tags: list[str] = []
    first = 0
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip() or line.startswith("-DOCSTART-"):
                if toks:
                    sents.append((first, toks, tags))
                toks, tags = [], []
                continue
            if line.startswith("# ") or line == "#":
                continue
            cols = line.split()
            try:
                tok, tag = cols[token_column], cols[tag_column]
            except IndexError:
                raise InputError(str(path), f"expected a token and a tag column, got {line!r}", line=n) from None
            if len(cols) < 2:
                raise InputError(str(path), f"expected a token and a tag column, got {line!r}", line=n)
            if tag != "O" and (len(tag) < 3 or tag[1] != "-" or tag[0] not in "BIES"):
                raise InputError(str(path), f"not a BIO tag: {tag!r}", line=n, field=f"column {tag_column}")
            if not toks:
                first = n
            toks.append(tok)
            tags.append(tag)
    if toks:
        sents.append((first, toks, tags))
    return sents


def write_conll(path: Path, sentences: list[tuple[list[str], list[str]]]) -> None:
    """Write (tokens, tags) sentences as ``token tag`` lines with blank lines between sentences."""
    with open(path, "w", encoding="utf-8") as f:
        for toks, tags in sentences:
            for t, g in zip(toks, tags):
                f.write(f"{t} {g}\n")
            f.write("\n")


@register("source")
class ConllSource(Source):
    __doc__ = __doc__
    name = "conll.v1"
    Params = ConllParams

    def _paths(self) -> list[Path]:
        return [Path(self.params.path)]

    def input_files(self) -> list[Path]:
        return self._paths()

    def columns(self) -> list[str] | None:
        for p in self._paths():
            existing(p)
        return COLUMNS + (["lang"] if self.params.lang else [])

    def read(self) -> StepOutput:
        p = self.params
        recs = []
        for path in map(existing, self._paths()):
            stem = path.name.split(".")[0]
            for k, (_line, toks, tags) in enumerate(read_conll(path, p.token_column, p.tag_column), start=1):
                text, offs = S.join_tokens(toks, p.token_sep)
                spans = S.bio_to_spans(tags, offs)
                recs.append(
                    {
                        ROW_ID: f"{stem}-{k:07d}",
                        "tokens": toks,
                        "tags": tags,
                        "text": text,
                        "spans": S.to_records(spans),
                    }
                )
        df = pl.DataFrame(
            recs,
            schema={
                ROW_ID: pl.Utf8,
                "tokens": pl.List(pl.Utf8),
                "tags": pl.List(pl.Utf8),
                "text": pl.Utf8,
                "spans": S.SPANS_DTYPE,
            },
        )
        if p.lang:
            df = df.with_columns(pl.lit(langs.normalize(p.lang)).alias("lang"))
        return StepOutput(df, None, {"sentences": df.height})
