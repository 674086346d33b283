"""The ``roundtrip`` stage of ``synthesize_queries.v1`` (global: the only part that needs every query and
the whole corpus): a query is kept when its own passage ranks within ``roundtrip_top_k`` of the corpus.

The corpus is the step's input passages (their embeddings come from the ``generate`` stage as corpus
entries) or the side table ``corpus`` (embedded here, a chunk at a time). Passes over the upstream table,
one shard at a time: corpus ids (hashes; a doc id seen twice keeps its first passage), corpus vectors
(written to ``.npy`` chunks on local disk and memory-mapped), query vectors (the same), then the blocked
exact top-k search (:func:`mlbuild.models.search.topk_search`: never a queries x corpus matrix), then the
rows again with their verdict. Memory: the search's blocks plus 16 bytes per corpus entry and per query.

``roundtrip_rank`` is the exact rank of the own passage (1 + the passages scoring strictly higher) when it
is within ``roundtrip_top_k``; null when it is not (the query fails) or when the own passage is not in the
corpus (the query is not checked and passes)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ..errors import StepError
from ..pipeline import filters as F
from ..pipeline.base import Step, StepOutput
from ..pipeline.vector_cache import vector_cache
from . import filters as SF
from . import models
from .generate import OK_COLUMN, REASON_COLUMN, lang_stats_of
from .passages import CORPUS, INTERNAL, VECTOR

CHUNK_ROWS = 65_536  # vectors per .npy chunk (corpus and queries)
SIDE_BATCH = 4_096  # side-table passages embedded per call


class Chunks:
    """Float32 vectors appended in order and stored as memory-mapped ``.npy`` chunks of ``CHUNK_ROWS``."""

    def __init__(self, folder: Path, name: str):
        self.folder, self.name = folder, name
        self.parts: list[np.ndarray] = []
        self._buf: list[np.ndarray] = []
        self._n = 0

    def add(self, vecs: np.ndarray) -> None:
        for s in range(0, len(vecs), CHUNK_ROWS):
            part = vecs[s : s + CHUNK_ROWS]
            room = CHUNK_ROWS - self._n
            self._buf.append(part[:room])
            self._n += min(room, len(part))
            if self._n == CHUNK_ROWS:
                self._flush()
            if len(part) > room:
                self.add(part[room:])

    def _flush(self) -> None:
        if self._n:
            path = self.folder / f"{self.name}-{len(self.parts):05d}.npy"
            np.save(path, np.concatenate(self._buf).astype(np.float32, copy=False))
            self.parts.append(np.load(path, mmap_mode="r"))
        self._buf, self._n = [], 0

    def close(self) -> list[np.ndarray]:
        self._flush()
        return self.parts

    def row(self, k: int) -> np.ndarray:
        return np.asarray(self.parts[k // CHUNK_ROWS][k % CHUNK_ROWS])


def id_hashes(ids: pl.Series) -> np.ndarray:
    return ids.cast(pl.Utf8).fill_null("").hash(seed=0).to_numpy().astype(np.uint64)


def first_occurrences(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keep mask over entries, sorted unique hashes, corpus position of each unique hash): the first entry
    of each id is kept; kept entries get positions in entry order."""
    uniq, first = np.unique(hashes, return_index=True)
    keep = np.zeros(len(hashes), dtype=bool)
    keep[first] = True
    return keep, uniq, np.searchsorted(np.sort(first), first)


def to_matrix(col: pl.Series) -> np.ndarray:
    """A list column without nulls as a float32 matrix (one row per entry)."""
    flat = col.explode().to_numpy().astype(np.float32, copy=False)
    return flat.reshape(col.len(), -1) if col.len() else np.zeros((0, 0), dtype=np.float32)


