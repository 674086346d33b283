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
    out = ParquetSource(ParquetParams(path=str(p), text_columns=["text"])).read()
    assert out.rows["text"].to_list() == ["x", "z"]
    assert out.rejects["reason"].to_list() == ["empty_text"]
    with pytest.raises(InputError, match=r"t.parquet:3: field 'id'"):
        ParquetSource(ParquetParams(path=str(p), required=["id"])).read()
    with pytest.raises(InputError, match="field 'nope'"):
        ParquetSource(ParquetParams(path=str(p), required=["nope"])).read()


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
    res = Runner(load_recipe(path), tmp_path / "out", quiet=True).run()
    assert res.manifest["rows"] == 0 and res.manifest["configs"] == {}
    assert res.manifest["steps"][1]["dropped"] == {"lang_mismatch": 3}
    assert len((res.dataset_dir / "rejects" / "01-langid.jsonl").read_text().splitlines()) == 3
