"""sample.v1: quotas (caps, minimums, short strata, fraction, total), exactness against a brute-force
"k smallest hashes", determinism under reordering and resharding, streaming (three passes over batches,
never the whole table), rejects, and a recipe run with the report in the card."""

from __future__ import annotations

import hashlib
import json
import random

import polars as pl
import pytest

from mlbuild.errors import RecipeError
from mlbuild.pipeline import checkpoint as ck
from mlbuild.pipeline.base import ROW_ID, RunContext, StepOutput, collect
from mlbuild.pipeline.runner import Runner
from mlbuild.pipeline.tables import TableRef
from mlbuild.recipe import load_recipe
from mlbuild.steps.sample import Sample, SampleParams, quotas


class Batches:
    """A table read batch by batch that counts its passes and refuses to be read whole."""

    def __init__(self, frames: list[pl.DataFrame]):
        self.frames = frames
        self.passes = 0
        self.rows = sum(f.height for f in frames)

    def iter_batches(self, columns=None):
        self.passes += 1
        for f in self.frames:
            yield f if columns is None else f.select(columns)

    def read(self, columns=None):
        raise AssertionError("sample.v1 must stream, not read the whole table")


def table(sizes: dict[str, int], batch: int = 97, shuffle: int | None = None) -> list[pl.DataFrame]:
    rows = [(f"{lang}-{i}", lang, f"text {i}") for lang, n in sizes.items() for i in range(n)]
    if shuffle is not None:
        random.Random(shuffle).shuffle(rows)
    df = pl.DataFrame(rows, schema={ROW_ID: pl.Utf8, "lang": pl.Utf8, "text": pl.Utf8}, orient="row")
    return [df.slice(i, batch) for i in range(0, df.height, batch)]


def run(frames, seed: int = 0, **params) -> tuple[StepOutput, dict, Batches]:
    t = Batches(frames)
    step = Sample(SampleParams(**params), RunContext(seed=seed))
    outs: list[StepOutput] = []
    stats = step.run_global(t, outs.append)
    return collect(outs), stats, t


def test_quota_rules():
    counts = {"big": 1000, "mid": 300, "small": 40, "tiny": 5}
    p = SampleParams(column="lang", max_per_value=200, min_per_value=50, fraction=0.5)
    q = quotas(counts, p)
    assert q["big"] == (200, "capped")  # 500 wanted, capped at 200
    assert q["mid"] == (150, "proportional")
    assert q["small"] == (40, "short")  # fewer rows than the minimum: all kept
    assert q["tiny"] == (5, "short")
    q = quotas({"a": 120, "b": 30}, SampleParams(column="lang", min_per_value=25, fraction=0.1))
    assert q == {"a": (25, "raised"), "b": (25, "raised")}
    assert quotas({"a": 10}, SampleParams(max_per_value=50)) == {"a": (10, "all")}


@pytest.mark.parametrize("total", [12, 77, 500, 1000, 1044])
def test_total_is_met_exactly_and_in_proportion(total):
    counts = {"a": 1000, "b": 300, "c": 40, "d": 4}
    q = quotas(counts, SampleParams(column="lang", total=total, max_per_value=700, min_per_value=3))
    kept = {s: v[0] for s, v in q.items()}
    assert sum(kept.values()) == total
    assert all(kept[s] <= min(700, counts[s]) for s in counts) and all(kept[s] >= 3 for s in counts)
    if total == 500:  # about 37% of each stratum
        assert abs(kept["a"] / 1000 - kept["b"] / 300) < 0.01


def test_minimums_win_over_a_smaller_total():
    q = quotas({"a": 1000, "b": 300, "c": 40, "d": 4}, SampleParams(column="lang", total=1, min_per_value=3))
    assert {s: v for s, (v, _) in q.items()} == {"a": 3, "b": 3, "c": 3, "d": 3}
    assert q["a"][1] == "raised"


def test_total_beyond_caps_keeps_what_caps_allow():
    q = quotas({"a": 100, "b": 10}, SampleParams(column="lang", total=1000, max_per_value=50))
    assert q == {"a": (50, "capped"), "b": (10, "all")}


def _k_smallest(frames, seed: int, k_of: dict[str, int]) -> set[str]:
    """Brute force: per stratum the k rows with the smallest seeded hashes of their row id."""
    rows = pl.concat(frames)
    salt = str(seed).encode()
    h = {
        r: int.from_bytes(hashlib.blake2b(r.encode(), digest_size=8, key=salt).digest(), "big")
        for r in rows[ROW_ID].to_list()
    }
    keep: set[str] = set()
    for lang, k in k_of.items():
        ids = rows.filter(pl.col("lang") == lang)[ROW_ID].to_list()
        keep |= set(sorted(ids, key=lambda r: (h[r], r))[:k])
    return keep


def test_exact_k_smallest_hashes_per_stratum_and_nothing_lost():
    frames = table({"eng_Latn": 3000, "kir_Cyrl": 700, "swh_Latn": 30}, batch=250)
    out, stats, t = run(frames, seed=5, column="lang", max_per_value=1000, min_per_value=100, fraction=0.5)
    assert t.passes == 3
    s = stats["sample"]["strata"]
    assert s["eng_Latn"] == {"rows": 3000, "kept": 1000, "rule": "capped"}
    assert s["kir_Cyrl"] == {"rows": 700, "kept": 350, "rule": "proportional"}
    assert s["swh_Latn"] == {"rows": 30, "kept": 30, "rule": "short"}
    kept = set(out.rows[ROW_ID].to_list())
    assert kept == _k_smallest(frames, 5, {"eng_Latn": 1000, "kir_Cyrl": 350, "swh_Latn": 30})
    assert out.rows.height + out.rejects.height == 3730
    assert set(out.rejects["reason"]) == {"not_sampled"}
    assert (
        out.rejects.filter(pl.col("lang") == "eng_Latn")["detail"][0] == "stratum eng_Latn: 1000 of 3000 kept (capped)"
    )
    assert out.rows.columns == [ROW_ID, "lang", "text"]


