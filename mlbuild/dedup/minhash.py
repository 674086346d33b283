"""MinHash signatures of whole batches, and LSH band keys, the same numbers as ``datasketch``.

``datasketch`` (its default ``affine32`` scheme) premixes each 32-bit shingle hash with MurmurHash3's
32-bit finaliser and applies ``num_perm`` affine permutations ``a * h + b`` (mod 2**32) whose
parameters it draws from ``seed``; a signature is the minimum of each permutation over the shingles.
:func:`permutations` takes those parameters from ``datasketch.MinHash`` itself, and :func:`signatures`
computes the same minima for every row of a batch with numpy (one ``[shingles, num_perm]`` block at a
time, ``threads`` blocks at once: numpy releases the GIL), instead of one Python object per row.
:func:`lsh_params` asks ``datasketch.MinHashLSH`` for its bands and rows for a Jaccard threshold
(the split that minimises its weighted false positive and negative probabilities).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import requires
from .text import fmix64

EMPTY = np.uint32(0xFFFFFFFF)
_INSTALL = "pip install datasketch==2.0.0"


def _datasketch():
    return requires("datasketch", _INSTALL, "MinHash near-duplicate detection")


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) uint32 [num_perm] of ``datasketch.MinHash(num_perm, seed, scheme="affine32")``."""
    ds = _datasketch()
    a, b = ds.MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return np.asarray(a, dtype=np.uint32), np.asarray(b, dtype=np.uint32)


def lsh_params(threshold: float, num_perm: int, weights: tuple[float, float] = (0.05, 0.95)) -> tuple[int, int]:
    """(bands, rows per band) that ``datasketch.MinHashLSH`` picks for ``threshold`` and ``num_perm``, with
    its false positive and false negative probabilities weighted by ``weights`` (the default leans to
    recall: a pair at the threshold becomes a candidate with probability about 0.95; candidates are
    verified afterwards, so false positives cost time only)."""
    ds = _datasketch()
    lsh = ds.MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
    return int(lsh.b), int(lsh.r)


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, element-wise on uint32 (the premix of datasketch's affine32)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _block(hv: np.ndarray, starts: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = np.multiply(hv[:, None], a[None, :])
        x += b[None, :]
    return np.minimum.reduceat(x, starts, axis=0)


def signatures(
    hashes: np.ndarray,
    offsets: np.ndarray,
    perms: tuple[np.ndarray, np.ndarray],
    block: int = 1 << 15,
    threads: int = 1,
) -> np.ndarray:
    """uint32 [n, num_perm] MinHash signatures of the rows whose shingle hashes are
    ``hashes[offsets[i]:offsets[i+1]]``; a row without shingles gets all ``0xFFFFFFFF`` (datasketch's
    empty MinHash). ``block``: shingles per numpy block (its memory is ``block * num_perm * 4`` bytes)."""
    a, b = perms
    n = len(offsets) - 1
    out = np.full((n, len(a)), EMPTY, dtype=np.uint32)
    rows = np.flatnonzero(offsets[1:] > offsets[:-1])
    if not len(rows):
        return out
    with np.errstate(over="ignore"):
        hv = fmix32(hashes.astype(np.uint32, copy=False))
    # cut the non-empty rows into groups of about ``block`` shingles (a long row is a group of its own)
    ends = offsets[rows + 1]
    start0 = offsets[rows[0]]
    targets = start0 + block * np.arange(1, -(-(ends[-1] - start0) // block), dtype=np.int64)
    cuts = np.unique(np.concatenate([[0], np.searchsorted(ends, targets) + 1, [len(rows)]]))
    cuts = cuts[cuts <= len(rows)]
    jobs = [rows[c0:c1] for c0, c1 in zip(cuts[:-1], cuts[1:]) if c1 > c0]

    def run(rr: np.ndarray) -> None:
        s0, s1 = offsets[rr[0]], offsets[rr[-1] + 1]
        out[rr] = _block(hv[s0:s1], offsets[rr] - s0, a, b)

    if threads > 1 and len(jobs) > 1:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, jobs))
    else:
        for rr in jobs:
            run(rr)
    return out


def band_keys(sig: np.ndarray, bands: int, rows: int, salt: np.ndarray | None = None) -> np.ndarray:
    """uint64 [n, bands]: one key per band of each signature (band number and optional per-row ``salt``,
    e.g. a language hash, mixed in, so equal keys mean equal band values in the same band and salt)."""
    n = sig.shape[0]
    out = np.empty((n, bands), dtype=np.uint64)
    base = salt.astype(np.uint64) if salt is not None else np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for t in range(bands):
            h = fmix64(base ^ np.uint64(0x9E3779B97F4A7C15 * (t + 1) & 0xFFFFFFFFFFFFFFFF))
            for j in range(t * rows, (t + 1) * rows):
                h = fmix64(h * np.uint64(0x100000001B3) + sig[:, j].astype(np.uint64))
            out[:, t] = h
    return out


def jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity of row pairs: the share of equal signature values."""
    return (sig_a == sig_b).mean(axis=1).astype(np.float32)
