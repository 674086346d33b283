"""``downsample_retrieval.v1``: shrink a retrieval benchmark the way MMTEB did, keeping the ordering of
systems: at most ``max_queries`` queries (sampled stratified by language, seeded), and per query its
judged documents plus the union of the top ``top_k`` documents of several retrievers (MMTEB pooled
BM25 and two dense models, about 250 documents per query); the rest of the corpus is dropped.

Reads: query rows of a BEIR-style source (``query_id``, ``query``, ``doc_ids`` [, ``doc_scores``]
[, ``lang``]) and the ``corpus`` side table (``doc_id``, ``title``, ``passage``/``text``), streamed.

Writes: the sampled query rows, unchanged, plus ``pool_ids`` (the pooled, unjudged documents of the
query, in rank order). The downsampled corpus is the judged documents plus every ``pool_ids``: the
``mteb`` output format writes exactly that corpus. Queries left out of the sample go to ``rejects/``
(reason ``not_sampled``).

Report (``reports/<step id>.json|md``): the corpus size before and after, queries before and after
(per stratum), and for every system (the pooling retrievers and the held-out ``check_retrievers``) the
``metric`` on the full and on the downsampled corpus, with Kendall's tau and Spearman's rho between
the two orderings of the systems. Pooled systems keep their own top ``top_k``, so their dense scores
cannot move; held-out systems are the real test of the sample.

Parameters: ``retrievers`` (``bm25``, ``multilingual-e5-small``, a model folder or Hub id), ``top_k``,
``max_queries``, ``stratify_by`` (default ``lang`` when present), ``check_retrievers``, ``corpus``,
``corpus_lang`` (the BM25 analyzer), ``metric``, ``seed`` (default: the dataset seed), ``batch_size``,
``device``.

Example::

    [[steps]]
    uses = "downsample_retrieval.v1"
    retrievers = ["bm25", "multilingual-e5-small"]
    top_k = 250
    max_queries = 1000
    corpus_lang = "en"
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from ..errors import StepError
from ..evaluation import downsample as ds
from ..evaluation.retrievers import system_name
from ..pipeline.base import ROW_ID, Step, StepOutput, StepReport, reject
from ..pipeline.params import param
from ..pipeline.registry import register

log = logging.getLogger(__name__)


@dataclass
class DownsampleRetrievalParams:
    retrievers: list[str] = param(
        ["bm25", "multilingual-e5-small"], doc="retrievers whose top documents are pooled", min_items=1
    )
    top_k: int = param(250, doc="documents pooled per query and retriever", ge=1, le=100_000)
    max_queries: int = param(1000, doc="queries kept at most", ge=1, le=100_000_000)
    stratify_by: str | None = param(None, doc="column the query sample is stratified by (default: lang if present)")
    check_retrievers: list[str] = param([], doc="held-out systems scored on both corpora, not pooled")
    corpus: str = param("corpus", doc="side table holding the corpus")
    corpus_lang: str | None = param(None, doc="language of the corpus (BM25 analyzer)", kind="lang")
    metric: str = param("nDCG@10", doc="metric of the report (ir-measures name)")
    seed: int | None = param(None, doc="sampling seed (default: the dataset seed)", ge=0, le=2**63 - 1)
    batch_size: int = param(64, doc="texts per embedding batch", runtime=True, ge=1, le=100_000)
    device: str = param("auto", doc="auto | cpu | cuda", runtime=True)


@register("step")
class DownsampleRetrieval(Step):
    __doc__ = __doc__
    name = "downsample_retrieval.v1"
    kind = "global"
    Params = DownsampleRetrievalParams
    task_categories = ("text-retrieval",)

    @classmethod
    def check(cls, params: Any, columns: list[str] | None) -> list[tuple[str, str]]:
        from ..evaluation.metrics import parse_metric

        out = []
        try:
            parse_metric(params.metric)
        except ValueError as e:
            out.append(("metric", str(e)))
        if params.stratify_by and columns is not None and params.stratify_by not in columns:
            out.append(("stratify_by", f"no column {params.stratify_by!r} (columns: {', '.join(columns)})"))
        dup = set(params.retrievers) & set(params.check_retrievers)
        if dup:
            out.append(("check_retrievers", f"{sorted(dup)} are pooled already: a check system must be held out"))
        return out

    def input_columns(self) -> list[str]:
        return ["query_id", "query", "doc_ids"]

    def output_columns(self, columns: list[str]) -> list[str]:
        return list(columns) if "pool_ids" in columns else [*columns, "pool_ids"]

    def _corpus(self):
        p = self.params
        if p.corpus not in self.ctx.tables:
            raise StepError(self.name, f"no side table {p.corpus!r} (known: {', '.join(self.ctx.tables) or 'none'})")
        table = self.ctx.tables[p.corpus]
        cols = table.columns
        text = next((c for c in ("passage", "text") if c in cols), None)
        if "doc_id" not in cols or text is None:
            raise StepError(self.name, f"the {p.corpus!r} table needs doc_id and passage (or text); has {cols}")
        title = "title" if "title" in cols else None

        def batches():
            frames = (
                [table]
                if isinstance(table, pl.DataFrame)
                else table.iter_batches(["doc_id", text, *([title] if title else [])])
            )
            for df in frames:
                t = pl.col("title").cast(pl.Utf8).fill_null("") if title else pl.lit("")
                df = df.select(
                    pl.col("doc_id").cast(pl.Utf8),
                    pl.concat_str([t, pl.col(text).cast(pl.Utf8).fill_null("")], separator=" ")
                    .str.strip_chars()
                    .alias("t"),
                )
                yield df["doc_id"].to_list(), df["t"].to_list()

        return batches, (table.height if isinstance(table, pl.DataFrame) else table.rows)

    def run_global(self, table, emit) -> dict[str, Any]:
        p = self.params
        rows = table.read() if not isinstance(table, pl.DataFrame) else table
        strat = p.stratify_by or ("lang" if "lang" in rows.columns else None)
        strata = rows[strat].cast(pl.Utf8).fill_null("").to_list() if strat else [""] * rows.height
        seed = p.seed if p.seed is not None else self.ctx.seed
        keys = rows[ROW_ID].cast(pl.Utf8).to_list()
        kept_ix = ds.stratified_sample(keys, strata, p.max_queries, seed)
        mask = pl.Series(np.isin(np.arange(rows.height), kept_ix))
        kept, left = rows.filter(mask), rows.filter(~mask)
        queries = dict(zip(kept[ROW_ID].cast(pl.Utf8).to_list(), kept["query"].cast(pl.Utf8).to_list()))
        scores = kept["doc_scores"].to_list() if "doc_scores" in kept.columns else [None] * kept.height
        qrels = {
            q: {str(d): int(s) for d, s in zip(docs or [], sc or [1] * len(docs or [])) if d is not None}
            for q, docs, sc in zip(queries, kept["doc_ids"].to_list(), scores)
        }
        batches, size = self._corpus()
        kw = {
            "device": p.device,
            "batch_size": p.batch_size,
            "work_dir": self._work_dir(),
            "base_dir": self.ctx.recipe_dir,
        }
        pools, runs = ds.pool(queries, qrels, batches, size, p.retrievers, p.top_k, p.corpus_lang, **kw)
        keep = {d for q in qrels.values() for d in q} | {d for ids in pools.values() for d in ids}
        corpus_ids: set[str] = set()
        for ids, _ in batches():
            corpus_ids.update(ids)
        keep &= corpus_ids
        comparison = ds.compare(
            queries,
            qrels,
            batches,
            size,
            keep,
            [*p.retrievers, *p.check_retrievers],
            runs,
            p.metric,
            p.corpus_lang,
            **kw,
        )
        out = kept.with_columns(pl.Series("pool_ids", [pools[q] for q in queries], dtype=pl.List(pl.Utf8)))
        emit(StepOutput(out, reject(left, "not_sampled", f"stratified sample of {p.max_queries} (seed {seed})")))
        by_stratum: dict[str, list[int]] = {}
        for s in strata:
            by_stratum.setdefault(s or "all", [0, 0])[0] += 1
        for i in kept_ix:
            by_stratum[strata[i] or "all"][1] += 1
        return {
            "downsample": {
                "corpus_before": len(corpus_ids),
                "corpus_after": len(keep),
                "queries_before": rows.height,
                "queries_after": kept.height,
                "by_stratum": {s: {"before": b, "after": a} for s, (b, a) in sorted(by_stratum.items())},
                "judged_kept": sum(len(q) for q in qrels.values()),
                "judged_missing_from_corpus": len({d for q in qrels.values() for d in q} - corpus_ids),
                "top_k": p.top_k,
                "retrievers": list(p.retrievers),
                "check_retrievers": list(p.check_retrievers),
                "seed": seed,
                "comparison": comparison,
            }
        }

    def _work_dir(self):
        wd = self.ctx.work_dir
        return None if wd is None or "://" in str(wd) else wd / "downsample_retrieval"

    def finalize(self, stats: dict[str, Any]) -> StepReport | None:
        rep = stats.get("downsample")
        if not rep:
            return None
        cmp = rep["comparison"]
        tau = cmp.get("kendall_tau")
        summary = (
            f"Downsampled to {rep['queries_after']} of {rep['queries_before']} queries and {rep['corpus_after']} of "
            f"{rep['corpus_before']} documents (judged + top {rep['top_k']} of {', '.join(rep['retrievers'])}); "
            f"{cmp['metric']} ordering of {len(cmp['systems'])} systems: Kendall tau "
            + (f"{tau:.3f}" if tau is not None else "n/a")
            + "."
        )
        lines = [
            f"# {self.name}",
            "",
            summary,
            "",
            "| | before | after |",
            "|---|---:|---:|",
            f"| documents | {rep['corpus_before']} | {rep['corpus_after']} |",
            f"| queries | {rep['queries_before']} | {rep['queries_after']} |",
        ]
        lines += [f"| queries ({s}) | {v['before']} | {v['after']} |" for s, v in rep["by_stratum"].items()]
        lines += [
            "",
            f"| system | {cmp['metric']} full | {cmp['metric']} downsampled | pooled |",
            "|---|---:|---:|---|",
        ]
        pooled = {system_name(s) for s in rep["retrievers"]}
        for s, v in cmp["systems"].items():
            lines.append(f"| {s} | {v['full']:.4f} | {v['downsampled']:.4f} | {'yes' if s in pooled else 'no'} |")
        rho = cmp.get("spearman_rho")
        lines += [
            "",
            f"Kendall tau {tau if tau is None else round(tau, 4)}, Spearman rho {rho if rho is None else round(rho, 4)}"
            + (f" ({cmp['note']})" if cmp.get("note") else ""),
        ]
        return StepReport(summary=summary, data=rep, markdown="\n".join(lines) + "\n")
