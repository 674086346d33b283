"""``beir.v1``: read a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``).

With ``rows = "queries"`` (the default) it yields one row per query judged in ``split``:
``row_id`` (= ``query_id``), ``query_id``, ``query``, ``doc_ids`` (the judged documents, in qrels
order) and ``doc_scores`` (their relevance scores). Queries without a judgement in the split are
skipped (counted as ``queries_without_qrels``), as BEIR's own loader does. With ``rows = "corpus"``
it yields one row per document: ``row_id`` (= ``doc_id``), ``doc_id``, ``title``, ``passage``.

Side tables (``ctx.tables``), for later steps and the ``beir`` output format: ``corpus``
(``doc_id``, ``title``, ``passage``), ``queries`` (``query_id``, ``query``: every query of the file) and
``qrels`` (``query_id``, ``doc_id``, ``score``: the split's judgements, exactly as in the file).

Errors name the file, line and field: malformed JSON, a line without ``_id``, a duplicate id, a qrels
line that is not ``query-id<TAB>corpus-id<TAB>score`` or has a non-integer score, a qrels query that
``queries.jsonl`` lacks.

Parameters: ``path`` (the folder), ``split`` (``test``, ``dev``, ``train``...), ``rows``.

Example::

    [source]
    uses = "beir.v1"
    path = "data/beir-mini"
    split = "test"
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from ..errors import InputError
from ..pipeline.base import ROW_ID, Source, StepOutput
from ..pipeline.params import param
from ..pipeline.registry import register
from .jsonl import read_jsonl

log = logging.getLogger(__name__)

QUERY_COLUMNS = ["query_id", "query", "doc_ids", "doc_scores"]
CORPUS_COLUMNS = ["doc_id", "title", "passage"]


@dataclass
class BeirParams:
    path: str = param(doc="BEIR folder with corpus.jsonl, queries.jsonl and qrels/<split>.tsv", kind="path")
    split: str = param("test", doc="qrels split to read (qrels/<split>.tsv)")
    rows: Literal["queries", "corpus"] = param("queries", doc="what the main rows are: judged queries, or the corpus")


def read_qrels(path: Path) -> pl.DataFrame:
    """A BEIR qrels TSV (header ``query-id corpus-id score``) as a frame, in file order."""
    qs, ds, ss = [], [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            cells = line.split("\t")
            if n == 1 and cells[0].strip().lower() in ("query-id", "query_id", "qid"):
                continue
            if len(cells) != 3:
                raise InputError(
                    str(path),
                    f"expected 3 tab-separated fields (query-id, corpus-id, score), got {len(cells)}",
                    line=n,
                )
            try:
                score = int(cells[2])
            except ValueError:
                raise InputError(str(path), f"score {cells[2]!r} is not an integer", line=n, field="score") from None
            qs.append(cells[0])
            ds.append(cells[1])
            ss.append(score)
    return pl.DataFrame(
        {"query_id": qs, "doc_id": ds, "score": ss}, schema={"query_id": pl.Utf8, "doc_id": pl.Utf8, "score": pl.Int64}
    )


def _read_ids(path: Path, fields: dict[str, str], what: str) -> pl.DataFrame:
    records, lines = read_jsonl(path)
    cols: dict[str, list[Any]] = {out: [] for out in fields.values()}
    seen: set[str] = set()
    for rec, n in zip(records, lines):
        rid = rec.get("_id")
        if rid is None:
            raise InputError(str(path), f"{what} without an id", line=n, field="_id")
        rid = str(rid)
        if rid in seen:
            raise InputError(str(path), f"duplicate {what} id {rid!r}", line=n, field="_id")
        seen.add(rid)
        for src, out in fields.items():
            v = rid if src == "_id" else rec.get(src)
            if v is not None and not isinstance(v, str):
                raise InputError(str(path), f"expected text, got {type(v).__name__}", line=n, field=src)
            cols[out].append(v if v is not None else ("" if src == "title" else None))
    return pl.DataFrame(cols, schema={c: pl.Utf8 for c in cols})


@register("source")
class BeirSource(Source):
    __doc__ = __doc__
    name = "beir.v1"
    Params = BeirParams

    def _files(self) -> dict[str, Path]:
        d = Path(self.params.path)
        return {
            "corpus": d / "corpus.jsonl",
            "queries": d / "queries.jsonl",
            "qrels": d / "qrels" / f"{self.params.split}.tsv",
        }

    def input_files(self) -> list[Path]:
        return list(self._files().values())

    def _check_files(self) -> None:
        d = Path(self.params.path)
        if not d.is_dir():
            raise InputError(str(d), "BEIR folder not found")
        for f in self._files().values():
            if not f.exists():
                extra = ""
                if f.parent.name == "qrels" and f.parent.is_dir():
                    extra = f" (splits here: {', '.join(sorted(p.stem for p in f.parent.glob('*.tsv'))) or 'none'})"
                raise InputError(str(f), f"file not found{extra}")

    def columns(self) -> list[str] | None:
        self._check_files()
        return list(QUERY_COLUMNS if self.params.rows == "queries" else CORPUS_COLUMNS)

    def _load(self) -> dict[str, pl.DataFrame]:
        if getattr(self, "_tables", None) is None:
            self._check_files()
            f = self._files()
            corpus = _read_ids(f["corpus"], {"_id": "doc_id", "title": "title", "text": "passage"}, "document")
            queries = _read_ids(f["queries"], {"_id": "query_id", "text": "query"}, "query")
            qrels = read_qrels(f["qrels"])
            missing = qrels.filter(~pl.col("query_id").is_in(queries["query_id"].implode()))
            if missing.height:
                q = missing["query_id"][0]
                raise InputError(
                    str(f["qrels"]),
                    f"query {q!r} is judged but not in queries.jsonl ({missing['query_id'].n_unique()} such queries)",
                    field="query-id",
                )
            self._unknown_docs = int((~qrels["doc_id"].is_in(corpus["doc_id"].implode())).sum())
            if self._unknown_docs:
                log.warning(
                    "%s: %d judgements name documents that corpus.jsonl lacks (kept as they are)",
                    f["qrels"],
                    self._unknown_docs,
                )
            self._tables = {"corpus": corpus, "queries": queries, "qrels": qrels}
        return self._tables

    def side_table_names(self) -> list[str]:
        return ["corpus", "queries", "qrels"]

    def side_tables(self) -> dict[str, pl.DataFrame]:
        return dict(self._load())

    def read(self) -> StepOutput:
        t = self._load()
        stats: dict[str, Any] = {
            "corpus_docs": t["corpus"].height,
            "queries": t["queries"].height,
            "qrels": t["qrels"].height,
            "qrels_unknown_docs": self._unknown_docs,
        }
        if self.params.rows == "corpus":
            rows = t["corpus"].select(pl.col("doc_id").alias(ROW_ID), *CORPUS_COLUMNS)
            return StepOutput(rows, None, stats)
        qrels = t["qrels"].with_row_index("__order")
        judged = qrels.group_by("query_id", maintain_order=True).agg(
            pl.col("doc_id").sort_by("__order").alias("doc_ids"),
            pl.col("score").sort_by("__order").alias("doc_scores"),
        )
        rows = t["queries"].join(judged, on="query_id", how="inner", maintain_order="left")
        stats["queries_without_qrels"] = t["queries"].height - rows.height
        rows = rows.select(pl.col("query_id").alias(ROW_ID), *QUERY_COLUMNS)
        return StepOutput(rows, None, stats)

    def source_datasets(self) -> list[str]:
        return []
