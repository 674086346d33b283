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
on_fail = "explode"
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
    assert "steps[0] (langid.v1) -> on_fail" in locs
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
    assert "resources.lid -> num_gpu: unknown parameter; did you mean 'num_gpus'?" in msg
    assert "resources.lid -> num_cpus: expected between 0 and 4096, got -2" in msg
    with pytest.raises(RecipeError, match=r"num_workers: expected between 1 and 1000000, got 0"):
        load_recipe(write_recipe(GOOD + "\n[resources.lid]\nnum_workers = 0\n", DATA, name="zero.toml"))


def test_a_check_that_knows_the_columns_replaces_its_earlier_message(write_recipe):
    """langid's expect is checked without and with the columns: one message, next to the others."""
    text = GOOD.replace('expect = "${vars.lang}"', 'expect = "zzqq"\nmin_score = 5').replace(
        'column = "text"', 'column = "nope"'
    )
    with pytest.raises(RecipeError) as ei:
        load_recipe(write_recipe(text, DATA))
    msg = str(ei.value)
    assert msg.count("'zzqq' is neither a known language code") == 1 and "or a column name" in msg
    assert "needs column 'nope'" in msg and "min_score: expected between 0 and 1" in msg


# ---- issue 13: every problem in one pass, declared bounds, typed [dataset]/[output], vars, formats

TRANSLATE = """
[dataset]
name = "t"
version = "1.0.0"

[source]
uses = "jsonl.v1"
path = "data/rows.jsonl"

[[steps]]
uses = "translate.v1"
columns = ["text"]
source_lang = "en"
target_langs = ["pt"]
engine = "bergamot"
"""


def test_typo_does_not_hide_bounds_of_the_same_step(write_recipe):
    text = TRANSLATE + "max_concurency = 4\nmax_new_tokens = -5\nbatch_size = 0\nmax_segment_chars = -10\n"
    with pytest.raises(RecipeError) as ei:
        load_recipe(write_recipe(text, DATA))
    got = dict(ei.value.problems)
    loc = "steps[0] (translate.v1)"
    assert "did you mean 'max_concurrency'?" in got[f"{loc} -> max_concurency"]
    assert got[f"{loc} -> max_new_tokens"] == "expected between 1 and 100000, got -5"
    assert got[f"{loc} -> batch_size"] == "expected between 1 and 100000, got 0"
    assert got[f"{loc} -> max_segment_chars"] == "expected between 0 and 1000000, got -10"


def test_missing_input_reported_with_other_problems(write_recipe):
    text = TRANSLATE + "lid_min_score = 5.0\n" + '\n[[steps]]\nuses = "langid.v1"\ncolumn = "text"\nbatch_size = 0\n'
    with pytest.raises(RecipeError) as ei:
        load_recipe(write_recipe(text))  # no data file
    msg = str(ei.value)
    assert "input file not found" in msg
    assert "lid_min_score: expected between 0 and 1, got 5.0" in msg
    assert "steps[1] (langid.v1) -> batch_size: expected between 1 and 10000000, got 0" in msg


def test_every_numeric_parameter_declares_bounds():
    from mlbuild.pipeline import params as P
    from mlbuild.pipeline import registry
    from mlbuild.recipe.load import DatasetSpec, OutputSpec

    classes = [
        (f"{k}:{n}", c.Params)
        for k in ("source", "step", "report")
        for n, c in registry.known(k).items()
        if c.__module__.startswith("mlbuild.")  # not the plugins other tests register
    ]
    from mlbuild.accounting.prices import Price

    classes += [("dataset", DatasetSpec), ("output", OutputSpec), ("price table", Price)]
    missing = []
    for name, cls in classes:
        hints = P.hints(cls)
        for f in P.fields(cls):
            if P.is_numeric(hints[f.name]) and not P.bounds_text(f.metadata):
                missing.append(f"{name}.{f.name}")
    assert not missing, f"numeric parameters without declared bounds: {missing}"


