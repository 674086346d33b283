"""language_similarity.v1: reading parallel text (files, long and wide tables), pair cleaning, scores and
ranking on hand-made vectors, outputs, and a recipe run with a tiny random Gemma3 model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers_langsim import EN, PT

from mlbuild.errors import InputError
from mlbuild.reports import language_similarity as ls


def _tiny_model_builder():
    spec = importlib.util.spec_from_file_location(
        "_hidden_test_models", Path(__file__).parents[1] / "models" / "test_hidden.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------- inputs


def test_code_of_file_names():
    assert ls._code_of("tatoeba.fra-eng.fra") == ("fra_Latn", "tatoeba.fra-eng.{}")
    assert ls._code_of("tatoeba.fra-eng.eng") == ("eng_Latn", "tatoeba.fra-eng.{}")
    assert ls._code_of("por_Latn.txt") == ("por_Latn", "{}.txt")  # 'txt' is an extension, not a language
    assert ls._code_of("dev.pt") == ("por_Latn", "dev.{}")
    assert ls._code_of("README.md") is None


def test_read_parallel_dir_shared_and_per_language_pivots(tmp_path):
    (tmp_path / "dev.eng_Latn").write_text("a\nb\nc\n")
    (tmp_path / "dev.por_Latn").write_text("pa\npb\npc\n")
    (tmp_path / "dev.fra_Latn").write_text("fa\nfb\nfc\n")
    (tmp_path / "tatoeba.deu-eng.deu").write_text("da\ndb\n")
    (tmp_path / "tatoeba.deu-eng.eng").write_text("x\ny\n")
    (tmp_path / "notes.md").write_text("ignored")
    sets = ls.read_parallel_dir(tmp_path, "en")
    assert sorted(sets) == ["deu_Latn", "fra_Latn", "por_Latn"]
    assert sets["por_Latn"].pivot == ["a", "b", "c"] and sets["por_Latn"].texts == ["pa", "pb", "pc"]
    assert sets["fra_Latn"].pivot == sets["por_Latn"].pivot
    assert sets["deu_Latn"].pivot == ["x", "y"] and sets["deu_Latn"].ids == ["1", "2"]
    assert list(ls.read_parallel_dir(tmp_path, "eng", ["pt"])) == ["por_Latn"]
    (tmp_path / "dev.spa_Latn").write_text("only one line\n")
    with pytest.raises(InputError, match="line-aligned"):
        ls.read_parallel_dir(tmp_path, "eng")
    with pytest.raises(InputError, match="no line-aligned files"):
        ls.read_parallel_dir(tmp_path, "kir")


def test_sets_from_long_and_wide_tables():
    long = pl.DataFrame(
        {
            "row_id": ["1", "1/pt", "2", "2/pt", "3/pt", "4", "4/ky"],
            "parallel_id": ["1", "1", "2", "2", "3", "4", "4"],
            "passage": ["one", "um", "two", "dois", "três", "four", "төрт"],
            "passage_lang": ["en", "pt", "eng_Latn", "por", "pt", "en", "ky"],
        }
    )
    sets = ls.sets_from_table(long, "eng_Latn", text_column="passage", lang_column="lang")  # falls back
    assert sorted(sets) == ["kir_Cyrl", "por_Latn"]
    assert sets["por_Latn"].pivot == ["one", "two"] and sets["por_Latn"].texts == ["um", "dois"]
    assert sets["kir_Cyrl"].ids == ["4"]
    assert list(ls.sets_from_table(long, "en", ["pt"], text_column="passage")) == ["por_Latn"]
    wide = pl.DataFrame({"en": ["one", "two"], "pt": ["um", "dois"]})
    w = ls.sets_from_table(wide, "en", columns={"en": "en", "pt": "pt"})
    assert w["por_Latn"].texts == ["um", "dois"] and w["por_Latn"].ids == ["0", "1"]
    with pytest.raises(InputError, match="no column 'text'"):
        ls.sets_from_table(long, "en")


def test_prepare_drops_empty_duplicates_and_caps():
    s = ls.ParallelSet(
        "por_Latn", ["a", "b", "", "a", "c", "d", "e"], ["x", "y", "z", "w", "y", "v", "u"], [str(i) for i in range(7)]
    )
    out, skipped = ls.prepare({"por_Latn": s}, max_sentences=3, min_sentences=2, seed=0)
    p = out["por_Latn"]
    assert p.dropped == {"empty": 1, "duplicate": 2, "over_max": 1}
    assert len(p) == 3 and set(p.ids) <= {"0", "1", "5", "6"}
    assert p.ids == sorted(p.ids)  # original order kept
    again, _ = ls.prepare({"por_Latn": s}, 3, 2, seed=0)
    assert again["por_Latn"].ids == p.ids
    _, skipped = ls.prepare({"por_Latn": s}, 10, 5)
    assert "4 usable pairs < min_sentences=5" in skipped["por_Latn"]


# ---------------------------------------------------------------- scores on hand-made vectors


class FakeEncoder:
    """Vectors chosen by the test: (layers, dim) per text."""

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = table
        self.computed = len(table)
        self.cached = 0

    def encode(self, texts, poolings, cache=None, quiet=True):
        return {p: np.stack([self.table[t] for t in texts]) for p in poolings}

    def info(self):
        return {"id": "fake", "revision": "r1", "layers": 2}


def _fake_sets(n: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    offset = np.full(8, 20.0)  # anisotropy: every raw cosine is near 1
    table, pivot, good, bad = {}, [], [], []
    for i in range(n):
        base = rng.normal(size=(2, 8))
        table[f"en{i}"] = offset + base
        table[f"fr{i}"] = offset + base + 0.1 * rng.normal(size=(2, 8))  # a translation: close to its English
        table[f"sw{i}"] = offset + rng.normal(size=(2, 8))  # unrelated to its English
        pivot.append(f"en{i}")
        good.append(f"fr{i}")
        bad.append(f"sw{i}")
    ids = [str(i) for i in range(n)]
    sets = {
        "fra_Latn": ls.ParallelSet("fra_Latn", pivot, good, ids),
        "swh_Latn": ls.ParallelSet("swh_Latn", pivot, bad, ids),
    }
    return sets, FakeEncoder(table)


def test_build_report_ranks_and_separates():
    sets, enc = _fake_sets()
    r = ls.build_report(sets, enc, pivot="en", bootstrap=200)
    assert r["ranking"] == ["fra_Latn", "swh_Latn"]
    assert r["layers"] == [1, 2] and r["model"] == "fake" and r["revision"] == "r1"
    assert r["score"]["paired_bootstrap"] is True  # same English sentences for both
    fr, sw = r["languages"]["fra_Latn"], r["languages"]["swh_Latn"]
    for key in ("ranker", "ranker_centered", "nonparallel", "mexa", "auc_centered"):
        assert len(fr[key]) == 2
    assert fr["mexa"] == [1.0, 1.0] and fr["score"] == 1.0 and fr["ci"] == [1.0, 1.0]
    assert sw["score"] < 0.3 and sw["ci"][0] <= sw["score"] <= sw["ci"][1]
    assert fr["rank_range"] == [1, 1] and sw["rank_range"] == [2, 2]
    # raw cosines barely separate; centred ones do
    assert min(fr["nonparallel"]) > 0.9
    assert fr["aggregate"]["margin_centered"]["mean"] > 0.5 > abs(sw["aggregate"]["margin_centered"]["mean"])
    assert fr["checksums"]["pivot"] == ls.checksum(sets["fra_Latn"].pivot)
    assert fr["checksums"]["pivot"] != fr["checksums"]["lang"]


def test_score_choice_aggregate_and_other_poolings():
    sets, enc = _fake_sets()
    r = ls.build_report(
        sets, enc, pivot="en", poolings=["mean", "last_token"], score="ranker_centered", aggregate="max", bootstrap=100
    )
    fr = r["languages"]["fra_Latn"]
    assert fr["score"] == pytest.approx(max(fr["ranker_centered"]), abs=1e-6)
    assert set(r["other_poolings"]) == {"last_token"}
    assert r["other_poolings"]["last_token"]["ranking"] == ["fra_Latn", "swh_Latn"]
    with pytest.raises(ValueError, match="unknown score"):
        ls.score_languages({}, sets, "eng_Latn", score="bleu")


def test_indistinguishable_languages_share_a_rank_range():
    rng = np.random.default_rng(1)
    table, sets = {}, {}
    for code, tag in (("fra_Latn", "fr"), ("ita_Latn", "it")):
        pv, tx = [], []
        for i in range(40):
            base = rng.normal(size=(1, 6))
            table[f"{tag}en{i}"] = base
            table[f"{tag}{i}"] = base + 1.2 * rng.normal(size=(1, 6))  # same noise level: same quality
            pv.append(f"{tag}en{i}")
            tx.append(f"{tag}{i}")
        sets[code] = ls.ParallelSet(code, pv, tx, [str(i) for i in range(40)])
    r = ls.build_report(sets, FakeEncoder(table), pivot="en", score="ranker_centered", bootstrap=300)
    assert r["score"]["paired_bootstrap"] is False  # different English sentences per language
    assert r["languages"]["fra_Latn"]["rank_range"] == [1, 2] == r["languages"]["ita_Latn"]["rank_range"]
    md = ls.markdown(r)
    assert "1–2" in md and "cannot order" in md


def test_write_outputs(tmp_path):
    sets, enc = _fake_sets()
    r = ls.build_report(sets, enc, pivot="en", bootstrap=50)
    summary = ls.write_outputs(r, tmp_path, "ls", link_dir="reports/")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ls.json",
        "ls.md",
        "ls_heatmap.png",
        "ls_layers.png",
        "ls_separation.png",
    ]
    data = json.loads((tmp_path / "ls.json").read_text())
    assert data["ranking"] == ["fra_Latn", "swh_Latn"] and data["pivot"] == "eng_Latn"
    assert "reports/ls_heatmap.png" in summary["markdown"]
    assert "](ls_heatmap.png)" in (tmp_path / "ls.md").read_text()
    assert (tmp_path / "ls_heatmap.png").read_bytes()[:4] == b"\x89PNG"


def test_no_language_to_compare(tmp_path):
    r = ls.build_report({}, FakeEncoder({}), pivot="en", skipped={"por_Latn": "1 usable pairs < min_sentences=10"})
    s = ls.write_outputs(r, tmp_path)
    assert r["ranking"] == [] and "No language had enough" in s["markdown"]
    assert not (tmp_path / "language_similarity_heatmap.png").exists()


# ---------------------------------------------------------------- recipe run with a tiny model

RECIPE = """
[dataset]
name = "ls-tiny"
version = "1.0.0"

