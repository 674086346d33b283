"""Exact inner-product top-k search in blocks, memory-bounded, with deterministic ties.

:func:`exact_topk` streams the corpus once in blocks (outer loop) and keeps a running top-k for every
query (inner loop over query blocks). Peak memory is the corpus embeddings (the caller's array, not
copied on CPU) + one ``query_block x corpus_block`` score block + ``n_queries x k`` running results;
never ``n_queries x n_corpus``.

Ties are broken by corpus index (lower first), also at the k-th position: a block's top-k is taken
as the top ``k + 1``; when the k-th and (k+1)-th scores are equal the row is recomputed exactly from
the block's scores, so which tied items make the cut never depends on the kernel.

Precision:

- ``fp32`` (CPU default): exact fp32 scores, matmul with torch's CPU threads (``threads``).
- ``fp16`` / ``bf16`` (CUDA default ``fp16``): the corpus is held on the GPU in half precision (or
  streamed from pinned host memory when it does not fit), candidates are found with half-precision
  matmuls over ``k + extra`` slots, then rescored exactly in fp32. A row is accepted only when its
  k-th exact score is above the best score any missed item could have (the over-fetched boundary
  score plus a rounding bound); other rows are searched again in fp32. The result is therefore the
  same as the fp32 search. The same code runs on CPU (``bf16``), which is how the tests check it.

``faiss_topk`` is the optional faiss ``IndexFlatIP`` path for very large corpora (faiss on GPU
retrieves at most 2048 items per query); it is imported only when asked for.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import requires
from .device import resolve_device

log = logging.getLogger(__name__)

FAISS_GPU_K_LIMIT = 2048
_UNIT_ROUNDOFF = {"fp16": 2.0**-11, "bf16": 2.0**-8, "fp32": 2.0**-24}


def _torch():
    return requires("torch", "pip install torch", "exact top-k search")


def default_blocks(device: str, n_queries: int, n_corpus: int, dim: int) -> tuple[int, int]:
    """(query_block, corpus_block): a score block of at most 128 MB on CPU, 4 GB on CUDA."""
    if device.startswith("cuda"):
        return max(1, min(n_queries, 16384)), max(1, min(n_corpus, 65536))
    return max(1, min(n_queries, 512)), max(1, min(n_corpus, 65536))


def _order_by_score_then_index(torch: Any, vals: Any, idx: Any) -> tuple[Any, Any]:
    """Sort each row by score descending, ties by index ascending."""
    idx_sorted, perm = torch.sort(idx, dim=1)
    vals = torch.gather(vals, 1, perm)
    vals, perm2 = torch.sort(vals, dim=1, descending=True, stable=True)
    return vals, torch.gather(idx_sorted, 1, perm2)


def block_topk(torch: Any, scores: Any, k: int, offset: int, exact_ties: bool = True) -> tuple[Any, Any]:
    """Top ``k`` of each row of a score block by (score desc, index asc); indices shifted by ``offset``.
    With ``exact_ties=False`` (half-precision candidate search) tied items may come in any order."""
    nq, nc = scores.shape
    if nc <= k:
        idx = torch.arange(nc, device=scores.device).expand(nq, nc)
        if not exact_ties:
            v, perm = torch.sort(scores, dim=1, descending=True)
            return v, perm + offset
        vals, idx = _order_by_score_then_index(torch, scores, idx)
        return vals, idx + offset
    if not exact_ties:
        v, i = torch.topk(scores, k, dim=1, largest=True, sorted=True)
        return v, i + offset
    v, i = torch.topk(scores, k + 1, dim=1, largest=True, sorted=True)
    tied = v[:, k - 1] == v[:, k]
    v, i = v[:, :k].contiguous(), i[:, :k].contiguous()
    if bool(tied.any()):
        for r in torch.nonzero(tied).flatten().tolist():
            row = scores[r]
            t = v[r, k - 1]
            above = torch.nonzero(row > t).flatten()
            equal = torch.nonzero(row == t).flatten()[: k - above.numel()]  # lowest indices first
            sel = torch.cat([above, equal])
            i[r] = sel
            v[r] = row[sel]
    if bool((v[:, 1:] == v[:, :-1]).any()):  # equal scores inside the list: order them by index
        v, i = _order_by_score_then_index(torch, v, i)
    return v, i + offset


def merge_topk(torch: Any, run_v: Any, run_i: Any, new_v: Any, new_i: Any, k: int) -> tuple[Any, Any]:
    """Merge two row-wise (score desc, index asc) lists whose indices are disjoint and ordered
    (every index in ``run_i`` is below every index in ``new_i``): a stable sort keeps index order."""
    v = torch.cat([run_v, new_v], dim=1)
    i = torch.cat([run_i, new_i], dim=1)
    v, perm = torch.sort(v, dim=1, descending=True, stable=True)
    return v[:, :k].contiguous(), torch.gather(i, 1, perm[:, :k]).contiguous()


def _as_tensor(torch: Any, x: Any) -> Any:
    if isinstance(x, np.ndarray):
        x = np.ascontiguousarray(x, dtype=np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # read-only (memory-mapped) arrays: we never write to them
            return torch.from_numpy(x)
    return x.float().contiguous()


class Parts:
    """A corpus matrix kept as row segments (views of the caller's arrays), logically concatenated, so a
    corpus table plus a few extra rows is searched without copying the table's vectors."""

    def __init__(self, torch: Any, parts: list[Any]):
        self.torch = torch
        self.parts = [p for p in parts if p.shape[0]] or parts[:1]
        self.starts = [0]
        for p in self.parts:
            self.starts.append(self.starts[-1] + p.shape[0])
        width = {p.shape[1] for p in self.parts if p.ndim == 2}
        if len(width) > 1 or any(p.ndim != 2 for p in self.parts):
            raise ValueError(f"corpus parts must be 2-D with one width, got {[tuple(p.shape) for p in self.parts]}")
        self.shape = (self.starts[-1], width.pop() if width else 0)
        self.ndim = 2

    def numel(self) -> int:
        return self.shape[0] * self.shape[1]

    def blocks(self, size: int):
        """(start, stop, rows) blocks of ``size`` rows (the last may be shorter): views inside a part, a
        small copy where a block spans two parts. Equal-shaped blocks keep the matmul kernel (and so the
        rounding of equal vectors' scores) the same across the corpus."""
        n = self.shape[0]
        for s in range(0, n, size):
            e = min(n, s + size)
            pieces = []
            for p, base in zip(self.parts, self.starts):
                lo, hi = max(s, base), min(e, base + p.shape[0])
                if lo < hi:
                    pieces.append(p[lo - base : hi - base])
            yield s, e, pieces[0] if len(pieces) == 1 else self.torch.cat(pieces)

    def take(self, idx: Any) -> Any:
        """Rows ``idx`` (a LongTensor of any shape) -> tensor [*idx.shape, d]."""
        torch = self.torch
        if len(self.parts) == 1:
            return self.parts[0][idx]
        flat = idx.reshape(-1)
        out = torch.empty((flat.numel(), self.shape[1]), dtype=self.parts[0].dtype)
        for p, base in zip(self.parts, self.starts):
            m = (flat >= base) & (flat < base + p.shape[0])
            if bool(m.any()):
                out[m] = p[flat[m] - base]
        return out.reshape(*idx.shape, self.shape[1])

    def max_norm(self) -> float:
        return max(float(self.torch.linalg.vector_norm(p, dim=1).max()) for p in self.parts if p.shape[0])


def _rows(c: Any, idx: Any) -> Any:
    return c.take(idx) if isinstance(c, Parts) else c[idx]


def exact_topk(
    queries: Any,
    corpus: Any,
    k: int,
    *,
    device: str = "auto",
    precision: str = "auto",
    query_block: int | None = None,
    corpus_block: int | None = None,
    threads: int | None = None,
    extra: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` corpus rows by inner product for each query row. ``corpus`` is a [C, d] array or a
    list of arrays (row segments, searched as if concatenated, without copying them).

    Returns (scores float32 [Q, k], indices int64 [Q, k]); rows are sorted by score (desc) then index
    (asc); when the corpus has fewer than ``k`` rows the tail is padded with ``-inf`` / ``-1``.
    ``progress`` is called with the number of corpus rows done after each corpus block."""
    torch = _torch()
    dev = resolve_device(device)
    if precision == "auto":
        precision = "fp16" if dev.startswith("cuda") else "fp32"
    if precision not in _UNIT_ROUNDOFF:
        raise ValueError(f"unknown precision {precision!r} (known: auto, fp32, fp16, bf16)")
    if threads:
        torch.set_num_threads(int(threads))
    q = _as_tensor(torch, queries)
    parts = list(corpus) if isinstance(corpus, (list, tuple)) else [corpus]
    c = Parts(torch, [_as_tensor(torch, p) for p in parts])
    nq, nc = q.shape[0], c.shape[0]
    if q.ndim != 2 or c.ndim != 2 or (nq and nc and q.shape[1] != c.shape[1]):
        raise ValueError(f"queries {tuple(q.shape)} and corpus {tuple(c.shape)} must be 2-D with the same width")
    out_s = np.full((nq, k), -np.inf, dtype=np.float32)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    if nq == 0 or nc == 0 or k <= 0:
        return out_s, out_i
    if precision == "fp32":
        s, i = _scan(torch, q, c, k, dev, torch.float32, query_block, corpus_block, progress)
    else:
        s, i = _scan_half(torch, q, c, k, dev, precision, query_block, corpus_block, extra, progress)
    kk = min(k, nc)
    out_s[:, :kk] = s[:, :kk]
    out_i[:, :kk] = i[:, :kk]
    return out_s, out_i


def _scan(
    torch: Any,
    q: Any,
    c: Any,
    k: int,
    dev: str,
    dtype: Any,
    query_block: int | None,
    corpus_block: int | None,
    progress: Callable[[int], None] | None,
    exact_ties: bool = True,
    to_numpy: bool = True,
) -> tuple[Any, Any]:
    """One pass over the corpus (outer loop) with a running top-k per query (inner loop)."""
    nq, nc = q.shape[0], c.shape[0]
    qb_default, cb_default = default_blocks(dev, nq, nc, q.shape[1])
    qb, cb = query_block or qb_default, corpus_block or cb_default
    kk = min(k, nc)
    cuda = dev.startswith("cuda")
    qd = q.to(dev, dtype=dtype) if cuda or dtype != torch.float32 else q
    run_v = run_i = None
    resident = buf = None
    if cuda:
        resident = _upload_corpus(torch, c, dev, dtype, cb)
    with torch.inference_mode():
        for c0, c1, view in c.blocks(cb):
            if resident is not None:
                cblock = resident[c0:c1]
            elif cuda:
                cblock = view.pin_memory().to(dev, non_blocking=True).to(dtype)
            else:
                cblock = view if dtype == torch.float32 else view.to(dtype)
            kb = min(kk, c1 - c0)
            vs, is_ = [], []
            for q0 in range(0, nq, qb):
                q1 = min(nq, q0 + qb)
                if cuda:
                    scores = qd[q0:q1] @ cblock.T  # the caching allocator reuses the block's memory
                else:
                    # one score buffer for the whole scan: a fresh 100 MB tensor per block costs page
                    # faults worth a quarter of the matmul
                    if buf is None:
                        buf = torch.empty(min(qb, nq) * min(cb, nc), dtype=dtype)
                    scores = buf[: (q1 - q0) * (c1 - c0)].view(q1 - q0, c1 - c0)
                    torch.mm(qd[q0:q1], cblock.T, out=scores)
                v, i = search_block(torch, scores, kb, c0, exact_ties)
                if run_v is not None:
                    v, i = merge_topk(torch, run_v[q0:q1], run_i[q0:q1], v, i, kk)
                vs.append(v)
                is_.append(i)
                del scores
            run_v, run_i = torch.cat(vs), torch.cat(is_)
            if progress is not None:
                progress(c1 - c0)
    if not to_numpy:
        return run_v.float(), run_i
    return run_v.float().cpu().numpy(), run_i.cpu().numpy()


def search_block(torch: Any, scores: Any, k: int, offset: int, exact_ties: bool) -> tuple[Any, Any]:
    """Indirection so tests can watch the score blocks."""
    return block_topk(torch, scores, k, offset, exact_ties)


def _upload_corpus(torch: Any, c: Any, dev: str, dtype: Any, cb: int) -> Any:
    """The whole corpus on the GPU in ``dtype`` when it fits in half the free memory, else None
    (then blocks are streamed from pinned host memory)."""
    free, _total = torch.cuda.mem_get_info(torch.device(dev))
    need = c.shape[0] * c.shape[1] * torch.tensor([], dtype=dtype).element_size()
    if need > free // 2:
        log.info("corpus (%.1f GB) does not fit on %s; streaming it in blocks", need / 1e9, dev)
        return None
    out = torch.empty((c.shape[0], c.shape[1]), dtype=dtype, device=dev)
    for s, e, view in c.blocks(max(cb, 1 << 16)):
        out[s:e] = view.pin_memory().to(dev, non_blocking=True).to(dtype)
    return out


def _scan_half(
    torch: Any,
    q: Any,
    c: Any,
    k: int,
    dev: str,
    precision: str,
    query_block: int | None,
    corpus_block: int | None,
    extra: int | None,
    progress: Callable[[int], None] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Half-precision candidates, exact fp32 rescoring, and an fp32 rerun of rows not proven exact."""
    nc = c.shape[0]
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    if dev.startswith("cuda"):
        torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    k2 = min(nc, k + (extra if extra is not None else max(32, k)))
    cuda = dev.startswith("cuda")
    approx, cand = _scan(
        torch, q, c, k2, dev, dtype, query_block, corpus_block, progress, exact_ties=False, to_numpy=False
    )
    # exact fp32 scores of the candidates, a query chunk at a time: on the GPU from an fp32 copy of the
    # corpus when it fits, else on the CPU from the caller's arrays
    c32, q32, where = c, q, torch.device("cpu")
    if cuda:
        free, _ = torch.cuda.mem_get_info(torch.device(dev))
        up = _upload_corpus(torch, c, dev, torch.float32, 1 << 16) if c.numel() * 4 < free // 2 else None
        if up is not None:
            c32, q32, where = up, q.to(dev), up.device
    cand_t = cand.to(where)
    approx = approx.to(where)
    exact = torch.empty(cand_t.shape, dtype=torch.float32, device=where)
    step = 4096 if cuda else 1024
    for s in range(0, q.shape[0], step):
        exact[s : s + step] = torch.einsum("qd,qkd->qk", q32[s : s + step], _rows(c32, cand_t[s : s + step]))
    v, i = _order_by_score_then_index(torch, exact, cand_t)
    kk = min(k, nc)
    out_v, out_i = v[:, :kk].contiguous(), i[:, :kk].contiguous()
    if k2 >= nc:
        return out_v.cpu().numpy(), out_i.cpu().numpy()
    # An item left out scored (in half precision) at most the k2-th candidate's half-precision score,
    # so its exact score is at most that plus the rounding bound |q| |c| (3u + u^2 + d u32).
    u = _UNIT_ROUNDOFF[precision]
    qn = torch.linalg.vector_norm(q32, dim=1)
    cmax = c.max_norm()
    bound = qn * cmax * (3 * u + u * u + q.shape[1] * _UNIT_ROUNDOFF["fp32"]) + 1e-6
    ok = out_v[:, kk - 1] > approx[:, -1] + bound
    bad = torch.nonzero(~ok).flatten()
    if bad.numel():
        log.info(
            "half-precision search: %d of %d rows not proven exact; searching them again in fp32",
            bad.numel(),
            q.shape[0],
        )
        bad_cpu = bad.cpu()
        s2, i2 = _scan(torch, q[bad_cpu], c, kk, dev, torch.float32, query_block, corpus_block, None, to_numpy=False)
        out_v[bad] = s2.to(out_v.device)
        out_i[bad] = i2.to(out_i.device)
    return out_v.cpu().numpy(), out_i.cpu().numpy()


def faiss_topk(
    queries: np.ndarray, corpus: np.ndarray, k: int, *, use_gpu: bool = False, query_block: int = 16384
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k with faiss ``IndexFlatIP`` (exact inner product; ties are not ordered by index). faiss on
    GPU retrieves at most 2048 items per query."""
    faiss = requires("faiss", "pip install faiss-cpu  (or faiss-gpu)", "faiss search")
    if use_gpu and k > FAISS_GPU_K_LIMIT:
        raise ValueError(f"faiss on GPU retrieves at most {FAISS_GPU_K_LIMIT} items per query, asked for {k}")
    index = faiss.IndexFlatIP(corpus.shape[1])
    if use_gpu:
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(np.ascontiguousarray(corpus, dtype=np.float32))
    ss, ii = [], []
    for s in range(0, len(queries), query_block):
        sc, ix = index.search(np.ascontiguousarray(queries[s : s + query_block], dtype=np.float32), k)
        ss.append(sc)
        ii.append(ix)
    s = np.concatenate(ss).astype(np.float32)
    i = np.concatenate(ii).astype(np.int64)
    s[i < 0] = -np.inf
    return s, i


def topk_search(
    queries: np.ndarray, corpus: np.ndarray, k: int, *, backend: str = "torch", **kw: Any
) -> tuple[np.ndarray, np.ndarray]:
    """``backend="torch"`` (exact, blocked, deterministic ties) or ``"faiss"``."""
    if backend == "faiss":
        dev = resolve_device(kw.get("device", "auto"))
        corpus = np.concatenate(corpus) if isinstance(corpus, (list, tuple)) else corpus
        return faiss_topk(queries, corpus, k, use_gpu=dev.startswith("cuda"))
    return exact_topk(queries, corpus, k, **kw)


def score_rows(queries: np.ndarray, corpus: np.ndarray, pairs_q: np.ndarray, pairs_c: np.ndarray) -> np.ndarray:
    """Exact fp32 inner products of the given (query row, corpus row) pairs."""
    if len(pairs_q) == 0:
        return np.zeros(0, dtype=np.float32)
    out = np.empty(len(pairs_q), dtype=np.float32)
    step = 1 << 16
    for s in range(0, len(pairs_q), step):
        a = queries[pairs_q[s : s + step]]
        b = corpus[pairs_c[s : s + step]]
        out[s : s + step] = np.einsum("ij,ij->i", a, b)
    return out


__all__ = [
    "Parts",
    "exact_topk",
    "faiss_topk",
    "topk_search",
    "score_rows",
    "block_topk",
    "merge_topk",
    "FAISS_GPU_K_LIMIT",
]
