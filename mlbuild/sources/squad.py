"""``squad.v1``: read SQuAD-style QA: the official nested JSON (``data -> paragraphs -> qas``) or JSON Lines
with ``id``, ``context``, ``question``, ``answers = {"text": [...], "answer_start": [...]}`` (the Hub form).

Output columns: ``row_id`` (the question ``id``), ``title``, ``context``, ``question`` and ``spans``
(each answer as a character span into ``context`` labelled ``answer``; duplicates merged). An answer
whose text is not at ``answer_start`` in the context is an input error naming the question id.
:func:`to_answers` gives the SQuAD ``answers`` field back from spans.

Example::

    [source]
    uses = "squad.v1"
    path = "data/squad/dev-v1.1.json"
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


@dataclass
class SquadParams:
    path: str = param(doc="SQuAD JSON or JSON Lines file", kind="path")


def _qa_records(path: Path) -> Iterator[tuple[int | None, dict[str, Any]]]:
    """(line or None, question record) one at a time from either form."""
    if not json_document(path, "data"):
        yield from iter_json_records(path, "", document=False)
        return
    for _, art in iter_json_records(path, "data.item", document=True):
        for para in art.get("paragraphs", []):
            for qa in para.get("qas", []):
                ans = qa.get("answers", [])
                yield (
                    None,
                    {
                        "id": qa.get("id"),
                        "title": art.get("title"),
                        "context": para.get("context"),
                        "question": qa.get("question"),
                        "answers": {
                            "text": [a["text"] for a in ans],
                            "answer_start": [a["answer_start"] for a in ans],
                        },
                    },
                )


def answer_spans(context: str, answers: dict[str, list]) -> list[S.Span]:
    spans = []
    for t, s in zip(answers.get("text", []), answers.get("answer_start", [])):
        sp = S.Span(int(s), int(s) + len(t), "answer")
        if context[sp.start : sp.end] != t:
            raise ValueError(f"answer {t!r} is not at offset {s}")
        if sp not in spans:
            spans.append(sp)
    return spans


def to_answers(context: str, spans: list[S.Span]) -> dict[str, list]:
    return {"text": [context[s.start : s.end] for s in spans], "answer_start": [s.start for s in spans]}


@register("source")
class SquadSource(JsonRecordSource):
    __doc__ = __doc__
    name = "squad.v1"
    Params = SquadParams

    COLUMNS = (ROW_ID, "title", "context", "question", "spans")

    def records(self, path: Path) -> Iterator[tuple[int | None, dict[str, Any]]]:
        return _qa_records(path)

    def frame(self, path: Path, items: list[tuple[int | None, dict[str, Any]]]) -> StepOutput:
        recs = []
        for n, r in items:
            for f in ("id", "context", "question", "answers"):
                if r.get(f) is None:
                    raise InputError(str(path), f"missing required field (question {r.get('id')!r})", line=n, field=f)
            try:
                spans = answer_spans(r["context"], r["answers"])
            except ValueError as e:
                raise InputError(str(path), f"question {r['id']!r}: {e}", line=n, field="answers") from None
            recs.append(
                {
                    ROW_ID: str(r["id"]),
                    "title": r.get("title"),
                    "context": r["context"],
                    "question": r["question"],
                    "spans": S.to_records(spans),
                }
            )
        df = pl.DataFrame(
            recs,
            schema={
                ROW_ID: pl.Utf8,
                "title": pl.Utf8,
                "context": pl.Utf8,
                "question": pl.Utf8,
                "spans": S.SPANS_DTYPE,
            },
        )
        return StepOutput(df, None, {"rows_in": len(items)})
