from __future__ import annotations

import json

import polars as pl
import pytest

from mlbuild.cli import main
from mlbuild.errors import RecipeError
from mlbuild.pipeline.base import RunContext
from mlbuild.recipe import load_recipe
from mlbuild.steps.length_filter import LengthFilter, LengthFilterParams


def rows(texts):
    return pl.DataFrame({"row_id": [str(i) for i in range(len(texts))], "text": texts})


def run(texts, **kw):
    return LengthFilter(LengthFilterParams(column="text", **kw), RunContext()).process(rows(texts))


def test_bounds_in_characters_and_words_with_reasons():
    out = run(["one two", "one two three", "xx " * 10, None, "naïve café au lait"], min_words=2, max_chars=20)
    assert out.rows["row_id"].to_list() == ["0", "1", "4"]
    assert out.rejects["reason"].to_list() == ["too_long", "too_short"]
    assert out.rejects["detail"].to_list() == ["30 characters > max_chars 20", "0 words < min_words 2"]
    assert out.stats["checks"] == {"checked": 5, "failed": {"too_long": 1, "too_short": 1}, "on_fail": {"drop": 1}}


def test_words_are_unicode_letter_runs_and_characters_code_points():
    out = run(["Кыргыз тили — бай тил", "hello_world", "a-b"], min_words=4, on_fail="flag")
    assert out.rows["text_length_ok"].to_list() == [True, False, False]  # "_" and "-" split nothing / split
    assert run(["ÿÿÿ"], max_chars=3).rejects is None  # three code points, six bytes


def test_keep_counts_without_changing_rows():
    out = run(["a", "abc"], min_chars=2, on_fail="keep")
    assert out.rows.height == 2 and out.rejects is None
    assert out.stats["checks"]["failed"] == {"too_short": 1}


def test_validation_needs_a_bound_and_ordered_bounds(write_recipe):
    base = '[dataset]\nname = "x"\nversion = "1"\n[source]\nuses = "jsonl.v1"\npath = "r.jsonl"\n'
    files = {"r.jsonl": '{"text": "a"}\n'}
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe(base + '[[steps]]\nuses = "length_filter.v1"\ncolumn = "text"\n', files))
    assert "set at least one of" in str(e.value)
    with pytest.raises(RecipeError) as e:
        step = '[[steps]]\nuses = "length_filter.v1"\ncolumn = "text"\nmin_words = 9\nmax_words = 3\nmax_chars = 0\n'
        load_recipe(write_recipe(base + step, files))
    assert "min_words 9 is above max_words 3" in str(e.value) and "max_chars" in str(e.value)


def test_recipe_run_writes_rejects_and_card(write_recipe, tmp_path):
    texts = ["a short one", "this sentence has enough words to stay", "no"]
    recipe = write_recipe(
        '[dataset]\nname = "lf"\nversion = "1.0.0"\n[source]\nuses = "jsonl.v1"\npath = "r.jsonl"\n'
        '[[steps]]\nuses = "length_filter.v1"\ncolumn = "text"\nmin_words = 4\n',
        {"r.jsonl": "".join(json.dumps({"text": t}) + "\n" for t in texts)},
    )
    assert main(["run", str(recipe), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    d = tmp_path / "out" / "lf" / "1.0.0"
    data = pl.concat([pl.read_parquet(p) for p in (d / "data").rglob("*.parquet")])
    assert data["text"].to_list() == [texts[1]]
    rejects = [json.loads(line) for f in (d / "rejects").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert sorted(r["reason"] for r in rejects) == ["too_short", "too_short"]
    assert "2 of 3 rows failed the checks (dropped): `too_short` 2." in (d / "README.md").read_text()
