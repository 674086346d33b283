"""The ``mteb`` output format (``[output] format = ["hf", "mteb"]``): the layout MTEB's retrieval loader
(``mteb`` 2.x, ``RetrievalDatasetLoader``) reads from a Hub repo or a local folder.

``<dataset>/mteb/`` is a dataset repository of its own (push it, or load the folder):

- ``README.md`` whose YAML ``configs`` name, per language subset ``<sub>``, ``<sub>-corpus`` (``id``,
  ``title``, ``text``), ``<sub>-queries`` (``id``, ``text``) and ``<sub>-qrels`` (``query-id``,
  ``corpus-id``, ``score``), each with one split (the ``beir.v1`` source's ``split``, else ``test``);
  without a ``lang`` column the one subset is MTEB's monolingual layout: ``corpus``, ``queries`` and
  ``default`` (the qrels);
- the parquet files those configs point to: ``<config>/<split>-NNNNN-of-NNNNN.parquet``;
- ``index.json``: per subset the counts, the query language and the corpus language (when known).

Subset names are the query language in mlbuild's form (``kir_Cyrl``). The corpus is written once when
it is shared (only the queries were translated): every ``<sub>-corpus`` config points at the same
``corpus/`` files. A corpus table with a ``lang`` column (a translated corpus) gives each subset its
own ``<sub>-corpus``; document rows (a translated corpus as the main table, with the ``queries`` and
``qrels`` side tables) give one subset per corpus language sharing ``queries/`` and ``qrels/``.

Final tables from ``downsample_retrieval.v1`` carry ``pool_ids``: the corpus written is then the
judged documents plus those pools (the downsampled corpus).

Load it with MTEB (see docs/retrieval.md for a whole task definition)::

    from mteb.abstasks.retrieval_dataset_loaders import RetrievalDatasetLoader
    split = RetrievalDatasetLoader("OUT/name/version/mteb", revision=None, split="test", config="kir_Cyrl").load()
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from ..errors import RecipeError
from ..pipeline.build import BuildRecord
from .layout import ParquetSeries

log = logging.getLogger(__name__)

CORPUS_SCHEMA = {"id": pl.Utf8, "title": pl.Utf8, "text": pl.Utf8}
QUERY_SCHEMA = {"id": pl.Utf8, "text": pl.Utf8}
QRELS_SCHEMA = {"query-id": pl.Utf8, "corpus-id": pl.Utf8, "score": pl.Int64}
POOL = "pool_ids"


def check(columns: list[str], tables: set[str]) -> list[str]:
    """What the mteb format needs, from the final columns and the side tables."""
    cols = set(columns)
    if {"query_id", "query"} <= cols:
        out = []
        if "corpus" not in tables and not ("doc_id" in cols and cols & {"passage", "text"}):
            out.append(
                "the mteb format needs a corpus: read a beir.v1 source, add a [sources.corpus] table "
                "(doc_id, title, passage), or give each query row its document (doc_id, passage)"
            )
        if "qrels" not in tables and "doc_ids" not in cols:
            out.append(
                "the mteb format needs judgements: a beir.v1 source, a [sources.qrels] table, or a 'doc_ids' column"
            )
        return out
    if "doc_id" in cols and cols & {"passage", "text"}:
        if not {"queries", "qrels"} <= tables:
            return ["a corpus written as mteb needs 'queries' and 'qrels' tables (the beir.v1 source provides them)"]
        return []
    return [
        "the mteb format needs query rows (query_id, query) or document rows (doc_id, passage); "
        f"the final table has {', '.join(columns)}"
    ]


def _split_name(build: BuildRecord) -> str:
    src = build.recipe.source
    return (getattr(src.params, "split", None) if src.uses == "beir.v1" else None) or "test"


def _docs(df: pl.DataFrame) -> pl.DataFrame:
    tc = next(c for c in ("passage", "text") if c in df.columns)
    title = pl.col("title").cast(pl.Utf8).fill_null("") if "title" in df.columns else pl.lit("")
    return df.select(
        pl.col("doc_id").cast(pl.Utf8).alias("id"), title.alias("title"), pl.col(tc).cast(pl.Utf8).alias("text")
    )


def write(build: BuildRecord, dataset_dir: Path) -> dict[str, Any]:
    """Write ``dataset_dir/mteb`` from the build record (corpus streamed shard by shard)."""
    root = dataset_dir / "mteb"
    split = _split_name(build)
    max_rows = int(getattr(build.recipe.output, "max_rows_per_file", 500_000))
    final = build.final
    if {"query_id", "query"} <= set(final.columns):
        subsets = _write_query_rows(build, root, split, max_rows)
    else:
        subsets = _write_document_rows(build, root, split, max_rows)
    configs = _configs(subsets, split)
    (root / "README.md").write_text(_readme(build, configs, subsets, split), encoding="utf-8")
    index = {
        "split": split,
        "subsets": {s: {k: v for k, v in m.items() if k != "folders"} for s, m in subsets.items()},
    }
    (root / "index.json").write_text(json.dumps(index, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    # configs as seen from the dataset root (for a card that lists them beside the Hub layout's)
    index["configs"] = [
        {**c, "data_files": [{**f, "path": f"mteb/{f['path']}"} for f in c["data_files"]]} for c in configs
    ]
    return index


def _collect_queries(final, tables) -> tuple[dict[str, dict[str, str]], dict[str, list], set[str] | None]:
    """Queries per language (first text of an id wins), judgements per language, and the documents to
    keep (judged + pooled) when the rows carry ``pool_ids`` (None: keep the whole corpus)."""
    has_lang = "lang" in final.columns
    want = [c for c in ("query_id", "query", "lang", "doc_ids", "doc_scores", POOL) if c in final.columns]
    queries: dict[str, dict[str, str]] = {}
    qrels: dict[str, list[tuple[str, str, int]]] = {}
    keep: set[str] | None = set() if POOL in final.columns else None
    for df in final.iter_batches(want):
        n = df.height
        cols = {c: df[c].to_list() if c in df.columns else [None] * n for c in want + ["doc_ids", "doc_scores", POOL]}
        langs_ = df["lang"].cast(pl.Utf8).to_list() if has_lang else ["default"] * n
        for i in range(n):
            lang, qid = langs_[i], str(cols["query_id"][i])
            if lang is None:
                continue
            qs = queries.setdefault(lang, {})
            if qid in qs:
                continue
            qs[qid] = cols["query"][i]
            docs = cols["doc_ids"][i] or []
            scores = cols["doc_scores"][i] or [1] * len(docs)
            if "qrels" not in tables:
                qrels.setdefault(lang, []).extend((qid, str(d), int(s)) for d, s in zip(docs, scores) if d is not None)
            if keep is not None:
                keep.update(str(d) for d in docs if d is not None)
                keep.update(str(d) for d in (cols[POOL][i] or []) if d is not None)
    if not queries:
        raise RecipeError([("output -> format", "the mteb format found no query with a language to write")])
    if "qrels" in tables:
        table = tables["qrels"].read(["query_id", "doc_id", "score"])
        for lang, qs in queries.items():
            rows = [(q, d, int(s)) for q, d, s in table.iter_rows() if q in qs]
            qrels[lang] = rows
            if keep is not None:
                keep.update(d for _, d, _ in rows)
    return queries, qrels, keep


def _write_query_rows(build: BuildRecord, root: Path, split: str, max_rows: int) -> dict[str, dict[str, Any]]:
    final, tables = build.final, build.tables
    queries, qrels, keep = _collect_queries(final, tables)
    subsets: dict[str, dict[str, Any]] = {}
    if "corpus" in tables:
        corpus = tables["corpus"]
        per_lang = "lang" in corpus.columns
        frames: Any = corpus.iter_batches()
    else:  # paired rows (fields_to_retrieval.v1): each query row carries its document
        per_lang = False
        frames = _RowDocuments(final)
    docs_by: dict[str, ParquetSeries] = {}
    for df in frames:
        if keep is not None:
            df = df.filter(pl.col("doc_id").cast(pl.Utf8).is_in(list(keep)))
        if per_lang:
            for (lang,), part in df.partition_by("lang", as_dict=True).items():
                if lang in queries:
                    s = docs_by.setdefault(
                        lang, ParquetSeries(root / f"{lang}-corpus", split, CORPUS_SCHEMA, max_rows)
                    )
                    s.write(_docs(part))
        else:
            docs_by.setdefault("", ParquetSeries(root / "corpus", split, CORPUS_SCHEMA, max_rows)).write(_docs(df))
    for s in docs_by.values():
        s.finish(write_empty=True)
    corpus_lang = frames.lang if isinstance(frames, _RowDocuments) else None
    for lang in sorted(queries):
        if per_lang and lang not in docs_by:
            raise RecipeError([("output -> format", f"the mteb format: the corpus table has no documents in {lang}")])
        cs = docs_by[lang] if per_lang else docs_by.get("")
        sub = _name(lang)
        pre = "" if sub == "default" else f"{sub}-"
        qs = ParquetSeries(root / f"{pre}queries", split, QUERY_SCHEMA, max_rows)
        qs.write(pl.DataFrame({"id": list(queries[lang]), "text": list(queries[lang].values())}, schema=QUERY_SCHEMA))
        qs.finish(write_empty=True)
        rs = ParquetSeries(root / f"{pre}qrels", split, QRELS_SCHEMA, max_rows)
        rs.write(pl.DataFrame(qrels.get(lang, []), schema=QRELS_SCHEMA, orient="row"))
        rs.finish(write_empty=True)
        subsets[sub] = {
            "queries": len(queries[lang]),
            "documents": cs.rows if cs else 0,
            "qrels": rs.rows,
            "query_lang": None if lang == "default" else lang,
            "corpus_lang": lang if per_lang else corpus_lang,
            "folders": {
                "corpus": cs.folder.name if cs else "corpus",
                "queries": qs.folder.name,
                "qrels": rs.folder.name,
            },
        }
    return subsets


class _RowDocuments:
    """The distinct documents of paired query rows, streamed (the first text of each ``doc_id`` wins);
    ``lang`` is their language once read, when a ``doc_lang`` column holds one value."""

    def __init__(self, final) -> None:
        self.final = final
        self.text = next(c for c in ("passage", "text") if c in final.columns)
        self.langs: set[str] = set()

    def __iter__(self):
        cols = ["doc_id", self.text, *[c for c in ("title", "doc_lang") if c in self.final.columns]]
        seen: set[str] = set()
        for df in self.final.iter_batches(cols):
            df = df.with_columns(pl.col("doc_id").cast(pl.Utf8)).filter(pl.col("doc_id").is_not_null())
            df = df.unique("doc_id", keep="first", maintain_order=True).filter(~pl.col("doc_id").is_in(list(seen)))
            seen.update(df["doc_id"].to_list())
            if "doc_lang" in df.columns:
                self.langs.update(df["doc_lang"].cast(pl.Utf8).drop_nulls().unique().to_list())
            yield df

    @property
    def lang(self) -> str | None:
        return next(iter(self.langs)) if len(self.langs) == 1 else None


def _write_document_rows(build: BuildRecord, root: Path, split: str, max_rows: int) -> dict[str, dict[str, Any]]:
    final, tables = build.final, build.tables
    has_lang = "lang" in final.columns
    series: dict[str, ParquetSeries] = {}
    for df in final.iter_batches():
        parts = df.partition_by("lang", as_dict=True) if has_lang else {("default",): df}
        for (lang,), part in parts.items():
            if lang is None:
                continue
            folder = root / (f"{_name(lang)}-corpus" if _name(lang) != "default" else "corpus")
            series.setdefault(lang, ParquetSeries(folder, split, CORPUS_SCHEMA, max_rows)).write(_docs(part))
    for s in series.values():
        s.finish(write_empty=True)
    q = tables["queries"].read(["query_id", "query"])
    qs = ParquetSeries(root / "queries", split, QUERY_SCHEMA, max_rows)
    qs.write(q.select(pl.col("query_id").cast(pl.Utf8).alias("id"), pl.col("query").cast(pl.Utf8).alias("text")))
    qs.finish(write_empty=True)
    r = tables["qrels"].read(["query_id", "doc_id", "score"])
    multi = len(series) > 1 or (has_lang and "default" not in series)
    rs = ParquetSeries(root / ("qrels" if multi else "default"), split, QRELS_SCHEMA, max_rows)
    rs.write(r.select(pl.col("query_id").alias("query-id"), pl.col("doc_id").alias("corpus-id"), "score"))
    rs.finish(write_empty=True)
    subsets = {}
    for lang in sorted(series):
        subsets[_name(lang)] = {
            "queries": q.height,
            "documents": series[lang].rows,
            "qrels": rs.rows,
            "query_lang": None,
            "corpus_lang": None if lang == "default" else lang,
            "folders": {"corpus": series[lang].folder.name, "queries": "queries", "qrels": rs.folder.name},
        }
    return subsets


def _name(lang: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(lang)) or "default"


def _configs(subsets: dict[str, dict[str, Any]], split: str) -> list[dict[str, Any]]:
    out = []
    for sub, meta in subsets.items():
        names = (
            {"corpus": "corpus", "queries": "queries", "qrels": "default"}
            if sub == "default"
            else {k: f"{sub}-{k}" for k in ("corpus", "queries", "qrels")}
        )
        for part in ("corpus", "queries", "qrels"):
            out.append(
                {
                    "config_name": names[part],
                    "data_files": [{"split": split, "path": f"{meta['folders'][part]}/{split}-*.parquet"}],
                }
            )
    return out


def _hyphen(code: str | None) -> str | None:
    return code.replace("_", "-") if code else None


def _readme(build: BuildRecord, configs: list[dict[str, Any]], subsets: dict[str, Any], split: str) -> str:
    ds = build.recipe.dataset
    meta = {
        "configs": configs,
        "license": ds.license,
        "task_categories": ["text-retrieval"],
        "tags": ["mteb", "mlbuild"],
        "pretty_name": f"{ds.pretty_name or ds.name} (MTEB retrieval layout)",
    }
    head = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    eval_langs = {
        s: [x for x in dict.fromkeys([_hyphen(m["query_lang"]), _hyphen(m["corpus_lang"])]) if x]
        for s, m in subsets.items()
        if m["query_lang"] or m["corpus_lang"]
    }
    rows = "\n".join(
        f"| `{s}` | {m['query_lang'] or ''} | {m['corpus_lang'] or 'not recorded'} | {m['queries']} | {m['documents']} | {m['qrels']} |"
        for s, m in subsets.items()
    )
    multi = list(subsets) != ["default"]
    return f"""---
{head}---

