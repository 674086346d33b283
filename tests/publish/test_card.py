"""Card templates: packaged by name or a file under the recipe's folder, nothing else; rendered in Jinja's
sandbox, with escapes refused cleanly (exit 2 at ``dataset -> card``), at validation when they are
visible in the text and at render time when they are built at run time."""

from __future__ import annotations

import json
import os

import pytest

from mlbuild.cli import main
from mlbuild.errors import RecipeError
from mlbuild.publish import card as cardmod
from mlbuild.recipe import load_recipe

ROWS = "".join(json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, t in enumerate(["one row", "another row"]))

RECIPE = """
[dataset]
name = "carded"
version = "1.0.0"
license = "cc-by-4.0"
description = "Two rows."
{card}

[source]
uses = "jsonl.v1"
path = "rows.jsonl"
text_columns = ["text"]
id_column = "id"
"""

ESCAPE = "{{ ''.__class__.__mro__[1].__subclasses__() }}"


def _recipe(write_recipe, card: str | None, files: dict[str, str] | None = None):
    line = f"card = {json.dumps(card)}" if card is not None else ""
    return write_recipe(RECIPE.format(card=line), {"rows.jsonl": ROWS, **(files or {})})


def test_escape_in_a_card_template_is_refused_at_validate(write_recipe, capsys):
    path = _recipe(write_recipe, "card.md.j2", {"card.md.j2": f"# hi\n\nline two {ESCAPE}\n"})
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    msg = str(e.value)
    assert "dataset -> card" in msg and "'__class__'" in msg and "line 3" in msg and "sandbox" in msg
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "dataset -> card" in err and "__mro__" in err and "Traceback" not in err


def test_escape_built_at_run_time_fails_cleanly_when_rendering(write_recipe, tmp_path, capsys):
    """A name assembled at run time passes the text check; the sandbox refuses it at render time and
    the CLI says so in one line, exit 2 (no traceback, no half-written version)."""
    tpl = "# {{ dataset.name }}\n{% set n = '_' ~ '_class_' ~ '_' %}{{ (dataset.name|attr(n)) }}\n"
    path = _recipe(write_recipe, "card.md.j2", {"card.md.j2": tpl})
    load_recipe(path)  # nothing visible in the text
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "dataset -> card" in err and "sandbox" in err and "Traceback" not in err
    assert not (out / "carded" / "1.0.0" / "README.md").exists()


def test_sandbox_refuses_what_a_plain_environment_would_run(tmp_path):
    t = tmp_path / "x.md.j2"
    t.write_text("{{ d|attr('_' ~ '_class_' ~ '_') }}", encoding="utf-8")
    ctx = {"d": "text", "dataset": {"name": "n", "license": "x"}}
    with pytest.raises(RecipeError, match="refused by the template sandbox"):
        cardmod.render(
            {
                **ctx,
                "configs": {},
                "languages": [],
                "multilinguality": "monolingual",
                "total_rows": 0,
                "annotations_creators": [],
                "language_creators": [],
                "source_datasets": [],
                "task_categories": [],
            },
            t,
        )
    import jinja2  # the same text in a plain environment reaches Python internals

    assert "class 'str'" in jinja2.Environment().from_string(t.read_text()).render(d="text")


@pytest.mark.parametrize("where", ["absolute", "dotdot", "symlink"])
def test_card_path_outside_the_recipe_folder_is_refused_at_validate(write_recipe, tmp_path_factory, where, capsys):
    outside = tmp_path_factory.mktemp("elsewhere") / "secret.md.j2"
    outside.write_text("# not for publishing: s3cr3t\n", encoding="utf-8")
    files = {}
    if where == "absolute":
        card = str(outside)
    elif where == "dotdot":
        card = os.path.relpath(outside, write_recipe(RECIPE.format(card="")).parent)
        assert card.startswith("..")
    else:
        card = "link.md.j2"
    path = _recipe(write_recipe, card, files)
    if where == "symlink":
        (path.parent / "link.md.j2").symlink_to(outside)
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    assert "dataset -> card" in str(e.value) and "outside the recipe's folder" in str(e.value)
    assert main(["validate", str(path)]) == 2
    assert "outside the recipe's folder" in capsys.readouterr().err


def test_unknown_card_lists_the_packaged_names(write_recipe):
    with pytest.raises(RecipeError, match=r"card template 'fancy' not found: neither a packaged template \(default\)"):
        load_recipe(_recipe(write_recipe, "fancy"))


def test_custom_card_under_the_recipe_folder(write_recipe, tmp_path):
    tpl = (
        "# {{ dataset.pretty_name or dataset.name }} (custom)\n\n"
        "{% for cfg, splits in configs.items() %}{% for s, n in splits.items() %}"
        "- {{ cfg }}/{{ s }}: {{ n }} rows\n{% endfor %}{% endfor %}"
        "Fingerprint {{ fingerprint[:8] }}; {{ dataset.name|upper }}.\n"
    )
    path = _recipe(write_recipe, "cards/mine.md.j2", {"cards/mine.md.j2": tpl})
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    d = out / "carded" / "1.0.0"
    text = (d / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n") and "license: cc-by-4.0" in text
    assert "# carded (custom)" in text and "- default/train: 2 rows" in text and "CARDED." in text
    assert (d / "card.md.j2").read_text(encoding="utf-8") == tpl  # travels with the version


def test_default_card_is_packaged_and_sandboxed(write_recipe, tmp_path):
    assert cardmod.find_template("default", tmp_path) == cardmod.packaged_template("default.md.j2")
    assert cardmod.find_template("default", tmp_path).parent.name == "data_cards"
    path = _recipe(write_recipe, None)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    text = (out / "carded" / "1.0.0" / "README.md").read_text(encoding="utf-8")
    assert "## Configurations and splits" in text and "| `default` | train | 2 |" in text


def test_includes_are_refused(write_recipe):
    path = _recipe(write_recipe, "card.md.j2", {"card.md.j2": "{% include 'other.md.j2' %}", "other.md.j2": "x"})
    with pytest.raises(RecipeError, match=r"line 1: \{% include %\} is not allowed"):
        load_recipe(path)
