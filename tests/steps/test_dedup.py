"""dedup.v1: planted exact, near, semantic and cross-lingual duplicates; groups of translations kept or
dropped whole; rejects naming the kept row; keep rules; the same output whatever the shard size; the
vectorised MinHash equal to datasketch's; recipe runs through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mlbuild.cli import main
from mlbuild.dedup import minhash
from mlbuild.dedup.text import normalize, shingle_hash, shingles
from mlbuild.pipeline.params import parse
from mlbuild.pipeline.runner import Runner
from mlbuild.recipe import load_recipe
from mlbuild.steps.dedup import Dedup, DedupParams

HEAD = """
[dataset]
name = "dd"
version = "1.0.0"
license = "cc-by-4.0"
description = "Deduplicated."

[source]
uses = "jsonl.v1"
path = "rows.jsonl"
text_columns = ["text"]
id_column = "id"

[[steps]]
uses = "dedup.v1"
column = "text"
"""

BASE = "The old lighthouse keeper walked along the rocky shore every morning before dawn"
DISTINCT = [
    "Trains to the northern valley leave from platform nine on weekdays",
    "A recipe for bread needs flour water salt and a little patience",
    "The committee postponed its vote on the new harbour budget again",
    "Children in the village learn to swim in the cold mountain lake",
    "Her grandfather repaired clocks in a small shop near the cathedral",
    "Solar panels on the school roof now cover half of its electricity",
]


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def build(write_recipe, tmp_path, rows, extra: str = "", shard_rows: int = 50_000, name: str = "recipe.toml"):
    """Run the recipe; return (kept rows, rejects by row id, report data, dataset dir)."""
    path = write_recipe(HEAD + extra, {"rows.jsonl": jsonl(rows)}, name=name)
    res = Runner(load_recipe(path), tmp_path / f"out-{name}-{shard_rows}", quiet=True, shard_rows=shard_rows).run()
    files = sorted((res.dataset_dir / "data").rglob("*.parquet"))
    kept = pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()
    rejects = {}
    for f in sorted((res.dataset_dir / "rejects").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            rejects[r["row_id"]] = r
    report = json.loads((res.dataset_dir / "reports" / "dedup.json").read_text())
    return kept, rejects, report, res.dataset_dir


def test_exact_and_near_duplicates_go_to_rejects_naming_the_kept_row(write_recipe, tmp_path):
    rows = [{"id": "base", "text": BASE, "lang": "en"}]
    rows += [{"id": f"x{i}", "text": t, "lang": "en"} for i, t in enumerate(DISTINCT)]
    rows += [
        # exact after normalisation: case, punctuation, white space, NFKC (full-width letters), zero-width space
        {"id": "case", "text": BASE.upper(), "lang": "en"},
        {
            "id": "punct",
            "text": "The old lighthouse keeper, walked along the rocky shore - every morning before dawn!",
            "lang": "en",
        },  # noqa: E501
        {
            "id": "space",
            "text": "  The old  lighthouse keeper walked\talong the rocky shore every morning before\u200bdawn ",
            "lang": "en",
        },  # noqa: E501
        {"id": "nfkc", "text": BASE.replace("lighthouse", "ｌｉｇｈｔｈｏｕｓｅ"), "lang": "en"},
        # near: one word changed, one word dropped
        {"id": "word", "text": BASE.replace("rocky", "sandy"), "lang": "en"},
        {"id": "drop", "text": BASE.replace("old ", ""), "lang": "en"},
        # one word shared with base only: distinct
        {"id": "other", "text": "The keeper of the museum opened the doors at nine every morning", "lang": "en"},
    ]
    words = 'shingle = "word"\nshingle_size = 2\nnear_threshold = 0.55\n'
    kept, rej, rep, ds = build(write_recipe, tmp_path, rows, 'methods = ["exact", "near"]\n' + words)
    assert set(kept["row_id"]) == {"base", "other", *(f"x{i}" for i in range(len(DISTINCT)))}
    for rid in ("case", "punct", "space", "nfkc"):
        assert rej[rid]["reason"] == "exact_duplicate", rid
        assert rej[rid]["detail"] == "exact duplicate of row 'base'"
        assert rej[rid]["row"]["text_dup_of"] == "base"
    for rid in ("word", "drop"):
        assert rej[rid]["reason"] == "near_duplicate", rid
        assert rej[rid]["detail"].startswith("near duplicate of row 'base' (jaccard 0.")
        assert rej[rid]["row"]["text_dup_of"] == "base"
    assert "text_dup_of" not in kept.columns
    assert rep["pairs"]["exact"] == 4 and rep["pairs"]["near"] >= 2
    assert rep["dropped_by_lang"] == {"en": {"exact_duplicate": 4, "near_duplicate": 2}}
    card = (ds / "README.md").read_text()
    assert "Deduplicated `text` across languages by exact (normalised text), near (Jaccard >= 0.55" in card


def test_near_threshold_is_the_exact_jaccard(write_recipe, tmp_path):
    # 'word' shares 10 of 12 word bigrams with base (one word changed in the middle: Jaccard 10/14 = 0.714)
    rows = [{"id": "base", "text": BASE}, {"id": "word", "text": BASE.replace("rocky", "sandy")}]
    kept, rej, _, _ = build(
        write_recipe, tmp_path, rows, 'methods = ["near"]\nshingle = "word"\nshingle_size = 2\nnear_threshold = 0.75\n'
    )
    assert kept.height == 2 and not rej
    kept, rej, _, _ = build(
        write_recipe,
        tmp_path,
        rows,
        'methods = ["near"]\nshingle = "word"\nshingle_size = 2\nnear_threshold = 0.7\n',
        name="b.toml",
    )
    assert kept["row_id"].to_list() == ["base"] and "jaccard 0.714" in rej["word"]["detail"]


@pytest.mark.parametrize(
    "keep, expect",
    [("first", "a"), ("longest", "c"), ("score", "b")],
)
def test_keep_rules(write_recipe, tmp_path, keep, expect):
    rows = [
        {"id": "a", "text": BASE, "score": 0.2},
        {"id": "b", "text": BASE + ".", "score": 0.9},
        {"id": "c", "text": BASE + " too", "score": 0.5},
        {"id": "d", "text": DISTINCT[0], "score": 1.0},
    ]
    extra = f'methods = ["exact", "near"]\nkeep = "{keep}"\n' + ('score_column = "score"\n' if keep == "score" else "")
    kept, rej, _, _ = build(write_recipe, tmp_path, rows, extra)
    assert set(kept["row_id"]) == {expect, "d"}
    for rid in {"a", "b", "c"} - {expect}:
        assert rej[rid]["row"]["text_dup_of"] == expect
        assert f"of row '{expect}'" in rej[rid]["detail"]


def test_groups_of_translations_stay_or_leave_whole(write_recipe, tmp_path):
    rows = [
        # group g1: a text and its translations (the German is the same as the English: never a duplicate)
        {"id": "g1/en", "text": BASE, "lang": "en", "parallel_id": "g1"},
        {
            "id": "g1/de",
            "text": "Der alte Leuchtturmwärter ging jeden Morgen am felsigen Ufer",
            "lang": "de",
            "parallel_id": "g1",
        },  # noqa: E501
        {"id": "g1/xx", "text": BASE, "lang": "xx", "parallel_id": "g1"},
        # group g2: its English copies g1's, its French is new: g2 leaves whole
        {"id": "g2/en", "text": BASE.lower() + "!", "lang": "en", "parallel_id": "g2"},
        {
            "id": "g2/fr",
            "text": "Le vieux gardien du phare marchait le long du rivage",
            "lang": "fr",
            "parallel_id": "g2",
        },
        # group g3: distinct
        {"id": "g3/en", "text": DISTINCT[1], "lang": "en", "parallel_id": "g3"},
        {
            "id": "g3/fr",
            "text": "Une recette de pain demande de la farine et de la patience",
            "lang": "fr",
            "parallel_id": "g3",
        },  # noqa: E501
    ]
    kept, rej, rep, ds = build(write_recipe, tmp_path, rows, 'methods = ["exact", "near"]\n')
    assert set(kept["row_id"]) == {"g1/en", "g1/de", "g1/xx", "g3/en", "g3/fr"}
    assert rej["g2/en"]["reason"] == "exact_duplicate" and rej["g2/en"]["row"]["text_dup_of"] == "g1/en"
    assert rej["g2/fr"]["reason"] == "duplicate_group"
    assert rej["g2/fr"]["detail"] == "left with its parallel_id group 'g2', a duplicate of row 'g1/en'"
    assert rej["g2/fr"]["row"]["text_dup_of"] == "g1/en"
    assert "1 groups of translations left whole" in (ds / "README.md").read_text()
    # keep = longest picks the group whose longest text is longest: g2 (its English has the '!')
    kept, rej, _, _ = build(write_recipe, tmp_path, rows, 'methods = ["exact"]\nkeep = "longest"\n', name="l.toml")
    assert {"g2/en", "g2/fr"} <= set(kept["row_id"]) and not {"g1/en", "g1/de", "g1/xx"} & set(kept["row_id"])
    # no group column: g1/xx is an exact duplicate of g1/en
    kept, rej, _, _ = build(write_recipe, tmp_path, rows, 'methods = ["exact"]\ngroup_column = ""\n', name="n.toml")
    assert rej["g1/xx"]["row"]["text_dup_of"] == "g1/en" and "g2/fr" in set(kept["row_id"])


def test_within_each_language(write_recipe, tmp_path):
    rows = [
        {"id": "en", "text": "Radio", "lang": "en"},
        {"id": "de", "text": "Radio", "lang": "de"},
        {"id": "de2", "text": "radio!", "lang": "de"},
    ]
    kept, rej, _, _ = build(write_recipe, tmp_path, rows, 'methods = ["exact"]\ncross_lingual = false\n')
    assert set(kept["row_id"]) == {"en", "de"} and rej["de2"]["row"]["text_dup_of"] == "de"
    kept, rej, _, _ = build(write_recipe, tmp_path, rows, 'methods = ["exact"]\n', name="x.toml")
    assert kept["row_id"].to_list() == ["en"]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_semantic_and_cross_lingual_duplicates_from_vectors(write_recipe, tmp_path):
    rng = np.random.default_rng(0)
    base = unit(rng.normal(size=(6, 16)))
    near = unit(base[0] + 0.1 * rng.normal(size=16)[None, :])[0]  # cosine about 0.99 with base[0]
    rows = [{"id": f"r{i}", "text": f"text {i}", "lang": "en", "embedding": base[i].tolist()} for i in range(6)]
    rows.append({"id": "same-lang", "text": "a paraphrase", "lang": "en", "embedding": near.tolist()})
    rows.append({"id": "other-lang", "text": "une traduction", "lang": "fr", "embedding": base[3].tolist()})
    extra = 'methods = ["semantic"]\nengine = "precomputed"\nsemantic_threshold = 0.95\ndevice = "cpu"\n'
    kept, rej, rep, _ = build(write_recipe, tmp_path, rows, extra)
    assert set(kept["row_id"]) == {f"r{i}" for i in range(6)}
    assert rej["same-lang"]["reason"] == "semantic_duplicate" and rej["same-lang"]["row"]["text_dup_of"] == "r0"
    assert rej["other-lang"]["reason"] == "cross_lingual_duplicate"
    assert rej["other-lang"]["detail"] == "cross-lingual duplicate of row 'r3' (cosine 1.000)"
    # only pairs in different languages
    extra += 'semantic_pairs = "cross_lingual"\n'
    kept, rej, rep, _ = build(write_recipe, tmp_path, rows, extra, name="c.toml")
    assert set(rej) == {"other-lang"} and "same-lang" in set(kept["row_id"])
    # a row's own translation (same parallel_id) is never its duplicate
    rows[-1]["parallel_id"] = "p3"
    rows[3]["parallel_id"] = "p3"
    kept, rej, rep, _ = build(write_recipe, tmp_path, rows, extra, name="g.toml")
    assert not rej and kept.height == 8


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> str:
    from helpers_tiny_bert import build_tiny_bert

    return str(build_tiny_bert(tmp_path_factory.mktemp("enc") / "tiny"))


def test_semantic_with_an_embedder(write_recipe, tmp_path, tiny_encoder):
    rows = [
        {"id": "a", "text": "obama visited paris", "lang": "en"},
        {"id": "b", "text": "Obama visited PARIS", "lang": "pt"},  # the same tokens: cosine 1
        {"id": "c", "text": "maria vive em lisboa", "lang": "pt"},
    ]
    extra = f'methods = ["semantic"]\nengine = "transformers"\nmodel = "{tiny_encoder}"\nsemantic_threshold = 0.999\n'
    extra += 'device = "cpu"\n'
    kept, rej, rep, ds = build(write_recipe, tmp_path, rows, extra)
    assert set(kept["row_id"]) == {"a", "c"} and rej["b"]["reason"] == "cross_lingual_duplicate"
    man = json.loads((ds / "manifest.json").read_text())
    assert tiny_encoder in json.dumps(man)


def test_flag_and_keep_modes(write_recipe, tmp_path):
    rows = [{"id": "a", "text": BASE}, {"id": "b", "text": BASE.upper()}, {"id": "c", "text": DISTINCT[0]}]
    kept, rej, _, _ = build(write_recipe, tmp_path, rows, 'methods = ["exact"]\non_fail = "flag"\n')
    assert not rej and kept.height == 3
    assert kept["text_dup_ok"].to_list() == [True, False, True]
    assert kept["text_dup_reason"].to_list() == [None, "exact_duplicate", None]
    assert kept["text_dup_of"].to_list() == [None, "a", None]
    kept, rej, rep, _ = build(write_recipe, tmp_path, rows, 'methods = ["exact"]\non_fail = "keep"\n', name="k.toml")
    assert not rej and kept.height == 3 and "text_dup_of" not in kept.columns
    assert rep["failed"] == {"exact_duplicate": 1}


def _planted(n: int = 120, seed: int = 3) -> list[dict]:
    rnd = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(300)]
    rows = []
    for i in range(n):
        t = " ".join(rnd.choice(words, 12))
        rows.append({"id": f"r{i}", "text": t, "lang": ["en", "de"][i % 2], "parallel_id": f"p{i // 2}"})
        if i % 7 == 0:
            rows.append({"id": f"e{i}", "text": t.upper(), "lang": "en", "parallel_id": f"q{i}"})
        if i % 5 == 0:
            w = t.split()
            w[6] = "changed"
            rows.append({"id": f"n{i}", "text": " ".join(w), "lang": "de"})
    return rows


def test_same_output_whatever_the_shard_size(write_recipe, tmp_path):
    rows = _planted()
    extra = 'methods = ["exact", "near"]\nkeep = "longest"\n'
    a_kept, a_rej, a_rep, _ = build(write_recipe, tmp_path, rows, extra)
    b_kept, b_rej, b_rep, _ = build(write_recipe, tmp_path, rows, extra, shard_rows=7, name="small.toml")
    assert a_kept.equals(b_kept)
    assert {k: (v["reason"], v["detail"]) for k, v in a_rej.items()} == {
        k: (v["reason"], v["detail"]) for k, v in b_rej.items()
    }
    assert len(a_rej) >= 30 and a_rep["pairs"] == b_rep["pairs"]


def test_signatures_equal_datasketch():
    ds = pytest.importorskip("datasketch")
    texts = pl.Series([BASE, DISTINCT[0], "short", "", "日本語のテキストです", BASE.replace("rocky", "sandy")])
    normed = normalize(texts)
    for kind, size in [("word", 2), ("char", 5), ("word", 1)]:
        h, off = shingles(normed, kind, size)
        sig = minhash.signatures(h, off, minhash.permutations(64, 7), block=5, threads=2)
        for i, t in enumerate(normed.to_list()):
            if kind == "char":
                grams = [t[j : j + size] for j in range(max(1, len(t) - size + 1))] if t else []
            else:
                w = t.split()
                grams = [" ".join(w[j : j + size]) for j in range(max(1, len(w) - size + 1))] if w else []
            assert sorted(h[off[i] : off[i + 1]].tolist()) == sorted(shingle_hash(g) for g in grams)
            m = ds.MinHash(num_perm=64, seed=7, hashfunc=shingle_hash)
            for g in grams:
                m.update(g)
            assert np.array_equal(sig[i], m.hashvalues.astype(np.uint32)), (kind, t)


def test_lsh_split_is_datasketch_s():
    ds = pytest.importorskip("datasketch")
    lsh = ds.MinHashLSH(threshold=0.55, num_perm=128, weights=(0.05, 0.95))
    assert minhash.lsh_params(0.55, 128) == (lsh.b, lsh.r)


def test_bad_params_are_named():
    for raw, where in [
        ({"column": "text", "keep": "score"}, "score_column"),
        ({"column": "text", "bands": 40, "band_rows": 4}, "bands"),
        ({"column": "text", "semantic_pairs": "cross_lingual", "cross_lingual": False}, "semantic_pairs"),
    ]:
        params, problems = parse(DedupParams, raw, "steps[0]")
        assert not problems
        assert where in [w for w, _ in Dedup.check(params, ["row_id", "text"])]
    _, problems = parse(DedupParams, {"column": "text", "near_threshold": 1.5}, "steps[0]")
    assert problems and "near_threshold" in str(problems)
    params, _ = parse(DedupParams, {"column": "text", "cross_lingual": False}, "steps[0]")
    assert [w for w, _ in Dedup.check(params, ["row_id", "text"])] == ["lang_column"]


def test_cli_run_and_bad_recipe_exit_2(write_recipe, tmp_path):
    rows = [{"id": "a", "text": BASE}, {"id": "b", "text": BASE + "!"}, {"id": "c", "text": DISTINCT[0]}]
    path = write_recipe(HEAD + 'methods = ["exact", "near"]\n', {"rows.jsonl": jsonl(rows)})
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    ds = tmp_path / "out" / "dd" / "1.0.0"
    assert pl.read_parquet(next((ds / "data").rglob("*.parquet")))["row_id"].to_list() == ["a", "c"]
    assert (ds / "reports" / "dedup.md").exists()
    bad = write_recipe(HEAD + 'keep = "score"\nnear_threshold = 2\n', name="bad.toml")
    p = subprocess.run(
        [sys.executable, "-m", "mlbuild.cli", "run", str(bad), "--out", str(tmp_path / "o2")],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert p.returncode == 2 and "near_threshold" in p.stderr and "Traceback" not in p.stderr


def test_no_chains_a_row_leaves_only_for_a_row_it_resembles(write_recipe, tmp_path):
    # A ~ B (cosine 0.87), B ~ C (0.87), A and C far apart (0.5): B leaves for A, C stays
    ang = np.radians([0, 30, 60, 120])
    vec = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    rows = [{"id": k, "text": k, "lang": "en", "embedding": v.tolist()} for k, v in zip("ABCD", vec)]
    extra = 'methods = ["semantic"]\nengine = "precomputed"\nsemantic_threshold = 0.85\ndevice = "cpu"\n'
    kept, rej, rep, _ = build(write_recipe, tmp_path, rows, extra)
    assert kept["row_id"].to_list() == ["A", "C", "D"] and rej["B"]["row"]["text_dup_of"] == "A"
    # keep = longest: B's text is longest, so B stays and both A and C leave for it
    rows[1]["text"] = "B longest"
    kept, rej, rep, _ = build(write_recipe, tmp_path, rows, extra + 'keep = "longest"\n', name="l.toml")
    assert kept["row_id"].to_list() == ["B", "D"] and {rej[k]["row"]["text_dup_of"] for k in "AC"} == {"B"}
