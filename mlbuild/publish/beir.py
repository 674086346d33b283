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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from ..errors import RecipeError

if TYPE_CHECKING:
    from ..pipeline.runner import Runner

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


def _jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _qrels_tsv(path: Path, qrels: pl.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, d, s in qrels.select("query_id", "doc_id", "score").iter_rows():
            f.write(f"{q}\t{d}\t{s}\n")


def _text_col(df: pl.DataFrame) -> str | None:
    return next((c for c in ("passage", "text") if c in df.columns), None)


def _corpus_records(df: pl.DataFrame) -> list[dict[str, Any]]:
    tc = _text_col(df)
    if tc is None or "doc_id" not in df.columns:
        raise RecipeError([("output -> format", "the beir format needs a corpus with 'doc_id' and 'passage' columns")])
    title = pl.col("title").cast(pl.Utf8).fill_null("") if "title" in df.columns else pl.lit("")
    rows = df.select(pl.col("doc_id").cast(pl.Utf8), title.alias("title"), pl.col(tc).cast(pl.Utf8).alias("text"))
    rows = rows.unique(subset="doc_id", keep="first", maintain_order=True)
    return [{"_id": d, "title": t, "text": x} for d, t, x in rows.iter_rows()]


def _split_name(runner: Runner) -> str:
    src = runner.recipe.source
    return getattr(src.params, "split", None) if src.uses == "beir.v1" else "test"


def _qrels_from_rows(rows: pl.DataFrame) -> pl.DataFrame:
    if not {"doc_ids", "doc_scores"} <= set(rows.columns):
        raise RecipeError(
            [
                (
                    "output -> format",
                    "the beir format needs qrels: a beir.v1 source, a [sources.qrels] "
                    "table, or 'doc_ids' and 'doc_scores' columns",
                )
            ]
        )
    return (
        rows.select(pl.col("query_id").cast(pl.Utf8), "doc_ids", "doc_scores")
        .explode(["doc_ids", "doc_scores"])
        .rename({"doc_ids": "doc_id", "doc_scores": "score"})
        .drop_nulls("doc_id")
    )


def write(runner: Runner, final: pl.DataFrame, dataset_dir: Path) -> dict[str, Any]:
    split = _split_name(runner) or "test"
    tables = getattr(runner, "tables", {}) or {}
    root = dataset_dir / "beir"
    cols = set(final.columns)
    by_lang: list[tuple[str, pl.DataFrame]]
    if "lang" in cols:
        by_lang = [
            (str(lang), final.filter(pl.col("lang") == lang))
            for lang in sorted(final["lang"].drop_nulls().unique().to_list())
        ]
    else:
        by_lang = [("default", final)]
    index: dict[str, Any] = {"split": split, "languages": {}}
    if {"query_id", "query"} <= cols:
        corpus = tables.get("corpus")
        if corpus is None:
            raise RecipeError(
                [
                    (
                        "output -> format",
                        "the beir format needs a corpus: read a beir.v1 source or add "
                        "a [sources.corpus] table (doc_id, title, passage)",
                    )
                ]
            )
        all_qrels = tables.get("qrels")
        for lang, rows in by_lang:
            q = rows.select(pl.col("query_id").cast(pl.Utf8), pl.col("query").cast(pl.Utf8)).unique(
                subset="query_id", keep="first", maintain_order=True
            )
            conflicts = rows.select("query_id", "query").unique().height - q.height
            if conflicts > 0:
                log.warning("beir/%s: %d queries have several texts; the first is written", lang, conflicts)
            qrels = all_qrels if all_qrels is not None else _qrels_from_rows(rows)
            qrels = qrels.filter(pl.col("query_id").is_in(q["query_id"].implode()))
            if "lang" in corpus.columns:
                part = corpus.filter(pl.col("lang") == lang)
                if part.height == 0:
                    raise RecipeError(
                        [
                            (
                                "output -> format",
                                f"the corpus table has no documents in {lang} "
                                f"(languages: {sorted(corpus['lang'].unique().to_list())})",
                            )
                        ]
                    )
            else:
                part = corpus
            d = root / lang
            _jsonl(d / "corpus.jsonl", _corpus_records(part))
            _jsonl(d / "queries.jsonl", [{"_id": i, "text": t} for i, t in q.iter_rows()])
            _qrels_tsv(d / "qrels" / f"{split}.tsv", qrels)
            index["languages"][lang] = {"queries": q.height, "documents": part.height, "qrels": qrels.height}
    elif "doc_id" in cols and _text_col(final) is not None:
        queries, qrels = tables.get("queries"), tables.get("qrels")
        if queries is None or qrels is None:
            raise RecipeError(
                [
                    (
                        "output -> format",
                        "a corpus written as beir needs 'queries' and 'qrels' tables "
                        '(the beir.v1 source with rows = "corpus" provides them)',
                    )
                ]
            )
        for lang, rows in by_lang:
            d = root / lang
            docs = _corpus_records(rows)
            _jsonl(d / "corpus.jsonl", docs)
            _jsonl(
                d / "queries.jsonl",
                [
                    {"_id": i, "text": t}
                    for i, t in queries.select(pl.col("query_id").cast(pl.Utf8), "query").iter_rows()
                ],
            )
            _qrels_tsv(d / "qrels" / f"{split}.tsv", qrels)
            index["languages"][lang] = {"queries": queries.height, "documents": len(docs), "qrels": qrels.height}
    else:
        raise RecipeError(
            [
                (
                    "output -> format",
                    "the beir format needs query rows (query_id, query) or document rows "
                    f"(doc_id, passage); the final table has {', '.join(final.columns)}",
                )
            ]
        )
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.json").write_text(json.dumps(index, indent=2, ensure_ascii=False), encoding="utf-8")
    return index
