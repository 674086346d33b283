"""The sentences a language-similarity report scores: per language, at most ``max_sentences`` usable pairs
with the pivot, chosen by a seeded hash of their ids (the same ids for every language that shares them).

A pair is usable when neither side is empty and neither sentence repeats one of an earlier usable pair
(repeats would tie in MEXA); pairs are taken in id order (long form) or table order (wide form).

A table is read twice (:func:`sample_sets`): the first pass keeps per row only its id, language (a small
number), position and a 64-bit hash of its stripped text, enough to find the usable pairs and choose the
sample; the second pass keeps the texts of the chosen rows only. Memory grows with the rows by those keys
and their working copies (about 100 bytes a row measured, ``scripts/bench_langsim_memory.py``), never by
their texts."""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import polars as pl

from .. import langs
from ..errors import InputError
from .inputs import ParallelSet, TableSource

PAIR_COLUMNS = ("id", "p_pos", "p_empty", "p_h", "t_pos", "t_empty", "t_h")
EMPTY_PAIRS = pl.DataFrame(
    schema={
        "id": pl.Utf8,
        **{f"{s}_{k}": t for s in "pt" for k, t in (("pos", pl.Int64), ("empty", pl.Boolean), ("h", pl.UInt64))},
    }
).select(PAIR_COLUMNS)


# what str.strip() strips (Python's whitespace: Unicode's White_Space and the four ASCII separators 0x1c-0x1f)
WHITESPACE = "".join(chr(i) for i in range(0x110000) if chr(i).isspace())


def _keys(expr: pl.Expr, prefix: str) -> list[pl.Expr]:
    """``<prefix>empty`` (the text is empty once stripped) and ``<prefix>h`` (a 64-bit hash of the stripped
    text; equal texts, equal hashes, within one process)."""
    s = expr.cast(pl.Utf8).fill_null("").str.strip_chars(WHITESPACE)
    return [(s.str.len_bytes() == 0).alias(f"{prefix}empty"), s.hash(seed=0).alias(f"{prefix}h")]


def text_keys(texts: Sequence[str | None]) -> pl.DataFrame:
    """Per text: ``empty`` and ``h`` (see :func:`_keys`)."""
    return pl.select(_keys(pl.lit(pl.Series(list(texts), dtype=pl.Utf8)), ""))


def choose(
    pairs: Iterable[tuple[str | None, bool, int, bool, int]], max_sentences: int, seed: int = 0
) -> tuple[list[int], dict[str, int]]:
    """Positions of the chosen pairs (in their order) and the counts of pairs left out by reason
    (``empty``, ``duplicate``, ``over_max``). ``pairs``: per pair (id, pivot empty, pivot hash, text empty,
    text hash), in order. Memory: the hashes of the usable pairs, and ``max_sentences`` candidates."""
    dropped = {"empty": 0, "duplicate": 0, "over_max": 0}
    seen_p: set[int] = set()
    seen_t: set[int] = set()
    usable = 0

    def usable_pairs():
        nonlocal usable
        for i, (pid, pe, ph, te, th) in enumerate(pairs):
            if pe or te:
                dropped["empty"] += 1
            elif ph in seen_p or th in seen_t:
                dropped["duplicate"] += 1
            else:
                seen_p.add(ph)
                seen_t.add(th)
                usable += 1
                yield hashlib.sha256(f"{seed}\x1f{pid}".encode()).hexdigest(), i

    chosen = sorted(i for _, i in heapq.nsmallest(max_sentences, usable_pairs()))
    dropped["over_max"] = usable - len(chosen)
    return chosen, {k: v for k, v in dropped.items() if v}


def _skip_reason(n: int, min_sentences: int) -> str | None:
    return f"{n} usable pairs < min_sentences={min_sentences}" if n < min_sentences else None


def prepare(
    sets: dict[str, ParallelSet], max_sentences: int, min_sentences: int, seed: int = 0
) -> tuple[dict[str, ParallelSet], dict[str, str]]:
    """:func:`choose` on sets already in memory (text files): (sets with stripped texts, skipped languages)."""
    out: dict[str, ParallelSet] = {}
    skipped: dict[str, str] = {}
    for code, s in sets.items():
        p, t = text_keys(s.pivot), text_keys(s.texts)
        rows = zip(s.ids, p["empty"], p["h"], t["empty"], t["h"])
        keep, dropped = choose(rows, max_sentences, seed)
        why = _skip_reason(len(keep), min_sentences)
        if why:
            skipped[code] = why
            continue
        out[code] = ParallelSet(
            code,
            [s.pivot[i].strip() for i in keep],
            [s.texts[i].strip() for i in keep],
            [s.ids[i] for i in keep],
            s.origin,
            dropped,
        )
    return out, skipped


