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
from mlbuild.similarity import inputs, render, sample, scores
from mlbuild.similarity.inputs import ParallelSet


def _tiny_model_builder():
    spec = importlib.util.spec_from_file_location(
        "_hidden_test_models", Path(__file__).parents[1] / "models" / "test_hidden.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------- inputs


def test_code_of_file_names():
    assert inputs.code_of("tatoeba.fra-eng.fra") == ("fra_Latn", "tatoeba.fra-eng.{}")
    assert inputs.code_of("tatoeba.fra-eng.eng") == ("eng_Latn", "tatoeba.fra-eng.{}")
    assert inputs.code_of("por_Latn.txt") == ("por_Latn", "{}.txt")  # 'txt' is an extension, not a language
    assert inputs.code_of("dev.pt") == ("por_Latn", "dev.{}")
    assert inputs.code_of("README.md") is None


def test_read_parallel_dir_shared_and_per_language_pivots(tmp_path):
    (tmp_path / "dev.eng_Latn").write_text("a\nb\nc\n")
    (tmp_path / "dev.por_Latn").write_text("pa\npb\npc\n")
    (tmp_path / "dev.fra_Latn").write_text("fa\nfb\nfc\n")
    (tmp_path / "tatoeba.deu-eng.deu").write_text("da\ndb\n")
    (tmp_path / "tatoeba.deu-eng.eng").write_text("x\ny\n")
    (tmp_path / "notes.md").write_text("ignored")
    sets = inputs.read_parallel_dir(tmp_path, "en")
    assert sorted(sets) == ["deu_Latn", "fra_Latn", "por_Latn"]
    assert sets["por_Latn"].pivot == ["a", "b", "c"] and sets["por_Latn"].texts == ["pa", "pb", "pc"]
    assert sets["fra_Latn"].pivot == sets["por_Latn"].pivot
    assert sets["deu_Latn"].pivot == ["x", "y"] and sets["deu_Latn"].ids == ["1", "2"]
    assert list(inputs.read_parallel_dir(tmp_path, "eng", ["pt"])) == ["por_Latn"]
    (tmp_path / "dev.spa_Latn").write_text("only one line\n")
    with pytest.raises(InputError, match="line-aligned"):
        inputs.read_parallel_dir(tmp_path, "eng")
    with pytest.raises(InputError, match="no line-aligned files"):
        inputs.read_parallel_dir(tmp_path, "kir")


def _sets(table, pivot, want=(), **kw):
    """Every usable pair (no cap), read from a DataFrame."""
    return sample.sample_sets(inputs.table_source(table), pivot, want, max_sentences=1000, min_sentences=0, **kw)[0]


def test_sets_from_long_and_wide_tables():
    long = pl.DataFrame(
        {
            "row_id": ["1", "1/pt", "2", "2/pt", "3/pt", "4", "4/ky"],
            "parallel_id": ["1", "1", "2", "2", "3", "4", "4"],
            "passage": ["one", "um", "two", "dois", "três", "four", "төрт"],
            "passage_lang": ["en", "pt", "eng_Latn", "por", "pt", "en", "ky"],
        }
    )
    sets = _sets(long, "eng_Latn", text_column="passage", lang_column="lang")  # falls back
    assert sorted(sets) == ["kir_Cyrl", "por_Latn"]
    assert sets["por_Latn"].pivot == ["one", "two"] and sets["por_Latn"].texts == ["um", "dois"]
    assert sets["kir_Cyrl"].ids == ["4"] and sets["por_Latn"].origin == "passage by parallel_id"
    assert list(_sets(long, "en", ["pt"], text_column="passage")) == ["por_Latn"]
    wide = pl.DataFrame({"en": ["one", "two"], "pt": ["um", "dois"]})
    w = _sets(wide, "en", columns={"en": "en", "pt": "pt"})
    assert w["por_Latn"].texts == ["um", "dois"] and w["por_Latn"].ids == ["0", "1"]
    with pytest.raises(InputError, match="no column 'text'"):
        _sets(long, "en")
    with pytest.raises(InputError, match="no column 'nope'"):
        _sets(wide, "en", columns={"en": "en", "pt": "nope"})


def _random_long_table(n: int, seed: int) -> pl.DataFrame:
    """Rows with repeated ids, empty and repeated texts, unknown languages: every rule of the sample."""
    import random

    r = random.Random(seed)
    words = ["a", "b", "c", " d ", "", "  ", "e f", "g"]
    return pl.DataFrame(
        {
            "parallel_id": [str(r.randint(0, n // 3)) if r.random() > 0.05 else None for _ in range(n)],
            "text": [r.choice(words) + str(r.randint(0, n // 12)) if r.random() > 0.1 else "" for _ in range(n)],
            "lang": [r.choice(["en", "eng_Latn", "pt", "por", "ky", "xx", None]) for _ in range(n)],
        }
    )


def _batched(df: pl.DataFrame, size: int) -> inputs.TableSource:
    def batches(cols):
        d = df.select([c for c in cols if c in df.columns])
        for i in range(0, df.height, size):
            yield d.slice(i, size)

    return inputs.TableSource("table", df.columns, batches)


def test_sample_is_the_same_however_the_table_is_cut():
    df = _random_long_table(600, 0)
    kw = dict(max_sentences=15, min_sentences=5, seed=3)
    whole = sample.sample_sets(inputs.table_source(df), "en", **kw)
    for size in (1, 7, 100):
        cut = sample.sample_sets(_batched(df, size), "en", **kw)
        assert cut[1] == whole[1]
        assert {c: (s.ids, s.pivot, s.texts, s.dropped) for c, s in cut[0].items()} == {
            c: (s.ids, s.pivot, s.texts, s.dropped) for c, s in whole[0].items()
        }
    sets = whole[0]
    assert set(sets) == {"por_Latn", "kir_Cyrl"} and all(len(s) == 15 for s in sets.values())
    assert all(s.dropped.get("over_max", 0) > 0 and s.dropped.get("duplicate", 0) > 0 for s in sets.values())
    # the same rule as on sets in memory: a set read whole, then sampled, gives the same pairs
    every = sample.sample_sets(inputs.table_source(df), "en", max_sentences=10**6, min_sentences=0, seed=3)[0]
    assert every["por_Latn"].dropped.get("over_max") is None
    raw = inputs.ParallelSet("por_Latn", every["por_Latn"].pivot, every["por_Latn"].texts, every["por_Latn"].ids)
    again, _ = sample.prepare({"por_Latn": raw}, 15, 5, seed=3)
    assert again["por_Latn"].ids == sets["por_Latn"].ids


def test_second_pass_reads_only_the_chosen_texts():
    df = _random_long_table(300, 1)
    seen = []

    def batches(cols):
        seen.append(list(cols))
        yield from _batched(df, 50).batches(cols)

    sets, _ = sample.sample_sets(inputs.TableSource("t", df.columns, batches), "en", max_sentences=5, min_sentences=2)
    assert len(seen) == 2 and seen[1] == ["text"]  # keys first, then the texts of the chosen rows
    got = sample._texts(_batched(df, 50), {"text": np.array([3, 120, 299])})
    assert set(got) == {("text", 3), ("text", 120), ("text", 299)}
    assert got[("text", 120)] == (df["text"][120] or "").strip()


def test_file_sources_read_in_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "BATCH_ROWS", 16)
    df = _random_long_table(200, 2)
    kw = dict(max_sentences=8, min_sentences=2, seed=0)
    want = sample.sample_sets(inputs.table_source(df), "en", **kw)
    (tmp_path / "data" / "default").mkdir(parents=True)
    df.slice(0, 120).write_parquet(tmp_path / "data" / "default" / "train-00000-of-00002.parquet", row_group_size=10)
    df.slice(120).write_parquet(tmp_path / "data" / "default" / "train-00001-of-00002.parquet")
    df.write_ndjson(tmp_path / "rows.jsonl")
    for src in (inputs.file_source(tmp_path), inputs.file_source(tmp_path / "rows.jsonl")):
        got = sample.sample_sets(src, "en", **kw)
        assert {c: s.ids for c, s in got[0].items()} == {c: s.ids for c, s in want[0].items()} and got[1] == want[1]
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{oops\n', encoding="utf-8")
    with pytest.raises(InputError, match="bad.jsonl: malformed JSON Lines"):
        sample.sample_sets(inputs.file_source(tmp_path / "bad.jsonl"), "en", text_column="text")
    (tmp_path / "x.csv").write_text("a", encoding="utf-8")
    with pytest.raises(InputError, match="expected a .parquet or .jsonl file"):
        inputs.file_source(tmp_path / "x.csv")


def test_prepare_drops_empty_duplicates_and_caps():
    s = ParallelSet(
        "por_Latn", ["a", "b", "", "a", "c", "d", "e"], ["x", "y", "z", "w", "y", "v", "u"], [str(i) for i in range(7)]
    )
    out, skipped = sample.prepare({"por_Latn": s}, max_sentences=3, min_sentences=2, seed=0)
    p = out["por_Latn"]
    assert p.dropped == {"empty": 1, "duplicate": 2, "over_max": 1}
    assert len(p) == 3 and set(p.ids) <= {"0", "1", "5", "6"}
    assert p.ids == sorted(p.ids)  # original order kept
    again, _ = sample.prepare({"por_Latn": s}, 3, 2, seed=0)
    assert again["por_Latn"].ids == p.ids
    _, skipped = sample.prepare({"por_Latn": s}, 10, 5)
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
        "fra_Latn": ParallelSet("fra_Latn", pivot, good, ids),
        "swh_Latn": ParallelSet("swh_Latn", pivot, bad, ids),
    }
    return sets, FakeEncoder(table)


def test_build_report_ranks_and_separates():
    sets, enc = _fake_sets()
    r = scores.build_report(sets, enc, pivot="en", bootstrap=200)
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
    assert fr["checksums"]["pivot"] == scores.checksum(sets["fra_Latn"].pivot)
    assert fr["checksums"]["pivot"] != fr["checksums"]["lang"]


def test_score_choice_aggregate_and_other_poolings():
    sets, enc = _fake_sets()
    r = scores.build_report(
        sets, enc, pivot="en", poolings=["mean", "last_token"], score="ranker_centered", aggregate="max", bootstrap=100
    )
    fr = r["languages"]["fra_Latn"]
    assert fr["score"] == pytest.approx(max(fr["ranker_centered"]), abs=1e-6)
    assert set(r["other_poolings"]) == {"last_token"}
    assert r["other_poolings"]["last_token"]["ranking"] == ["fra_Latn", "swh_Latn"]
    with pytest.raises(ValueError, match="unknown score"):
        scores.score_languages({}, sets, "eng_Latn", score="bleu")


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
        sets[code] = ParallelSet(code, pv, tx, [str(i) for i in range(40)])
    r = scores.build_report(sets, FakeEncoder(table), pivot="en", score="ranker_centered", bootstrap=300)
    assert r["score"]["paired_bootstrap"] is False  # different English sentences per language
    assert r["languages"]["fra_Latn"]["rank_range"] == [1, 2] == r["languages"]["ita_Latn"]["rank_range"]
    md = render.markdown(r)
    assert "1–2" in md and "cannot order" in md


def test_report_files_and_card_summary(tmp_path):
    sets, enc = _fake_sets()
    r = scores.build_report(sets, enc, pivot="en", bootstrap=50)
    report = render.as_report(r, "ls", link_dir="reports/")
    assert set(report.plots) == {"heatmap", "layers", "separation"} and report.data is r
    summary = render.write(r, tmp_path, "ls", link_dir="reports/")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ls.heatmap.png",
        "ls.json",
        "ls.layers.png",
        "ls.md",
        "ls.separation.png",
    ]
    data = json.loads((tmp_path / "ls.json").read_text())
    assert data["ranking"] == ["fra_Latn", "swh_Latn"] and data["pivot"] == "eng_Latn"
    assert "](reports/ls.heatmap.png)" in summary["markdown"] and "`reports/ls.json`" in summary["markdown"]
    assert summary["ranking"] == ["fra_Latn", "swh_Latn"] and set(summary["scores"]) == set(summary["ranking"])
    page = (tmp_path / "ls.md").read_text()
    assert page.startswith("# Language similarity") and "](ls.heatmap.png)" in page and "[ls.json](ls.json)" in page
    assert (tmp_path / "ls.heatmap.png").read_bytes()[:4] == b"\x89PNG"


def test_no_language_to_compare(tmp_path):
    r = scores.build_report({}, FakeEncoder({}), pivot="en", skipped={"por_Latn": "1 usable pairs < min_sentences=10"})
    s = render.write(r, tmp_path)
    assert r["ranking"] == [] and "No language had enough" in s["markdown"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["language_similarity.json", "language_similarity.md"]


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
    # a model outside the recipe folder is named by its folder name (its revision hash pins the content)
    assert res.manifest["models"]["reports.language_similarity.hidden_states"]["id"] == Path(model).name
    assert "reports/language_similarity.heatmap.png" in res.manifest["reports"]
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
