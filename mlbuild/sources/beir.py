"""``beir.v1``: read a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``).

With ``rows = "queries"`` (the default) it yields one row per query judged in ``split``:
``row_id`` (= ``query_id``), ``query_id``, ``query``, ``doc_ids`` (the judged documents, in qrels
order) and ``doc_scores`` (their relevance scores). Queries without a judgement in the split are
skipped (counted as ``queries_without_qrels``), as BEIR's own loader does. With ``rows = "corpus"``
it yields one row per document: ``row_id`` (= ``doc_id``), ``doc_id``, ``title``, ``passage``.

Side tables (``ctx.tables``), for later steps and the ``beir`` output format: ``corpus``
(``doc_id``, ``title``, ``passage``), ``queries`` (``query_id``, ``query``: every query of the file) and
``qrels`` (``query_id``, ``doc_id``, ``score``: the split's judgements, exactly as in the file). The
corpus streams in blocks (a corpus of millions of documents is never held in memory); queries and
qrels, much smaller, are read whole.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from ..errors import InputError
from ..pipeline.base import ROW_ID, Source, StepOutput
from ..pipeline.params import param
from ..pipeline.registry import register
from ._common import DuplicateIds, line_blocks, parse_json_lines, split_lines

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


def _id_frames(path: Path, fields: dict[str, str], what: str) -> Iterator[pl.DataFrame]:
    """Stream ``_id``-keyed records of a BEIR JSONL file as frames; a line without an id, a non-text
    field or a duplicate id is an input error naming the line."""
    dups = DuplicateIds(str(path), what)
    for line0, block in line_blocks(path, 0, path.stat().st_size, 1):
        texts, nums = split_lines(block, line0)
        df, records = parse_json_lines(texts, nums, str(path))
        if df is None:
            df = pl.DataFrame(records, infer_schema_length=None, strict=False) if records else pl.DataFrame()
        if "_id" not in df.columns or df["_id"].null_count():
            bad = 0 if "_id" not in df.columns else int(df["_id"].is_null().arg_true()[0])
            raise InputError(str(path), f"{what} without an id", line=nums[bad], field="_id")
        cols = []
        for src, out in fields.items():
            if src not in df.columns:
                cols.append(pl.Series(out, ["" if src == "title" else None] * df.height, dtype=pl.Utf8))
                continue
            c = df[src]
            if src == "_id" and c.dtype.is_integer():
                c = c.cast(pl.Utf8)
            if c.dtype not in (pl.Utf8, pl.Null):
                raise InputError(str(path), f"expected text, got {c.dtype}", line=nums[0], field=src)
            c = c.cast(pl.Utf8)
            cols.append((c.fill_null("") if src == "title" else c).alias(out))
        frame = pl.DataFrame(cols)
        dups.add(frame[fields["_id"]], nums)
        yield frame
    dups.finish()


def _read_ids(path: Path, fields: dict[str, str], what: str) -> pl.DataFrame:
    frames = list(_id_frames(path, fields, what))
    if not frames:
        return pl.DataFrame(schema={c: pl.Utf8 for c in fields.values()})
    return pl.concat(frames, how="vertical_relaxed")


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

    def side_table_names(self) -> list[str]:
        return ["corpus", "queries", "qrels"]

    def _small(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Queries and qrels, checked against each other."""
        self._check_files()
        f = self._files()
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
        return queries, qrels

    def _corpus(self) -> Iterator[pl.DataFrame]:
        f = self._files()
        qrels = read_qrels(f["qrels"])
        known = []
        for df in _id_frames(f["corpus"], {"_id": "doc_id", "title": "title", "text": "passage"}, "document"):
            known.append(df["doc_id"].hash(seed=0).to_numpy())
            yield df
        if qrels.height:
            ids = np.concatenate(known) if known else np.zeros(0, dtype=np.uint64)
            unknown = int((~np.isin(qrels["doc_id"].hash(seed=0).to_numpy(), ids)).sum())
            if unknown:
                log.warning(
                    "%s: %d judgements name documents that corpus.jsonl lacks (kept as they are)", f["qrels"], unknown
                )

    def side_tables(self) -> dict[str, Callable[[], Iterator[pl.DataFrame]]]:
        return {
            "corpus": self._corpus,
            "queries": lambda: iter([self._small()[0]]),
            "qrels": lambda: iter([self._small()[1]]),
        }

    def read(self, part: Any = None, limit: int | None = None) -> Iterator[StepOutput]:
        if self.params.rows == "corpus":
            self._check_files()
            taken = 0
            for df in self._corpus():
                if limit is not None:
                    df = df.head(limit - taken)
                taken += df.height
                rows = df.select(pl.col("doc_id").alias(ROW_ID), *CORPUS_COLUMNS)
                yield StepOutput(rows, None, {"rows_in": df.height})
                if limit is not None and taken >= limit:
                    return
            return
        queries, qrels = self._small()
        if limit is not None:
            queries = queries.head(limit)
        qrels = qrels.with_row_index("__order")
        judged = qrels.group_by("query_id", maintain_order=True).agg(
            pl.col("doc_id").sort_by("__order").alias("doc_ids"),
            pl.col("score").sort_by("__order").alias("doc_scores"),
        )
        rows = queries.join(judged, on="query_id", how="inner", maintain_order="left")
        stats: dict[str, Any] = {"rows_in": queries.height, "queries_without_qrels": queries.height - rows.height}
        rows = rows.select(pl.col("query_id").alias(ROW_ID), *QUERY_COLUMNS)
        yield StepOutput(rows, None, stats)

    def source_datasets(self) -> list[str]:
        return []
