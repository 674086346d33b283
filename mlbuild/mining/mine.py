"""Search and selection for every query, a query chunk at a time, against the on-disk corpus.

For each group (one without ``group_by``): the window ``k = range_max + max forbidden`` is fixed from the
whole group (as sentence-transformers fixes it from the whole dataset), so chunking never changes which
negatives a query gets. Each chunk: the queries' vectors, their positives' exact scores (the margin
reference), their exclusions, one exact search, optional teacher rescoring, :func:`select`, and a wider
search for the queries left short. Results go to on-disk arrays indexed by query id."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..models.search import CorpusSearch, exact_pair_scores
from ..pipeline.cache import SEP
from .index import MiningIndex
from .pool import bm25_index, pool, texts_in_blocks
from .report import ScoreSample
from .select import Candidates, Exclusions, Rules, Selection, select
from .store import Scratch, VectorFile

log = logging.getLogger(__name__)

QUERY_CHUNK = 65_536  # queries searched together (memory: chunk x window results + chunk vectors)


def seed_of(seed: int, group: str, query: str) -> int:
    h = hashlib.sha256(f"{seed}{SEP}{group}{SEP}{query}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(h[:8], "little")


@dataclass
class SearchOptions:
    devices: list[str] | None = None
    device: str = "auto"
    precision: str = "auto"
    query_block: int | None = None
    corpus_block: int | None = None
    backend: str = "torch"
    query_chunk: int = QUERY_CHUNK


class Results:
    """Per query: its negatives (entry ids, scores; ``count`` of them) in on-disk arrays; per (query,
    positive) pair: the positive's score."""

    def __init__(self, scratch: Scratch, n_queries: int, n: int, n_pairs: int):
        self.n = n
        shape = (max(n_queries, 1), n)
        self.entry = np.memmap(scratch.path("neg_entry.i64"), dtype=np.int64, mode="w+", shape=shape)
        self.score = np.memmap(scratch.path("neg_score.f32"), dtype=np.float32, mode="w+", shape=shape)
        self.retriever = np.memmap(scratch.path("neg_retriever.i8"), dtype=np.int8, mode="w+", shape=shape)
        self.count = np.zeros(n_queries, dtype=np.int32)
        self.pos_score = np.zeros(n_pairs, dtype=np.float32)


@dataclass
class GroupStats:
    rows: int = 0
    queries: int = 0
    corpus: int = 0
    range_max: int = 0
    negatives: int = 0
    short: int = 0
    widened: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    pos: ScoreSample = field(default_factory=ScoreSample)
    neg: ScoreSample = field(default_factory=ScoreSample)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "queries": self.queries,
            "corpus": self.corpus,
            "skipped": dict(self.skipped),
            "short_queries": self.short,
            "widened_queries": self.widened,
            "range_max": self.range_max,
            "negatives": self.negatives,
            "positive_score": self.pos.quantiles(),
            "negative_score": self.neg.quantiles(),
        }


TeacherFn = Callable[[list[str], list[str]], np.ndarray]


