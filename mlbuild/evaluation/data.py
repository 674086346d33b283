"""Retrieval sets read from disk: one :class:`RetrievalSet` per language subset.

:func:`load_sets` understands

- a built dataset (``OUT/<name>/<version>``) with an ``mteb/`` folder (``format = ["mteb"]``) or a
  ``beir/`` folder (``format = ["beir"]``);
- a folder in MTEB's retrieval layout (``README.md`` whose YAML ``configs`` name ``<subset>-corpus``,
  ``<subset>-queries`` and ``<subset>-qrels``, or ``corpus``/``queries``/``default`` for one subset),
  such as a retrieval task downloaded from the Hub;
- one BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``).

Queries and judgements are small and read whole; the corpus streams in blocks
(:meth:`Corpus.batches`). Subsets that share one corpus file share one :class:`Corpus` (same ``key``),
so a retriever indexes it once.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from .. import langs
from ..errors import InputError
from .metrics import Qrels


@dataclass(frozen=True)
class Corpus:
    """A corpus on disk: parquet files (``id``/``_id``, ``title``, ``text``) or one BEIR ``corpus.jsonl``."""

    files: tuple[str, ...]
    kind: str = "parquet"  # "parquet" | "beir"

    @property
    def key(self) -> tuple[Any, ...]:
        """Identity of the content: the files' (device, inode), so hard links of one file are one corpus."""
        ids = []
        for f in self.files:
            st = os.stat(f)
            ids.append((st.st_dev, st.st_ino))
        return (self.kind, tuple(ids))

    def batches(self, size: int = 10_000) -> Iterator[tuple[list[str], list[str]]]:
        """(doc ids, texts) blocks, in corpus order; a text is ``title + " " + text`` as MTEB builds it."""
        for df in self._frames(size):
            title = pl.col("title").cast(pl.Utf8).fill_null("") if "title" in df.columns else pl.lit("")
            df = df.select(
                pl.col("id").cast(pl.Utf8),
                pl.concat_str([title, pl.col("text").cast(pl.Utf8).fill_null("")], separator=" ")
                .str.strip_chars()
                .alias("text"),
            )
            yield df["id"].to_list(), df["text"].to_list()

    def _frames(self, size: int) -> Iterator[pl.DataFrame]:
        if self.kind == "beir":
            from ..sources.beir import BeirParams, BeirSource

            folder = Path(self.files[0]).parent
            src = BeirSource(BeirParams(path=str(folder)))
            for df in src.side_tables()["corpus"]():
                yield df.rename({"doc_id": "id", "passage": "text"})
            return
        import pyarrow.parquet as pq

        for f in self.files:
            pf = pq.ParquetFile(f)
            names = pf.schema_arrow.names
            idc = "id" if "id" in names else "_id" if "_id" in names else None
            if idc is None or "text" not in names:
                raise InputError(f, f"a corpus file needs 'id' (or '_id') and 'text' columns, has {names}")
            cols = [idc, "text"] + (["title"] if "title" in names else [])
            for rb in pf.iter_batches(batch_size=size, columns=cols):
                df = pl.from_arrow(rb)
                yield df.rename({idc: "id"}) if idc != "id" else df

    def size(self) -> int:
        if self.kind == "beir":
            return sum(len(ids) for ids, _ in self.batches())
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(f).metadata.num_rows for f in self.files)


@dataclass
class RetrievalSet:
    """One subset: queries (id -> text), judgements, and the corpus they are judged against."""

    name: str
    corpus: Corpus
    queries: dict[str, str]
    qrels: Qrels
    query_lang: str | None = None
    corpus_lang: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def judged_queries(self) -> dict[str, str]:
        """The queries with a judgement (the ones evaluated), in file order."""
        return {q: t for q, t in self.queries.items() if q in self.qrels}


def _lang_or_none(code: str | None) -> str | None:
    if not code:
        return None
    try:
        return langs.normalize(code)
    except ValueError:
        return None


def guess_langs(subset: str) -> tuple[str | None, str | None]:
    """(query lang, corpus lang) from a subset name: ``kir_Cyrl``, ``kir_Cyrl-eng_Latn``, ``deu-eng``."""
    if subset == "default":
        return None, None
    one = _lang_or_none(subset)
    if one:
        return one, None
    a, sep, b = subset.partition("-")
    if sep:
        return _lang_or_none(a), _lang_or_none(b)
    return None, None


def read_card_configs(folder: Path) -> dict[str, dict[str, list[str]]]:
    """config -> split -> data file globs, from a dataset folder's README.md YAML front matter."""
    readme = folder / "README.md"
    if not readme.is_file():
        return {}
    text = readme.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return {}
    head = text[3:].split("\n---", 1)[0]
    try:
        meta = yaml.safe_load(head) or {}
    except yaml.YAMLError as e:
        raise InputError(str(readme), f"the YAML front matter does not parse: {e}") from None
    out: dict[str, dict[str, list[str]]] = {}
    for cfg in meta.get("configs") or []:
        files = cfg.get("data_files") or []
        if isinstance(files, str):
            files = [{"split": "train", "path": files}]
        splits: dict[str, list[str]] = {}
        for entry in files:
            paths = entry.get("path")
            splits.setdefault(entry.get("split", "train"), []).extend([paths] if isinstance(paths, str) else paths)
        out[str(cfg.get("config_name", "default"))] = splits
    return out


def _files(folder: Path, globs_: list[str], what: str) -> tuple[str, ...]:
    found: list[str] = []
    for g in globs_:
        found += sorted(glob.glob(str(folder / g)))
    if not found:
        raise InputError(str(folder / globs_[0]), f"no file for {what}")
    return tuple(found)


