"""``tacred.v1``: read TACRED-style relation examples (a JSON list or JSON Lines): ``id``, ``token``
(list of tokens), ``subj_start``/``subj_end``/``obj_start``/``obj_end`` (inclusive token indices),
``subj_type``, ``obj_type``, ``relation``.

Output columns: ``row_id`` (the example ``id``), ``tokens``, ``text`` (tokens joined by spaces),
``spans`` (two character spans: the head labelled ``subj:<TYPE>`` first, the tail ``obj:<TYPE>``
second) and ``relation``. :func:`to_tacred` turns a projected row back into TACRED fields. A
missing field or out-of-range index is an input error naming file, line and field.

Example::

    [source]
    uses = "tacred.v1"
    path = "data/tacred/dev.json"
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from .. import spans as S
from ..errors import InputError
from ..pipeline.base import ROW_ID, StepOutput
from ..pipeline.params import param
from ..pipeline.registry import register
from ._common import JsonRecordSource, iter_json_records, json_document

FIELDS = ("token", "subj_start", "subj_end", "obj_start", "obj_end", "subj_type", "obj_type", "relation")


@dataclass
class TacredParams:
    path: str = param(doc="TACRED JSON (a list) or JSON Lines file", kind="path")


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(position, example) one at a time: the example's line in JSON Lines, its 1-based index in a list."""
    if json_document(path, None):
        for i, (_, r) in enumerate(iter_json_records(path, "item", document=True), start=1):
            yield i, r
        return
    for n, r in iter_json_records(path, "", document=False):
        yield n or 0, r


def from_tacred(rec: dict[str, Any]) -> tuple[str, list[S.Span]]:
    """A TACRED example -> (text, [head span, tail span])."""
    text, offs = S.join_tokens(rec["token"])
    head = S.Span(offs[rec["subj_start"]][0], offs[rec["subj_end"]][1], f"subj:{rec['subj_type']}")
    tail = S.Span(offs[rec["obj_start"]][0], offs[rec["obj_end"]][1], f"obj:{rec['obj_type']}")
    return text, [head, tail]


def to_tacred(text: str, spans: list[S.Span]) -> dict[str, Any]:
    """A (projected) text with its head and tail spans -> TACRED token fields (tokens by
    :func:`mlbuild.spans.tokenize`; each span widened to whole tokens)."""
    offs = S.tokenize(text)
    out: dict[str, Any] = {"token": [text[a:b] for a, b in offs]}
    for sp in spans:
        role, _, typ = sp.label.partition(":")
        idx = [i for i, (a, b) in enumerate(offs) if a < sp.end and b > sp.start]
        if not idx:
            raise S.SpanError(f"span {sp} covers no token")
        out[f"{role}_start"], out[f"{role}_end"], out[f"{role}_type"] = idx[0], idx[-1], typ
    return out


@register("source")
class TacredSource(JsonRecordSource):
    __doc__ = __doc__
    name = "tacred.v1"
    Params = TacredParams

    COLUMNS = (ROW_ID, "tokens", "text", "spans", "relation")

    def records(self, path: Path) -> Iterator[tuple[int | None, dict[str, Any]]]:
        return read_records(path)

    def frame(self, path: Path, items: list[tuple[int | None, dict[str, Any]]]) -> StepOutput:
        recs = []
        for n, r in items:
            for f in FIELDS:
                if f not in r:
                    raise InputError(str(path), "missing required field", line=n, field=f)
            toks = r["token"]
            for f in ("subj_start", "subj_end", "obj_start", "obj_end"):
                if not isinstance(r[f], int) or not 0 <= r[f] < len(toks):
                    raise InputError(str(path), f"token index {r[f]!r} outside 0..{len(toks) - 1}", line=n, field=f)
            text, spans = from_tacred(r)
            recs.append(
                {
                    ROW_ID: str(r.get("id", f"{n:09d}")),
                    "tokens": toks,
                    "text": text,
                    "spans": S.to_records(spans),
                    "relation": r["relation"],
                }
            )
        df = pl.DataFrame(
            recs,
            schema={
                ROW_ID: pl.Utf8,
                "tokens": pl.List(pl.Utf8),
                "text": pl.Utf8,
                "spans": S.SPANS_DTYPE,
                "relation": pl.Utf8,
            },
        )
        return StepOutput(df, None, {"rows_in": len(items)})