def lookup(uniq: np.ndarray, pos: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Corpus position of each id hash (-1 when the corpus has no such id)."""
    if not len(uniq):
        return np.full(len(hashes), -1, dtype=np.int64)
    u = np.minimum(np.searchsorted(uniq, hashes), len(uniq) - 1)
    return np.where(uniq[u] == hashes, pos[u], -1).astype(np.int64)


def own_ranks(scores: np.ndarray, idx: np.ndarray, own: np.ndarray, own_score: np.ndarray, k: int) -> np.ndarray:
    """Per query, 1 + the passages in its top ``k`` scoring strictly above its own passage, or -1 when all
    ``k`` do (the own passage is below the top ``k``); -1 too where ``own`` is -1 (not in the corpus)."""
    above = (scores > own_score[:, None]) & (idx >= 0)
    n = above.sum(axis=1)
    return np.where((own >= 0) & (n < k), n + 1, -1).astype(np.int64)


class RoundTripStage(Step):
    """Stage ``roundtrip`` of ``synthesize_queries.v1``: see the module docstring."""

    name = "synthesize_queries.v1#roundtrip"
    kind = "global"

    def resources(self) -> dict[str, float]:
        """A GPU only to embed a side-table corpus with the transformers engine (the search runs on the
        device the worker has)."""
        p = self.params
        return {"num_gpus": 1.0} if p.corpus and p.embed_engine == "transformers" else {}

    def setup(self) -> None:
        p = self.params
        self.embedder = None
        if p.corpus:
            self.embedder = models.load_embedder(p, self.ctx.recipe_dir, p.device, vector_cache(self.ctx))
            self.ctx.record_model("embedder", self.embedder.id, self.embedder.revision, engine=p.embed_engine)

    # -- corpus
    def _side_batches(self, columns: list[str]) -> Iterator[pl.DataFrame]:
        p = self.params
        if p.corpus not in self.ctx.tables:
            known = ", ".join(self.ctx.tables) or "none"
            raise StepError(self.name, f"no side table {p.corpus!r} (known: {known})")
        table = self.ctx.tables[p.corpus]
        have = table.columns
        for col in columns:
            if col not in have:
                raise StepError(self.name, f"corpus table {p.corpus!r} has no column {col!r}")
        if isinstance(table, pl.DataFrame):
            yield from table.select(columns).iter_slices(SIDE_BATCH)
        else:
            for b in table.iter_batches(columns):
                yield from b.iter_slices(SIDE_BATCH)

    def corpus(self, table: Any, folder: Path) -> tuple[Chunks, np.ndarray, np.ndarray]:
        """The corpus vectors (first passage of each id), its sorted id hashes and their positions."""
        p = self.params
        vecs = Chunks(folder, "corpus")
        if p.corpus:
            ids, text = p.corpus_id_column, p.corpus_text_column
            hashes = [id_hashes(b[ids]) for b in self._side_batches([ids])]
            keep, uniq, pos = first_occurrences(np.concatenate(hashes or [np.zeros(0, np.uint64)]))
            n = 0
            for b in self._side_batches([text]):
                m = keep[n : n + b.height]
                n += b.height
                texts = b[text].cast(pl.Utf8).fill_null("").filter(pl.Series(m)).to_list()
                if texts:
                    vecs.add(self.embedder.embed(texts, kind="passage"))
        else:
            entries = (b.filter(pl.col(CORPUS).fill_null(False)) for b in self._upstream(table, [CORPUS, "doc_id"]))
            hashes = [id_hashes(b["doc_id"]) for b in entries]
            keep, uniq, pos = first_occurrences(np.concatenate(hashes or [np.zeros(0, np.uint64)]))
            n = 0
            for b in self._upstream(table, [CORPUS, VECTOR]):
                c = b.filter(pl.col(CORPUS).fill_null(False))
                m = keep[n : n + c.height]
                n += c.height
                if m.any():
                    vecs.add(to_matrix(c[VECTOR].filter(pl.Series(m))))
        vecs.close()
        return vecs, uniq, pos

    def _upstream(self, table: Any, columns: list[str]) -> Iterator[pl.DataFrame]:
        have = set(table.columns)
        for b in table.iter_batches([c for c in columns if c in have]):
            for c in columns:
                if c not in b.columns:
                    b = b.with_columns(pl.lit(None, pl.Boolean if c == CORPUS else pl.Utf8).alias(c))
            yield b

    # -- queries and search
    def ranks(self, table: Any, folder: Path) -> tuple[np.ndarray, np.ndarray]:
        """Per output row (upstream rows that are not corpus entries, in order): whether it was checked
        and the rank of its own passage (-1: below the top k, or not checked)."""
        corpus, uniq, pos = self.corpus(table, folder)
        queries = Chunks(folder, "queries")
        qrow: list[np.ndarray] = []
        qown: list[np.ndarray] = []
        n_rows = 0
        for b in self._upstream(table, [CORPUS, VECTOR, "doc_id"]):
            rows = b.filter(~pl.col(CORPUS).fill_null(False))
            has = rows[VECTOR].is_not_null().to_numpy() if VECTOR in rows.columns else np.zeros(rows.height, bool)
            if has.any():
                live = rows.filter(pl.Series(has))
                queries.add(to_matrix(live[VECTOR]))
                qown.append(lookup(uniq, pos, id_hashes(live["doc_id"])))
                qrow.append(np.flatnonzero(has) + n_rows)
            n_rows += rows.height
        queries.close()
        checked = np.zeros(n_rows, dtype=bool)
        rank = np.full(n_rows, -1, dtype=np.int64)
        if not qrow or not corpus.parts:
            return checked, rank
        rows_all, own_all = np.concatenate(qrow), np.concatenate(qown)
        checked[rows_all[own_all >= 0]] = True
        start = 0
        for part in queries.parts:
            own = own_all[start : start + len(part)]
            rank[rows_all[start : start + len(part)]] = self._search(part, corpus, own)
            start += len(part)
        return checked, rank

    def _search(self, q: np.ndarray, corpus: Chunks, own: np.ndarray) -> np.ndarray:
        from ..models.search import topk_search

        p = self.params
        device = self.ctx.device if p.device == "auto" else p.device
        scores, idx = topk_search(np.asarray(q), corpus.parts, p.roundtrip_top_k, device=device)
        own_score = np.full(len(q), np.inf, dtype=np.float32)
        for r in np.flatnonzero(own >= 0):
            hit = np.flatnonzero(idx[r] == own[r])
            own_score[r] = scores[r, hit[0]] if hit.size else float(np.dot(q[r], corpus.row(int(own[r]))))
        return own_ranks(scores, idx, own, own_score, p.roundtrip_top_k)

    # -- the stage
    def run_global(self, table: Any, emit) -> dict[str, Any]:
        scratch = self.ctx.work_dir if isinstance(self.ctx.work_dir, Path) and self.ctx.work_dir.is_dir() else None
        with tempfile.TemporaryDirectory(prefix="roundtrip-", dir=scratch) as tmp:
            checked, rank = self.ranks(table, Path(tmp))
        n = 0
        for b in table.iter_batches():
            rows = b.filter(~pl.col(CORPUS).fill_null(False)) if CORPUS in b.columns else b
            c, r = checked[n : n + rows.height], rank[n : n + rows.height]
            n += rows.height
            emit(self.verdict(rows, c, r))
        return {}

    def verdict(self, rows: pl.DataFrame, checked: np.ndarray, rank: np.ndarray) -> StepOutput:
        """``rows`` with ``roundtrip_rank`` and the round-trip verdict applied (``on_fail``)."""
        p = self.params
        ranks = [int(x) if x >= 0 else None for x in rank]
        v = SF.roundtrip(ranks, checked.tolist(), p.roundtrip_top_k)
        stats: dict[str, Any] = {"synthesis": {}}
        for lang, q, c, reason in zip(rows["lang"].to_list(), rows["query"].to_list(), checked, v.reasons):
            if not c:
                continue
            s = lang_stats_of(stats, lang)
            s["roundtrip_checked"] += 1
            if reason is None:
                s["roundtrip_passed"] += 1
            else:  # counted as kept by the generate stage
                s["kept"] -= 1
                s["query_words"] -= len(q.split())
                s["dropped"][reason] = s["dropped"].get(reason, 0) + 1
        rows = rows.drop([c for c in INTERNAL if c in rows.columns])
        rows = rows.with_columns(pl.Series("roundtrip_rank", ranks, dtype=pl.Int64))
        flagged = OK_COLUMN in rows.columns
        prev = rows.select(OK_COLUMN, REASON_COLUMN) if flagged else None
        kept, rejects, st = F.apply(
            rows.drop([OK_COLUMN, REASON_COLUMN]) if flagged else rows,
            v,
            p.on_fail,
            ok_column=OK_COLUMN,
            reason_column=REASON_COLUMN,
            stats_key="roundtrip_checks",
        )
        if flagged:  # on_fail = "flag" (the generate stage added the columns): an earlier failure stays the reason
            kept = kept.with_columns(
                (prev[OK_COLUMN] & kept[OK_COLUMN]).alias(OK_COLUMN),
                pl.coalesce(prev[REASON_COLUMN], kept[REASON_COLUMN]).alias(REASON_COLUMN),
            )
        stats.update(st)
        return StepOutput(kept, rejects, stats)
