"""``tacred.v1``: TACRED JSON -> text with head/tail character spans, and back to token indices."""

from __future__ import annotations

import json

import pytest

from mlbuild import spans as S
from mlbuild.errors import InputError
from mlbuild.sources.tacred import TacredParams, TacredSource, from_tacred, to_tacred

EX = {
    "id": "e1",
    "token": ["Tim", "Cook", "is", "the", "CEO", "of", "Apple", "Inc", "."],
    "subj_start": 0,
    "subj_end": 1,
    "obj_start": 6,
    "obj_end": 7,
    "subj_type": "PERSON",
    "obj_type": "ORGANIZATION",
    "relation": "per:employee_of",
}


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_reads_json_and_jsonl(tmp_path, fmt):
    f = tmp_path / f"dev.{fmt}"
    f.write_text(json.dumps([EX]) if fmt == "json" else json.dumps(EX) + "\n", encoding="utf-8")
    df = TacredSource(TacredParams(path=str(f))).read_all().rows
    r = df.row(0, named=True)
    assert r["row_id"] == "e1" and r["relation"] == "per:employee_of"
    assert [(r["text"][s["start"] : s["end"]], s["label"]) for s in r["spans"]] == [
        ("Tim Cook", "subj:PERSON"),
        ("Apple Inc", "obj:ORGANIZATION"),
    ]


def test_round_trip_to_tacred_fields():
    text, spans = from_tacred(EX)
    back = to_tacred(text, spans)
    assert back["token"] == EX["token"]
    for k in ("subj_start", "subj_end", "obj_start", "obj_end", "subj_type", "obj_type"):
        assert back[k] == EX[k]
    # a projected Portuguese row
    pt = "Tim Cook é o CEO da Apple Inc."
    out = to_tacred(pt, [S.Span(0, 8, "subj:PERSON"), S.Span(20, 29, "obj:ORGANIZATION")])
    assert out["token"][out["obj_start"] : out["obj_end"] + 1] == ["Apple", "Inc"]


def test_bad_index_is_an_input_error(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps({**EX, "obj_end": 40}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:1: field 'obj_end'"):
        TacredSource(TacredParams(path=str(f))).read_all()
