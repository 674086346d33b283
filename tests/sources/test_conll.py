"""``conll.v1``: BIO files -> text + character spans, exact both ways; errors name file and line."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from mlbuild import spans as S
from mlbuild.errors import InputError
from mlbuild.sources.conll import ConllParams, ConllSource, read_conll, write_conll

CONLL = """-DOCSTART- O

Barack B-PER
Obama I-PER
visited O
New B-LOC
York I-LOC
. O

# a comment
EU B-ORG
rejects O
German B-MISC
call O
"""


def _read(path: Path, **kw):
    return ConllSource(ConllParams(path=str(path), **kw)).read_all().rows


def test_reads_sentences_as_text_and_spans(tmp_path):
    f = tmp_path / "train.conll"
    f.write_text(CONLL, encoding="utf-8")
    df = _read(f, lang="en")
    assert df["row_id"].to_list() == ["train-0000001", "train-0000002"]
    r = df.row(0, named=True)
    assert r["text"] == "Barack Obama visited New York ."
    assert [(r["text"][s["start"] : s["end"]], s["label"]) for s in r["spans"]] == [
        ("Barack Obama", "PER"),
        ("New York", "LOC"),
    ]
    assert df["lang"].to_list() == ["eng_Latn", "eng_Latn"]
    # exact both ways: spans -> BIO over the same tokens gives the tags back
    for row in df.iter_rows(named=True):
        _, offs = S.join_tokens(row["tokens"])
        assert S.spans_to_bio(S.to_spans(row["spans"]), offs) == row["tags"]
    assert ConllSource(ConllParams(path=str(f))).columns() == ["row_id", "tokens", "tags", "text", "spans"]


def test_write_then_read_round_trip_gz(tmp_path):
    sents = [(["Ana", "mora", "em", "Lisboa"], ["B-PER", "O", "O", "B-LOC"]), (["Oi"], ["O"])]
    write_conll(tmp_path / "x.conll", sents)
    raw = (tmp_path / "x.conll").read_bytes()
    (tmp_path / "x.conll.gz").write_bytes(gzip.compress(raw))
    assert [(t, g) for _, t, g in read_conll(tmp_path / "x.conll.gz")] == sents


def test_bad_lines_name_file_and_line(tmp_path):
    f = tmp_path / "bad.conll"
    f.write_text("Ana B-PER\nmora X-Y\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.conll:2.*not a BIO tag"):
        _read(f)
    f.write_text("Ana B-PER\nmora\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.conll:2"):
        _read(f)


@pytest.mark.slow
def test_masakhaner_round_trip():
    """Every sentence of a real MasakhaNER 2.0 test file converts to spans and back to the same tags."""
    path = Path(__file__).resolve().parents[3] / "shared" / "data" / "masakhaner2_test" / "swa.test.txt.gz"
    if not path.exists():
        pytest.skip("shared MasakhaNER data not present")
    df = _read(path)
    assert df.height > 100
    not_iob2 = 0
    for row in df.iter_rows(named=True):
        _, offs = S.join_tokens(row["tokens"])
        back = S.spans_to_bio(S.to_spans(row["spans"]), offs)
        # the file has a few I- tags after O (IOB1 style): those come back as B-, everything else exactly
        assert back == S.normalize_bio(row["tags"])
        not_iob2 += back != row["tags"]
    assert not_iob2 < df.height * 0.05


def test_conll_in_conll_out_through_a_recipe(write_recipe, tmp_path):
    from mlbuild.pipeline.runner import Runner
    from mlbuild.recipe import load_recipe

    text = CONLL.replace("-DOCSTART- O\n\n", "").replace("# a comment\n", "")
    recipe = """
[dataset]
name = "ner"
version = "0.1.0"

[source]
uses = "conll.v1"
path = "in.conll"

[output]
format = ["hf", "conll"]
"""
    path = write_recipe(recipe, {"in.conll": text})
    res = Runner(load_recipe(path), tmp_path / "out", quiet=True).run()
    out = res.dataset_dir / "conll" / "default" / "train.conll"
    assert out.read_text(encoding="utf-8") == text.rstrip("\n") + "\n\n"
