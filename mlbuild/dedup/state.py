"""The global part of ``dedup.v1``: per-row state on local disk, duplicate pairs, decisions.

:meth:`DedupState.add` takes the table batch by batch (first pass) and keeps, per row, only small
numbers in memory (text length, language code, group hash, score: about 30 bytes a row); the rest
goes to files in a scratch folder: row ids and normalised texts (an Arrow IPC file read back
memory-mapped), MinHash signatures and vectors (``.npy`` memory maps), exact keys (hash buckets).
:meth:`DedupState.finish` then finds the pairs, method by method:

- **exact**: equal 128-bit keys of the normalised text (with the language when not cross-lingual);
  the first row of each run is its representative, later methods only see representatives;
- **near**: MinHash-LSH band keys (datasketch's bands and rows for the threshold, leaning to recall)
  in hash buckets; each candidate pair is verified on the exact Jaccard similarity of the two texts'
  shingle sets, so the threshold is applied without the signature's estimation noise;
- **semantic**: blocked exact top-k search of the vectors (see :mod:`.semantic`).

and hands the pairs to :func:`.clusters.decide`. Memory grows with the rows (a few dozen bytes each)
and with the duplicate pairs, never with pairs of rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from . import buckets, clusters, minhash, semantic
from .text import exact_keys, fmix64, normalize, shingles, uniq

ALL_PAIRS_UPTO = 16  # LSH buckets of up to this many rows are verified pair by pair
VERIFY_CHUNK = 1 << 16
# a candidate pair is verified on its exact Jaccard only when its signature estimate is at least the threshold
# minus this: the estimate's standard deviation is at most 0.5 / sqrt(num_perm) (0.044 at 128 permutations),
# so a pair at the threshold is skipped with probability under 0.05% (3.4 sigma)
ESTIMATE_SLACK = 0.15


@dataclass(frozen=True)
class Config:
    methods: tuple[str, ...]
    cross_lingual: bool = True
    semantic_pairs: str = "all"  # or "cross_lingual"
    near_threshold: float = 0.5
    shingle: str = "char"
    shingle_size: int = 4
    num_perm: int = 128
    bands: int = 32
    rows: int = 4
    semantic_threshold: float = 0.9
    semantic_k: int = 10
    keep: str = "first"
    search: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    """What the first pass needs of one table batch (the step extracts it)."""

    row_ids: pl.Series
    texts: pl.Series
    sig: np.ndarray | None = None  # uint32 [n, num_perm]
    vectors: np.ndarray | None = None  # float32 [n, d], L2-normalised
    lang: pl.Series | None = None
    group: pl.Series | None = None
    score: np.ndarray | None = None


def _lang_salt(codes: np.ndarray) -> np.ndarray:
    return fmix64(codes.astype(np.uint64) + np.uint64(0x51ED27))


class DedupState:
    def __init__(self, config: Config, n_rows: int, scratch: Path):
        self.cfg = config
        self.n = n_rows
        self.scratch = Path(scratch)
        self.pos = 0
        self.length = np.zeros(n_rows, dtype=np.int32)
        self.lang = np.zeros(n_rows, dtype=np.int32)
        self.lang_names: dict[str, int] = {}
        self.group_hash = np.zeros(n_rows, dtype=np.uint64)
        self.has_group = np.zeros(n_rows, dtype=bool)
        self.score = np.full(n_rows, np.nan) if config.keep == "score" else None
        self.empty = np.zeros(n_rows, dtype=bool)
        self.sig: np.ndarray | None = None
        self.vec: np.ndarray | None = None
        self.exact = buckets.Buckets(self.scratch / "exact", "exact")
        self._ipc_path = self.scratch / "rows.arrow"
        self._schema = pa.schema([("row_id", pa.large_string()), ("normed", pa.large_string())])
        self._ipc = pa.ipc.new_file(str(self._ipc_path), self._schema)
        self._ipc_open = True
        self._table: pa.Table | None = None
        self.stats: dict[str, Any] = {}

    # ------------------------------------------------------------------ first pass
    def _lang_codes(self, lang: pl.Series | None, n: int) -> np.ndarray:
        if lang is None:
            return np.zeros(n, dtype=np.int32)
        vals = lang.cast(pl.Utf8).fill_null("").to_list()
        for v in dict.fromkeys(vals):
            self.lang_names.setdefault(v, len(self.lang_names))
        return np.fromiter((self.lang_names[v] for v in vals), dtype=np.int32, count=n)

    def add(self, b: Batch) -> None:
        n = len(b.row_ids)
        s, e = self.pos, self.pos + n
        if e > self.n:
            raise RuntimeError(f"the table holds more than the {self.n} rows it announced")
        normed = normalize(b.texts)
        self.length[s:e] = b.texts.cast(pl.Utf8).fill_null("").str.len_chars().to_numpy()
        self.lang[s:e] = self._lang_codes(b.lang, n)
        self.empty[s:e] = (normed.str.len_chars() == 0).to_numpy()
        if b.group is not None:
            g = b.group.cast(pl.Utf8)
            self.has_group[s:e] = g.is_not_null().to_numpy()
            self.group_hash[s:e] = g.fill_null("").hash(seed=0).to_numpy()
        if self.score is not None and b.score is not None:
            self.score[s:e] = b.score
        salt = (
            b.lang.cast(pl.Utf8).fill_null("").to_list() if b.lang is not None and not self.cfg.cross_lingual else None
        )
        keys = exact_keys(normed, salt)
        self.exact.add(keys[:, 0], keys[:, 1], np.arange(s, e, dtype=np.int64))
        if b.sig is not None:
            if self.sig is None:
                self.sig = np.lib.format.open_memmap(
                    self.scratch / "sig.npy", "w+", np.uint32, (self.n, b.sig.shape[1])
                )
            self.sig[s:e] = b.sig
        if b.vectors is not None:
            if self.vec is None:
                self.vec = np.lib.format.open_memmap(
                    self.scratch / "vec.npy", "w+", np.float32, (self.n, b.vectors.shape[1])
                )
            self.vec[s:e] = b.vectors
        ids = pa.array(b.row_ids.cast(pl.Utf8).to_list(), type=pa.large_string())
        self._ipc.write_batch(pa.record_batch([ids, pa.array(normed.to_list(), type=pa.large_string())], self._schema))
        self.pos = e

    # ------------------------------------------------------------------ lookups
    def table(self) -> pa.Table:
        if self._table is None:
            self._close_ipc()
            self._table = pa.ipc.open_file(pa.memory_map(str(self._ipc_path))).read_all()
        return self._table

    def take(self, column: str, idx: np.ndarray) -> list[str]:
        """Values of ``column`` (``row_id`` or ``normed``) at row positions ``idx``."""
        if not len(idx):
            return []
        return self.table().column(column).take(pa.array(np.asarray(idx, dtype=np.int64))).to_pylist()

    # ------------------------------------------------------------------ pairs
    def finish(self, progress: Any = None) -> clusters.Decisions:
        if self.pos != self.n:
            raise RuntimeError(f"the table announced {self.n} rows but gave {self.pos}")
        self.table()
        edges = clusters.Edges.empty()
        rep = self._exact_pairs(edges)
        rep &= ~self.empty
        if "near" in self.cfg.methods and self.sig is not None:
            self._near_pairs(edges, rep)
        self.node = clusters.nodes_of(self.group_hash, self.has_group)
        if "semantic" in self.cfg.methods and self.vec is not None:
            self._semantic_pairs(edges, rep, progress)
        self.stats["pairs"] = edges.counts()
        d = clusters.decide(self.node, self.klass, edges, self.cfg.keep, self.length, self.score)
        self.stats.update(clusters=d.clusters, groups_dropped=d.nodes_dropped if self.has_group.any() else 0)
        return d

    def _exact_pairs(self, edges: clusters.Edges) -> np.ndarray:
        """Exact pairs (each row with the first row of its key); returns the representatives mask."""
        rep = np.ones(self.n, dtype=bool)
        self.klass = np.arange(self.n, dtype=np.int64)  # exact class: the first row of equal texts
        for rows, run in self.exact.runs():
            first = np.ones(len(rows), dtype=bool)
            first[1:] = run[1:] != run[:-1]
            head = rows[np.maximum.accumulate(np.where(first, np.arange(len(rows)), 0))]
            later = ~first
            rep[rows[later]] = False
            if "exact" in self.cfg.methods:
                self.klass[rows[later]] = head[later]
                edges.add(head[later], rows[later], 0, 1.0)
        if "exact" not in self.cfg.methods:
            rep[:] = True  # without the exact method, equal texts are left to the others
        return rep

    def _near_pairs(self, edges: clusters.Edges, rep: np.ndarray) -> None:
        cfg = self.cfg
        bands = buckets.Buckets(self.scratch / "bands", "band")
        idx = np.flatnonzero(rep)
        for s in range(0, len(idx), 1 << 16):
            rows = idx[s : s + (1 << 16)]
            salt = None if cfg.cross_lingual else _lang_salt(self.lang[rows])
            keys = minhash.band_keys(np.asarray(self.sig[rows]), cfg.bands, cfg.rows, salt)
            bands.add(keys.reshape(-1), None, np.repeat(rows, cfg.bands))
        us, vs = [], []
        for rows, run in bands.runs():
            u, v = buckets.run_pairs(rows, run, ALL_PAIRS_UPTO)
            us.append(u)
            vs.append(v)
        if not us:
            self.stats["near_candidates"] = 0
            return
        u, v = np.concatenate(us), np.concatenate(vs)
        code = uniq(u * np.int64(self.n) + v)
        u, v = code // self.n, code % self.n
        self.stats["near_candidates"] = len(u)
        verified = 0
        for c in range(0, len(u), VERIFY_CHUNK):
            cu, cv = u[c : c + VERIFY_CHUNK], v[c : c + VERIFY_CHUNK]
            # candidates whose signatures agree far below the threshold are not verified (see ESTIMATE_SLACK)
            order = np.argsort(cu, kind="stable")  # memory-map reads in row order
            est = np.empty(len(cu), dtype=np.float32)
            est[order] = minhash.jaccard(np.asarray(self.sig[cu[order]]), np.asarray(self.sig[cv[order]]))
            close = est >= cfg.near_threshold - ESTIMATE_SLACK
            cu, cv = cu[close], cv[close]
            verified += len(cu)
            j = self.jaccard(cu, cv)
            ok = j >= cfg.near_threshold
            edges.add(cu[ok], cv[ok], 1, j[ok])
        self.stats["near_verified"] = verified

    def jaccard(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Exact Jaccard similarity of the shingle sets of rows ``u[i]`` and ``v[i]`` (32-bit shingle hashes)."""
        cfg = self.cfg
        hu, ou = shingles(pl.Series(self.take("normed", u), dtype=pl.Utf8), cfg.shingle, cfg.shingle_size)
        hv, ov = shingles(pl.Series(self.take("normed", v), dtype=pl.Utf8), cfg.shingle, cfg.shingle_size)
        return set_jaccard(hu, ou, hv, ov)

    def _semantic_pairs(self, edges: clusters.Edges, rep: np.ndarray, progress: Any) -> None:
        cfg = self.cfg
        rows = np.flatnonzero(rep)
        mat = np.lib.format.open_memmap(self.scratch / "cand.npy", "w+", np.float32, (len(rows), self.vec.shape[1]))
        for s in range(0, len(rows), 1 << 16):
            mat[s : s + (1 << 16)] = self.vec[rows[s : s + (1 << 16)]]
        mat.flush()
        node, lang = self.node, self.lang
        largest_group = int(np.bincount(node).max()) if len(node) else 1
        k = cfg.semantic_k + largest_group - 1  # a row's own translations may take the first places

        def allow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            ok = node[a] != node[b]
            if cfg.semantic_pairs == "cross_lingual":
                ok &= lang[a] != lang[b]
            elif not cfg.cross_lingual:
                ok &= lang[a] == lang[b]
            return ok

        u, v, s = semantic.semantic_pairs(mat, rows, k, cfg.semantic_threshold, allow, cfg.search, progress=progress)
        other = lang[u] != lang[v]
        edges.add(u[~other], v[~other], 2, s[~other])
        edges.add(u[other], v[other], 3, s[other])

    def _close_ipc(self) -> None:
        if self._ipc_open:
            self._ipc.close()
            self._ipc_open = False

    def close(self) -> None:
        """Release the files (the caller removes the scratch folder)."""
        self.exact.close()
        self._close_ipc()
        self._table = None
        self.sig = self.vec = None


def set_jaccard(hu: np.ndarray, ou: np.ndarray, hv: np.ndarray, ov: np.ndarray) -> np.ndarray:
    """Jaccard similarity of the hash sets of paired rows (``hu[ou[i]:ou[i+1]]`` against ``hv[...]``)."""
    n = len(ou) - 1
    pu = np.repeat(np.arange(n, dtype=np.uint64), np.diff(ou))
    pv = np.repeat(np.arange(n, dtype=np.uint64), np.diff(ov))
    cu = uniq((pu << np.uint64(32)) | hu.astype(np.uint64))
    cv = uniq((pv << np.uint64(32)) | hv.astype(np.uint64))
    both = np.intersect1d(cu, cv, assume_unique=True)
    inter = np.bincount((both >> np.uint64(32)).astype(np.int64), minlength=n)
    su = np.bincount((cu >> np.uint64(32)).astype(np.int64), minlength=n)
    sv = np.bincount((cv >> np.uint64(32)).astype(np.int64), minlength=n)
    union = su + sv - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0).astype(np.float32)
