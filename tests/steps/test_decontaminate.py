"""decontaminate.v1: rows overlapping evaluation sets given as a JSON Lines file, a BEIR folder, a dataset
built by mlbuild and a Hugging Face dataset folder are removed (13-gram overlap, short questions
contained whole, translated copies by embedding similarity); the report counts matches per set and
test with examples, and the card names every set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mlbuild.pipeline.params import parse
from mlbuild.pipeline.runner import Runner
from mlbuild.recipe import load_recipe
from mlbuild.steps.decontaminate import Decontaminate, DecontaminateParams

HEAD = """
[dataset]
name = "{name}"
version = "1.0.0"
license = "cc-by-4.0"
description = "Rows."

[source]
uses = "jsonl.v1"
path = "{rows}"
text_columns = ["text"]
id_column = "id"
"""

LONG_QA = (
    "Which river flows through the capital city of the country that hosted the first modern olympic games "
    "in the year eighteen ninety six"
)
SHORT_Q = "who painted the night watch"
UNJUDGED_Q = "how tall is the eiffel tower"
BUILT = "The museum opens at nine and closes at five except on public holidays in winter"


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def eval_files() -> dict[str, str]:
    """A JSON Lines file of questions and a BEIR folder (one query judged in test, one not)."""
    return {
        "eval/qa.jsonl": jsonl([{"id": "qa1", "question": LONG_QA}, {"id": "qa2", "question": "What is love"}]),
        "eval/beir/queries.jsonl": jsonl(
            [{"_id": "b1", "text": SHORT_Q}, {"_id": "b2", "text": UNJUDGED_Q}, {"_id": "b3", "text": "hi"}]
        ),
        "eval/beir/corpus.jsonl": jsonl([{"_id": "d1", "title": "", "text": "Rembrandt painted it in 1642."}]),
        "eval/beir/qrels/test.tsv": "query-id\tcorpus-id\tscore\nb1\td1\t1\nb3\td1\t1\n",
        "eval/beir/qrels/dev.tsv": "query-id\tcorpus-id\tscore\nb2\td1\t1\n",
    }


@pytest.fixture
def built_set(tmp_path) -> Path:
    """A dataset built by ``mlbuild run`` (no steps) holding BUILT."""
    d = tmp_path / "built-src"
    d.mkdir()
    (d / "rows.jsonl").write_text(jsonl([{"id": "m1", "text": BUILT}, {"id": "m2", "text": "Another sentence here"}]))
    (d / "recipe.toml").write_text(HEAD.format(name="evalbuilt", rows="rows.jsonl"))
    res = Runner(load_recipe(d / "recipe.toml"), tmp_path / "built", quiet=True).run()
    return res.dataset_dir


TRAIN = [
    {"id": "long", "text": "Quiz night: " + LONG_QA.upper() + "? Answer below.", "lang": "en"},
    {"id": "short", "text": "Trivia. Who painted 'The Night Watch'? Many people ask.", "lang": "en"},
    {"id": "unjudged", "text": "How tall is the Eiffel tower, really?", "lang": "en"},
    {"id": "built", "text": "Note: " + BUILT.lower(), "lang": "en"},
    # twelve words of the long question: no 13-gram in common
    {"id": "twelve", "text": " ".join(LONG_QA.split()[:12]) + " and other things entirely", "lang": "en"},
    {"id": "clean", "text": "The night shift at the museum painted the walls", "lang": "en"},
    {"id": "love", "text": "What is love, baby don't hurt me", "lang": "en"},  # 'What is love' has 3 words
]


def run(write_recipe, tmp_path, rows, step: str, name: str = "recipe.toml"):
    files = {"rows.jsonl": jsonl(rows), **eval_files()}
    path = write_recipe(HEAD.format(name="train", rows="rows.jsonl") + step, files, name=name)
    res = Runner(load_recipe(path), tmp_path / f"out-{name}", quiet=True).run()
    kept = pl.concat([pl.read_parquet(f) for f in sorted((res.dataset_dir / "data").rglob("*.parquet"))])
    rejects = {}
    for f in sorted((res.dataset_dir / "rejects").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            rejects[r["row_id"]] = r
    report = json.loads((res.dataset_dir / "reports" / "decontaminate.json").read_text())
    return kept, rejects, report, res.dataset_dir


def test_ngram_overlap_against_a_file_a_beir_folder_and_a_built_dataset(write_recipe, tmp_path, built_set):
    step = f"""
