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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from .. import langs
from .. import spans as S
from ..errors import InputError
from ..pipeline.base import ROW_ID, Source, StepOutput
from ..pipeline.params import param
from ..pipeline.registry import register
from ._common import existing

COLUMNS = [ROW_ID, "tokens", "tags", "text", "spans"]
BATCH = 20_000  # sentences per batch


@dataclass
class ConllParams:
    path: str = param(doc="CoNLL file, optionally .gz", kind="path")
    token_column: int = param(0, doc="column of the token (0-based; whitespace-separated columns)", ge=-64, le=64)
    tag_column: int = param(-1, doc="column of the BIO tag (-1 = last)", ge=-64, le=64)
    token_sep: str = param(" ", doc="what joins tokens into the text column")
    lang: str | None = param(None, doc="language of the file; adds a 'lang' column", kind="lang")


def iter_conll(path: Path, token_column: int = 0, tag_column: int = -1):
    """Sentences of a CoNLL file as (first line number, tokens, tags), one at a time. Bytes that are not
    UTF-8 are an input error naming the line; a byte-order mark before the first token is dropped."""
    opener = gzip.open if path.suffix == ".gz" else open
    toks: list[str] = []
    tags: list[str] = []
    first = 0
    with opener(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(
                    str(path), f"not UTF-8 (byte {e.start}: {raw[e.start : e.start + 1]!r})", line=n
                ) from None
            if n == 1:
                line = line.lstrip("\ufeff")
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip() or line.startswith("-DOCSTART-"):
                if toks:
                    yield first, toks, tags
                toks, tags = [], []
                continue
            if line.startswith("# ") or line == "#":
                continue
            cols = line.split()
            if len(cols) < 2:
                raise InputError(str(path), f"expected a token and a tag column, got {line!r}", line=n)
            try:
                tok, tag = cols[token_column], cols[tag_column]
            except IndexError:
                raise InputError(str(path), f"expected a token and a tag column, got {line!r}", line=n) from None
            if tag != "O" and (len(tag) < 3 or tag[1] != "-" or tag[0] not in "BIES"):
                raise InputError(str(path), f"not a BIO tag: {tag!r}", line=n, field=f"column {tag_column}")
            if not toks:
                first = n
            toks.append(tok)
            tags.append(tag)
    if toks:
        yield first, toks, tags


def read_conll(path: Path, token_column: int = 0, tag_column: int = -1) -> list[tuple[int, list[str], list[str]]]:
    """Every sentence of a (small) CoNLL file."""
    return list(iter_conll(path, token_column, tag_column))


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

    def read(self, part: Any = None, limit: int | None = None) -> Iterator[StepOutput]:
        p = self.params
        lang = langs.normalize(p.lang) if p.lang else None
        taken = 0
        for path in map(existing, self._paths()):
            stem = path.name.split(".")[0]
            recs: list[dict[str, Any]] = []
            for k, (_line, toks, tags) in enumerate(iter_conll(path, p.token_column, p.tag_column), start=1):
                if limit is not None and taken >= limit:
                    break
                text, offs = S.join_tokens(toks, p.token_sep)
                recs.append(
                    {
                        ROW_ID: f"{stem}-{k:07d}",
                        "tokens": toks,
                        "tags": tags,
                        "text": text,
                        "spans": S.to_records(S.bio_to_spans(tags, offs)),
                    }
                )
                taken += 1
                if len(recs) >= BATCH:
                    yield self._frame(recs, lang)
                    recs = []
            if recs:
                yield self._frame(recs, lang)

    @staticmethod
    def _frame(recs: list[dict[str, Any]], lang: str | None) -> StepOutput:
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
        if lang:
            df = df.with_columns(pl.lit(lang).alias("lang"))
        return StepOutput(df, None, {"rows_in": df.height, "sentences": df.height})
