"""Exact inner-product top-k over a corpus that need not fit in memory: streamed in blocks, sharded over
devices, deterministic ties.

Every device and precision runs the same three steps (:class:`ShardSearch`):

1. **Candidates.** The corpus is streamed block by block (views of a host array, pages of a memory-mapped
   file released after use, or a copy resident on the GPU when it fits; on CUDA, blocks from host memory
   are copied from pinned buffers on a side stream while the previous block is scored). Each query block
   is scored with one matmul (fp32; fp16/bf16 when asked, the CUDA default) and fed into a running top-``k2``
   per query (``k2 = k + extra``). A threshold pre-filter keeps only scores above the running ``k2``-th
   value, so once it settles a block costs one matmul and one comparison, not a top-k over the row.
2. **Exact rescoring.** Each candidate's score is recomputed as a float64 dot product of the fp32 vectors,
   rounded to fp32 (:func:`exact_scores`): the same arithmetic for every pair, so identical vectors get
   identical scores wherever they sit in the corpus (a BLAS matmul does not promise that: its rounding
   depends on the position of a row in the kernel's block). Rows are ordered by (score desc, index asc).
3. **Proof.** A row is exact when its ``k``-th exact score exceeds the highest score any item outside its
   candidates could have: the ``k2``-th approximate score plus the matmul's rounding bound
   (``|q| max|c| (err(dtype, d) + 2^-20)``). Other rows (exact ties or near-ties at the cut, a loose
   half-precision bound) are searched again in fp32 with a 4x wider window, until proven or the window
   covers the corpus. So every returned list equals the exact fp32 one, ties broken by the lowest index.

Several devices: :class:`CorpusSearch` cuts the corpus into contiguous shards, one per device, searches
them in threads (or, across Ray actors with one GPU each, one :class:`ShardSearch` per actor) and merges
the exact per-shard lists with :func:`merge_exact` (same ties rule). Peak memory per device: one corpus
block, one ``query_block x corpus_block`` score block and the ``n_queries x k2`` running lists; the
caller bounds ``n_queries`` by searching query chunks.

``faiss_topk`` is the optional faiss ``IndexFlatIP`` path (imported only when asked for); with
``backend="faiss"`` its results are candidates that go through the same rescoring and proof.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..errors import requires
from .device import resolve_device

log = logging.getLogger(__name__)

FAISS_GPU_K_LIMIT = 2048
_UNIT_ROUNDOFF = {"fp16": 2.0**-11, "bf16": 2.0**-8, "fp32": 2.0**-24, "tf32": 2.0**-11}
_SLACK = 2.0**-20  # fp32 rounding of the exact score itself, with room to spare
_RESCORE_ELEMENTS = 1 << 22  # float64 elements per rescoring chunk (32 MB)
_GATHER_ROWS = 64  # rows of a memory-mapped file gathered between page releases (a fault may map a 2 MB folio)


def _torch():
    return requires("torch", "pip install torch", "exact top-k search")


def default_blocks(device: str, n_queries: int, n_corpus: int, dim: int) -> tuple[int, int]:
    """(query_block, corpus_block): a score block of 128 MB on CPU; 2 GB (fp16) on CUDA."""
    if device.startswith("cuda"):
        return max(1, min(n_queries, 16384)), max(1, min(n_corpus, 65536))
    return max(1, min(n_queries, 512)), max(1, min(n_corpus, 65536))


def matmul_error(precision: str, dim: int) -> float:
    """Bound on |approximate - exact| / (|q| |c|) of one matmul score at ``precision``: inputs rounded to
    the half format (2u + u^2), fp32 accumulation over ``dim`` terms (gamma_d), the output rounded (u)."""
    g = dim * _UNIT_ROUNDOFF["fp32"]
    gamma = g / (1 - g)
    if precision in ("fp32", "tf32"):
        u = _UNIT_ROUNDOFF[precision]
        return gamma if precision == "fp32" else 2 * u + u * u + 1.01 * gamma
    u = _UNIT_ROUNDOFF[precision]
    return 3 * u + 2 * u * u + 1.01 * gamma


# ------------------------------------------------------------------------------------------ host corpus
class HostCorpus:
    """The corpus as row segments of host arrays (numpy arrays or memory-mapped files), searched as one.
    Blocks inside one in-memory part are views; others are copied into the caller's buffer. Pages of
    memory-mapped parts are released after each read (:meth:`release`), so reading a file larger than
    memory keeps the resident set at one block."""

    def __init__(self, parts: Sequence[Any]):
        arrays = [_as_array(p) for p in parts]
        widths = {a.shape[1] for a in arrays if a.ndim == 2}
        if any(a.ndim != 2 for a in arrays) or len(widths) > 1:
            raise ValueError(f"corpus parts must be 2-D with one width, got {[a.shape for a in arrays]}")
        self.parts = [a for a in arrays if len(a)] or arrays[:1]
        self.starts = [0]
        for a in self.parts:
            self.starts.append(self.starts[-1] + len(a))
        self.shape = (self.starts[-1], widths.pop() if widths else 0)

    def __len__(self) -> int:
        return self.shape[0]

    def slice(self, start: int, stop: int) -> HostCorpus:
        """Rows [start, stop) as a corpus of views (a shard)."""
        out = []
        for a, base in zip(self.parts, self.starts):
            lo, hi = max(start, base), min(stop, base + len(a))
            if lo < hi:
                out.append(a[lo - base : hi - base])
        return HostCorpus(out or [np.zeros((0, self.shape[1]), np.float32)])

    def block(self, start: int, stop: int, buf: np.ndarray | None = None, copy: bool = False) -> np.ndarray:
        """Rows [start, stop) as float32: a view when they lie in one in-memory part (unless ``copy``), else
        a copy in ``buf`` (or a new array)."""
        pieces = []
        for a, base in zip(self.parts, self.starts):
            lo, hi = max(start, base), min(stop, base + len(a))
            if lo < hi:
                pieces.append(a[lo - base : hi - base])
        if not copy and len(pieces) == 1 and not _mapped(pieces[0]) and pieces[0].dtype == np.float32:
            return pieces[0]
        out = buf[: stop - start] if buf is not None else np.empty((stop - start, self.shape[1]), np.float32)
        s = 0
        for p in pieces:
            out[s : s + len(p)] = p
            s += len(p)
            release_rows(p, 0, len(p))
        return out

    def take(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (int64, any shape, all valid) -> float32 [*idx.shape, d]."""
        flat = idx.reshape(-1)
        out = np.empty((len(flat), self.shape[1]), dtype=np.float32)
        for a, base in zip(self.parts, self.starts):
            m = np.flatnonzero((flat >= base) & (flat < base + len(a)))
            if not len(m):
                continue
            if not _mapped(a):
                out[m] = a[flat[m] - base]
                continue
            # a file: rows in file order, a few thousand at a time, each range's pages released after use
            # (a page fault maps its neighbours too, so random rows would otherwise map much of the file)
            m = m[np.argsort(flat[m], kind="stable")]
            _advise(a, mmap.MADV_RANDOM)  # no read-ahead or fault-around: a row maps its own pages
            for s in range(0, len(m), _GATHER_ROWS):
                sel = m[s : s + _GATHER_ROWS]
                rows = flat[sel] - base
                out[sel] = a[rows]
                release_rows(a, int(rows[0]), int(rows[-1]) + 1)
            _advise(a, mmap.MADV_NORMAL)
        return out.reshape(*idx.shape, self.shape[1])

    def max_norm(self) -> float:
        best = 0.0
        for a in self.parts:
            for s in range(0, len(a), 1 << 16):  # in chunks: no temporary the size of the corpus
                c = np.asarray(a[s : s + (1 << 16)], dtype=np.float32)
                if len(c):
                    best = max(best, float(np.sqrt(np.einsum("ij,ij->i", c, c).max())))
                release_rows(a, s, s + len(c))  # a memory-mapped file is read once, one chunk resident at a time
        return best

    def release(self) -> None:
        """Drop the pages of memory-mapped parts from this process (they stay in the page cache)."""
        for a in self.parts:
            release_pages(a)


