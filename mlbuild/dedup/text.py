"""Text normalisation and shingle hashes, vectorised over a batch of texts.

:func:`normalize` (Unicode NFKC, lower case, punctuation and format characters to spaces, runs of
white space to one space, trimmed) is what "the same text" means for exact duplicates and what
shingles and n-grams are cut from. :func:`exact_keys` hashes normalised texts to 128 bits.

Shingles are substrings of a normalised text: ``char`` shingles are windows of ``size`` characters,
``word`` shingles windows of ``size`` words (with the single spaces between them). A text shorter
than one window is one shingle (itself), so short texts still have a signature; an empty text has
none. Every substring is hashed with one polynomial hash over code points, computed for all windows
of a batch at once from prefix sums (mod 2**64), then mixed (MurmurHash3's 64-bit finaliser) and cut
to 32 bits. :func:`shingle_hash` is the same hash for one string, in plain Python (the reference the
tests compare the vectorised code with, and the hash function handed to ``datasketch``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

Shingle = Literal["char", "word"]

_P = 0x100000001B3  # odd, so it has an inverse modulo 2**64
_P_INV = pow(_P, -1, 1 << 64)
_LEN_MIX = 0x9E3779B97F4A7C15
_SPACE = 32
_M64 = (1 << 64) - 1


def normalize(texts: pl.Series | list[str | None]) -> pl.Series:
    """NFKC, lower case, punctuation (``\\p{P}``) and format characters (``\\p{Cf}``: zero-width spaces,
    soft hyphens) to spaces, white space runs to one space, trimmed. Nulls become empty texts."""
    s = texts if isinstance(texts, pl.Series) else pl.Series(texts, dtype=pl.Utf8)
    return (
        s.cast(pl.Utf8)
        .fill_null("")
        .str.normalize("NFKC")
        .str.to_lowercase()
        .str.replace_all(r"[\p{P}\p{Cf}]+", " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def exact_keys(normed: pl.Series, salt: list[str] | None = None) -> np.ndarray:
    """128-bit keys (uint64 [n, 2]) of normalised texts, optionally salted per row (a language code, so
    equal texts in two languages get different keys)."""
    out = np.empty((len(normed), 2), dtype=np.uint64)
    for i, t in enumerate(normed.to_list()):
        h = hashlib.blake2b(t.encode("utf-8"), digest_size=16, person=b"mlbuild-exact")
        if salt is not None:
            h.update(b"\x1f" + (salt[i] or "").encode("utf-8"))
        out[i] = np.frombuffer(h.digest(), dtype=np.uint64)
    return out


def uniq(x: np.ndarray) -> np.ndarray:
    """Sorted distinct values by sorting (numpy 2's hash-based ``np.unique`` was 20x slower on 64-bit keys)."""
    x = np.sort(x)
    return x[np.r_[True, x[1:] != x[:-1]]] if len(x) else x


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (a bijection that spreads every input bit), element-wise."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _fmix64_int(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _M64
    return h ^ (h >> 33)


def shingle_hash64(s: str) -> int:
    """The 64-bit hash of one substring, in plain Python (what :class:`SubstringHasher` computes in bulk)."""
    h = 0
    for ch in s:
        h = (h * _P + ord(ch)) & _M64
    h ^= (len(s) * _LEN_MIX) & _M64
    return _fmix64_int(h)


def shingle_hash(s: str) -> int:
    """The 32-bit hash of one shingle (the top half of :func:`shingle_hash64`)."""
    return shingle_hash64(s) >> 32


@dataclass
class Codepoints:
    """A batch of texts as one flat array of code points with row offsets (``starts``, ``lengths``)."""

    cp: np.ndarray  # uint64 [T]
    starts: np.ndarray  # int64 [n]
    lengths: np.ndarray  # int64 [n]

    @classmethod
    def of(cls, texts: pl.Series) -> Codepoints:
        lengths = texts.str.len_chars().fill_null(0).to_numpy().astype(np.int64)
        flat = "".join(texts.fill_null("").to_list())
        cp = np.frombuffer(flat.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        starts = np.zeros(len(lengths), dtype=np.int64)
        if len(lengths) > 1:
            np.cumsum(lengths[:-1], out=starts[1:])
        return cls(cp, starts, lengths)


class SubstringHasher:
    """Hashes of any substrings ``[s, e)`` of a flat code point array in O(1) each, from prefix sums:
    ``H(s, e) = P**(e-1) * (G[e] - G[s])`` with ``G[x] = sum(cp[j] * P**-j, j < x)``, all mod 2**64
    (numpy's unsigned arithmetic wraps), which equals the Horner hash of the substring."""

    def __init__(self, cp: np.ndarray):
        n = len(cp)
        with np.errstate(over="ignore"):
            inv_pow = np.empty(n + 1, dtype=np.uint64)
            inv_pow[0] = 1
            if n:
                inv_pow[1:] = np.cumprod(np.full(n, _P_INV, dtype=np.uint64))
            self.pow = np.empty(n + 1, dtype=np.uint64)
            self.pow[0] = 1
            if n:
                self.pow[1:] = np.cumprod(np.full(n, _P, dtype=np.uint64))
            self.G = np.zeros(n + 1, dtype=np.uint64)
            if n:
                np.cumsum(cp * inv_pow[:n], out=self.G[1:])
        # P**(e-1) for e >= 1; e == 0 never occurs for a non-empty substring

    def hash64(self, s: np.ndarray, e: np.ndarray) -> np.ndarray:
        """uint64 hashes of substrings ``[s[i], e[i])`` (non-empty)."""
        with np.errstate(over="ignore"):
            h = self.pow[e - 1] * (self.G[e] - self.G[s])
            h = h ^ ((e - s).astype(np.uint64) * np.uint64(_LEN_MIX))
            return fmix64(h)

    def __call__(self, s: np.ndarray, e: np.ndarray) -> np.ndarray:
        """uint32 hashes of substrings ``[s[i], e[i])`` (the top half of :meth:`hash64`)."""
        return (self.hash64(s, e) >> np.uint64(32)).astype(np.uint32)


def _windows(
    first: np.ndarray, count: np.ndarray, size: int, whole: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the window positions ``first + k`` for k < count - size + 1; a row with fewer than ``size``
    units has one window over all of them when ``whole`` (none when it has no unit), else none.
    Returns (row of each window, its first unit, its number of units)."""
    if whole:
        nwin = np.where(count >= size, count - size + 1, (count > 0).astype(np.int64))
    else:
        nwin = np.maximum(count - size + 1, 0)
    rows = np.repeat(np.arange(len(count), dtype=np.int64), nwin)
    base = np.repeat(np.cumsum(nwin) - nwin, nwin)
    pos = np.repeat(first, nwin) + (np.arange(len(rows), dtype=np.int64) - base)
    span = np.repeat(np.minimum(count, size), nwin)
    return rows, pos, span


def gram_spans(
    cps: Codepoints, kind: Shingle, size: int, whole: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, start, end) of every window of ``size`` characters or words of each text (see :func:`_windows`)."""
    if kind == "char":
        rows, s, span = _windows(cps.starts, cps.lengths, size, whole)
        return rows, s, s + span
    ws, we, wrow = words(cps)
    nwords = np.bincount(wrow, minlength=len(cps.lengths)).astype(np.int64)
    first = np.cumsum(nwords) - nwords
    rows, w0, span = _windows(first, nwords, size, whole)
    return rows, ws[w0], we[w0 + span - 1]


def shingles(texts: pl.Series, kind: Shingle = "char", size: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The shingle hashes of each (normalised) text: (uint32 hashes [S], int64 offsets [n + 1]); the
    hashes of row i are ``hashes[offsets[i]:offsets[i + 1]]`` (repeats included; a signature ignores them)."""
    cps = Codepoints.of(texts)
    rows, s, e = gram_spans(cps, kind, size)
    offsets = np.zeros(len(cps.lengths) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(cps.lengths)), out=offsets[1:])
    return (SubstringHasher(cps.cp)(s, e) if len(s) else np.zeros(0, dtype=np.uint32)), offsets


def ngram_hashes(texts: pl.Series, sizes: list[int], whole: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every word n-gram of each size in ``sizes`` of each (normalised) text: (row, hash).
    ``whole``: a text shorter than a size counts whole as one gram of that size."""
    cps = Codepoints.of(texts)
    hasher = SubstringHasher(cps.cp)
    rows, hashes = [], []
    for size in sizes:
        r, s, e = gram_spans(cps, "word", size, whole)
        rows.append(r)
        hashes.append(hasher.hash64(s, e) if len(s) else np.zeros(0, dtype=np.uint64))
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
    return np.concatenate(rows), np.concatenate(hashes)


def words(cps: Codepoints) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Word spans of normalised texts (words are separated by single spaces): (starts, ends, row)."""
    cp = cps.cp
    n = len(cp)
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z
    is_row_start = np.zeros(n + 1, dtype=bool)
    is_row_start[cps.starts[cps.lengths > 0]] = True
    is_row_end = np.zeros(n + 1, dtype=bool)
    is_row_end[(cps.starts + cps.lengths)[cps.lengths > 0]] = True
    nonspace = cp != _SPACE
    prev_space = np.ones(n, dtype=bool)
    prev_space[1:] = ~nonspace[:-1]
    next_space = np.ones(n, dtype=bool)
    next_space[:-1] = ~nonspace[1:]
    starts = np.flatnonzero(nonspace & (prev_space | is_row_start[:n]))
    ends = np.flatnonzero(nonspace & (next_space | is_row_end[1:])) + 1
    row = np.searchsorted(cps.starts, starts, side="right") - 1
    # rows of zero length share a start with the next row: searchsorted picks the last such row, which is
    # the non-empty one since zero-length rows sort before it (equal starts, 'right')
    return starts.astype(np.int64), ends.astype(np.int64), row.astype(np.int64)


def word_count(normed: pl.Series) -> np.ndarray:
    """Words in each normalised text."""
    return (normed.str.count_matches(" ") + (normed.str.len_chars() > 0).cast(pl.Int64)).fill_null(0).to_numpy()