[[steps]]
uses = "decontaminate.v1"
column = "text"
against = ["eval/qa.jsonl", "eval/beir", {{ path = "{built_set}", name = "built" }}]
cross_lingual = false
"""
    kept, rej, rep, ds = run(write_recipe, tmp_path, TRAIN, step)
    assert set(kept["row_id"]) == {"unjudged", "twelve", "clean"}
    assert rej["long"]["reason"] == "ngram_overlap"
    assert rej["long"]["detail"].startswith("11 shared 13-grams with qa.jsonl item 'qa1'")
    assert rej["short"]["detail"].startswith("1 shared 13-gram with beir item 'b1'")
    assert rej["built"]["detail"].startswith("3 shared 13-grams with built item 'm1'")
    assert rej["love"]["detail"].startswith("1 shared 13-gram with qa.jsonl item 'qa2'")
    assert rep["matched"] == {
        "qa.jsonl": {"ngram": 2, "embedding": 0, "rows": 2},
        "beir": {"ngram": 1, "embedding": 0, "rows": 1},
        "built": {"ngram": 1, "embedding": 0, "rows": 1},
    }
    assert rep["sets"]["beir"].endswith("(beir, 2 texts, queries of split test)")
    assert rep["sets"]["built"].endswith("(mlbuild, 2 texts, 1 files)")
    assert rep["examples"]["beir"]["ngram"][0]["item"] == "b1"
    card = (ds / "README.md").read_text()
    assert "Decontaminated `text` against 3 evaluation sets: `qa.jsonl`" in card and "`beir`" in card
    md = (ds / "reports" / "decontaminate.md").read_text()
    assert "| beir | 1 | 1 | 0 |" in md and "## qa.jsonl: ngram matches" in md


def test_min_words_and_ngram_size(write_recipe, tmp_path):
    step = """
[[steps]]
uses = "decontaminate.v1"
column = "text"
against = ["eval/qa.jsonl"]
cross_lingual = false
ngram = 8
min_words = 4
"""
    kept, rej, _, _ = run(write_recipe, tmp_path, TRAIN, step)
    # 'twelve' now shares 8-grams; 'What is love' (3 words) is below min_words
    assert set(rej) == {"long", "twelve"}


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_translated_copies_by_precomputed_embeddings(write_recipe, tmp_path):
    rng = np.random.default_rng(1)
    v = unit(rng.normal(size=(5, 8)))
    evalset = [{"id": f"e{i}", "text": f"question {i}", "emb": v[i].tolist()} for i in range(3)]
    rows = [
        {"id": "de", "text": "Frage eins auf Deutsch", "embedding": unit(v[1:2] + 0.05 * v[3:4])[0].tolist()},
        {"id": "fr", "text": "question deux en français", "embedding": v[2].tolist()},
        {"id": "other", "text": "sans rapport", "embedding": v[4].tolist()},
        {"id": "en-para", "text": "an English paraphrase", "embedding": v[0].tolist()},
    ]
    for r, lang in zip(rows, ["de", "fr", "fr", "en"]):
        r["lang"] = lang
    step = """
[[steps]]
uses = "decontaminate.v1"
column = "text"
against = [{ path = "eval/emb.jsonl", embedding_column = "emb", name = "xq", lang = "eng" }]
engine = "precomputed"
threshold = 0.9
"""
    files = {"eval/emb.jsonl": jsonl(evalset)}
    write_recipe("", files, name="unused.toml")
    kept, rej, rep, ds = run(write_recipe, tmp_path, rows, step)
    # the English row is in the set's language: left to the n-gram test
    assert kept["row_id"].to_list() == ["other", "en-para"]
    assert "items in another language than the row" in (ds / "README.md").read_text()
    assert rej["de"]["reason"] == "embedding_match" and "with xq item 'e1'" in rej["de"]["detail"]
    assert rej["fr"]["detail"].startswith("cosine 1.000, margin ") and " with xq item 'e2'" in rej["fr"]["detail"]
    assert rep["matched"]["xq"] == {"ngram": 0, "embedding": 2, "rows": 2}
    kept, rej, rep, _ = run(write_recipe, tmp_path, rows, step + 'embedding_pairs = "all"\n', name="all.toml")
    assert kept["row_id"].to_list() == ["other"] and "with xq item 'e0'" in rej["en-para"]["detail"]


def test_margin_keeps_a_row_close_to_every_item_out(write_recipe, tmp_path):
    # items spread around one direction c (pairwise cosine about 0.9): the row c itself has a cosine above the
    # threshold with many items but stands out of no neighbourhood; a copy of one item does
    rng = np.random.default_rng(2)
    c = unit(rng.normal(size=(1, 32)))
    items = unit(c + 0.35 * unit(rng.normal(size=(12, 32))))
    evalset = [{"id": f"e{i}", "text": f"item {i}", "emb": v.tolist()} for i, v in enumerate(items)]
    rows = [
        {"id": "hub", "text": "close to everything", "embedding": c[0].tolist()},
        {"id": "copy", "text": "a translated item", "embedding": items[5].tolist()},
        {"id": "far", "text": "unrelated", "embedding": unit(rng.normal(size=(1, 32)))[0].tolist()},
    ]
    step = """