[source]
uses = "jsonl.v1"
path = "rows.jsonl"
id_column = "id"

[output]
splits = "train"

[[reports]]
uses = "language_similarity.v1"
model = "{model}"
text_column = "passage"
pivot = "en"
pooling = ["mean", "last_token"]
bootstrap = 100
min_sentences = 5
"""


def test_recipe_report_with_two_languages(write_recipe, tmp_path):
    from mlbuild.pipeline.runner import Runner
    from mlbuild.recipe import load_recipe

    model = _tiny_model_builder().make_tiny_model(tmp_path / "tiny_gemma", "gemma3")
    rows = [{"id": f"{i}", "parallel_id": f"p{i}", "passage": t, "lang": "en"} for i, t in enumerate(EN)]
    rows += [{"id": f"{i}/pt", "parallel_id": f"p{i}", "passage": t, "lang": "pt"} for i, t in enumerate(PT)]
    data = "".join(json.dumps(r) + "\n" for r in rows)
    path = write_recipe(RECIPE.format(model=model), {"rows.jsonl": data})
    res = Runner(load_recipe(path), tmp_path / "out", quiet=True).run()
    rep = res.dataset_dir / "reports"
    data = json.loads((rep / "language_similarity.json").read_text())
    assert data["ranking"] == ["por_Latn"] and data["languages"]["por_Latn"]["n"] == 12
    assert len(data["languages"]["por_Latn"]["mexa"]) == 2  # tiny model: 2 layers
    assert set(data["other_poolings"]) == {"last_token"}
    assert res.manifest["models"]["reports.language_similarity.hidden_states"]["id"] == str(model)
    assert "reports/language_similarity_heatmap.png" in res.manifest["reports"]
    card = (res.dataset_dir / "README.md").read_text()
    assert "language_similarity" in card and "`por_Latn`" in card
    # the vector cache is shared with the run: a second report on the same sentences computes nothing
    from mlbuild.models.hidden import HiddenStates
    from mlbuild.pipeline.cache import CallCache

    cache = CallCache(tmp_path / "out" / ".mlbuild" / "cache.sqlite")
    hs = HiddenStates(str(model), device="cpu")
    hs.encode(EN + PT, ["mean", "last_token"], cache=cache)
    assert hs.computed == 0 and hs.cached == 24
    cache.close()


def test_recipe_validation_of_params(write_recipe):
    from mlbuild.errors import RecipeError
    from mlbuild.recipe import load_recipe

    rows = {"rows.jsonl": '{"id": "1", "passage": "a", "parallel_id": "1"}\n'}
    path = write_recipe(RECIPE.format(model="m") + 'score = "bleu"\n', rows)
    with pytest.raises(RecipeError, match="score: expected 'mexa'"):
        load_recipe(path)
    bad = RECIPE.format(model="m").replace("min_sentences = 5", "min_sentences = 1") + 'columns = { xx1 = "a" }\n'
    path = write_recipe(bad, rows)
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    msg = str(e.value)
    assert "min_sentences: expected between 2 and 10000000, got 1" in msg and "unknown language code 'xx1'" in msg
    assert "no column for the pivot" in msg
