from __future__ import annotations

import pytest

from mlbuild.cli import main
from mlbuild.errors import RecipeError
from mlbuild.recipe import load_recipe

DATA = {"data/rows.jsonl": '{"id": "a", "text": "the cat sits on the mat"}\n'}

GOOD = """
[dataset]
name = "t"
version = "1.0.0"

[vars]
lang = "en"

[source]
uses = "jsonl.v1"
path = "data/rows.jsonl"

[[steps]]
id = "lid"
uses = "langid.v1"
column = "text"
expect = "${vars.lang}"
"""


def test_good_recipe_resolves_vars_and_paths(write_recipe):
    r = load_recipe(write_recipe(GOOD, DATA))
    assert r.steps[0].params.expect == "en"
    assert r.source.params.path.endswith("data/rows.jsonl")
    assert r.resolved["steps"][0]["expect"] == "en"


def test_every_error_reported_at_once_with_locations(write_recipe):
    bad = """
[dataset]
name = "t"
version = "one"

[source]
uses = "jsonl.v1"
path = "data/rows.jsonl"

[[steps]]
uses = "langid.v1"
colum = "text"
on_mismatch = "explode"
min_score = "high"

[[steps]]
uses = "translate_everything.v1"

[[steps]]
uses = "langid"
column = "text"

[output]
config_by = "lang"
"""
    with pytest.raises(RecipeError) as ei:
        load_recipe(write_recipe(bad, DATA))
    msg = str(ei.value)
    locs = [loc for loc, _ in ei.value.problems]
    assert "dataset -> version" in locs
    assert "steps[0] (langid.v1) -> colum" in locs
    assert "did you mean 'column'?" in msg
    assert "steps[0] (langid.v1) -> column" in locs  # missing required
    assert "steps[0] (langid.v1) -> on_mismatch" in locs
    assert "steps[0] (langid.v1) -> min_score" in locs
    assert "unknown step 'translate_everything.v1'" in msg and "known: " in msg and "langid.v1" in msg
    assert "unknown step 'langid'; did you mean 'langid.v1'?" in msg


def test_unknown_language_code_and_column_contract(write_recipe):
    bad = (
        GOOD.replace('expect = "${vars.lang}"', 'expect = "xx_Latn"')
        + """
[[steps]]
id = "lid2"
uses = "langid.v1"
column = "passage"

[output]
config_by = "langg"
"""
    )
    with pytest.raises(RecipeError) as ei:
        load_recipe(write_recipe(bad, DATA))
    msg = str(ei.value)
    assert "'xx_Latn' is neither a known language code" in msg
    with pytest.raises(RecipeError) as ei:
        load_recipe(
            write_recipe(
                GOOD
                + """
[[steps]]
id = "lid2"
uses = "langid.v1"
column = "passage"

[output]
config_by = "text_langg"
""",
                DATA,
            )
        )
    msg = str(ei.value)
    assert "steps[1] (langid.v1): needs column 'passage'" in msg
    assert "output -> config_by" in msg and "did you mean 'text_lang'?" in msg


def test_set_overrides_and_unknown_step_id(write_recipe):
    path = write_recipe(GOOD, DATA)
    r = load_recipe(path, ["steps.lid.min_score=0.7", 'dataset.version="2.0.0"', "vars.lang=pt"])
    assert r.steps[0].params.min_score == 0.7
    assert r.dataset.version == "2.0.0"
    assert r.steps[0].params.expect == "pt"
    with pytest.raises(RecipeError, match="no step with id 'lidd'.*did you mean 'lid'"):
        load_recipe(path, ["steps.lidd.min_score=0.7"])


def test_unknown_variable_and_duplicate_ids(write_recipe):
    text = (
        GOOD.replace("${vars.lang}", "${vars.langg}")
        + '\n[[steps]]\nid = "lid"\nuses = "langid.v1"\ncolumn = "text"\n'
    )
    with pytest.raises(RecipeError) as ei:
        load_recipe(write_recipe(text, DATA))
    msg = str(ei.value)
    assert "unknown variable ${vars.langg}; did you mean 'lang'?" in msg
    assert "id 'lid' already used" in msg


def test_bad_toml_names_the_file(write_recipe):
    with pytest.raises(RecipeError, match="recipe.toml: not valid TOML"):
        load_recipe(write_recipe("[dataset\nname = 1"))


def test_validate_cli_exit_codes(write_recipe, capsys):
    good = write_recipe(GOOD, DATA)
    assert main(["validate", str(good)]) == 0
    bad = write_recipe(GOOD.replace("langid.v1", "langid.v9"), name="bad.toml")
    assert main(["validate", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown step 'langid.v9'" in err


def test_missing_input_file_is_reported(write_recipe):
    with pytest.raises(RecipeError, match="input file not found"):
        load_recipe(write_recipe(GOOD))


def test_resources_table_is_checked_and_kept(write_recipe):
    text = GOOD + "\n[resources.lid]\nnum_gpus = 1\nnum_workers = 4\n"
    r = load_recipe(write_recipe(text, DATA))
    assert r.resources == {"lid": {"num_gpus": 1, "num_workers": 4}}
    bad = GOOD + "\n[resources.lidd]\nnum_gpus = 1\n\n[resources.lid]\nnum_gpu = 1\nnum_cpus = -2\n"
    with pytest.raises(RecipeError) as ei:
        load_recipe(write_recipe(bad, DATA, name="bad.toml"))
    msg = str(ei.value)
    assert "resources.lidd: no step with id 'lidd'; did you mean 'lid'?" in msg
    assert "resources.lid -> num_gpu: unknown key; did you mean 'num_gpus'?" in msg
    assert "resources.lid -> num_cpus: expected a non-negative number" in msg