def test_same_seed_same_rows_whatever_the_order_and_batches():
    sizes = {"a": 900, "b": 250}
    ref, _, _ = run(table(sizes, batch=100), seed=3, column="lang", max_per_value=200)
    again, _, _ = run(table(sizes, batch=37, shuffle=11), seed=3, column="lang", max_per_value=200)
    other, _, _ = run(table(sizes, batch=100), seed=4, column="lang", max_per_value=200)
    ids = set(ref.rows[ROW_ID].to_list())
    assert ids == set(again.rows[ROW_ID].to_list())
    assert ids != set(other.rows[ROW_ID].to_list())
    # kept rows come out in input order
    order = [r for f in table(sizes, batch=37, shuffle=11) for r in f[ROW_ID].to_list() if r in ids]
    assert again.rows[ROW_ID].to_list() == order


def test_seed_defaults_to_the_dataset_seed_and_key_column_ranks_alike():
    frames = table({"a": 300, "b": 300})
    frames = [f.with_columns(pl.col(ROW_ID).str.split("-").list.last().alias("pid")) for f in frames]
    out, stats, _ = run(frames, seed=9, column="lang", max_per_value=40, key_column="pid")
    assert stats["sample"]["seed"] == 9
    by = {lang: set(out.rows.filter(pl.col("lang") == lang)["pid"].to_list()) for lang in ("a", "b")}
    assert by["a"] == by["b"] and len(by["a"]) == 40  # the same parallel items in both languages


def test_null_stratum_and_no_column():
    df = pl.DataFrame({ROW_ID: [f"r{i}" for i in range(50)], "lang": ["x"] * 25 + [None] * 25})
    _, stats, _ = run([df], column="lang", max_per_value=10)
    assert stats["sample"]["strata"]["<null>"] == {"rows": 25, "kept": 10, "rule": "capped"}
    out, stats, _ = run([df], fraction=0.2)
    assert out.rows.height == 10 and list(stats["sample"]["strata"]) == ["all"]


def test_recipe_errors_all_at_once(write_recipe):
    path = write_recipe(
        RECIPE.replace("max_per_value = 3", "fraction = 0.5\ntotal = 3\nmin_per_value = 9\nmax_per_value = 2"),
        {"rows.jsonl": _lines(10)},
    )
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    assert "fraction or total" in str(e.value) and "more than max_per_value" in str(e.value)
    bad = write_recipe(RECIPE.replace("max_per_value = 3", "max_per_value = 0"), {"rows.jsonl": _lines(10)})
    with pytest.raises(RecipeError, match="max_per_value"):
        load_recipe(bad)


RECIPE = """
[dataset]
name = "sampled"
version = "0.1.0"
license = "cc-by-4.0"

[source]
uses = "jsonl.v1"
path = "rows.jsonl"
id_column = "id"

[[steps]]
uses = "sample.v1"
column = "lang"
max_per_value = 3
seed = 1
"""


def _lines(n: int) -> str:
    langs = ["en", "pt", "en", "en", "ky"]
    return "".join(json.dumps({"id": f"q{i}", "text": f"text {i}", "lang": langs[i % 5]}) + "\n" for i in range(n))


def test_recipe_run_streams_shards_and_reports(write_recipe, tmp_path):
    path = write_recipe(RECIPE, {"rows.jsonl": _lines(40)})
    res = Runner(load_recipe(path), tmp_path / "out", quiet=True, shard_rows=7).run()
    m = res.manifest
    step = next(s for s in m["steps"] if s["uses"] == "sample.v1")
    assert step["rows_in"] == 40 and step["rows_out"] == 9 and step["dropped"] == {"not_sampled": 31}
    card = (res.dataset_dir / "README.md").read_text()
    assert "Sampled 9 of 40 rows by `lang`, seed 1 (max_per_value 3)" in card
    rejects = [json.loads(x) for x in (res.dataset_dir / "rejects").glob("*sample*.jsonl").__next__().open()]
    assert len(rejects) == 31 and {r["reason"] for r in rejects} == {"not_sampled"}
    assert (res.dataset_dir / "reports" / "sample.md").exists()


def test_reads_a_real_table_ref_in_passes(tmp_path):
    d = tmp_path / "stage"
    d.mkdir()
    w = ck.ShardWriter(d, "t", ck.ShardTarget(rows=64))
    for f in table({"a": 500, "b": 90}, batch=50):
        w.emit(StepOutput(f))
    ck.mark_stage_done(d, w.close(), {"rows": 590})
    ref = TableRef.of_stage(d)
    assert len(ref.shards) > 5
    step = Sample(SampleParams(column="lang", max_per_value=60), RunContext(seed=2))
    outs: list[StepOutput] = []
    step.run_global(ref, outs.append)
    out = collect(outs)
    assert out.rows.height == 120 and out.rejects.height == 470
    assert set(out.rows[ROW_ID].to_list()) == _k_smallest(table({"a": 500, "b": 90}), 2, {"a": 60, "b": 60})