# ---------------------------------------------------------------------------------------------- tables


def _norm_code(v: Any) -> str | None:
    if isinstance(v, str) and langs.is_valid(v):
        return langs.normalize(v)
    return None


def _col(df: pl.DataFrame, name: str) -> pl.Series:
    """A column of a batch as text (nulls where the batch lacks it)."""
    return df.select(_col_expr(df, name).alias(name)).to_series()


def _col_expr(df: pl.DataFrame, name: str) -> pl.Expr:
    return pl.col(name).cast(pl.Utf8) if name in df.columns else pl.lit(None, dtype=pl.Utf8)


# per language: the pairs (PAIR_COLUMNS, in order) and where their texts are (pivot column, text column, origin)
Pairs = dict[str, tuple[pl.DataFrame, str, str, str]]


def _long_pairs(
    source: TableSource, pivot: str, want: set[str], text_column: str, lang_column: str | None, id_column: str
) -> Pairs:
    """Long form: one row per sentence, the language in ``lang_column`` (else ``<text_column>_lang``), rows
    of one unit tied by ``id_column``; the first row of each (id, language) counts; pairs in id order."""
    lc = lang_column if lang_column and lang_column in source.columns else f"{text_column}_lang"
    for c in (id_column, text_column, lc):
        if c not in source.columns:
            raise InputError(
                source.name,
                f"no column '{c}' (columns: {', '.join(source.columns)}); the long form needs "
                "id_column, text_column and lang_column (or use columns = {lang = column})",
            )
    index: dict[str, int] = {}  # language code -> a small number (the keys hold numbers, not codes)
    parts, offset = [], 0
    for df in source.batches([id_column, text_column, lc]):
        mapping = {}
        for v in _col(df, lc).unique().to_list():
            code = _norm_code(v)
            if code is not None:
                mapping[v] = index.setdefault(code, len(index))
        parts.append(
            df.select(
                _col_expr(df, id_column).alias("id"),
                _col_expr(df, lc).replace_strict(mapping, default=None, return_dtype=pl.Int32).alias("lang"),
                *_keys(_col_expr(df, text_column), ""),
                pl.int_range(offset, offset + df.height, dtype=pl.Int64).alias("pos"),
            )
        )
        offset += df.height
    keys = pl.concat(parts) if parts else pl.DataFrame(schema={"id": pl.Utf8, "lang": pl.Int32})
    del parts
    present = set(keys.select(pl.col("lang").filter(pl.col("id").is_not_null()).unique().drop_nulls())["lang"])

    def rows_of(code: str, prefix: str) -> pl.DataFrame:
        """The first row of each id in ``code`` (a mask per language: lighter than a unique over the table)."""
        mine = keys.filter((pl.col("lang") == index[code]) & pl.col("id").is_not_null())
        mine = mine.filter(pl.col("id").is_first_distinct())
        return mine.select("id", **{f"{prefix}{c}": c for c in ("pos", "empty", "h")})

    out: Pairs = {}
    if pivot not in index or index[pivot] not in present:
        return out
    piv = rows_of(pivot, "p_")
    for code in sorted(c for c, i in index.items() if i in present and c != pivot):
        if want and code not in want:
            continue
        j = rows_of(code, "t_").join(piv, on="id", how="inner", maintain_order="left").sort("id")
        if j.height:
            out[code] = (j.select(PAIR_COLUMNS), text_column, text_column, f"{text_column} by {id_column}")
    return out


