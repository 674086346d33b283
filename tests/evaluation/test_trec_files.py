"""TREC run and qrels files: read, written, and refused with the file, line and field when malformed."""

from __future__ import annotations

import pytest

from mlbuild.errors import InputError
from mlbuild.evaluation.trec import read_qrels, read_run, write_qrels, write_run


def test_run_round_trip_orders_by_score_then_doc(tmp_path):
    run = {"q1": {"b": 1.0, "a": 1.0, "c": 2.5}, "q2": {"x": 0.1}}
    p = tmp_path / "sys.run"
    assert write_run(p, run, tag="sys") == 4
    lines = p.read_text().splitlines()
    assert lines[0].split() == ["q1", "Q0", "c", "1", "2.5", "sys"]
    assert [ln.split()[2] for ln in lines[:3]] == ["c", "a", "b"]
    assert read_run(p) == run


def test_qrels_trec_and_beir_forms(tmp_path):
    trec = tmp_path / "q.trec"
    write_qrels(trec, {"q1": {"d1": 1, "d2": 0}})
    assert read_qrels(trec) == {"q1": {"d1": 1, "d2": 0}}
    beir = tmp_path / "test.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\n# a comment\n\nq2\td9\t1\n")
    assert read_qrels(beir) == {"q1": {"d1": 2}, "q2": {"d9": 1}}


@pytest.mark.parametrize(
    "text, line, field, what",
    [
        ("q1 Q0 d1 1 0.5 run\nq1 Q0 d2 2 run\n", 2, None, "6 fields"),
        ("q1 Q0 d1 1 high run\n", 1, "score", "not a number"),
        ("q1 Q0 d1 1 0.5 run\nq1 Q0 d1 2 0.4 run\n", 2, "docno", "twice"),
        ("q1 Q0 d1 1 nan run\n", 1, "score", "finite"),
    ],
)
def test_bad_run_lines_name_file_line_and_field(tmp_path, text, line, field, what):
    p = tmp_path / "bad.run"
    p.write_text(text)
    with pytest.raises(InputError, match=what) as e:
        read_run(p)
    assert e.value.line == line and e.value.field == field and e.value.file == str(p)


def test_bad_qrels_and_missing_files(tmp_path):
    p = tmp_path / "bad.qrels"
    p.write_text("q1 0 d1 1\nq1 0 d2 yes\n")
    with pytest.raises(InputError, match="not an integer") as e:
        read_qrels(p)
    assert e.value.line == 2 and e.value.field == "rel"
    p.write_text("q1 d1\n")
    with pytest.raises(InputError, match="4 fields"):
        read_qrels(p)
    with pytest.raises(InputError, match="not found"):
        read_run(tmp_path / "nope.run")
    (tmp_path / "empty.run").write_text("# nothing\n")
    with pytest.raises(InputError, match="no result"):
        read_run(tmp_path / "empty.run")
