"""The ``beir`` output format (``[output] format = ["hf", "beir"]``): one BEIR folder per language.

``<dataset>/beir/<lang>/corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
``text``) and ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score``), plus ``beir/index.json``
with the counts. Each folder drops into BEIR/MTEB-style evaluation as it is.

Two shapes of final table are understood:

- query rows (``query_id`` and ``query``, e.g. translated queries from ``beir.v1``): the queries of each
  ``lang`` are written; the qrels are the source's ``qrels`` table (exactly as read, in file order)
  restricted to the queries kept in that language, else rebuilt from ``doc_ids``/``doc_scores``; the
  corpus is the ``corpus`` side table (per language when it has a ``lang`` column, e.g. a translated
  corpus given as ``[sources.corpus]``; the same original corpus for every language otherwise).
- document rows (``doc_id`` and ``passage`` or ``text``, e.g. a translated corpus from
  ``beir.v1`` with ``rows = "corpus"``): the corpus of each ``lang`` is written, with the ``queries``
  and ``qrels`` side tables.

The split name is the ``beir.v1`` source's ``split`` (``test`` for other sources). Without a ``lang``
column the one folder is ``beir/default``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import polars as pl

from ..errors import RecipeError
from ..pipeline.build import BuildRecord

log = logging.getLogger(__name__)


def check(columns: list[str], tables: set[str]) -> list[str]:
    """What the beir format needs (see the module doc), from the final columns and side tables."""
    cols = set(columns)
    if {"query_id", "query"} <= cols:
        out = []
        if "corpus" not in tables:
            out.append(
                "the beir format needs a corpus: read a beir.v1 source or add a [sources.corpus] table "
                "(doc_id, title, passage)"
            )
        if "qrels" not in tables and not {"doc_ids", "doc_scores"} <= cols:
            out.append(
                "the beir format needs qrels: a beir.v1 source, a [sources.qrels] table, "
                "or 'doc_ids' and 'doc_scores' columns"
            )
        return out
    if "doc_id" in cols and cols & {"passage", "text"}:
        if not {"queries", "qrels"} <= tables:
            return [
                "a corpus written as beir needs 'queries' and 'qrels' tables "
                '(the beir.v1 source with rows = "corpus" provides them)'
            ]
        return []
    return [
        "the beir format needs query rows (query_id, query) or document rows (doc_id, passage); "
        f"the final table has {', '.join(columns)}"
    ]


class _Jsonl:
    """Append-only JSONL files, opened on first use."""

    def __init__(self) -> None:
        self.files: dict[Path, Any] = {}
        self.counts: dict[Path, int] = {}

    def write(self, path: Path, rec: dict[str, Any]) -> None:
        if path not in self.files:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.files[path] = open(path, "w", encoding="utf-8")
            self.counts[path] = 0
        self.files[path].write(json.dumps(rec, ensure_ascii=False) + "\n")
        self.counts[path] += 1

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def _qrels_tsv(path: Path, rows) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, d, s in rows:
            f.write(f"{q}\t{d}\t{s}\n")
            n += 1
    return n


def _text_col(columns) -> str | None:
    return next((c for c in ("passage", "text") if c in columns), None)


def _docs(df: pl.DataFrame) -> pl.DataFrame:
    tc = _text_col(df.columns)
    title = pl.col("title").cast(pl.Utf8).fill_null("") if "title" in df.columns else pl.lit("")
    return df.select(
        pl.col("doc_id").cast(pl.Utf8).alias("_id"), title.alias("title"), pl.col(tc).cast(pl.Utf8).alias("text")
    )


def _split_name(build: BuildRecord) -> str:
    src = build.recipe.source
    return (getattr(src.params, "split", None) if src.uses == "beir.v1" else None) or "test"


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def write(build: BuildRecord, dataset_dir: Path) -> dict[str, Any]:
    """Stream the final rows (and side tables) into one BEIR folder per language."""
    split = _split_name(build)
    tables = build.tables
    final = build.final
    root = dataset_dir / "beir"
    cols = set(final.columns)
    has_lang = "lang" in cols
    out = _Jsonl()
    index: dict[str, Any] = {"split": split, "languages": {}}
    try:
        if {"query_id", "query"} <= cols:
            _write_queries(final, tables, root, split, has_lang, out, index)
        else:
            _write_corpus_rows(final, tables, root, split, has_lang, out, index)
    finally:
        out.close()
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.json").write_text(json.dumps(index, indent=2, ensure_ascii=False), encoding="utf-8")
    return index


def _write_queries(final, tables, root, split, has_lang, out: _Jsonl, index) -> None:
    want = [c for c in ("query_id", "query", "lang", "doc_ids", "doc_scores") if c in final.columns]
    seen: dict[str, dict[str, str]] = {}  # lang -> query id -> text (first wins)
    own_qrels: dict[str, list[tuple[str, str, Any]]] = {}
    conflicts: dict[str, int] = {}
    for df in final.iter_batches(want):
        langs_ = df["lang"].cast(pl.Utf8).to_list() if has_lang else ["default"] * df.height
        ds = df["doc_ids"].to_list() if "doc_ids" in df.columns else [None] * df.height
        ss = df["doc_scores"].to_list() if "doc_scores" in df.columns else [None] * df.height
        for lang, qid, q, d, sc in zip(langs_, df["query_id"].cast(pl.Utf8), df["query"].cast(pl.Utf8), ds, ss):
            if lang is None:
                continue
            qs = seen.setdefault(lang, {})
            if qid in qs:
                conflicts[lang] = conflicts.get(lang, 0) + (qs[qid] != q)
                continue
            qs[qid] = q
            out.write(root / lang / "queries.jsonl", {"_id": qid, "text": q})
            if "qrels" not in tables and d is not None:
                own_qrels.setdefault(lang, []).extend((qid, x, y) for x, y in zip(d, sc or []) if x is not None)
    for lang, n in conflicts.items():
        if n:
            log.warning("beir/%s: %d queries have several texts; the first is written", lang, n)
    corpus = tables["corpus"]
    first_file: Path | None = None
    by_lang_corpus = "lang" in corpus.columns
    if by_lang_corpus:
        for df in corpus.iter_batches():
            for lang, part in df.partition_by("lang", as_dict=True).items():
                lang = str(lang[0])
                if lang in seen:
                    for rec in _docs(part).iter_rows(named=True):
                        out.write(root / lang / "corpus.jsonl", rec)
    for lang in sorted(seen):
        path = root / lang / "corpus.jsonl"
        if by_lang_corpus:
            if path not in out.counts:
                raise RecipeError([("output -> format", f"the corpus table has no documents in {lang}")])
        elif first_file is None:
            for df in corpus.iter_batches():
                for rec in _docs(df).iter_rows(named=True):
                    out.write(path, rec)
            out.files[path].flush()
            first_file = path
        else:
            _link_or_copy(first_file, path)
        if "qrels" in tables:
            ids = seen[lang]
            q = tables["qrels"].read(["query_id", "doc_id", "score"])
            rows = [r for r in q.iter_rows() if r[0] in ids]
        else:
            rows = own_qrels.get(lang, [])
        n = _qrels_tsv(root / lang / "qrels" / f"{split}.tsv", rows)
        docs = out.counts.get(path) or out.counts.get(first_file, 0)
        index["languages"][lang] = {"queries": len(seen[lang]), "documents": docs, "qrels": n}


def _write_corpus_rows(final, tables, root, split, has_lang, out: _Jsonl, index) -> None:
    queries = tables["queries"].read(["query_id", "query"])
    qrels = tables["qrels"].read(["query_id", "doc_id", "score"])
    for df in final.iter_batches():
        parts = df.partition_by("lang", as_dict=True) if has_lang else {("default",): df}
        for lang, part in parts.items():
            lang = str(lang[0])
            for rec in _docs(part).iter_rows(named=True):
                out.write(root / lang / "corpus.jsonl", rec)
    for path in sorted(out.files):
        lang = path.parent.name
        for qid, q in queries.select(pl.col("query_id").cast(pl.Utf8), "query").iter_rows():
            out.write(root / lang / "queries.jsonl", {"_id": qid, "text": q})
        n = _qrels_tsv(root / lang / "qrels" / f"{split}.tsv", qrels.iter_rows())
        index["languages"][lang] = {"queries": queries.height, "documents": out.counts[path], "qrels": n}
