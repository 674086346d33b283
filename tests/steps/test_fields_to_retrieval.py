"""fields_to_retrieval.v1: bilingual records -> query/document pairs, both sides checked; the shipped
recipe builds an MTEB layout that ``mlbuild eval retrieval`` scores."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from mlbuild.cli import main
from mlbuild.pipeline.base import RunContext
from mlbuild.pipeline.params import parse
from mlbuild.steps.fields_to_retrieval import FieldsToRetrieval, FieldsToRetrievalParams

RECIPES = Path(__file__).resolve().parent.parent.parent / "recipes"


def _step(tiny_lid, tmp_path, **kw):
    raw = {
        "query_column": "title_pt",
        "query_lang": "pt",
        "doc_column": "abstract_en",
        "doc_lang": "en",
        "title_column": "title_en",
        "id_column": "rid",
        "lid_model": str(tiny_lid),
        **kw,
    }
    params, problems = parse(FieldsToRetrievalParams, raw, "steps[0]", tmp_path)
    assert not problems, problems
    step = FieldsToRetrieval(params, RunContext(recipe_dir=tmp_path))
    step.setup()
    return step


RECORDS = pl.DataFrame(
    {
        "row_id": ["1", "2", "3", "4", "5"],
        "rid": ["r1", "r2", "r3", "r4", "r5"],
        "title_pt": [
            "onde fica a estação de trem",
            "este é um bom livro para ler",
            "",
            "o gato está no tapete",
            "o tempo está bom hoje",
        ],
        "title_en": ["Stations", "Books", "Nothing", "Cats", "Weather"],
        "abstract_en": [
            "where is the train station in this city",
            "this is a good book to read in the morning",
            "we walk to the river in the morning",
            "o gato está no tapete e não quer sair",
            "short",
        ],
        "keywords": [["estação", "trem"], ["livro"], [], ["gato"], ["tempo"]],
    }
)


def test_pairs_with_language_checks_on_both_sides(tiny_lid, tmp_path):
    out = _step(tiny_lid, tmp_path, min_doc_chars=10).process(RECORDS)
    rows = out.rows
    assert rows["query_id"].to_list() == ["q-r1", "q-r2"]
    assert rows["doc_ids"].to_list() == [["d-r1"], ["d-r2"]] and rows["doc_scores"].to_list() == [[1], [1]]
    assert rows["doc_id"].to_list() == ["d-r1", "d-r2"] and rows["title"].to_list() == ["Stations", "Books"]
    assert set(rows["lang"]) == {"por_Latn"} and set(rows["doc_lang"]) == {"eng_Latn"}
    reasons = dict(zip(out.rejects["rid"], out.rejects["reason"]))
    assert reasons == {"r3": "empty_query", "r4": "doc_lang_mismatch", "r5": "doc_too_short"}
    assert out.stats["checks"]["failed"] == {"doc_lang_mismatch": 1, "doc_too_short": 1, "empty_query": 1}


def test_list_field_joined_and_flag_mode(tiny_lid, tmp_path):
    step = _step(tiny_lid, tmp_path, query_column="keywords", check_langs=False, on_fail="flag", min_query_chars=1)
    out = step.process(RECORDS)
    assert out.rows.height == 5 and (out.rejects is None or out.rejects.height == 0)
    assert out.rows["query"].to_list()[:2] == ["estação, trem", "livro"]
    assert out.rows["pair_ok"].to_list() == [True, True, False, True, False]
    assert out.rows["pair_reason"].to_list() == [None, None, "empty_query", None, "doc_too_short"]
    assert "pair_ok" in step.output_columns(list(RECORDS.columns))


def test_shipped_recipe_builds_an_mteb_layout_that_eval_scores(tmp_path, capsys):
    assert main(["run", str(RECIPES / "fields-to-retrieval.toml"), "--out", str(tmp_path), "--quiet"]) == 0
    ds = tmp_path / "bilingual-records-clir" / "0.1.0"
    index = json.loads((ds / "mteb" / "index.json").read_text())
    sub = index["subsets"]["fra_Latn"]
    assert sub["query_lang"] == "fra_Latn" and sub["corpus_lang"] == "eng_Latn" and sub["queries"] == 18
    rejects = [
        json.loads(x) for x in next((ds / "rejects").glob("*fields_to_retrieval.jsonl")).read_text().splitlines()
    ]
    assert {r["row_id"]: r["reason"] for r in rejects} == {"r17": "doc_lang_mismatch", "r18": "empty_query"}
    capsys.readouterr()
    assert main(["eval", "retrieval", str(ds), "--metrics", "nDCG@10", "--json", "--no-card"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert 0.0 < res["bm25"]["fra_Latn"]["nDCG@10"] <= 1.0
