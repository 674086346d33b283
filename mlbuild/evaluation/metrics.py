"""IR metrics from an established implementation: ``ir-measures`` (which runs trec_eval's own C code
through ``pytrec_eval`` for nDCG@k, R@k, P@k, AP and RR, and the MS MARCO evaluator for RR@k). Nothing
here computes a metric by hand.

Names follow ir-measures notation (``nDCG@10``, ``R@100``, ``RR@10``, ``AP``, ``P@10``, ``RR``); the
lower-case spellings people type (``ndcg@10``, ``recall@100``, ``mrr@10``, ``map``, ``p@10``) and
trec_eval's names (``ndcg_cut_10``, ``recall_100``, ``recip_rank``, ``map``, ``P_10``) are accepted
and reported under the ir-measures name.

Averaging: ``missing="skip"`` averages over the queries that are both judged and in the run, which is
what ``trec_eval`` does by default (use it to score a run file); ``missing="zero"`` averages over every
judged query, a query with nothing retrieved counting 0 (``trec_eval -c``; what a retriever evaluation
needs, so a retriever that returns nothing for hard queries is not rewarded).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import requires

IR_MEASURES_PIN = "ir-measures==0.4.3 pytrec-eval-terrier==0.5.11"

Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]

_ALIASES = {
    "ndcg": "nDCG",
    "recall": "R",
    "r": "R",
    "mrr": "RR",
    "rr": "RR",
    "map": "AP",
    "ap": "AP",
    "p": "P",
    "precision": "P",
}

DEFAULT_METRICS = ("nDCG@10", "R@100", "RR@10")


def _irm():
    return requires("ir_measures", f"pip install {IR_MEASURES_PIN}", "retrieval metrics")


def parse_metric(name: str) -> tuple[str, Any]:
    """(canonical ir-measures name, measure object) for a metric name; ValueError names what is known."""
    irm = _irm()
    text = name.strip()
    base, sep, cut = text.partition("@")
    canon = _ALIASES.get(base.lower(), base) + (f"@{cut}" if sep else "")
    try:
        m = irm.parse_measure(canon)
    except (ValueError, NameError, SyntaxError, TypeError, AttributeError):
        try:
            found = irm.parse_trec_measure(text)
        except (ValueError, KeyError, NameError, SyntaxError, TypeError, AttributeError):
            found = []
        if len(found) != 1:
            raise ValueError(
                f"unknown metric {name!r}: use ir-measures names such as nDCG@10, R@100, RR@10, AP, P@10, RR "
                "(or ndcg@10, recall@100, mrr@10, map, p@10; or trec_eval's ndcg_cut_10, recall_100, recip_rank)"
            ) from None
        m = found[0]
    return str(m), m


def parse_metrics(names: Iterable[str]) -> list[tuple[str, Any]]:
    out: dict[str, Any] = {}
    for n in names:
        canon, m = parse_metric(n)
        out.setdefault(canon, m)
    return list(out.items())


class Evaluator:
    """Metrics of runs against one set of judgements (the qrels are prepared once, runs scored many times)."""

    def __init__(self, qrels: Qrels, metrics: Iterable[str] = DEFAULT_METRICS, missing: str = "zero"):
        if missing not in ("zero", "skip"):
            raise ValueError(f"missing must be 'zero' or 'skip', got {missing!r}")
        irm = _irm()
        self.metrics = parse_metrics(metrics)
        if not self.metrics:
            raise ValueError("no metric asked for")
        self.qrels = qrels
        self.missing = missing
        self._evaluator = irm.evaluator([m for _, m in self.metrics], qrels)

    def per_query(self, run: Run) -> dict[str, dict[str, float]]:
        """query id -> metric -> value, for the judged queries the run has (as trec_eval -q reports them)."""
        names = {m: n for n, m in self.metrics}
        out: dict[str, dict[str, float]] = {}
        for r in self._evaluator.iter_calc(run):
            q = str(r.query_id)
            if q in run:
                out.setdefault(q, {})[names[r.measure]] = float(r.value)
        return out

    def aggregate(self, run: Run) -> dict[str, float]:
        """metric -> mean over queries (see the module doc for which queries count)."""
        per_q = self.per_query(run)
        n = len(per_q) if self.missing == "skip" else len(self.qrels)
        sums = {name: 0.0 for name, _ in self.metrics}
        for vals in per_q.values():
            for name, v in vals.items():
                sums[name] += v
        return {name: (s / n if n else 0.0) for name, s in sums.items()}


def evaluate(
    qrels: Qrels, run: Run, metrics: Iterable[str] = DEFAULT_METRICS, missing: str = "zero"
) -> dict[str, float]:
    """Mean of each metric of ``run`` against ``qrels``."""
    return Evaluator(qrels, metrics, missing).aggregate(run)