def _as_array(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach"):  # a torch tensor
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def _mapped(a: np.ndarray) -> bool:
    return isinstance(a, np.memmap) or isinstance(a.base, (np.memmap, mmap.mmap))


def release_pages(a: np.ndarray) -> None:
    """``madvise(MADV_DONTNEED)`` on the shared (never copy-on-write) mapping behind a ``np.memmap``: its
    pages leave this process's resident set and stay in the page cache. A no-op for other arrays."""
    while isinstance(a, np.ndarray):
        mm = getattr(a, "_mmap", None)
        if isinstance(a, np.memmap) and isinstance(mm, mmap.mmap) and a.mode != "c":
            with contextlib.suppress(ValueError, OSError, AttributeError):
                mm.madvise(mmap.MADV_DONTNEED)
            return
        a = a.base


_FAULT_AROUND = 1 << 21  # the kernel maps the page cache folio (up to 2 MB) or 64 KB around a faulting page


def _advise(a: np.ndarray, option: int) -> None:
    mm = getattr(a, "_mmap", None)
    if isinstance(mm, mmap.mmap):
        with contextlib.suppress(ValueError, OSError):
            mm.madvise(option)


def release_rows(a: np.ndarray, lo: int, hi: int) -> None:
    """Release the pages of rows [lo, hi) of a memory-mapped array (and the fault-around margin)."""
    if not _mapped(a) or hi <= lo:
        return
    mm = getattr(a, "_mmap", None)
    if not isinstance(a, np.memmap) or not isinstance(mm, mmap.mmap) or a.mode == "c":
        return
    try:
        base = np.frombuffer(mm, dtype=np.uint8).ctypes.data
        row = a.strides[0]
        start = a.ctypes.data - base + lo * row - _FAULT_AROUND
        stop = a.ctypes.data - base + hi * row + _FAULT_AROUND
        start = max(0, start - start % mmap.PAGESIZE)
        stop = min(len(mm), stop)
        if stop > start:
            mm.madvise(mmap.MADV_DONTNEED, start, stop - start)
    except (ValueError, OSError, AttributeError, TypeError):
        release_pages(a)


def _tensor(torch: Any, a: np.ndarray) -> Any:
    """A CPU tensor sharing ``a``'s memory (read-only arrays too: the search never writes to them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.from_numpy(a)


# ------------------------------------------------------------------------------------------ exact scores
def exact_scores(torch: Any, q: Any, c: Any) -> Any:
    """Scores of query rows ``q`` [n, d] against their own candidate rows ``c`` [n, w, d] as the float64 dot
    product of the fp32 vectors rounded to fp32 [n, w]: float32 products are exact in float64 and the sum
    of ``d`` of them is within ``d 2^-53`` of exact, so the fp32 result does not depend on where a row sits
    (nor, but for values within 1e-13 of a rounding midpoint, on the device)."""
    n, w = c.shape[0], c.shape[1]
    out = torch.empty((n, w), dtype=torch.float32, device=c.device)
    step = max(1, _RESCORE_ELEMENTS // max(1, w * c.shape[2]))
    for s in range(0, n, step):
        qq = q[s : s + step].double().unsqueeze(1)
        out[s : s + step] = (c[s : s + step].double() * qq).sum(-1).float()
    return out


def order_by_score_then_index(torch: Any, vals: Any, idx: Any) -> tuple[Any, Any]:
    """Sort each row by score descending, ties by index ascending (padding -inf / -1 last)."""
    key = torch.where(idx < 0, torch.iinfo(torch.int64).max, idx)
    key, perm = torch.sort(key, dim=1)
    vals = torch.gather(vals, 1, perm)
    vals, perm2 = torch.sort(vals, dim=1, descending=True, stable=True)
    idx = torch.gather(key, 1, perm2)
    return vals, torch.where(idx == torch.iinfo(torch.int64).max, -1, idx)


def merge_exact(lists: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge exact per-shard lists ((scores [Q, k_s], global indices [Q, k_s]), padding -inf / -1) into the
    exact top ``k`` by (score desc, index asc): the scores do not depend on the shard, so this is exact."""
    torch = _torch()
    v = torch.from_numpy(np.concatenate([a for a, _ in lists], axis=1))
    i = torch.from_numpy(np.concatenate([b for _, b in lists], axis=1))
    v, i = order_by_score_then_index(torch, v, i)
    out_v = np.full((v.shape[0], k), -np.inf, dtype=np.float32)
    out_i = np.full((v.shape[0], k), -1, dtype=np.int64)
    kk = min(k, v.shape[1])
    out_v[:, :kk] = v[:, :kk].numpy()
    out_i[:, :kk] = i[:, :kk].numpy()
    return out_v, out_i


# ------------------------------------------------------------------------------------------ block streaming
class _Feeder:
    """Corpus blocks on the device, in order: the resident copy's slices; on CPU the host blocks; on CUDA
    double-buffered copies (host -> pinned staging -> device on a side stream, overlapped with scoring)."""

    def __init__(self, torch: Any, host: HostCorpus, dev: Any, block: int, resident: Any = None):
        self.torch, self.host, self.dev, self.block, self.resident = torch, host, dev, block, resident
        self.cuda = dev.type == "cuda"

    def __iter__(self) -> Iterator[tuple[int, int, Any]]:
        n, b = len(self.host), self.block
        spans = [(s, min(n, s + b)) for s in range(0, n, b)]
        if self.resident is not None:
            for s, e in spans:
                yield s, e, self.resident[s:e]
        elif not self.cuda:
            buf = np.empty((min(b, n), self.host.shape[1]), np.float32)
            for s, e in spans:
                yield s, e, _tensor(self.torch, self.host.block(s, e, buf))
        else:
            yield from self._cuda_stream(spans)

    def _cuda_stream(self, spans: list[tuple[int, int]]) -> Iterator[tuple[int, int, Any]]:
        torch, d = self.torch, self.host.shape[1]
        rows = max(e - s for s, e in spans)
        stage = [torch.empty((rows, d), dtype=torch.float32, pin_memory=True) for _ in range(2)]
        on_dev = [torch.empty((rows, d), dtype=torch.float32, device=self.dev) for _ in range(2)]
        copied = [torch.cuda.Event(), torch.cuda.Event()]  # device buffer filled (copy stream)
        used = [torch.cuda.Event(), torch.cuda.Event()]  # device buffer read by the scoring (compute stream)
        side = torch.cuda.Stream(device=self.dev)

        def fill(j: int) -> None:
            s, e = spans[j]
            slot = j % 2
            copied[slot].synchronize()  # the staging buffer's last copy to the device is done
            self.host.block(s, e, stage[slot].numpy(), copy=True)  # into the pinned buffer
            side.wait_event(used[slot])  # the scoring of the block that held this device buffer is done
            with torch.cuda.stream(side):
                on_dev[slot][: e - s].copy_(stage[slot][: e - s], non_blocking=True)
            copied[slot].record(side)

        fill(0)
        for j, (s, e) in enumerate(spans):
            if j + 1 < len(spans):
                fill(j + 1)  # host copy and transfer of the next block while this one is scored
            slot = j % 2
            torch.cuda.current_stream(self.dev).wait_event(copied[slot])
            yield s, e, on_dev[slot][: e - s]
            used[slot].record(torch.cuda.current_stream(self.dev))


# ------------------------------------------------------------------------------------------ one shard
def search_block(torch: Any, scores: Any, run_v: Any, run_i: Any, offset: int) -> None:
    """Merge a score block into the running (unordered) top lists ``run_v`` / ``run_i`` in place: only
    scores above a row's current k2-th value enter; a dense top-k when many do, else the few entrants.
    Called through the module (tests watch the score blocks)."""
    nq, nb = scores.shape
    k2 = run_v.shape[1]
    thr = run_v.min(1).values
    hit = scores > thr.to(scores.dtype)[:, None]
    counts = hit.sum(1)
    total = int(counts.sum())
    if total == 0:
        return
    if total * 4 > nq * k2:  # many entrants (first blocks): top-k of each row of the block
        v, i = torch.topk(scores, min(k2, nb), dim=1, sorted=False)
        cv, ci = torch.cat([run_v, v.float()], 1), torch.cat([run_i, i + offset], 1)
        tv, ti = torch.topk(cv, k2, dim=1, sorted=False)
        run_v.copy_(tv)
        run_i.copy_(torch.gather(ci, 1, ti))
        return
    r, c = hit.nonzero(as_tuple=True)  # row-major: grouped by row
    rows = torch.nonzero(counts).flatten()
    rank = torch.cumsum(counts > 0, 0) - 1
    first = torch.cumsum(counts, 0) - counts
    pos = torch.arange(r.numel(), device=r.device) - first[r]
    width = int(counts.max())
    pv = torch.full((rows.numel(), width), -float("inf"), dtype=torch.float32, device=scores.device)
    pi = torch.full((rows.numel(), width), -1, dtype=torch.int64, device=scores.device)
    pv[rank[r], pos] = scores[r, c].float()
    pi[rank[r], pos] = c + offset
    cv, ci = torch.cat([run_v[rows], pv], 1), torch.cat([run_i[rows], pi], 1)
    tv, ti = torch.topk(cv, k2, dim=1, sorted=False)
    run_v[rows] = tv
    run_i[rows] = torch.gather(ci, 1, ti)


@contextlib.contextmanager
def _full_precision_reductions(torch: Any, cuda: bool):
    """fp16/bf16 matmuls accumulate in fp32 (the error bound assumes it) while searching."""
    if not cuda:
        yield
        return
    m = torch.backends.cuda.matmul
    old = (m.allow_fp16_reduced_precision_reduction, m.allow_bf16_reduced_precision_reduction)
    m.allow_fp16_reduced_precision_reduction = False
    m.allow_bf16_reduced_precision_reduction = False
    try:
        yield
    finally:
        m.allow_fp16_reduced_precision_reduction, m.allow_bf16_reduced_precision_reduction = old


class ShardSearch:
    """Exact top-k of query rows against one contiguous shard of the corpus on one device; indices are
    global (``offset`` + row in the shard). Reusable across query chunks (a resident copy stays)."""

    def __init__(
        self,
        corpus: HostCorpus | np.ndarray | Sequence[np.ndarray],
        *,
        offset: int = 0,
        device: str = "auto",
        precision: str = "auto",
        query_block: int | None = None,
        corpus_block: int | None = None,
        resident: bool | None = None,
    ):
        self.torch = torch = _torch()
        self.host = corpus if isinstance(corpus, HostCorpus) else HostCorpus(_parts(corpus))
        self.offset = offset
        dev = resolve_device(device)
        self.dev = torch.device(dev)
        self.cuda = self.dev.type == "cuda"
        if precision == "auto":
            precision = "fp16" if self.cuda else "fp32"
        if precision not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"unknown precision {precision!r} (known: auto, fp32, fp16, bf16)")
        self.precision = precision
        self.query_block, self.corpus_block = query_block, corpus_block
        self._cmax: float | None = None
        self.resident = self._upload() if self.cuda and resident is not False else None

    def _upload(self) -> Any:
        """The shard's fp32 vectors on the GPU when they take at most 45% of its free memory, else None
        (blocks are then streamed from host memory)."""
        torch = self.torch
        n, d = self.host.shape
        free, _ = torch.cuda.mem_get_info(self.dev)
        if n * d * 4 > 0.45 * free:
            log.info("corpus shard (%.1f GB) does not fit on %s; streaming it", n * d * 4 / 1e9, self.dev)
            return None
        out = torch.empty((n, d), dtype=torch.float32, device=self.dev)
        for s, e, blk in _Feeder(torch, self.host, self.dev, 1 << 16):
            out[s:e] = blk
        torch.cuda.synchronize(self.dev)
        return out

    def cmax(self) -> float:
        """The largest corpus row norm (for the rounding bound): from the resident copy when there is one."""
        if self._cmax is None:
            if self.resident is not None and len(self.resident):
                self._cmax = float(self.torch.linalg.vector_norm(self.resident, dim=1).max())
            else:
                self._cmax = self.host.max_norm()
        return self._cmax

    def search(
        self, queries: np.ndarray, k: int, *, extra: int | None = None, progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 [Q, k], global indices int64 [Q, k]) by (score desc, index asc), padded with
        -inf / -1 when the shard has fewer than ``k`` rows."""
        torch = self.torch
        q = np.ascontiguousarray(queries, dtype=np.float32)
        n = len(self.host)
        out_v = np.full((len(q), k), -np.inf, dtype=np.float32)
        out_i = np.full((len(q), k), -1, dtype=np.int64)
        kk = min(k, n)
        if len(q) == 0 or kk <= 0:
            return out_v, out_i
        k2 = min(n, kk + (extra if extra is not None else max(32, kk)))
        precision = self.precision
        if precision != "fp32" and float(np.linalg.norm(q, axis=1).max()) * self.cmax() > 6e4:
            precision = "fp32"  # half precision would overflow
        qd = _tensor(torch, q).to(self.dev)
        rows = torch.arange(len(q), device=self.dev)
        with torch.inference_mode(), _full_precision_reductions(torch, self.cuda):
            while rows.numel():
                cand_v, cand_i = self._candidates(qd[rows], k2, precision, progress)
                progress = None  # counted once
                v, i, ok = self._rescore(qd[rows], cand_v, cand_i, kk, precision, k2 >= n)
                done = rows[ok].cpu().numpy()
                out_v[done, :kk] = v[ok].cpu().numpy()
                out_i[done, :kk] = i[ok].cpu().numpy() + self.offset
                rows = rows[~ok]
                if rows.numel():
                    log.info("exact search: %d rows not proven at k2=%d; widening in fp32", rows.numel(), k2)
                precision, k2 = "fp32", min(n, k2 * 4)
        return out_v, out_i

    def _candidates(self, q: Any, k2: int, precision: str, progress: Callable[[int], None] | None) -> tuple[Any, Any]:
        torch = self.torch
        nq = q.shape[0]
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        qb_d, cb_d = default_blocks(self.dev.type, nq, len(self.host), q.shape[1])
        qb, cb = self.query_block or qb_d, self.corpus_block or cb_d
        qh = q.to(dtype)
        run_v = torch.full((nq, k2), -float("inf"), dtype=torch.float32, device=self.dev)
        run_i = torch.full((nq, k2), -1, dtype=torch.int64, device=self.dev)
        buf = None
        for c0, c1, blk in _Feeder(torch, self.host, self.dev, cb, self.resident):
            blk = blk if blk.dtype == dtype else blk.to(dtype)
            for q0 in range(0, nq, qb):
                q1 = min(nq, q0 + qb)
                if self.cuda:
                    scores = qh[q0:q1] @ blk.T  # the caching allocator reuses the block's memory
                else:  # one score buffer for the whole scan: a fresh 128 MB tensor per block costs page faults
                    if buf is None:
                        buf = torch.empty(min(qb, nq) * min(cb, len(self.host)), dtype=dtype)
                    scores = buf[: (q1 - q0) * (c1 - c0)].view(q1 - q0, c1 - c0)
                    torch.mm(qh[q0:q1], blk.T, out=scores)
                search_block(torch, scores, run_v[q0:q1], run_i[q0:q1], c0)
                del scores
            if progress is not None:
                progress(c1 - c0)
        return run_v, run_i

    def _rows(self, idx: Any) -> Any:
        """fp32 corpus rows ``idx`` (shard-local) on the device."""
        if self.resident is not None:
            return self.resident[idx]
        return _tensor(self.torch, self.host.take(idx.cpu().numpy())).to(self.dev)

    def _rescore(
        self, q: Any, cand_v: Any, cand_i: Any, k: int, precision: str, complete: bool
    ) -> tuple[Any, Any, Any]:
        """Exact scores of the candidates, ordered; which rows are proven exact."""
        torch = self.torch
        nq, k2 = cand_i.shape
        exact = torch.empty((nq, k2), dtype=torch.float32, device=self.dev)
        step = max(1, _RESCORE_ELEMENTS // (k2 * q.shape[1]))
        for s in range(0, nq, step):
            exact[s : s + step] = exact_scores(torch, q[s : s + step], self._rows(cand_i[s : s + step]))
        v, i = order_by_score_then_index(torch, exact, cand_i)
        v, i = v[:, :k].contiguous(), i[:, :k].contiguous()
        if complete:
            return v, i, torch.ones(nq, dtype=torch.bool, device=self.dev)
        if precision == "fp32" and self.cuda and torch.backends.cuda.matmul.allow_tf32:
            precision = "tf32"
        bound = (
            torch.linalg.vector_norm(q.double(), dim=1) * self.cmax() * (matmul_error(precision, q.shape[1]) + _SLACK)
        )
        boundary = cand_v.min(1).values.double()
        return v, i, v[:, k - 1].double() > boundary + bound


def _parts(corpus: Any) -> list[Any]:
    return list(corpus) if isinstance(corpus, (list, tuple)) else [corpus]


# ------------------------------------------------------------------------------------------ the corpus
class CorpusSearch:
    """Exact top-k against a corpus sharded over ``devices`` (contiguous row ranges, one per device; the
    same device may be named several times, which is how the tests simulate several GPUs on a CPU).
    Keep one instance for all query chunks: resident GPU copies are made once."""

    def __init__(
        self,
        corpus: Any,
        *,
        devices: Sequence[str] | None = None,
        device: str = "auto",
        precision: str = "auto",
        query_block: int | None = None,
        corpus_block: int | None = None,
        backend: str = "torch",
        resident: bool | None = None,
    ):
        host = corpus if isinstance(corpus, HostCorpus) else HostCorpus(_parts(corpus))
        self.host, self.backend = host, backend
        devs = list(devices) if devices else visible_devices(device)
        n = len(host)
        cuts = [n * j // len(devs) for j in range(len(devs) + 1)]
        self.shards = [
            ShardSearch(
                host.slice(a, b),
                offset=a,
                device=d,
                precision=precision,
                query_block=query_block,
                corpus_block=corpus_block,
                resident=resident,
            )
            for d, a, b in zip(devs, cuts, cuts[1:])
        ]
        self._faiss = None

    def search(
        self, queries: np.ndarray, k: int, *, extra: int | None = None, progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or (len(q) and len(self.host) and q.shape[1] != self.host.shape[1]):
            raise ValueError(f"queries {q.shape} and corpus {self.host.shape} must be 2-D with the same width")
        if self.backend == "faiss":
            return self._search_faiss(q, k, extra)
        if len(self.shards) == 1:
            return self.shards[0].search(q, k, extra=extra, progress=progress)
        with ThreadPoolExecutor(len(self.shards)) as pool:  # kernels release the GIL: devices run together
            lists = list(pool.map(lambda s: s.search(q, k, extra=extra, progress=progress), self.shards))
        return merge_exact(lists, k)

    def _search_faiss(self, q: np.ndarray, k: int, extra: int | None) -> tuple[np.ndarray, np.ndarray]:
        """faiss candidates (fp32), the same exact rescoring and proof; unproven rows by the torch path."""
        torch = _torch()
        shard = ShardSearch(self.host, device="cpu", precision="fp32")
        n = len(self.host)
        kk = min(k, n)
        out_v = np.full((len(q), k), -np.inf, dtype=np.float32)
        out_i = np.full((len(q), k), -1, dtype=np.int64)
        if not len(q) or kk <= 0:
            return out_v, out_i
        k2 = min(n, kk + (extra if extra is not None else max(32, kk)))
        if self._faiss is None:
            self._faiss = _faiss_index(self.host)
        cs, ci = self._faiss.search(q, k2)
        qt = torch.from_numpy(q)
        with torch.inference_mode():
            v, i, ok = shard._rescore(qt, torch.from_numpy(cs), torch.from_numpy(ci), kk, "fp32", k2 >= n)
        ok_n = ok.numpy()
        out_v[ok_n, :kk], out_i[ok_n, :kk] = v[ok].numpy(), i[ok].numpy()
        if (~ok_n).any():
            out_v[~ok_n], out_i[~ok_n] = shard.search(q[~ok_n], k, extra=extra)
        return out_v, out_i


def visible_devices(device: str = "auto") -> list[str]:
    """``auto``: every visible CUDA device, else the CPU; ``cuda``: every visible CUDA device; else as given."""
    dev = resolve_device(device)
    if dev == "cuda":
        n = _torch().cuda.device_count()
        return [f"cuda:{j}" for j in range(n)] or ["cuda"]
    return [dev]


def _faiss_index(host: HostCorpus) -> Any:
    faiss = requires("faiss", "pip install faiss-cpu  (or faiss-gpu)", "faiss search")
    index = faiss.IndexFlatIP(host.shape[1])
    for s in range(0, len(host), 1 << 16):
        index.add(np.ascontiguousarray(host.block(s, min(len(host), s + (1 << 16)))))
    return index


def exact_topk(
    queries: Any,
    corpus: Any,
    k: int,
    *,
    device: str = "auto",
    devices: Sequence[str] | None = None,
    precision: str = "auto",
    query_block: int | None = None,
    corpus_block: int | None = None,
    threads: int | None = None,
    extra: int | None = None,
    progress: Callable[[int], None] | None = None,
    backend: str = "torch",
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` corpus rows by inner product for each query row. ``corpus`` is a [C, d] array (or a
    memory-mapped file) or a list of arrays (row segments searched as if concatenated, without copying).

    Returns (scores float32 [Q, k], indices int64 [Q, k]); rows are sorted by score (desc) then index
    (asc); when the corpus has fewer than ``k`` rows the tail is padded with ``-inf`` / ``-1``.
    ``progress`` is called with the number of corpus rows done after each corpus block."""
    if precision not in ("auto", "fp32", "fp16", "bf16"):
        raise ValueError(f"unknown precision {precision!r} (known: auto, fp32, fp16, bf16)")
    if threads:
        _torch().set_num_threads(int(threads))
    search = CorpusSearch(
        corpus,
        devices=devices,
        device=device,
        precision=precision,
        query_block=query_block,
        corpus_block=corpus_block,
        backend=backend,
    )
    return search.search(_as_array(queries), k, extra=extra, progress=progress)