class Miner:
    def __init__(
        self,
        index: MiningIndex,
        corpus: VectorFile,
        queries: VectorFile,
        results: Results,
        rules: Rules,
        opts: SearchOptions,
        *,
        widen_limit: int = 0,
        seed: int = 0,
        teacher: TeacherFn | None = None,
        retrievers: Sequence[str] = ("dense",),
        bm25_lang: Callable[[str], str | None] | None = None,
    ):
        self.index, self.corpus, self.queries, self.results = index, corpus, queries, results
        self.rules, self.opts, self.widen_limit, self.seed, self.teacher = rules, opts, widen_limit, seed, teacher
        self.retrievers, self.bm25_lang = tuple(retrievers), bm25_lang or (lambda g: None)
        self.bm25 = None  # the current group's BM25 index
        self.pos_all, self.neg_all = ScoreSample(), ScoreSample()  # over every group

    def run(self, groups: list[str]) -> dict[str, GroupStats]:
        return {g: self.group(g) for g in groups}

    def group(self, g: str) -> GroupStats:
        ix, o = self.index, self.opts
        a, b = ix.group_slice(g)
        qids = ix.group_queries[g]
        chunks = [qids[s : s + o.query_chunk] for s in range(0, len(qids), o.query_chunk)]
        max_pos = max_forbid = 0
        for c in chunks:  # the window comes from the whole group, so chunking never changes the result
            npos, nforbid = ix.forbidden_counts(c)
            max_pos, max_forbid = max(max_pos, int(npos.max(initial=0))), max(max_forbid, int(nforbid.max(initial=0)))
        st = GroupStats(queries=len(qids), corpus=b - a)
        st.range_max = self.rules.window(max(max_pos, 1))
        search = CorpusSearch(
            self.corpus.open()[a:b],
            devices=o.devices,
            device=o.device,
            precision=o.precision,
            query_block=o.query_block,
            corpus_block=o.corpus_block,
            backend=o.backend,
        )
        if "bm25" in self.retrievers:  # one index per group, over the rows the dense search sees, same order
            self.bm25 = bm25_index(texts_in_blocks(lambda ids: self._texts(a, ids), b - a), self.bm25_lang(g))
        for c in chunks:
            self.chunk(g, c, a, b - a, search, st, max_forbid)
        self.bm25 = None
        return st

    def _texts(self, g_start: int, local: np.ndarray) -> list[str]:
        ix = self.index
        return ix.passage_text.get(ix.entry_text.array()[ix.order[g_start + local]])

    def chunk(
        self, g: str, qids: np.ndarray, g_start: int, size: int, search: CorpusSearch, st: GroupStats, max_forbid: int
    ) -> None:
        """Mine the queries ``qids`` of group ``g`` (corpus rows [g_start, g_start + size)) into the results."""
        ix, rules, res = self.index, self.rules, self.results
        qvec = self.queries.take(ix.query_qtext.array()[qids])
        need_text = self.teacher is not None or rules.sampling == "random" or self.bm25 is not None
        qtexts = ix.query_text.get(ix.query_qtext.array()[qids]) if need_text else []
        # positives: exact scores (or the teacher's), the margin reference, exclusions
        rows, pair = ix.positives(qids)
        plocal = ix.entry_local[ix.pos_entry[pair]]
        pscores = exact_pair_scores(qvec[rows], search.host.take(plocal))
        if self.teacher is not None and rules.teacher_rescore:
            pscores = self.teacher([qtexts[r] for r in rows], self._texts(g_start, plocal))
        res.pos_score[pair] = pscores
        st.pos.add(pscores)
        self.pos_all.add(pscores)
        pos_min = np.full(len(qids), np.inf, dtype=np.float32)
        np.minimum.at(pos_min, rows, pscores.astype(np.float32))
        sr, se = ix.same_pairs(qids)
        excl = Exclusions.of(rows, plocal, sr, ix.entry_local[se])
        seeds = [seed_of(self.seed, g, t) for t in qtexts] if rules.sampling == "random" else None
        k = min(size, st.range_max + max_forbid)
        sel = select(self.candidates(search, qvec, k, qtexts, g_start), excl, pos_min, rules, st.range_max, seeds)
        for r, v in sel.skipped.items():
            st.skipped[r] = st.skipped.get(r, 0) + v
        widened = self.widen(sel, search, qvec, qtexts, g_start, size, excl, pos_min, seeds, st.range_max, max_forbid)
        counts = sel.counts()
        st.short += int((counts < rules.num_negatives).sum())
        st.widened += widened
        st.negatives += int(counts.sum())
        order = ix.order
        for j, q in enumerate(qids):
            n = len(sel.index[j])
            res.count[q] = n
            if n:
                res.entry[q, :n] = order[g_start + sel.index[j]]
                res.score[q, :n] = sel.score[j]
                if sel.retriever is not None:
                    res.retriever[q, :n] = sel.retriever[j]
        if len(sel.score):
            st.neg.add(np.concatenate(sel.score))
            self.neg_all.add(np.concatenate(sel.score))

    def candidates(
        self, search: CorpusSearch, qvec: np.ndarray, k: int, qtexts: list[str], g_start: int
    ) -> Candidates:
        if k <= 0:
            return Candidates(np.zeros((len(qvec), 0), np.int64), np.zeros((len(qvec), 0), np.float32))
        lists = [search.search(qvec, k)]
        if self.bm25 is not None:
            lists.append(self.bm25.search(qtexts, k))
        cands = pool(lists, self.retrievers, lambda r, i: exact_pair_scores(qvec[r], search.host.take(i)))
        i = cands.index
        if self.teacher is not None and self.rules.teacher_rescore and i.size:
            rr, cc = np.nonzero(i >= 0)
            t = np.full(i.shape, -np.inf, dtype=np.float32)
            t[rr, cc] = self.teacher([qtexts[r] for r in rr], self._texts(g_start, i[rr, cc]))
            cands.teacher = t
            cands = cands.rescored_by_teacher()
        return cands

    def widen(
        self, sel: Selection, search, qvec, qtexts, g_start, size, excl, pos_min, seeds, range_max, max_forbid
    ) -> int:
        """Queries left short by the filters (``range_max`` unset): search again with a 4x larger window,
        up to ``widen_limit`` ranks; keep a wider result only when it has more negatives."""
        rules, n = self.rules, self.rules.num_negatives
        if rules.range_max is not None or self.widen_limit <= range_max:
            return 0
        widened: set[int] = set()
        rm = range_max
        todo = np.flatnonzero(sel.counts() < n)
        while todo.size and rm < self.widen_limit and rm + max_forbid < size:
            rm = min(self.widen_limit, rm * 4)
            k = min(size, rm + max_forbid)
            sub_t = [qtexts[j] for j in todo] if qtexts else []
            cands = self.candidates(search, qvec[todo], k, sub_t, g_start)
            sub = select(
                cands, excl.subset(todo), pos_min[todo], rules, rm, [seeds[j] for j in todo] if seeds else None
            )
            got = sub.counts()
            for j, qi in enumerate(todo):
                if got[j] > len(sel.index[qi]):
                    widened.add(int(qi))
                    sel.index[qi], sel.score[qi] = sub.index[j], sub.score[j]
                    if sel.retriever is not None:
                        sel.retriever[qi] = sub.retriever[j]
            todo = todo[got < n]
        return len(widened)
