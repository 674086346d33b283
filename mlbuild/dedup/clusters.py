"""Duplicate pairs -> clusters -> which rows stay.

Rows belong to nodes: rows that share a group value (``parallel_id``: a text and its translations) are
one node, a row without a group is a node of its own. A duplicate pair between rows of two nodes
links the nodes (a pair inside one node is ignored: a translation never duplicates its own source);
the connected components of that graph are the clusters. In each cluster one node stays, by the keep
rule (``first``: the earliest; ``longest``: the node whose longest text is longest; ``score``: the
node whose best score is highest; ties go to the earliest), and every other node leaves whole.

Each row also gets its own link, the first of its pairs by (method, other row), for the reject
detail. Everything here depends only on row positions and pair lists, so the result is the same
however the input was cut into shards."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    """Per row: whether it stays, the row it duplicates (the kept row of its cluster, else -1), the reason
    code (index into REASONS, -1 when kept), and its own link (other row, method, score)."""

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


def components(n_nodes: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected component label of every node given undirected node pairs (a, b)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n_nodes, n_nodes)).tocsr()
    return connected_components(g, directed=False)[1]


def row_links(
    n: int, u: np.ndarray, v: np.ndarray, m: np.ndarray, s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's first pair by (method, other row): (other row or -1, method or -1, score)."""
    link = np.full(n, -1, dtype=np.int64)
    meth = np.full(n, -1, dtype=np.int8)
    score = np.full(n, np.nan, dtype=np.float32)
    if len(u):
        ends, other = np.concatenate([u, v]), np.concatenate([v, u])
        mm, ss = np.concatenate([m, m]), np.concatenate([s, s])
        order = np.lexsort((other, mm, ends))
        first = order[np.unique(ends[order], return_index=True)[1]]
        link[ends[first]], meth[ends[first]], score[ends[first]] = other[first], mm[first], ss[first]
    return link, meth, score


def decide(node: np.ndarray, edges: Edges, keep: str, length: np.ndarray, score: np.ndarray | None) -> Decisions:
    """Clusters and the keep rule (see the module docstring)."""
    n = len(node)
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return Decisions(
            np.zeros(0, bool), z, np.zeros(0, np.int8), z, np.zeros(0, np.int8), np.zeros(0, np.float32), 0, 0
        )
    n_nodes = int(node.max()) + 1
    u, v, m, s = edges.arrays()
    a, b = node[u], node[v]
    cross = a != b
    u, v, m, s, a, b = u[cross], v[cross], m[cross], s[cross], a[cross], b[cross]
    comp = components(n_nodes, a, b)
    comp_size = np.bincount(comp, minlength=n_nodes)
    # node attributes: first row, longest text, best score
    first = np.full(n_nodes, n, dtype=np.int64)
    np.minimum.at(first, node, np.arange(n, dtype=np.int64))
    if keep == "longest":
        key = np.zeros(n_nodes, dtype=np.float64)
        np.maximum.at(key, node, length.astype(np.float64))
    elif keep == "score":
        key = np.full(n_nodes, -np.inf, dtype=np.float64)
        np.maximum.at(key, node, np.nan_to_num(score.astype(np.float64), nan=-np.inf))
    else:
        key = np.zeros(n_nodes, dtype=np.float64)
    order = np.lexsort((first, -key, comp))  # per component: best key, then earliest
    starts = np.ones(n_nodes, dtype=bool)
    starts[1:] = comp[order][1:] != comp[order][:-1]
    winner = np.empty(int(comp.max()) + 1 if n_nodes else 0, dtype=np.int64)
    winner[comp[order][starts]] = order[starts]
    node_kept = (comp_size[comp] < 2) | (winner[comp] == np.arange(n_nodes))
    kept = node_kept[node]
    link, meth, lscore = row_links(n, u, v, m, s)
    dup = np.where(kept, -1, first[winner[comp[node]]])
    reason = np.where(kept, -1, np.where(link >= 0, meth, GROUP)).astype(np.int8)
    return Decisions(
        kept=kept,
        duplicate_of=dup,
        reason=reason,
        link=link,
        link_method=meth,
        link_score=lscore,
        clusters=int((comp_size >= 2).sum()),
        nodes_dropped=int((~node_kept).sum()),
    )