# {ds.pretty_name or ds.name}: MTEB retrieval layout

{ds.description or ""}

Written by mlbuild (dataset version {ds.version}, fingerprint `{build.fingerprint[:12]}`) in the layout
that MTEB's retrieval loader reads: {"per language subset `<sub>`, the configs `<sub>-corpus`, `<sub>-queries` and `<sub>-qrels`" if multi else "the configs `corpus`, `queries` and `default` (the judgements)"}, split `{split}`.

| subset | query language | corpus language | queries | documents | judgements |
|---|---|---|---:|---:|---:|
{rows}

A task definition for this folder (or the Hub repo it is pushed to):

```python
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.task_metadata import TaskMetadata

class MyRetrieval(AbsTaskRetrieval):
    metadata = TaskMetadata(
        name="{ds.name}",
        dataset={{"path": "<this folder or repo id>", "revision": "<revision>"}},
        eval_langs={json.dumps(eval_langs) if multi else json.dumps(next(iter(eval_langs.values()), ["eng-Latn"]))},
        eval_splits=["{split}"],
        main_score="ndcg_at_10",
        type="Retrieval", category="t2t", modalities=["text"],
        # ... description, reference, date, domains, license, annotations_creators, sample_creation
    )
```

Evaluate BM25 and an embedder per subset with `mlbuild eval retrieval <dataset folder> --retriever bm25
--retriever multilingual-e5-small`.
"""
