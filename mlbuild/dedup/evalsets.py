"""Evaluation sets that ``decontaminate.v1`` checks training rows against.

An entry of ``against`` is a string or a table:

- ``"path/to/file"``: JSON Lines (``.jsonl``/``.json``), parquet, CSV/TSV, or text (one item a line);
- ``"path/to/folder"``: a BEIR folder (``queries.jsonl``, ``corpus.jsonl``, ``qrels/<split>.tsv``: the
  queries judged in ``split``, default ``test``; add ``parts = ["queries", "corpus"]`` for documents
  too), or a dataset built by ``mlbuild run`` (a folder with ``manifest.json`` and
  ``data/<config>/<split>-*.parquet``: every config and split unless ``config`` / ``split`` say);
- ``"hf:<dataset id or folder>"``: a Hugging Face dataset (``datasets.load_dataset``; ``config``,
  ``split`` default ``test``); remote code is never run;
- a table ``{ path = ..., name = ..., column = ..., split = ..., config = ..., parts = [...],
  embedding_column = ..., lang = ... }`` (``hf = ...`` instead of ``path`` for the Hub; ``lang``: the
  set's language, else a ``lang`` column of the set gives each item's).

The text column is ``column``, else the step's ``against_column``, else the first of the step's own
column, ``text``, ``query``, ``question``, ``sentence``, ``passage`` that the set has; an item's id is its
``id``, ``_id``, ``query_id``, ``qid`` or ``row_id`` (else its position; a text file's line number). Sets are small
(test questions): they are read whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ..errors import InputError
from ..pipeline.hashing import file_sha256

KEYS = ("path", "hf", "name", "column", "split", "config", "parts", "embedding_column", "lang")
TEXT_GUESSES = ("text", "query", "question", "sentence", "passage")
ID_GUESSES = ("id", "_id", "query_id", "qid", "row_id")  # the item id named in rejects and the report
FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".tsv", ".txt")


@dataclass
class EvalSet:
    name: str
    kind: str  # file | beir | mlbuild | hf
    where: str
    texts: list[str]
    ids: list[str]
    vectors: np.ndarray | None = None
    note: str = ""  # what was read (split, parts, content hash)
    langs: list[str] | None = None  # each item's language: the entry's ``lang``, else the set's ``lang`` column

    def describe(self) -> str:
        return f"{self.kind}, {len(self.texts)} texts" + (f", {self.note}" if self.note else "")


def entry_problems(entry: Any, i: int) -> list[tuple[str, str]]:
    """Problems of one ``against`` entry, located as ``against[i]``."""
    loc = f"against[{i}]"
    if isinstance(entry, str):
        return [] if entry.strip() else [(loc, "empty entry")]
    out = []
    for k in entry:
        if k not in KEYS:
            out.append((f"{loc} -> {k}", f"unknown key (known: {', '.join(KEYS)})"))
    if ("path" in entry) == ("hf" in entry):
        out.append((loc, "give exactly one of 'path' (a file or folder) and 'hf' (a Hugging Face dataset)"))
    parts = entry.get("parts", ["queries"])
    if not isinstance(parts, list) or not parts or any(p not in ("queries", "corpus") for p in parts):
        out.append((f"{loc} -> parts", "a list of 'queries' and/or 'corpus'"))
    for k in ("path", "hf", "name", "column", "split", "config", "embedding_column", "lang"):
        if k in entry and not isinstance(entry[k], str):
            out.append((f"{loc} -> {k}", f"expected a string, got {entry[k]!r}"))
    return out


def entry_name(entry: dict[str, Any]) -> str:
    """The name of a normalised entry in the report: its ``name``, else the last part of its path or id."""
    where = str(entry.get("path") or entry.get("hf") or "")
    return entry.get("name") or Path(where.rstrip("/")).name or where


def normalize_entry(entry: Any, base_dir: Path) -> dict[str, Any]:
    """A table entry with ``path`` resolved against the recipe folder (``hf:`` strings to ``hf``)."""
    e = {"path": entry} if isinstance(entry, str) else dict(entry)
    e["shown"] = e.get("path") or e.get("hf")  # as the recipe wrote it (no local absolute path in the card)
    if isinstance(e.get("path"), str) and e["path"].startswith("hf:"):
        e["hf"] = e.pop("path")[3:]
    if "path" in e:
        p = Path(e["path"]).expanduser()
        e["path"] = str(p if p.is_absolute() else (base_dir / p).resolve())
    if "hf" in e:
        local = Path(e["hf"]).expanduser()
        if not local.is_absolute() and (base_dir / local).exists():
            e["hf"] = str((base_dir / local).resolve())
    return e


def _column(df: pl.DataFrame, e: dict[str, Any], defaults: list[str | None], where: str) -> str:
    for c in [e.get("column"), *defaults, *TEXT_GUESSES]:
        if c and c in df.columns:
            return c
    if e.get("column"):
        raise InputError(where, f"no column '{e['column']}' (columns: {', '.join(df.columns)})")
    raise InputError(where, f"no text column found (tried {', '.join(TEXT_GUESSES)}; set 'column')")


def _read_file(path: Path) -> pl.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".json"):
            from ..sources.jsonl import JsonlParams, JsonlSource

            return JsonlSource(JsonlParams(path=str(path))).read_all().rows
        if suffix == ".parquet":
            return pl.read_parquet(path)
        if suffix in (".csv", ".tsv"):
            return pl.read_csv(path, separator="\t" if suffix == ".tsv" else ",", infer_schema_length=0)
        if suffix == ".txt":
            lines = path.read_text(encoding="utf-8").splitlines()
            return pl.DataFrame({"row_id": [str(i) for i in range(1, len(lines) + 1)], "text": lines})
    except InputError:
        raise
    except Exception as e:  # polars and pyarrow raise many kinds
        raise InputError(str(path), f"cannot read: {type(e).__name__}: {e}") from e
    raise InputError(str(path), f"unknown file type (known: {', '.join(FILE_SUFFIXES)}, a BEIR or mlbuild folder)")


def _read_beir(path: Path, e: dict[str, Any]) -> tuple[pl.DataFrame, str]:
    from ..sources.beir import BeirParams, BeirSource

    split = e.get("split", "test")
    frames = []
    for part in e.get("parts", ["queries"]):
        rows = BeirSource(BeirParams(path=str(path), split=split, rows=part)).read_all().rows
        frames.append(rows.select("row_id", pl.col("query" if part == "queries" else "passage").alias("text")))
    return pl.concat(frames), f"{'+'.join(e.get('parts', ['queries']))} of split {split}"


def _read_mlbuild(path: Path, e: dict[str, Any]) -> tuple[pl.DataFrame, str]:
    files = sorted((path / "data").glob("*/*.parquet"))
    if e.get("config"):
        files = [f for f in files if f.parent.name == e["config"]]
    if e.get("split"):
        files = [f for f in files if f.name.split("-")[0] == e["split"]]
    if not files:
        raise InputError(str(path / "data"), "no parquet files for the config/split asked for")
    df = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
    return df, f"{len(files)} files" + "".join(f", {k} {e[k]}" for k in ("config", "split") if e.get(k))


def _read_hf(e: dict[str, Any]) -> tuple[pl.DataFrame, str]:
    import datasets

    split = e.get("split", "test")
    try:
        ds = datasets.load_dataset(e["hf"], e.get("config"), split=split)
    except Exception as ex:  # datasets raises many kinds
        raise InputError(e["hf"], f"cannot load dataset: {type(ex).__name__}: {ex}") from ex
    return pl.from_arrow(ds.data.table), f"split {split}" + (f", config {e['config']}" if e.get("config") else "")


def read_eval_set(entry: dict[str, Any], defaults: list[str | None]) -> EvalSet:
    """Read one normalised entry (see :func:`normalize_entry`) into an :class:`EvalSet`."""
    if "hf" in entry:
        df, note = _read_hf(entry)
        kind, where = "hf", entry["hf"]
    else:
        path = Path(entry["path"])
        where = str(path)
        if path.is_dir() and (path / "manifest.json").exists():
            (df, note), kind = _read_mlbuild(path, entry), "mlbuild"
        elif path.is_dir() and (path / "queries.jsonl").exists():
            (df, note), kind = _read_beir(path, entry), "beir"
        elif path.is_file():
            df, kind, note = _read_file(path), "file", f"sha256:{file_sha256(path)[:12]}"
        else:
            raise InputError(where, "evaluation set not found (a file, a BEIR folder or an mlbuild dataset folder)")
    col = _column(df, entry, defaults, where)
    texts = df[col].cast(pl.Utf8)
    keep = texts.is_not_null() & (texts.str.strip_chars().str.len_chars() > 0)
    id_col = next((c for c in ID_GUESSES if c in df.columns), None)
    ids = df[id_col].cast(pl.Utf8) if id_col else pl.Series([str(i) for i in range(df.height)])
    ids = ids.fill_null("")
    vectors = None
    if entry.get("embedding_column"):
        from .vectors import column_matrix

        ec = entry["embedding_column"]
        if ec not in df.columns:
            raise InputError(where, f"no column '{ec}' (columns: {', '.join(df.columns)})")
        try:
            vectors = column_matrix(df[ec].filter(keep), ec)
        except ValueError as ex:
            raise InputError(where, str(ex), field=ec) from None
    langs = None
    if entry.get("lang"):
        langs = [entry["lang"]] * int(keep.sum())
    elif "lang" in df.columns:
        langs = df["lang"].cast(pl.Utf8).fill_null("").filter(keep).to_list()
    return EvalSet(
        entry_name(entry),
        kind,
        entry.get("shown") or where,
        texts.filter(keep).to_list(),
        ids.filter(keep).to_list(),
        vectors,
        note,
        langs,
    )