def _wide_pairs(source: TableSource, pivot: str, want: set[str], columns: dict[str, str], id_column: str) -> Pairs:
    """Wide form: one row per unit, a text column per language (``columns``); pairs in table order."""
    cols = {langs.normalize(k): v for k, v in columns.items()}
    if pivot not in cols:
        raise InputError(source.name, f"columns has no column for the pivot {pivot}")
    for c in cols.values():
        if c not in source.columns:
            raise InputError(source.name, f"no column '{c}' (columns: {', '.join(source.columns)})")
    has_id = id_column in source.columns
    parts, offset = [], 0
    for df in source.batches([*([id_column] if has_id else []), *dict.fromkeys(cols.values())]):
        n = df.height
        ids = _col_expr(df, id_column) if has_id else pl.int_range(offset, offset + n).cast(pl.Utf8)
        keys = [k for c in dict.fromkeys(cols.values()) for k in _keys(_col_expr(df, c), f"{c}\x1f")]
        parts.append(df.select(ids.alias("id"), pl.int_range(offset, offset + n, dtype=pl.Int64).alias("pos"), *keys))
        offset += n
    keys = pl.concat(parts) if parts else None
    out: Pairs = {}
    for code, c in cols.items():
        if code == pivot or (want and code not in want):
            continue
        pc = cols[pivot]
        pairs = (
            keys.select(
                pl.col("id").cast(pl.Utf8),
                p_pos="pos",
                p_empty=f"{pc}\x1fempty",
                p_h=f"{pc}\x1fh",
                t_pos="pos",
                t_empty=f"{c}\x1fempty",
                t_h=f"{c}\x1fh",
            )
            if keys is not None
            else EMPTY_PAIRS
        )
        out[code] = (pairs, pc, c, f"columns {pc} + {c}")
    return out


def _texts(source: TableSource, need: dict[str, np.ndarray]) -> dict[tuple[str, int], str]:
    """Second pass: the stripped texts at the positions ``need`` names per column (sorted arrays)."""
    got: dict[tuple[str, int], str] = {}
    offset = 0
    for df in source.batches(list(need)):
        n = df.height
        for col, pos in need.items():
            a, b = np.searchsorted(pos, [offset, offset + n])
            if a == b:
                continue
            local = pos[a:b] - offset
            for p, t in zip(pos[a:b].tolist(), _col(df, col).gather(local).to_list()):
                got[(col, p)] = (t or "").strip()
        offset += n
    return got


def sample_sets(
    source: TableSource,
    pivot: str,
    want: Sequence[str] = (),
    *,
    columns: dict[str, str] | None = None,
    text_column: str = "text",
    lang_column: str | None = "lang",
    id_column: str = "parallel_id",
    max_sentences: int = 200,
    min_sentences: int = 10,
    seed: int = 0,
) -> tuple[dict[str, ParallelSet], dict[str, str]]:
    """The chosen pairs of each language with the pivot, from a table read twice: wide (``columns`` =
    language -> column, one row per unit) or long (one row per sentence). Returns (sets, skipped)."""
    pivot = langs.normalize(pivot)
    want_set = {langs.normalize(c) for c in want}
    if columns:
        found = _wide_pairs(source, pivot, want_set, columns, id_column)
    else:
        found = _long_pairs(source, pivot, want_set, text_column, lang_column, id_column)
    chosen: dict[str, tuple[pl.DataFrame, dict[str, int]]] = {}
    skipped: dict[str, str] = {}
    for code, (pairs, _, _, _) in found.items():
        rows = pairs.select("id", "p_empty", "p_h", "t_empty", "t_h").iter_rows()
        keep, dropped = choose(rows, max_sentences, seed)
        why = _skip_reason(len(keep), min_sentences)
        if why:
            skipped[code] = why
        else:
            chosen[code] = (pairs[keep], dropped)
    need: dict[str, set[int]] = {}
    for code, (pairs, _) in chosen.items():
        _, pc, tc, _ = found[code]
        need.setdefault(pc, set()).update(pairs["p_pos"].to_list())
        need.setdefault(tc, set()).update(pairs["t_pos"].to_list())
    texts = _texts(source, {c: np.array(sorted(v), dtype=np.int64) for c, v in need.items()}) if need else {}
    sets = {}
    for code, (pairs, dropped) in chosen.items():
        _, pc, tc, origin = found[code]
        sets[code] = ParallelSet(
            code,
            [texts[(pc, p)] for p in pairs["p_pos"].to_list()],
            [texts[(tc, p)] for p in pairs["t_pos"].to_list()],
            pairs["id"].to_list(),
            origin,
            dropped,
        )
    return sets, skipped
