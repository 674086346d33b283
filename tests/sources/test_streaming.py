"""Sources stream (one batch in memory, parts read alone give the same rows), keep types, and turn a
field the recipe names but the input lacks into an input error naming file and field."""

from __future__ import annotations

import gc
import json
import tracemalloc
from pathlib import Path

import polars as pl
import pytest

from mlbuild.cli import main
from mlbuild.errors import InputError, RecipeError
from mlbuild.pipeline.base import RunContext, collect
from mlbuild.pipeline.runner import Runner
from mlbuild.recipe import load_recipe
from mlbuild.sources import _common, jsonl
from mlbuild.sources.conll import ConllParams, ConllSource
from mlbuild.sources.jsonl import JsonlParams, JsonlSource
from mlbuild.sources.parquet import ParquetParams, ParquetSource


def write_lines(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


def test_reader_holds_one_batch_not_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(_common, "BATCH_BYTES", 1 << 20)
    path = write_lines(
        tmp_path / "big.jsonl", ({"id": i, "text": f"sentence number {i} " * 4} for i in range(300_000))
    )
    size = path.stat().st_size
    assert size > 25 << 20
    src = JsonlSource(JsonlParams(path=str(path), text_columns=["text"]))
    gc.collect()
    tracemalloc.start()
    rows = 0
    for out in src.read(None, None):
        rows += out.rows.height
        del out
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert rows == 300_000
    # Python-side allocations stay around one block (1 MiB of lines and their parsed objects)
    assert peak < 12 << 20, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB file"


def test_parts_read_alone_give_the_same_rows_and_line_numbers(tmp_path):
    rows = [{"text": f"line {i}"} if i % 7 else {"text": ""} for i in range(5000)]
    path = write_lines(tmp_path / "p.jsonl", rows)
    (tmp_path / "p.jsonl").write_text(
        "\n" + path.read_text().replace('{"text": "line 3"}', "\n" + '{"text": "line 3"}')
    )
    whole = collect(JsonlSource(JsonlParams(path=str(path), text_columns=["text"])).read(None, None))
    parts = _common.line_parts(path, target=4096)
    assert len(parts) > 10
    src = JsonlSource(JsonlParams(path=str(path), text_columns=["text"]))
    pieces = collect(out for part in parts for out in src.read(part, None))
    assert pieces.rows.equals(whole.rows)
    assert pieces.rejects["detail"].to_list() == whole.rejects["detail"].to_list()
    assert whole.rows["row_id"][0] == "000000003"  # line numbers of the file, blank lines included


def test_parquet_text_column_of_numbers_is_an_input_error(tmp_path):
    p = tmp_path / "t.parquet"
    pl.DataFrame({"text": [5, 6], "label": [1, 2]}).write_parquet(p)
    with pytest.raises(InputError, match=r"t.parquet: field 'text': text_columns names a column of Int64, not text"):
        ParquetSource(ParquetParams(path=str(p), text_columns=["text"])).read_all()
    # other columns keep their types (no "5" for 5)
    out = ParquetSource(ParquetParams(path=str(p))).read_all()
    assert out.rows.schema["label"] == pl.Int64 and out.rows["text"].to_list() == [5, 6]


@pytest.mark.parametrize("key,value", [("id_column", "doc"), ("columns", ["text", "nope"]), ("required", ["nope"])])
def test_named_field_missing_from_the_file_is_an_input_error(tmp_path, key, value):
    p = tmp_path / "t.parquet"
    pl.DataFrame({"text": ["a", "b"]}).write_parquet(p)
    missing = value if isinstance(value, str) else value[-1]
    with pytest.raises(InputError, match=rf"field '{missing}': no such column, which {key} names"):
        ParquetSource(ParquetParams(path=str(p), **{key: value})).read_all()
    j = write_lines(tmp_path / "t.jsonl", [{"text": "a"}, {"text": "b"}])
    with pytest.raises(InputError, match=rf"t.jsonl(:1)?: field '{missing}':"):
        JsonlSource(JsonlParams(path=str(j), **{key: value})).read_all()


def test_a_row_without_its_id_is_rejected_not_renumbered(tmp_path):
    j = write_lines(tmp_path / "t.jsonl", [{"id": "a", "text": "x"}, {"text": "y"}])
    out = JsonlSource(JsonlParams(path=str(j), id_column="id")).read_all()
    assert out.rows["row_id"].to_list() == ["a"]
    assert out.rejects.select("reason", "detail").rows() == [("missing_id", "no 'id' (line 2)")]


def test_key_first_seen_after_the_sample_passes_validation(write_recipe, tmp_path, monkeypatch):
    monkeypatch.setattr(jsonl, "SAMPLE_BYTES", 200)
    rows = [{"text": f"row {i}"} for i in range(50)] + [{"text": "late", "extra": "here"}]
    recipe = (
        '[dataset]\nname = "late"\nversion = "1.0.0"\n\n[source]\nuses = "jsonl.v1"\npath = "rows.jsonl"\n'
        '\n[output]\nconfig_by = "extra"\n'
    )
    path = write_recipe(recipe, {"rows.jsonl": "".join(json.dumps(r) + "\n" for r in rows)})
    res = Runner(load_recipe(path), tmp_path / "out", quiet=True).run()
    assert res.manifest["configs"] == {"here": {"train": 1}, "und": {"train": 50}}
    # a column that no line has is still caught, once the file is read
    bad = write_recipe(recipe.replace('"extra"', '"extraa"'), name="bad.toml")
    with pytest.raises(RecipeError, match="output -> config_by: no column at the end of the chain named 'extraa'"):
        Runner(load_recipe(bad), tmp_path / "out2", quiet=True).run()


def test_duplicate_ids_across_shards_are_rejected_naming_the_id(write_recipe, tmp_path):
    rows = [{"id": f"d{i % 30}", "text": f"t{i}"} for i in range(40)]
    path = write_recipe(
        '[dataset]\nname = "dup"\nversion = "1.0.0"\n\n[source]\nuses = "jsonl.v1"\npath = "rows.jsonl"\nid_column = "id"\n',
        {"rows.jsonl": "".join(json.dumps(r) + "\n" for r in rows)},
    )
    res = Runner(load_recipe(path), tmp_path / "out", quiet=True, shard_rows=7).run()
    assert res.manifest["rows"] == 30 and res.manifest["steps"][0]["dropped"] == {"duplicate_id": 10}
    rej = [json.loads(x) for x in (res.dataset_dir / "rejects" / "00-source.jsonl").read_text().splitlines()]
    assert sorted(r["row_id"] for r in rej) == sorted(f"d{i}" for i in range(10))
    assert rej[0]["detail"] == f"id '{rej[0]['row_id']}' already used by an earlier row"
    kept = pl.read_parquet(list(res.dataset_dir.glob("data/*/*.parquet")))
    assert kept["text"].to_list() == [f"t{i}" for i in range(30)]  # the first of each id wins


def test_conll_bad_bytes_and_bom(tmp_path):
    p = tmp_path / "x.conll"
    p.write_bytes("\ufeffJohn B-PER\nlives O\n\n".encode() + b"Caf\xe9 O\n")
    with pytest.raises(InputError, match=r"x.conll:4: not UTF-8"):
        ConllSource(ConllParams(path=str(p))).read_all()
    p.write_bytes("\ufeffJohn B-PER\nlives O\n".encode())
    rows = ConllSource(ConllParams(path=str(p))).read_all().rows
    assert rows["tokens"].to_list() == [["John", "lives"]]


def test_not_a_parquet_file_names_it(write_recipe, tmp_path, capsys):
    path = write_recipe(
        '[dataset]\nname = "np"\nversion = "1.0.0"\n\n[source]\nuses = "parquet.v1"\npath = "t.parquet"\n',
        {"t.parquet": "this is text"},
    )
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "t.parquet: not a readable parquet file" in err


def test_shard_sizes_do_not_change_the_dataset(write_recipe, tmp_path, tiny_lid):
    rows = [{"text": t} for t in ["the cat sits on the mat", "o gato está no tapete", ""] * 40]
    recipe = (
        '[dataset]\nname = "sz"\nversion = "1.0.0"\n\n[source]\nuses = "jsonl.v1"\npath = "rows.jsonl"\n'
        'text_columns = ["text"]\n\n[[steps]]\nuses = "langid.v1"\ncolumn = "text"\nexpect = "en"\n'
        f'model = "{tiny_lid}"\n\n[output]\nsplits = {{train = 0.7, test = 0.3}}\n'
    )
    path = write_recipe(recipe, {"rows.jsonl": "".join(json.dumps(r) + "\n" for r in rows)})
    a = Runner(load_recipe(path), tmp_path / "a", quiet=True, shard_rows=7, shard_bytes=1 << 30).run()
    b = Runner(load_recipe(path), tmp_path / "b", quiet=True).run()
    assert a.fingerprint == b.fingerprint
    assert a.manifest["configs"] == b.manifest["configs"]
    for split in a.manifest["configs"]["default"]:
        ra = pl.read_parquet(list((a.dataset_dir / "data" / "default").glob(f"{split}-*.parquet")))
        rb = pl.read_parquet(list((b.dataset_dir / "data" / "default").glob(f"{split}-*.parquet")))
        assert ra.equals(rb)
    ra = sorted((a.dataset_dir / "rejects" / "01-langid.jsonl").read_text().splitlines())
    assert ra == sorted((b.dataset_dir / "rejects" / "01-langid.jsonl").read_text().splitlines())


def test_output_files_are_bounded(write_recipe, tmp_path):
    rows = [{"text": f"row {i} " + "x" * 200} for i in range(500)]
    recipe = (
        '[dataset]\nname = "files"\nversion = "1.0.0"\n\n[source]\nuses = "jsonl.v1"\npath = "rows.jsonl"\n'
        "\n[output]\nmax_rows_per_file = 120\n"
    )
    path = write_recipe(recipe, {"rows.jsonl": "".join(json.dumps(r) + "\n" for r in rows)})
    res = Runner(load_recipe(path), tmp_path / "out", quiet=True, shard_rows=50).run()
    files = sorted(p.name for p in (res.dataset_dir / "data" / "default").iterdir())
    assert files == [f"train-{i:05d}-of-00005.parquet" for i in range(5)]
    sizes = [pl.read_parquet(res.dataset_dir / "data" / "default" / f).height for f in files]
    assert sizes == [120, 120, 120, 120, 20]
    import datasets

    assert datasets.load_dataset(str(res.dataset_dir), "default", split="train").num_rows == 500


def test_output_files_are_bounded_in_bytes(write_recipe, tmp_path):
    import random

    rng = random.Random(0)
    # ~10 KB of incompressible text per row: 400 rows are ~4 MB, so 1 MB files hold about 100 rows each
    rows = [{"text": "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(10_000))} for _ in range(400)]
    recipe = (
        '[dataset]\nname = "mb"\nversion = "1.0.0"\n\n[source]\nuses = "jsonl.v1"\npath = "rows.jsonl"\n'
        "\n[output]\nmax_file_mb = 1\n"
    )
    path = write_recipe(recipe, {"rows.jsonl": "".join(json.dumps(r) + "\n" for r in rows)})
    res = Runner(load_recipe(path), tmp_path / "out", quiet=True).run()
    files = sorted((res.dataset_dir / "data" / "default").iterdir())
    heights = [pl.read_parquet(f).height for f in files]
    assert sum(heights) == 400 and len(files) >= 4
    for f in files:
        assert pl.read_parquet(f).estimated_size() <= (1 << 20) * 1.05, f.name


def test_squad_and_tacred_documents_stream_in_batches(tmp_path, write_recipe):
    from mlbuild.sources.squad import SquadParams, SquadSource
    from mlbuild.sources.tacred import TacredParams, TacredSource

    ctx = "Lima is the capital of Peru."
    qas = [
        {"id": f"q{i}", "question": "Capital?", "answers": [{"text": "Lima", "answer_start": 0}]}
        for i in range(25_000)
    ]
    squad = tmp_path / "squad.json"
    # one line, as the official files are: a whole-document parse would hold it all
    squad.write_text(
        json.dumps({"version": "1.1", "data": [{"title": "Peru", "paragraphs": [{"context": ctx, "qas": qas}]}]})
    )
    batches = [b.rows.height for b in SquadSource(SquadParams(path=str(squad)), RunContext()).read()]
    assert batches == [10_000, 10_000, 5_000]
    assert [b.rows.height for b in SquadSource(SquadParams(path=str(squad)), RunContext()).read(limit=12_345)] == [
        10_000,
        2_345,
    ]
    ex = {"token": ["Ann", "met", "Bob"], "subj_start": 0, "subj_end": 0, "obj_start": 2, "obj_end": 2}
    ex |= {"subj_type": "PERSON", "obj_type": "PERSON", "relation": "per:met"}
    tacred = tmp_path / "tacred.json"
    tacred.write_text(json.dumps([{**ex, "id": f"t{i}"} for i in range(10_001)]))
    out = list(TacredSource(TacredParams(path=str(tacred)), RunContext()).read())
    assert [b.rows.height for b in out] == [10_000, 1] and out[1].rows["row_id"].to_list() == ["t10000"]
    tacred.write_text(json.dumps([ex, ex])[:-5])
    with pytest.raises(InputError, match="malformed JSON") as e:
        list(TacredSource(TacredParams(path=str(tacred)), RunContext()).read())
    assert str(tacred) in str(e.value)


def test_a_repeated_squad_question_id_is_a_reject_naming_it(write_recipe, tmp_path):
    rows = [
        {
            "id": i,
            "context": "Lima is in Peru.",
            "question": "Where?",
            "answers": {"text": ["Peru"], "answer_start": [11]},
        }
        for i in ("a", "b", "a")
    ]
    recipe = write_recipe(
        '[dataset]\nname = "sq"\nversion = "1.0.0"\n[source]\nuses = "squad.v1"\npath = "q.jsonl"\n',
        {"q.jsonl": "".join(json.dumps(r) + "\n" for r in rows)},
    )
    res = Runner(load_recipe(recipe), tmp_path / "out", quiet=True).run()
    assert res.manifest["rows"] == 2 and res.manifest["steps"][0]["dropped"] == {"duplicate_id": 1}
