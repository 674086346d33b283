"""``sample.v1``: a seeded, stratified sample with per-stratum caps and quotas (per-language budgets).

Each row gets a seeded hash of its ``key_column`` (default ``row_id``); a stratum (a value of ``column``,
e.g. ``lang``) keeps its ``k`` rows with the smallest hashes. The quota ``k`` of a stratum of ``n`` rows:

1. the proportional part: ``round(fraction * n)`` (``fraction`` default 1), or, with ``total``, a
   share of ``total`` proportional to ``n`` (one common fraction, chosen so the quotas after steps 2-3 add
   up to exactly ``total`` when the caps and minimums allow it; leftover rows go to the largest
   remainders; minimums win over a ``total`` too small for them, caps over one too large);
2. capped at ``max_per_value``;
3. raised to ``min_per_value``; a stratum with fewer than ``min_per_value`` rows keeps **all** its rows
   (it cannot reach the minimum) and the report says so (rule ``short``).

So ``max_per_value = 50000, min_per_value = 5000, fraction = 0.1`` keeps 10% of each language, at most
50k and at least 5k (or all of a language with fewer than 5k). A row whose stratum value is null belongs
to the stratum ``<null>``. The same seed and input keep the same rows, whatever their order or sharding;
the same ``key_column`` value (e.g. a ``parallel_id``) ranks alike in every stratum, so parallel data keeps
the same items across languages as far as the quotas allow.

Streaming, exact: pass 1 counts rows per stratum and a 4096-bucket histogram of the hashes' top bits;
pass 2 collects the hashes in each stratum's boundary bucket (about n/4096 of them) to find the exact
``k``-th smallest; pass 3 emits the rows at or under it. Memory: 32 KiB per stratum plus the boundary
buckets, never the table. Rows not kept go to ``rejects/`` as ``not_sampled`` (detail: the stratum and
its quota); nothing is lost silently.

Reads: ``column`` and ``key_column`` (any other columns pass through). Writes: the kept rows, unchanged.
Report: rows and kept rows per stratum, with the rule that set each quota (``all``, ``proportional``,
``capped``, ``raised``, ``short``).

Example::

    [[steps]]
    uses = "sample.v1"
    column = "lang"
    max_per_value = 50000
    min_per_value = 5000
    fraction = 0.1
    seed = 13
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

import numpy as np
import polars as pl

from ..pipeline.base import ROW_ID, Step, StepOutput, StepReport
from ..pipeline.params import param
from ..pipeline.registry import register

BUCKET_BITS = 12
NULL = "<null>"


@dataclass
class SampleParams:
    column: str | None = param(None, doc="stratum column, e.g. lang (none: one stratum, a plain seeded sample)")
    max_per_value: int | None = param(None, doc="rows kept per stratum at most", ge=1, le=10**12)
    min_per_value: int | None = param(
        None, doc="rows kept per stratum at least (a smaller stratum keeps all its rows)", ge=0, le=10**12
    )
    fraction: float | None = param(None, doc="share of each stratum kept (before caps)", gt=0.0, le=1.0)
    total: int | None = param(None, doc="rows kept in all, shared in proportion to the strata", ge=1, le=10**13)
    seed: int | None = param(None, doc="sampling seed (default: the dataset seed)", ge=0, le=2**63 - 1)
    key_column: str = param(ROW_ID, doc="column whose value is hashed (rows with equal keys rank alike)")


def quotas(counts: dict[str, int], p: SampleParams) -> dict[str, tuple[int, str]]:
    """Per stratum: (rows to keep, the rule that set it), as the module docstring defines."""
    lo = {s: min(n, p.min_per_value or 0) for s, n in counts.items()}
    hi = {s: min(n, p.max_per_value if p.max_per_value is not None else n) for s, n in counts.items()}
    if p.total is not None:
        keep, f = _proportional_total(counts, lo, hi, p.total)
    else:
        f = p.fraction if p.fraction is not None else 1.0
        keep = {s: min(max(math.floor(f * n + 0.5), lo[s]), hi[s]) for s, n in counts.items()}
    out = {}
    for s, n in counts.items():
        q, share = keep[s], f * n
        if p.min_per_value is not None and n < p.min_per_value:
            rule = "short"
        elif q == hi[s] < share:
            rule = "capped"
        elif q == lo[s] > share:
            rule = "raised"
        else:
            rule = "all" if q == n else "proportional"
        out[s] = (q, rule)
    return out


def _proportional_total(counts: dict[str, int], lo: dict, hi: dict, total: int) -> tuple[dict[str, int], float]:
    """One fraction ``f`` for every stratum, the largest with sum(clamp(floor(f*n))) <= total; the rows still
    missing go one each to the strata with the largest remainders (ties by name). Returns (quotas, f)."""

    def at(f: float) -> dict[str, int]:
        return {s: min(max(math.floor(f * n), lo[s]), hi[s]) for s, n in counts.items()}

    if sum(at(1.0).values()) <= total:
        return at(1.0), 1.0
    a, b = 0.0, 1.0
    for _ in range(64):
        m = (a + b) / 2
        a, b = (m, b) if sum(at(m).values()) <= total else (a, m)
    q = at(a)
    left = total - sum(q.values())
    order = sorted(
        (s for s, n in counts.items() if lo[s] <= math.floor(a * n) and q[s] < hi[s]),
        key=lambda s: (-(a * counts[s] - math.floor(a * counts[s])), s),
    )
    for s in order[: max(left, 0)]:
        q[s] += 1
    return q, a


@register("step")
class Sample(Step):
    __doc__ = __doc__
    name = "sample.v1"
    kind = "global"
    Params = SampleParams

    @classmethod
    def check(cls, params: SampleParams, columns: list[str] | None) -> list[tuple[str, str]]:
        p = params
        out = []
        if p.fraction is not None and p.total is not None:
            out.append(("total", "set fraction or total, not both"))
        if p.min_per_value is not None and p.max_per_value is not None and p.min_per_value > p.max_per_value:
            out.append(("min_per_value", f"{p.min_per_value} is more than max_per_value {p.max_per_value}"))
        if p.max_per_value is None and p.fraction is None and p.total is None:
            out.append(("max_per_value", "nothing to sample: set max_per_value, fraction or total"))
        return out

    def input_columns(self) -> list[str]:
        return list(dict.fromkeys([c for c in (self.params.column, self.params.key_column) if c]))

    # -- hashing
    def _seed(self) -> int:
        return self.params.seed if self.params.seed is not None else self.ctx.seed

    def _keyed(self, batch: pl.DataFrame) -> tuple[list[str], np.ndarray, list[str], list[str]]:
        """(stratum, hash, key, row_id) per row of ``batch``."""
        p = self.params
        strata = (
            [NULL if v is None else v for v in batch[p.column].cast(pl.Utf8).to_list()]
            if p.column
            else ["all"] * batch.height
        )
        key = batch[p.key_column].cast(pl.Utf8).fill_null("")
        salt = str(self._seed()).encode()
        digests = b"".join([blake2b(k, digest_size=8, key=salt).digest() for k in key.cast(pl.Binary).to_list()])
        h = np.frombuffer(digests, dtype=">u8").astype(np.uint64)
        keys = key.to_list()
        return strata, h, keys, batch[ROW_ID].cast(pl.Utf8).to_list()

    def _columns(self) -> list[str]:
        return list(dict.fromkeys([ROW_ID, *self.input_columns()]))

    # -- the three passes
    def run_global(self, table: Any, emit) -> dict[str, Any]:
        buckets = 1 << BUCKET_BITS
        shift = np.uint64(64 - BUCKET_BITS)
        counts: dict[str, int] = {}
        hist: dict[str, np.ndarray] = {}
        for batch in table.iter_batches(self._columns()):  # pass 1: sizes and hash histograms
            strata, h, _, _ = self._keyed(batch)
            b = (h >> shift).astype(np.int64)
            code_of: dict[str, int] = {}
            code = np.fromiter((code_of.setdefault(s, len(code_of)) for s in strata), np.int64, len(strata))
            per = np.bincount(code * buckets + b, minlength=len(code_of) * buckets).reshape(len(code_of), buckets)
            for s, k in code_of.items():
                counts[s] = counts.get(s, 0) + int(per[k].sum())
                hist[s] = hist[s] + per[k] if s in hist else per[k].copy()
        quota = quotas(counts, self.params)
        edge: dict[str, tuple[int, int]] = {}  # stratum -> (boundary bucket, rows needed from it)
        for s, (q, _) in quota.items():
            if 0 < q < counts[s]:
                cum = np.cumsum(hist[s])
                bb = int(np.searchsorted(cum, q))  # first bucket where the running count reaches q
                edge[s] = (bb, q - (int(cum[bb - 1]) if bb else 0))
        del hist
        cands: dict[str, list[tuple[int, str, str]]] = {s: [] for s in edge}
        if edge:
            for batch in table.iter_batches(self._columns()):  # pass 2: the boundary buckets
                strata, h, keys, rids = self._keyed(batch)
                b = (h >> shift).astype(np.int64)
                for i, s in enumerate(strata):
                    if s in edge and b[i] == edge[s][0]:
                        cands[s].append((int(h[i]), keys[i], rids[i]))
        cut = {s: sorted(cands[s])[edge[s][1] - 1] for s in edge}
        del cands
        kept_n = 0
        # pass 3: emit. Per stratum the bucket under which every row is kept (n + 1 buckets: all, 0: none)
        below = {s: edge[s][0] if s in edge else (buckets if quota[s][0] == counts[s] else 0) for s in quota}
        detail = {s: f"stratum {s}: {q} of {counts[s]} kept ({r})" for s, (q, r) in quota.items()}
        for batch in table.iter_batches():
            strata, h, keys, rids = self._keyed(batch)
            b = (h >> shift).astype(np.int64)
            keep = b < np.array([below[s] for s in strata], dtype=np.int64)
            for i in np.flatnonzero(b == np.array([edge[s][0] if s in edge else -1 for s in strata])):
                keep[i] = (int(h[i]), keys[i], rids[i]) <= cut[strata[i]]
            mask = pl.Series(keep)
            kept_n += int(keep.sum())
            why = pl.Series("detail", [detail[s] for s, k in zip(strata, keep) if not k], pl.Utf8)
            left = batch.filter(~mask).with_columns(pl.lit("not_sampled", pl.Utf8).alias("reason"), why)
            emit(StepOutput(batch.filter(mask), left))
        strata_stats = {s: {"rows": counts[s], "kept": q, "rule": r} for s, (q, r) in sorted(quota.items())}
        return {"sample": {"strata": strata_stats, "rows": sum(counts.values()), "kept": kept_n, "seed": self._seed()}}

    def finalize(self, stats: dict[str, Any]) -> StepReport | None:
        s = stats.get("sample")
        if not s:
            return None
        p = self.params
        rules = [
            f"{k} {getattr(p, k)}"
            for k in ("max_per_value", "min_per_value", "fraction", "total")
            if getattr(p, k) is not None
        ]
        by = f"by `{p.column}`" if p.column else "(one stratum)"
        summary = f"Sampled {s['kept']} of {s['rows']} rows {by}, seed {s['seed']} ({', '.join(rules)})"
        parts = []
        for name, v in s["strata"].items():
            note = {"capped": "capped at max_per_value", "raised": "raised to min_per_value"}.get(v["rule"], "")
            if v["rule"] == "short":
                note = f"fewer rows than min_per_value {p.min_per_value}: all kept"
            parts.append(f"{name} {v['kept']} of {v['rows']}" + (f" ({note})" if note else ""))
        summary += ": " + "; ".join(parts[:20]) + ("; ..." if len(parts) > 20 else "") + "."
        lines = [f"# {self.name}", "", summary, "", "| stratum | rows | kept | rule |", "|---|---:|---:|---|"]
        lines += [f"| {k} | {v['rows']} | {v['kept']} | {v['rule']} |" for k, v in s["strata"].items()]
        lines += ["", "Rows not kept are in `rejects/` with reason `not_sampled`."]
        return StepReport(summary=summary, data={"params": {**p.__dict__}, **s}, markdown="\n".join(lines) + "\n")