@pytest.mark.parametrize(
    "key,value,msg",
    [
        ("name", '"t\\n"', "dataset -> name"),
        ("version", '"1.0.0\\n"', "dataset -> version"),
        ("version", '"01.0.0"', "dataset -> version"),
        ("license", "3", "dataset -> license: expected str, got 3"),
        ("pretty_name", "[1]", "dataset -> pretty_name: expected str | none"),
        ("card", "true", "dataset -> card: expected str"),
        ("seed", "-1", "dataset -> seed: expected between 0 and"),
    ],
)
def test_dataset_table_is_typed(write_recipe, key, value, msg):
    text = GOOD.replace('name = "t"\nversion = "1.0.0"\n', 'name = "t"\nversion = "1.0.0"\n').replace(
        "[dataset]\n", "[dataset]\n" if key in ("name", "version") else f"[dataset]\n{key} = {value}\n"
    )
    if key in ("name", "version"):
        text = text.replace(f'{key} = "{"t" if key == "name" else "1.0.0"}"', f"{key} = {value}")
    with pytest.raises(RecipeError) as ei:
        load_recipe(write_recipe(text, DATA))
    assert msg in str(ei.value)


def test_output_table_is_typed(write_recipe):
    text = GOOD + '\n[output]\nsplits = {train = 0.5, test = "x"}\nmax_rows_per_file = 0\nformat = ["hf", "parquet"]\n'
    with pytest.raises(RecipeError) as ei:
        load_recipe(write_recipe(text, DATA))
    msg = str(ei.value)
    assert "output -> max_rows_per_file: expected between 1 and" in msg
    assert "unknown format 'parquet'" in msg
    assert "output -> splits" in msg


def test_vars_use_vars_and_lists_do_not_go_into_text(write_recipe):
    text = GOOD.replace('lang = "en"', 'base = "data"\nlang = "en"\nfile = "${vars.base}/rows.jsonl"').replace(
        'path = "data/rows.jsonl"', 'path = "${vars.file}"'
    )
    r = load_recipe(write_recipe(text, DATA))
    assert r.source.params.path.endswith("data/rows.jsonl")
    assert r.resolved["vars"]["file"] == "data/rows.jsonl"
    bad = GOOD.replace('lang = "en"', 'lang = "en"\nlangs = ["en", "pt"]').replace(
        'expect = "${vars.lang}"', 'expect = "x-${vars.langs}"'
    )
    with pytest.raises(
        RecipeError, match=r"\$\{vars.langs\} is a list: it can stand alone as a value, not inside text"
    ):
        load_recipe(write_recipe(bad, DATA, name="bad.toml"))
    cyc = GOOD.replace('lang = "en"', 'lang = "${vars.other}"\nother = "${vars.lang}"')
    with pytest.raises(RecipeError, match="cycle"):
        load_recipe(write_recipe(cyc, DATA, name="cyc.toml"))


def test_validate_a_folder_is_a_clean_error(write_recipe, capsys):
    path = write_recipe(GOOD, DATA)
    assert main(["validate", str(path.parent)]) == 2
    err = capsys.readouterr().err
    assert "is a folder; give a recipe file (recipes there: recipe.toml)" in err
    assert "Traceback" not in err


def test_beir_format_needs_a_beir_source_at_validate(write_recipe):
    text = GOOD + '\n[output]\nformat = ["hf", "beir"]\n'
    with pytest.raises(RecipeError) as ei:
        load_recipe(write_recipe(text, DATA))
    assert "the beir format needs query rows (query_id, query) or document rows" in str(ei.value)


def test_conll_format_needs_tokens_and_tags_at_validate(write_recipe):
    with pytest.raises(RecipeError, match="'conll' needs target_tokens/target_tags"):
        load_recipe(write_recipe(GOOD + '\n[output]\nformat = ["conll"]\n', DATA))
    conll = "EU B-ORG\nrejects O\n\nPeter B-PER\n"
    text = GOOD.replace('uses = "jsonl.v1"\npath = "data/rows.jsonl"', 'uses = "conll.v1"\npath = "data/x.conll"')
    recipe = load_recipe(
        write_recipe(text + '\n[output]\nformat = ["hf", "conll"]\n', {**DATA, "data/x.conll": conll})
    )
    assert recipe.output.format == ["hf", "conll"]


def test_loader_keys_refused_in_free_form_tables(write_recipe):
    text = TRANSLATE + "generation = { trust_remote_code = true, length_penalty = 1.0 }\n"
    with pytest.raises(RecipeError, match="generation: 'trust_remote_code': model loading settings"):
        load_recipe(write_recipe(text, DATA))