def topk_search(
    queries: Any, corpus: Any, k: int, *, backend: str = "torch", **kw: Any
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`exact_topk` with ``backend="torch"`` or ``"faiss"`` (faiss candidates, then the same exact
    rescoring and proof)."""
    return exact_topk(queries, corpus, k, backend=backend, **kw)


def faiss_topk(
    queries: np.ndarray, corpus: np.ndarray, k: int, *, use_gpu: bool = False, query_block: int = 16384
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k with faiss ``IndexFlatIP`` alone (fp32 BLAS scores, ties not ordered by index). faiss on GPU
    retrieves at most 2048 items per query."""
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


def exact_pair_scores(queries: np.ndarray, corpus_rows: np.ndarray) -> np.ndarray:
    """Exact scores (see :func:`exact_scores`) of query ``j`` with corpus row ``j``: float32 [n]."""
    torch = _torch()
    if len(queries) == 0:
        return np.zeros(0, dtype=np.float32)
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    c = torch.from_numpy(np.ascontiguousarray(corpus_rows, dtype=np.float32)).unsqueeze(1)
    return exact_scores(torch, q, c)[:, 0].numpy()


__all__ = [
    "CorpusSearch",
    "HostCorpus",
    "ShardSearch",
    "exact_topk",
    "topk_search",
    "exact_scores",
    "exact_pair_scores",
    "faiss_topk",
    "merge_exact",
    "order_by_score_then_index",
    "visible_devices",
    "release_pages",
    "FAISS_GPU_K_LIMIT",
]
