"""End-to-end runs on tiny data: Hub layout, load_dataset round trip, card metadata, manifest,
fingerprint stability, version refusal, rejects with reasons."""

from __future__ import annotations

import json

import polars as pl
import pytest

from mlbuild.errors import RecipeError
from mlbuild.pipeline.runner import Runner
from mlbuild.recipe import load_recipe

LINES = (
    [
        {"id": f"e{i}", "text": t}
        for i, t in enumerate(
            [
                "the cat sits on the mat",
                "where is the train station",
                "this is a good book to read",
                "the weather is nice today",
                "we walk to the river in the morning",
                "please open the window",
            ]
        )
    ]
    + [
        {"id": f"p{i}", "text": t}
        for i, t in enumerate(["o gato está no tapete", "onde fica a estação de trem", "este é um bom livro para ler"])
    ]
    + [{"id": "bad1", "text": ""}, {"id": "bad2", "text": 7}]
)

RECIPE = """
[dataset]
name = "tiny"
version = "1.0.0"
license = "cc-by-4.0"
description = "A tiny test set."

[source]
uses = "jsonl.v1"
path = "rows.jsonl"
text_columns = ["text"]
id_column = "id"

[[steps]]
id = "lid"
uses = "langid.v1"
column = "text"
model = "{model}"
batch_size = {batch}

[output]
config_by = "text_lang"
splits = {{ train = 0.5, test = 0.5 }}
"""


@pytest.fixture
def recipe(write_recipe, tiny_lid):
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in LINES)

    def make(batch: int = 100, extra: str = "") -> object:
        return write_recipe(RECIPE.format(model=tiny_lid, batch=batch) + extra, {"rows.jsonl": data})

    return make


def test_hub_layout_load_dataset_and_card(recipe, tmp_path):
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    res = Runner(load_recipe(recipe()), tmp_path / "out", quiet=True).run()
    d = res.dataset_dir
    assert d == tmp_path / "out" / "tiny" / "1.0.0"
    for name in ("README.md", "manifest.json", "recipe.lock.toml"):
        assert (d / name).is_file()
    assert sorted(p.name for p in (d / "data").iterdir()) == ["eng_Latn", "por_Latn"]
    en = load_dataset(str(d), "eng_Latn")
    assert sum(len(en[s]) for s in en) == 6
    assert set(en["train"].column_names) >= {"row_id", "id", "text", "text_lang", "text_lang_score"}
    card = DatasetCard.load(d / "README.md")
    assert sorted(card.data.language) == ["en", "pt"]
    assert card.data.license == "cc-by-4.0"
    assert card.data.multilinguality == "multilingual"
    assert card.data.size_categories == ["n<1K"]
    assert card.data.annotations_creators == ["machine-generated"]
    assert {c["config_name"] for c in card.data.configs} == {"eng_Latn", "por_Latn"}
    text = (d / "README.md").read_text()
    assert "| `source` | `jsonl.v1` | 11 | 9 | empty_text: 1; wrong_type: 1 |" in text
    assert "| `eng_Latn` |" in text
    m = json.loads((d / "manifest.json").read_text())
    assert m["rows"] == 9 and m["languages"] == ["eng_Latn", "por_Latn"]
    assert m["steps"][0]["id"] == "source" and m["steps"][0]["dropped"] == {"empty_text": 1, "wrong_type": 1}
    assert m["models"]["lid.lid"]["revision"].startswith("sha256:")
    assert m["inputs"] and all(len(v) == 64 for v in m["inputs"].values())
    assert "polars" in m["packages"]
    rej = [json.loads(line) for line in (d / "rejects" / "00-source.jsonl").read_text().splitlines()]
    assert {r["row_id"]: r["reason"] for r in rej} == {"bad1": "empty_text", "bad2": "wrong_type"}
    # the lock file is a runnable recipe
    assert load_recipe(d / "recipe.lock.toml", check_columns=False).dataset.name == "tiny"


def test_fingerprint_stable_and_runtime_params_ignored(recipe, tmp_path):
    a = Runner(load_recipe(recipe(batch=100)), tmp_path / "a", quiet=True).run()
    b = Runner(load_recipe(recipe(batch=3)), tmp_path / "b", quiet=True).run()
    assert a.fingerprint == b.fingerprint
    pa = pl.read_parquet(next((a.dataset_dir / "data" / "eng_Latn").glob("train-*.parquet")))
    pb = pl.read_parquet(next((b.dataset_dir / "data" / "eng_Latn").glob("train-*.parquet")))
    assert pa.equals(pb)
    c = Runner(load_recipe(recipe(), ["steps.lid.min_score=0.2"]), tmp_path / "c", quiet=True).run()
    assert c.fingerprint != a.fingerprint


def test_rerun_same_version_is_noop_and_changed_recipe_is_refused(recipe, tmp_path):
    out = tmp_path / "out"
    first = Runner(load_recipe(recipe()), out, quiet=True).run()
    again = Runner(load_recipe(recipe()), out, quiet=True).run()
    assert again.up_to_date and again.fingerprint == first.fingerprint
    changed = load_recipe(recipe(), ["steps.lid.min_score=0.3"])
    with pytest.raises(RecipeError, match="bump dataset.version or pass --overwrite"):
        Runner(changed, out, quiet=True).run()
    forced = Runner(changed, out, quiet=True, overwrite=True).run()
    assert forced.fingerprint != first.fingerprint
    bumped = Runner(
        load_recipe(recipe(), ["steps.lid.min_score=0.3", 'dataset.version="1.1.0"']), out, quiet=True
    ).run()
    assert bumped.dataset_dir.name == "1.1.0"


def test_limit_and_split_column(recipe, tmp_path, write_recipe):
    res = Runner(load_recipe(recipe()), tmp_path / "o", quiet=True, limit=4).run()
    assert res.manifest["rows"] == 4
    assert res.fingerprint != Runner(load_recipe(recipe()), tmp_path / "p", quiet=True).run().fingerprint


def test_drop_reasons_reach_rejects_and_card(recipe, tmp_path):
    res = Runner(load_recipe(recipe(extra=""), ['steps.lid.expect="en"']), tmp_path / "o", quiet=True).run()
    d = res.dataset_dir
    rej = [json.loads(line) for line in (d / "rejects" / "01-lid.jsonl").read_text().splitlines()]
    assert len(rej) == 3 and {r["reason"] for r in rej} == {"lang_mismatch"}
    assert all(r["row"]["text"] for r in rej)
    assert "lang_mismatch: 3" in (d / "README.md").read_text()
    assert res.manifest["steps"][1]["dropped"] == {"lang_mismatch": 3}


def test_translations_of_one_row_share_a_split():
    from mlbuild.publish.layout import assign_splits
    from mlbuild.recipe.load import OutputSpec

    table = pl.DataFrame(
        {
            "row_id": [f"{i}/{lang}" for i in range(200) for lang in ("en", "pt", "ky")],
            "parallel_id": [str(i) for i in range(200) for _ in range(3)],
        }
    )
    out = assign_splits(table, OutputSpec(splits={"train": 0.5, "test": 0.5}))
    per_group = out.group_by("parallel_id").agg(pl.col("__split").n_unique())
    assert per_group["__split"].max() == 1
    assert set(out["__split"]) == {"train", "test"}