[[steps]]
uses = "decontaminate.v1"
column = "text"
against = [{ path = "eval/emb.jsonl", embedding_column = "emb", name = "xq" }]
engine = "precomputed"
"""
    write_recipe("", {"eval/emb.jsonl": jsonl(evalset)}, name="unused.toml")
    kept, rej, rep, ds = run(write_recipe, tmp_path, rows, step)
    assert (items @ c[0] >= 0.85).sum() >= 3  # the hub passes the cosine test for several items
    assert kept["row_id"].to_list() == ["hub", "far"] and rej["copy"]["detail"].startswith("cosine 1.000, margin 1.")
    assert "margin >= 1.04 (k = 4)" in (ds / "README.md").read_text()
    kept, rej, rep, _ = run(write_recipe, tmp_path, rows, step + "margin = 0\n", name="cos.toml")
    assert kept["row_id"].to_list() == ["far"] and set(rej) == {"hub", "copy"}


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> str:
    from helpers_tiny_bert import build_tiny_bert

    return str(build_tiny_bert(tmp_path_factory.mktemp("enc") / "tiny"))


def test_embedding_match_with_an_embedder_and_flag_mode(write_recipe, tmp_path, tiny_encoder):
    rows = [
        {"id": "copy", "text": "Obama visited PARIS"},  # the same tokens as the eval item: cosine 1
        {"id": "other", "text": "maria vive em lisboa"},
    ]
    step = f"""
[[steps]]
uses = "decontaminate.v1"
column = "text"
against = ["eval/short.txt"]
engine = "transformers"
model = "{tiny_encoder}"
threshold = 0.999
min_words = 4
on_fail = "flag"
device = "cpu"
"""
    write_recipe("", {"eval/short.txt": "obama visited paris\nthe city\n"}, name="unused.toml")
    kept, rej, rep, ds = run(write_recipe, tmp_path, rows, step)
    assert not rej and kept["text_decontam_ok"].to_list() == [False, True]
    assert kept["text_decontam_reason"].to_list() == ["embedding_match", None]  # 2 items: margin with k = 1
    assert kept["text_decontam_match"].to_list() == ["short.txt/1", None]
    assert rep["matched"]["short.txt"]["embedding"] == 1
    assert tiny_encoder in (ds / "manifest.json").read_text()


def test_hugging_face_dataset_folder(write_recipe, tmp_path):
    pytest.importorskip("datasets")
    hf = tmp_path / "hfset"
    hf.mkdir()
    pl.DataFrame({"premise": [LONG_QA], "label": [0]}).write_parquet(hf / "test.parquet")
    step = f"""
[[steps]]
uses = "decontaminate.v1"
column = "text"
against = [{{ hf = "{hf}", column = "premise", name = "xnli" }}]
cross_lingual = false
"""
    kept, rej, rep, _ = run(write_recipe, tmp_path, TRAIN, step)
    assert set(rej) == {"long"} and rep["matched"]["xnli"]["rows"] == 1
    assert rep["sets"]["xnli"].endswith("(hf, 1 texts, split test)")


def test_bad_entries_are_named(write_recipe, tmp_path):
    raw = {"column": "text", "against": ["a.jsonl", {"path": "b", "colum": "x"}, {"hf": "x", "path": "y"}]}
    params, problems = parse(DecontaminateParams, raw, "steps[0]")
    assert not problems
    where = [w for w, _ in Decontaminate.check(params, ["row_id", "text"])]
    assert where == ["against[1] -> colum", "against[2]"]
    _, problems = parse(DecontaminateParams, {"column": "text", "against": ["a"], "ngram": 0}, "steps[0]")
    assert "ngram" in str(problems)
    # a set that is not there: exit 2, the path named, no traceback
    step = '\n[[steps]]\nuses = "decontaminate.v1"\ncolumn = "text"\nagainst = ["eval/missing.jsonl"]\n'
    step += "cross_lingual = false\n"
    path = write_recipe(HEAD.format(name="t", rows="rows.jsonl") + step, {"rows.jsonl": jsonl(TRAIN)})
    p = subprocess.run(
        [sys.executable, "-m", "mlbuild.cli", "run", str(path), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert p.returncode == 2 and "missing.jsonl" in p.stderr and "Traceback" not in p.stderr
