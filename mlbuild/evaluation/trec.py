"""TREC files, the classic trec_eval inputs, read and written with errors that name the file and line.

- run: ``qid Q0 docno rank score tag`` (whitespace-separated; the rank column is ignored, as trec_eval
  does: documents are ordered by score);
- qrels: ``qid iter docno rel`` (TREC) or BEIR's ``query-id<TAB>corpus-id<TAB>score`` with its header.

Lines starting with ``#`` and blank lines are skipped. A duplicate document for a query is an error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError
from .metrics import Qrels, Run


def _lines(path: Path):
    if not path.is_file():
        raise InputError(str(path), "file not found")
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            s = line.strip()
            if s and not s.startswith("#"):
                yield n, s


def read_run(path: str | Path) -> Run:
    """A TREC run file as {query id: {doc id: score}}."""
    path = Path(path)
    run: Run = {}
    for n, line in _lines(path):
        cells = line.split()
        if len(cells) != 6:
            raise InputError(str(path), f"expected 6 fields (qid Q0 docno rank score tag), got {len(cells)}", line=n)
        q, _, d, _, s, _ = cells
        try:
            score = float(s)
        except ValueError:
            raise InputError(str(path), f"score {s!r} is not a number", line=n, field="score") from None
        if not math.isfinite(score):
            raise InputError(str(path), f"score {s!r} is not finite", line=n, field="score")
        docs = run.setdefault(q, {})
        if d in docs:
            raise InputError(str(path), f"document {d!r} appears twice for query {q!r}", line=n, field="docno")
        docs[d] = score
    if not run:
        raise InputError(str(path), "the run file has no result line")
    return run


def read_qrels(path: str | Path) -> Qrels:
    """TREC qrels (4 fields) or a BEIR qrels TSV (3 fields, header) as {query id: {doc id: relevance}}."""
    path = Path(path)
    qrels: Qrels = {}
    for n, line in _lines(path):
        cells = line.split("\t") if "\t" in line else line.split()
        cells = [c.strip() for c in cells]
        if n == 1 and cells[0].lower() in ("query-id", "query_id", "qid"):
            continue
        if len(cells) == 4:
            q, _, d, r = cells
        elif len(cells) == 3:
            q, d, r = cells
        else:
            raise InputError(
                str(path),
                f"expected 4 fields (qid iter docno rel) or 3 tab-separated ones (query-id corpus-id score), got {len(cells)}",
                line=n,
            )
        try:
            rel = int(r)
        except ValueError:
            try:
                rel = int(float(r)) if float(r).is_integer() else None
            except ValueError:
                rel = None
            if rel is None:
                raise InputError(str(path), f"relevance {r!r} is not an integer", line=n, field="rel") from None
        docs = qrels.setdefault(q, {})
        if d in docs and docs[d] != rel:
            raise InputError(str(path), f"document {d!r} is judged twice for query {q!r}", line=n, field="docno")
        docs[d] = rel
    if not qrels:
        raise InputError(str(path), "the qrels file has no judgement")
    return qrels


def write_run(path: str | Path, run: Run, tag: str = "mlbuild") -> int:
    """Write ``run`` as a TREC run file (documents by score, ties by doc id); returns the lines written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for q in run:
            ranked = sorted(run[q].items(), key=lambda x: (-x[1], x[0]))
            for rank, (d, s) in enumerate(ranked, start=1):
                f.write(f"{q} Q0 {d} {rank} {s:.9g} {tag}\n")
                n += 1
    tmp.replace(path)
    return n


def write_qrels(path: str | Path, qrels: Qrels | Iterable[tuple[str, str, int]]) -> int:
    """Write TREC qrels (``qid 0 docno rel``); returns the lines written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ((q, d, r) for q, docs in qrels.items() for d, r in docs.items()) if isinstance(qrels, dict) else qrels
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for q, d, r in rows:
            f.write(f"{q} 0 {d} {int(r)}\n")
            n += 1
    return n