def _pick_split(splits: dict[str, list[str]], split: str | None, where: str) -> list[str]:
    if split is not None:
        if split not in splits:
            raise InputError(where, f"no split {split!r} (splits: {', '.join(sorted(splits))})")
        return splits[split]
    if "test" in splits:
        return splits["test"]
    if len(splits) == 1:
        return next(iter(splits.values()))
    raise InputError(where, f"several splits ({', '.join(sorted(splits))}): pass --split")


def _read_parquet(files: tuple[str, ...], columns: list[str]) -> pl.DataFrame:
    frames = []
    for f in files:
        df = pl.read_parquet(f)
        if "_id" in df.columns and "id" not in df.columns:
            df = df.rename({"_id": "id"})
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise InputError(f, f"missing columns {missing} (has {df.columns})")
        frames.append(df.select(columns))
    return pl.concat(frames, how="vertical_relaxed")


def _qrels_of(df: pl.DataFrame) -> Qrels:
    qrels: Qrels = {}
    for q, d, s in df.select(
        pl.col("query-id").cast(pl.Utf8), pl.col("corpus-id").cast(pl.Utf8), pl.col("score").cast(pl.Int64)
    ).iter_rows():
        qrels.setdefault(q, {})[d] = s
    return qrels


def load_mteb(folder: Path, split: str | None = None) -> list[RetrievalSet]:
    """Every subset of a folder in MTEB's retrieval layout (see the module doc)."""
    configs = read_card_configs(folder)
    index = {}
    if (folder / "index.json").is_file():
        index = json.loads((folder / "index.json").read_text(encoding="utf-8")).get("subsets", {})
    subsets: list[str] = []
    for name in configs:
        if name.endswith("-corpus"):
            subsets.append(name[: -len("-corpus")])
        elif name == "corpus":
            subsets.append("default")
    if not subsets:
        raise InputError(
            str(folder / "README.md"), "no '<subset>-corpus' or 'corpus' config: not an MTEB retrieval layout"
        )
    out = []
    corpora: dict[tuple[str, ...], Corpus] = {}
    where = str(folder / "README.md")
    for sub in subsets:
        prefix = "" if sub == "default" else f"{sub}-"
        qrels_cfg = f"{sub}-qrels" if sub != "default" else ("default" if "default" in configs else "qrels")
        for cfg in (f"{prefix}corpus", f"{prefix}queries", qrels_cfg):
            if cfg not in configs:
                raise InputError(where, f"subset {sub!r} has no config {cfg!r}")
        cfiles = _files(folder, _pick_split(configs[f"{prefix}corpus"], split, where), f"{sub} corpus")
        corpus = corpora.setdefault(cfiles, Corpus(cfiles))
        qdf = _read_parquet(
            _files(folder, _pick_split(configs[f"{prefix}queries"], split, where), "queries"), ["id", "text"]
        )
        rdf = _read_parquet(
            _files(folder, _pick_split(configs[qrels_cfg], split, where), "qrels"), ["query-id", "corpus-id", "score"]
        )
        meta = index.get(sub, {})
        ql, cl = guess_langs(sub)
        out.append(
            RetrievalSet(
                name=sub,
                corpus=corpus,
                queries=dict(zip(qdf["id"].cast(pl.Utf8).to_list(), qdf["text"].cast(pl.Utf8).to_list())),
                qrels=_qrels_of(rdf),
                query_lang=meta.get("query_lang", ql),
                corpus_lang=meta.get("corpus_lang", cl),
            )
        )
    return out


def load_beir(folder: Path, split: str = "test", name: str = "default") -> RetrievalSet:
    """One BEIR folder as a retrieval set."""
    from ..sources.beir import BeirParams, BeirSource

    src = BeirSource(BeirParams(path=str(folder), split=split))
    tables = src.side_tables()
    queries = next(tables["queries"]())
    qrels_df = next(tables["qrels"]())
    qrels: Qrels = {}
    for q, d, s in qrels_df.iter_rows():
        qrels.setdefault(q, {})[d] = int(s)
    ql, cl = guess_langs(name)
    return RetrievalSet(
        name=name,
        corpus=Corpus((str(folder / "corpus.jsonl"),), kind="beir"),
        queries=dict(zip(queries["query_id"].to_list(), queries["query"].to_list())),
        qrels=qrels,
        query_lang=ql,
        corpus_lang=cl,
    )


def load_sets(path: str | Path, split: str | None = None, subsets: list[str] | None = None) -> list[RetrievalSet]:
    """The retrieval sets of a built dataset or a retrieval folder (see the module doc); ``subsets`` keeps
    only those names."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(str(path), "not a folder")
    if (path / "mteb" / "README.md").is_file():
        sets = load_mteb(path / "mteb", split)
    elif any(c.endswith("-corpus") or c == "corpus" for c in read_card_configs(path)):
        sets = load_mteb(path, split)
    elif (path / "beir" / "index.json").is_file():
        index = json.loads((path / "beir" / "index.json").read_text(encoding="utf-8"))
        sp = split or index.get("split", "test")
        sets = [load_beir(path / "beir" / lang, sp, lang) for lang in sorted(index.get("languages", {}))]
    elif (path / "corpus.jsonl").is_file():
        sets = [load_beir(path, split or "test", "default")]
    else:
        raise InputError(
            str(path),
            'no retrieval layout here: expected a built dataset with format = ["mteb"] (or "beir"), '
            "a folder in MTEB's retrieval layout, or a BEIR folder",
        )
    if subsets:
        known = [s.name for s in sets]
        unknown = [s for s in subsets if s not in known]
        if unknown:
            raise InputError(str(path), f"no subset {unknown} (subsets: {', '.join(known)})")
        sets = [s for s in sets if s.name in subsets]
    return sets
