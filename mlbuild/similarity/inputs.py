"""Parallel text in: line-aligned text files (:func:`read_parallel_dir`), and tables that are read batch
by batch, twice if needed (:class:`TableSource`: a finished stage, a dataset folder, a parquet or JSONL
file, or a DataFrame in memory)."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from .. import langs
from ..errors import InputError

log = logging.getLogger(__name__)

TEXT_EXTENSIONS = (".txt", ".text", ".tok", ".detok")
BATCH_ROWS = 65_536  # rows per batch read from a file


@dataclass
class ParallelSet:
    """Line-aligned pairs of one language with the pivot."""

    lang: str
    pivot: list[str]
    texts: list[str]
    ids: list[str]
    origin: str = ""
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)


# ---------------------------------------------------------------------------------------------- text files


def code_of(name: str) -> tuple[str, str] | None:
    """(language code, group key) from a file name: ``tatoeba.fra-eng.fra`` -> (fra_Latn,
    ``tatoeba.fra-eng.{}``); ``por_Latn.txt`` -> (por_Latn, ``{}.txt``); ``dev.pt`` -> (por_Latn, ``dev.{}``)."""
    ext = ""
    for e in TEXT_EXTENSIONS:
        if name.lower().endswith(e):
            name, ext = name[: -len(e)], e
            break
    parts = name.split(".")
    for pos in (len(parts) - 1, 0):
        if langs.is_valid(parts[pos]):
            key = parts.copy()
            key[pos] = "{}"
            return langs.normalize(parts[pos]), ".".join(key) + ext
    return None


def read_parallel_dir(path: str | Path, pivot: str, want: Sequence[str] = ()) -> dict[str, ParallelSet]:
    """Line-aligned text files, one per language, the code in the file name. Files that share a name
    apart from the code form one group (``dev.eng_Latn`` + ``dev.por_Latn``; ``tatoeba.fra-eng.fra`` +
    ``tatoeba.fra-eng.eng``); each group must hold the pivot. When a language appears in several groups,
    the first group by name is used."""
    d = Path(path)
    pivot = langs.normalize(pivot)
    want_set = {langs.normalize(c) for c in want}
    groups: dict[str, dict[str, Path]] = {}
    for f in sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")):
        got = code_of(f.name)
        if got is not None:
            groups.setdefault(got[1], {})[got[0]] = f
    sets: dict[str, ParallelSet] = {}
    for _key, files in sorted(groups.items()):
        if pivot not in files:
            continue
        others = [c for c in files if c != pivot and (not want_set or c in want_set) and c not in sets]
        if not others:
            continue
        pv = _read_lines(files[pivot])
        for code in others:
            tx = _read_lines(files[code])
            if len(tx) != len(pv):
                raise InputError(
                    str(files[code]),
                    f"{len(tx)} lines, but the pivot file {files[pivot].name} has "
                    f"{len(pv)}; parallel files must be line-aligned",
                )
            ids = [str(i + 1) for i in range(len(tx))]
            sets[code] = ParallelSet(code, pv, tx, ids, origin=f"{files[pivot].name} + {files[code].name}")
    if not sets:
        found = sorted({c for fs in groups.values() for c in fs})
        raise InputError(
            str(d),
            f"no line-aligned files pairing the pivot {pivot} with "
            f"{', '.join(sorted(want_set)) or 'another language'} (languages found in file "
            f"names: {', '.join(found) or 'none'})",
        )
    missing = sorted(want_set - set(sets) - {pivot})
    if missing:
        log.warning("no parallel files for %s in %s", ", ".join(missing), d)
    return sets


def _read_lines(p: Path) -> list[str]:
    try:
        return p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise InputError(str(p), f"not UTF-8 text: {e}") from None


# ---------------------------------------------------------------------------------------------- tables


@dataclass
class TableSource:
    """A table read batch by batch, as often as needed, in the same order each time: ``batches(columns)``
    yields DataFrames holding those of ``columns`` the table has."""

    name: str  # named in errors
    columns: list[str]
    batches: Callable[[list[str]], Iterator[pl.DataFrame]]


def table_source(table: Any, name: str = "table") -> TableSource:
    """A finished stage (:class:`~mlbuild.pipeline.tables.TableRef`, read one shard at a time) or a DataFrame."""
    if isinstance(table, pl.DataFrame):
        return TableSource(
            name, table.columns, lambda cols: iter([table.select([c for c in cols if c in table.columns])])
        )
    return TableSource(name, table.columns, lambda cols: table.iter_batches([c for c in cols if c in table.columns]))


def file_source(path: str | Path) -> TableSource:
    """A built mlbuild dataset folder (``data/**/*.parquet``), a folder of parquet files, or one ``.parquet`` /
    ``.jsonl`` file, read :data:`BATCH_ROWS` rows at a time."""
    p = Path(path)
    if p.is_file() and p.suffix in (".jsonl", ".json"):
        cols = list(dict.fromkeys(c for df in _jsonl_batches(p, None) for c in df.columns))  # every record's keys
        return TableSource(str(p), cols, lambda want: _jsonl_batches(p, want))
    if p.is_file() and p.suffix != ".parquet":
        raise InputError(str(p), "expected a .parquet or .jsonl file, or a folder")
    if p.is_file():
        files = [p]
    else:
        files = sorted((p / "data").rglob("*.parquet")) if (p / "data").is_dir() else sorted(p.rglob("*.parquet"))
    if not files:
        raise InputError(str(p), "no parquet files here (expected a dataset folder with data/**/*.parquet)")
    import pyarrow.parquet as pq

    cols = list(dict.fromkeys(c for f in files for c in pq.read_schema(f).names))
    return TableSource(str(p), cols, lambda want: _parquet_batches(files, want))


def _parquet_batches(files: list[Path], want: list[str]) -> Iterator[pl.DataFrame]:
    import pyarrow.parquet as pq

    for f in files:
        pf = pq.ParquetFile(f)
        have = [c for c in want if c in pf.schema_arrow.names]
        for rb in pf.iter_batches(batch_size=BATCH_ROWS, columns=have):
            yield pl.from_arrow(rb)


def _jsonl_batches(path: Path, want: list[str] | None) -> Iterator[pl.DataFrame]:
    def block(lines: list[bytes]) -> pl.DataFrame:
        try:
            df = pl.read_ndjson(io.BytesIO(b"".join(lines)), infer_schema_length=None)
        except pl.exceptions.PolarsError as e:
            raise InputError(str(path), f"malformed JSON Lines: {e}") from None
        return df if want is None else df.select([c for c in want if c in df.columns])

    lines: list[bytes] = []
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                lines.append(line if line.endswith(b"\n") else line + b"\n")
            if len(lines) >= BATCH_ROWS:
                yield block(lines)
                lines = []
    if lines:
        yield block(lines)
