"""The corpus and exclusion index, built in one streaming pass over the corpus table and the rows.

What it keeps (numpy columns of a few bytes per row or passage; texts and vectors go to disk):

- **passage texts** -> text ids (first-seen order; texts in a :class:`TextStore`, precomputed vectors in a
  :class:`VectorFile`, both in text-id order);
- **entries**: the corpus as distinct (group, text) pairs (distinct texts without ``group_by``): corpus-table
  rows first, then positives not in it, as sentence-transformers adds them. Entries are laid out grouped
  (:attr:`order`), so a group's corpus is one contiguous slice of the search array;
- **queries**: distinct (group, query text), numbered by first row, with the text id of their query text
  and their first row (labeled-pair writes the negatives once, with that row);
- **rows**: each mined row's query and positive entry; the distinct (query, positive) pairs (CSR by query);
- **exclude_same** values: (group, column, value) -> attribute id; the (entry, attribute) pairs both ways, so
  the passages sharing a value with a query's positives are found per query chunk (:meth:`same_pairs`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from .keys import HashIndex, first_positions, text_hashes
from .rows import unit_rows
from .store import Column, Scratch, TextStore, VectorFile

SHIFT = np.uint64(40)  # entry key = group << 40 | text id (exact, no hashing)
UNGROUPED = ""


def expand(owner: np.ndarray, keys: np.ndarray, ptr: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR lookup: for each (owner, key), every ``data[ptr[key]:ptr[key+1]]`` -> (owners, values)."""
    counts = ptr[keys + 1] - ptr[keys]
    total = int(counts.sum())
    if not total:
        return np.zeros(0, np.int64), np.zeros(0, data.dtype)
    rep = np.repeat(np.arange(len(keys)), counts)
    offs = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner[rep], data[ptr[keys][rep] + offs]


