from __future__ import annotations

import json

import polars as pl
import pytest

from mlbuild.errors import InputError
from mlbuild.pipeline.runner import Runner
from mlbuild.recipe import load_recipe
from mlbuild.sources.parquet import ParquetParams, ParquetSource


def test_parquet_rows_rejects_and_required(tmp_path):
    p = tmp_path / "t.parquet"
    pl.DataFrame({"id": ["a", "b", None], "text": ["x", "", "z"]}).write_parquet(p)
    out = ParquetSource(ParquetParams(path=str(p), text_columns=["text"])).read_all()
    assert out.rows["text"].to_list() == ["x", "z"]
    assert out.rejects["reason"].to_list() == ["empty_text"]
    with pytest.raises(InputError, match=r"t.parquet:3: field 'id'"):
        ParquetSource(ParquetParams(path=str(p), required=["id"])).read_all()
    with pytest.raises(InputError, match="field 'nope'"):
        ParquetSource(ParquetParams(path=str(p), required=["nope"])).read_all()


def test_hf_source_reads_an_mlbuild_output_back(write_recipe, tmp_path):
    rows = "".join(json.dumps({"text": f"line {i}", "lang": "en"}) + "\n" for i in range(5))
    first = write_recipe(
        """
[dataset]
name = "first"
version = "1.0.0"

[source]
uses = "jsonl.v1"
path = "rows.jsonl"

[output]
config_by = "lang"
""",
        {"rows.jsonl": rows},
    )
    res = Runner(load_recipe(first), tmp_path / "out", quiet=True).run()
    second = write_recipe(
        f"""
[dataset]
name = "second"
version = "1.0.0"

[source]
uses = "hf.v1"
path = "{res.dataset_dir}"
config = "en"
split = "train"
text_columns = ["text"]
""",
        name="second.toml",
    )
    res2 = Runner(load_recipe(second), tmp_path / "out", quiet=True).run()
    assert res2.manifest["rows"] == 5
    assert res2.manifest["languages"] == ["eng_Latn"]


def test_every_row_dropped_still_writes_a_truthful_card(write_recipe, tmp_path, tiny_lid):
    rows = "".join(json.dumps({"text": "o gato está no tapete"}) + "\n" for _ in range(3))
    path = write_recipe(
        f"""
[dataset]
name = "empty"
version = "1.0.0"

[source]
uses = "jsonl.v1"
path = "rows.jsonl"

[[steps]]
uses = "langid.v1"
column = "text"
expect = "en"
model = "{tiny_lid}"
""",
        {"rows.jsonl": rows},
    )
    # datasets cannot load an empty split: an empty build is an error (exit 2) that says which step dropped
    # what and where the rejects are; nothing is written where a dataset would be
    from mlbuild.cli import main
    from mlbuild.errors import EmptyBuildError

    with pytest.raises(EmptyBuildError) as ei:
        Runner(load_recipe(path), tmp_path / "out", quiet=True).run()
    msg = str(ei.value)
    assert "every row was dropped (3 read; most by langid (langid.v1): lang_mismatch 3)" in msg
    rejects = tmp_path / "out" / ".mlbuild" / "empty" / "1.0.0" / "empty-build" / "rejects" / "01-langid.jsonl"
    assert str(rejects.parent) in msg and len(rejects.read_text().splitlines()) == 3
    assert not (tmp_path / "out" / "empty" / "1.0.0").exists()
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2


def test_empty_input_is_an_input_error(write_recipe, tmp_path, capsys):
    from mlbuild.cli import main

    path = write_recipe(
        '[dataset]\nname = "e"\nversion = "1.0.0"\n\n[source]\nuses = "jsonl.v1"\npath = "rows.jsonl"\n',
        {"rows.jsonl": "\n\n"},
    )
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "rows.jsonl: the input holds no records" in err
    assert not (tmp_path / "out" / "e" / "1.0.0").exists()
