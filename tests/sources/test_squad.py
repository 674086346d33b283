"""``squad.v1``: nested SQuAD JSON and Hub-style JSON Lines -> context + answer spans, and back."""

from __future__ import annotations

import json

import pytest

from mlbuild import spans as S
from mlbuild.errors import InputError
from mlbuild.sources.squad import SquadParams, SquadSource, to_answers

CTX = "The Amazon river flows through Brazil and Peru."
NESTED = {
    "version": "1.1",
    "data": [
        {
            "title": "Amazon",
            "paragraphs": [
                {
                    "context": CTX,
                    "qas": [
                        {
                            "id": "q1",
                            "question": "Where does it flow?",
                            "answers": [
                                {"text": "Brazil and Peru", "answer_start": 31},
                                {"text": "Brazil and Peru", "answer_start": 31},
                                {"text": "Brazil", "answer_start": 31},
                            ],
                        }
                    ],
                }
            ],
        }
    ],
}


def test_nested_json(tmp_path):
    f = tmp_path / "dev.json"
    f.write_text(json.dumps(NESTED), encoding="utf-8")
    df = SquadSource(SquadParams(path=str(f))).read_all().rows
    r = df.row(0, named=True)
    assert (r["row_id"], r["title"], r["question"]) == ("q1", "Amazon", "Where does it flow?")
    spans = S.to_spans(r["spans"])
    assert [s.text(CTX) for s in spans] == ["Brazil and Peru", "Brazil"]  # duplicates merged
    assert to_answers(CTX, spans) == {"text": ["Brazil and Peru", "Brazil"], "answer_start": [31, 31]}


def test_jsonl_and_bad_offset(tmp_path):
    f = tmp_path / "dev.jsonl"
    rec = {"id": "q1", "context": CTX, "question": "?", "answers": {"text": ["Peru"], "answer_start": [42]}}
    f.write_text(json.dumps(rec) + "\n", encoding="utf-8")
    df = SquadSource(SquadParams(path=str(f))).read_all().rows
    assert S.to_spans(df["spans"][0])[0].text(CTX) == "Peru"
    rec["answers"]["answer_start"] = [40]
    f.write_text(json.dumps(rec) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"dev.jsonl:1: field 'answers'.*'Peru' is not at offset 40"):
        SquadSource(SquadParams(path=str(f))).read_all()