def csr(keys: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(ptr [n+1], values sorted by key) for pairs (key, value)."""
    order = np.lexsort((values, keys))
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=n), out=ptr[1:])
    return ptr, values[order]


@dataclass
class Sources:
    """Column names the index reads."""

    query: str
    positive: str
    group: str | None
    exclude: list[str]
    corpus_text: str = "text"
    query_vec: str | None = None  # precomputed vectors
    positive_vec: str | None = None
    corpus_vec: str | None = None
    corpus_id: str | None = None  # passage ids (list layouts' doc_ids); default: a hash of the text
    positive_id: str | None = None


class MiningIndex:
    def __init__(self, scratch: Scratch, cols: Sources, step: str = "mine_negatives"):
        self.cols, self.step = cols, step
        self.grouped = cols.group is not None
        self.groups: dict[str, int] = {}
        self.texts, self.qtexts = HashIndex(), HashIndex()
        self.entries, self.queries = HashIndex(), HashIndex()
        self.attrs = HashIndex()
        self.passage_text = TextStore(scratch.path("passages.txt"))
        self.passage_id = TextStore(scratch.path("passage_ids.txt"))  # "" = none given (hash of the text)
        self.query_text = TextStore(scratch.path("queries.txt"))
        self.passage_vecs = VectorFile(scratch.path("passages.f32"))
        self.query_vecs = VectorFile(scratch.path("queries.f32"))
        self.entry_text, self.entry_group = Column(np.int64), Column(np.int32)
        self.query_qtext, self.query_group, self.query_first = Column(np.int64), Column(np.int32), Column(np.int64)
        self.row_query, self.row_entry = Column(np.int64), Column(np.int64)
        self.attr_entry, self.attr_id = Column(np.int64), Column(np.int64)
        self.rows = 0

    # ---------------------------------------------------------------- pass 1
    def _group_codes(self, batch: pl.DataFrame) -> np.ndarray:
        if not self.grouped:
            self.groups.setdefault(UNGROUPED, 0)
            return np.zeros(batch.height, dtype=np.int64)
        vals = batch[self.cols.group].cast(pl.Utf8).fill_null("").to_list()
        return np.fromiter((self.groups.setdefault(v, len(self.groups)) for v in vals), np.int64, len(vals))

    def _passages(self, groups: np.ndarray, texts: pl.Series, vectors: Any, ids: pl.Series | None) -> np.ndarray:
        """Entry ids of (group, text) pairs, adding the new ones (texts, vectors) in first-seen order."""
        h, c = text_hashes(texts)
        start = len(self.texts)
        tid = self.texts.add(h, c)
        first = first_positions(tid, start)
        if len(first):
            self.passage_text.append(texts.gather(first).cast(pl.Utf8).to_list())
            given = ids.gather(first).cast(pl.Utf8).fill_null("").to_list() if ids is not None else None
            self.passage_id.append(given or [""] * len(first))
            if vectors is not None:
                self.passage_vecs.append(unit_rows(vectors()[first], "the embedding columns", self.step))
        if not self.grouped:
            if len(first):
                self.entry_text.append(tid[first])
                self.entry_group.append(np.zeros(len(first)))
            return tid
        start = len(self.entries)
        eid = self.entries.add((groups.astype(np.uint64) << SHIFT) | tid.astype(np.uint64))
        first = first_positions(eid, start)
        self.entry_text.append(tid[first])
        self.entry_group.append(groups[first])
        return eid

    def _attributes(self, batch: pl.DataFrame, groups: np.ndarray, eid: np.ndarray) -> None:
        for j, col in enumerate(self.cols.exclude):
            vals = batch[col].cast(pl.Utf8)
            ok = vals.is_not_null().to_numpy()
            if not ok.any():
                continue
            keys = pl.Series(groups[ok].astype(str)) + f"\x1f{j}\x1f" + vals.filter(pl.Series(ok))
            aid = self.attrs.add(*text_hashes(keys))
            self.attr_entry.append(eid[ok])
            self.attr_id.append(aid)

    def add_corpus(self, batch: pl.DataFrame) -> None:
        """A batch of the corpus table (rows with an empty text are skipped)."""
        t = batch[self.cols.corpus_text].cast(pl.Utf8)
        keep = (t.is_not_null() & (t.str.strip_chars() != "")).to_numpy()
        if not keep.all():
            batch = batch.filter(pl.Series(keep))
        if not batch.height:
            return
        groups = self._group_codes(batch)
        vec = self._vector_getter(batch, self.cols.corpus_vec)
        cid = self.cols.corpus_id
        ids = batch[cid] if cid and cid in batch.columns else None
        eid = self._passages(groups, batch[self.cols.corpus_text], vec, ids)
        self._attributes(batch, groups, eid)

    def add_rows(self, batch: pl.DataFrame) -> None:
        """A batch of rows to mine (already split and checked by :func:`~mlbuild.mining.rows.prepare`)."""
        if not batch.height:
            return
        groups = self._group_codes(batch)
        pid = self.cols.positive_id
        ids = batch[pid] if pid and pid in batch.columns else None
        eid = self._passages(
            groups, batch[self.cols.positive], self._vector_getter(batch, self.cols.positive_vec), ids
        )
        self._attributes(batch, groups, eid)
        qt_texts = batch[self.cols.query].cast(pl.Utf8)
        start = len(self.qtexts)
        qt = self.qtexts.add(*text_hashes(qt_texts))
        first = first_positions(qt, start)
        if len(first):
            self.query_text.append(qt_texts.gather(first).to_list())
            vec = self._vector_getter(batch, self.cols.query_vec)
            if vec is not None:
                self.query_vecs.append(unit_rows(vec()[first], "the embedding columns", self.step))
        if self.grouped:
            start = len(self.queries)
            qid = self.queries.add((groups.astype(np.uint64) << SHIFT) | qt.astype(np.uint64))
        else:
            start, qid = start, qt
        first = first_positions(qid, start)
        self.query_qtext.append(qt[first])
        self.query_group.append(groups[first])
        self.query_first.append(self.rows + first)
        self.row_query.append(qid)
        self.row_entry.append(eid)
        self.rows += batch.height

    def _vector_getter(self, batch: pl.DataFrame, col: str | None):
        if col is None:
            return None
        from .rows import matrix

        return lambda: matrix(batch[col], self.step)

    # ---------------------------------------------------------------- after pass 1
    def finish(self) -> None:
        """Layouts and inverted lists, from the columns gathered in pass 1."""
        self.n_entries, self.n_queries = self.entry_text.n, self.query_qtext.n
        eg = self.entry_group.array()
        self.order = np.argsort(eg, kind="stable")  # grouped layout: position -> entry
        n_groups = max(len(self.groups), 1)
        self.group_start = np.zeros(n_groups + 1, dtype=np.int64)
        np.cumsum(np.bincount(eg, minlength=n_groups), out=self.group_start[1:])
        self.entry_local = np.empty(self.n_entries, dtype=np.int64)
        self.entry_local[self.order] = np.arange(self.n_entries) - self.group_start[eg[self.order]]
        # distinct (query, positive) pairs
        rq, re = self.row_query.array(), self.row_entry.array()
        codes = np.unique(rq * max(self.n_entries, 1) + re)
        self.pos_query, self.pos_entry = codes // max(self.n_entries, 1), codes % max(self.n_entries, 1)
        self.pos_ptr = np.zeros(self.n_queries + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.pos_query, minlength=self.n_queries), out=self.pos_ptr[1:])
        # exclude_same: entry -> attributes, attribute -> entries
        ae, ai = self.attr_entry.array(), self.attr_id.array()
        if len(ae):
            pairs = np.unique(ae * max(len(self.attrs), 1) + ai)
            ae, ai = pairs // max(len(self.attrs), 1), pairs % max(len(self.attrs), 1)
        self.e2a = csr(ae, ai, self.n_entries)
        self.a2e = csr(ai, ae, len(self.attrs))
        qg = self.query_group.array()
        self.group_queries = {g: np.flatnonzero(qg == code) for g, code in self.groups.items()}

    def group_slice(self, group: str) -> tuple[int, int]:
        code = self.groups[group]
        return int(self.group_start[code]), int(self.group_start[code + 1])

    def positives(self, qids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row in ``qids``, pair number) of every (query, positive) pair of the queries ``qids``."""
        return expand(np.arange(len(qids)), qids, self.pos_ptr, np.arange(len(self.pos_entry)))

    def same_pairs(self, qids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row in ``qids``, entry) pairs of passages sharing an exclude_same value with one of the query's
        positives, the positives themselves left out."""
        rows, pair = self.positives(qids)
        ents = self.pos_entry[pair]
        if not self.cols.exclude or not len(ents):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        r, a = expand(rows, ents, *self.e2a)
        r, e = expand(r, a, *self.a2e)
        n = max(self.n_entries, 1)
        same = np.setdiff1d(np.unique(r * n + e), rows * n + ents, assume_unique=False)
        return same // n, same % n

    def forbidden_counts(self, qids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positives, positives + exclude_same matches) per query of ``qids``."""
        npos = self.pos_ptr[qids + 1] - self.pos_ptr[qids]
        r, _ = self.same_pairs(qids)
        return npos, npos + np.bincount(r, minlength=len(qids))

    def doc_ids(self, text_ids: np.ndarray) -> list[str]:
        """Ids of passages by text id: the id column's value where one was given, else ``sha1:`` and the
        first 16 hex digits of the SHA-1 of the text (stable across runs and machines)."""
        given = self.passage_id.get(text_ids)
        need = [j for j, g in enumerate(given) if not g]
        if need:
            texts = self.passage_text.get(np.asarray(text_ids)[need])
            for j, t in zip(need, texts):
                given[j] = "sha1:" + hashlib.sha1(t.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        return given

    def first_rows(self) -> np.ndarray:
        return self.query_first.array()
