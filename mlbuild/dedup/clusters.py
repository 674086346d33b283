"""Duplicate pairs -> which rows stay, and the row each dropped row duplicates.

Rows belong to nodes: rows that share a group value (``parallel_id``: a text and its translations) are
one node, a row without a group is a node of its own. A duplicate pair between rows of two nodes
links the nodes (a pair inside one node is ignored: a translation never duplicates its own source).
Nodes are ranked by the keep rule (``first``: the earliest; ``longest``: the node whose longest text is
longest; ``score``: the node whose best score is highest; ties go to the earliest) and visited best
first: a node stays unless it is linked to a node that stayed, and then it leaves whole, as a duplicate
of the best such node. A row therefore only ever leaves for a row it is itself similar to (or, with its
group, for the row its group-mate is similar to), never through a chain of pairs (A ~ B ~ C does not
drop C for A when C and A differ). Rows with the same normalised text form one exact class: a near or
semantic pair found for the class's first row holds for all of its rows.

Each dropped row names the kept row it duplicates: the kept row of its own pair with the winning node
(first by method, then row), else, for a row that leaves only with its group, its group's pair.
Everything here depends only on row positions and pair lists, so the result is the same however the
input was cut into shards."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .text import uniq

METHODS = ("exact", "near", "semantic", "cross_lingual")
REASONS = ("exact_duplicate", "near_duplicate", "semantic_duplicate", "cross_lingual_duplicate", "duplicate_group")
GROUP = 4  # reason code of a row that leaves with its group


@dataclass
class Edges:
    """Duplicate pairs ``u < v`` (row positions), with the method (index into METHODS) and score."""

    u: list[np.ndarray]
    v: list[np.ndarray]
    method: list[np.ndarray]
    score: list[np.ndarray]

    @classmethod
    def empty(cls) -> Edges:
        return cls([], [], [], [])

    def add(self, u: np.ndarray, v: np.ndarray, method: int, score: np.ndarray | float) -> None:
        if not len(u):
            return
        lo, hi = np.minimum(u, v).astype(np.int64), np.maximum(u, v).astype(np.int64)
        self.u.append(lo)
        self.v.append(hi)
        self.method.append(np.full(len(lo), method, dtype=np.int8))
        self.score.append(np.broadcast_to(np.asarray(score, dtype=np.float32), lo.shape).copy())

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self.u:
            z = np.zeros(0, dtype=np.int64)
            return z, z, np.zeros(0, np.int8), np.zeros(0, np.float32)
        return (
            np.concatenate(self.u),
            np.concatenate(self.v),
            np.concatenate(self.method),
            np.concatenate(self.score),
        )

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.method:
            for k, n in zip(*np.unique(m, return_counts=True)):
                out[METHODS[k]] = out.get(METHODS[k], 0) + int(n)
        return out


@dataclass
class Decisions:
    """Per row: whether it stays, the kept row it duplicates (-1 when kept), the reason code (index into
    REASONS, -1 when kept), and the pair behind it (other row, method, score; -1/NaN for a group leaver).
    ``clusters``: kept nodes with duplicates; ``nodes_dropped``: nodes (groups) that left."""

    kept: np.ndarray
    duplicate_of: np.ndarray
    reason: np.ndarray
    link: np.ndarray
    link_method: np.ndarray
    link_score: np.ndarray
    clusters: int
    nodes_dropped: int


def nodes_of(group_hash: np.ndarray, has_group: np.ndarray) -> np.ndarray:
    """Node of each row: one per distinct group hash, one per row without a group."""
    node = np.empty(len(group_hash), dtype=np.int64)
    if has_group.any():
        _, inv = np.unique(group_hash[has_group], return_inverse=True)
        node[has_group] = inv
        base = int(inv.max()) + 1
    else:
        base = 0
    node[~has_group] = base + np.arange(int((~has_group).sum()), dtype=np.int64)
    return node


def _first_by(keys: tuple[np.ndarray, ...], group: np.ndarray) -> np.ndarray:
    """Index of the first element of each ``group`` value by ``keys`` (lexsort order, last key primary)."""
    order = np.lexsort((*keys, group))
    g = group[order]
    return order[np.r_[True, g[1:] != g[:-1]]]


def _adjacency(cu: np.ndarray, cv: np.ndarray, m: np.ndarray, s: np.ndarray) -> dict[int, list[tuple]]:
    """class -> [(method, other class, score)] sorted by method then other class, both directions."""
    ends, other = np.concatenate([cu, cv]), np.concatenate([cv, cu])
    mm, ss = np.concatenate([m, m]), np.concatenate([s, s])
    order = np.lexsort((other, mm, ends))
    adj: dict[int, list[tuple]] = {}
    for e, o, k, x in zip(ends[order].tolist(), other[order].tolist(), mm[order].tolist(), ss[order].tolist()):
        adj.setdefault(e, []).append((k, o, x))
    return adj


def _rank(node: np.ndarray, keep: str, length: np.ndarray, score: np.ndarray | None) -> np.ndarray:
    """Rank of every node by the keep rule (0 best; ties to the node with the earliest row)."""
    n, n_nodes = len(node), int(node.max()) + 1
    first = np.full(n_nodes, n, dtype=np.int64)
    np.minimum.at(first, node, np.arange(n, dtype=np.int64))
    key = np.zeros(n_nodes, dtype=np.float64)
    if keep == "longest":
        np.maximum.at(key, node, length.astype(np.float64))
    elif keep == "score":
        key[:] = -np.inf
        np.maximum.at(key, node, np.nan_to_num(score.astype(np.float64), nan=-np.inf))
    rank = np.empty(n_nodes, dtype=np.int64)
    rank[np.lexsort((first, -key))] = np.arange(n_nodes)
    return rank


def decide(
    node: np.ndarray, klass: np.ndarray, edges: Edges, keep: str, length: np.ndarray, score: np.ndarray | None
) -> Decisions:
    """Which rows stay and what the others duplicate (see the module docstring). ``klass``: each row's exact
    class (the first row with the same normalised text, else the row itself); ``edges``: the pairs, whose
    near and semantic ones join exact classes (they were found between class representatives)."""
    n = len(node)
    dup = np.full(n, -1, dtype=np.int64)
    reason = np.full(n, -1, dtype=np.int8)
    score_out = np.full(n, np.nan, dtype=np.float32)
    if n == 0:
        return Decisions(np.zeros(0, bool), dup, reason, dup, reason, score_out, 0, 0)
    u, v, m, s = edges.arrays()
    similar = m > 0
    adj = _adjacency(klass[u[similar]], klass[v[similar]], m[similar], s[similar])
    size = np.bincount(klass, minlength=n)
    involved = np.flatnonzero((size[klass] > 1) | np.isin(klass, np.fromiter(adj, dtype=np.int64, count=len(adj))))
    rank = _rank(node, keep, length, score)
    order = involved[np.lexsort((involved, rank[node[involved]]))]  # rows of involved nodes, best node first
    node_kept = np.ones(int(node.max()) + 1, dtype=bool)
    node_dup = np.full(len(node_kept), -1, dtype=np.int64)
    kept_of: dict[int, int] = {}  # exact class -> its kept row (the first seen in a kept node)
    onode, orows, oclass = node[order].tolist(), order.tolist(), klass[order].tolist()
    i, total = 0, len(orows)
    while i < total:  # one node at a time: its involved rows are contiguous in ``order``
        j = i
        while j < total and onode[j] == onode[i]:
            j += 1
        found = []
        for r, c in zip(orows[i:j], oclass[i:j]):
            k = kept_of.get(c)
            if k is not None:
                found.append((r, 0, k, 1.0))
                continue
            for meth, other, sc in adj.get(c, ()):
                k = kept_of.get(other)
                if k is not None:
                    found.append((r, meth, k, sc))
                    break
        x = onode[i]
        if found:
            node_kept[x] = False
            node_dup[x] = min(found, key=lambda f: (f[1], f[2]))[2]
            for r, meth, k, sc in found:
                dup[r], reason[r], score_out[r] = k, meth, sc
        else:
            for c, r in zip(oclass[i:j], orows[i:j]):
                kept_of.setdefault(c, r)
        i = j
    kept = node_kept[node]
    group_only = ~kept & (reason < 0)
    dup[group_only], reason[group_only] = node_dup[node[group_only]], GROUP
    return Decisions(
        kept=kept,
        duplicate_of=dup,
        reason=reason,
        link=dup.copy(),
        link_method=np.where(reason == GROUP, -1, reason).astype(np.int8),
        link_score=score_out,
        clusters=int(len(uniq(dup[~kept]))),
        nodes_dropped=int((~node_kept).sum()),
    )
