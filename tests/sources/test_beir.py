from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from helpers_mt import fake_mt_engine

from mlbuild.errors import InputError
from mlbuild.models.mt import MTBackend, Translation
from mlbuild.sources.beir import BeirParams, BeirSource

MINI = Path(__file__).resolve().parents[2] / "recipes" / "data" / "beir-mini"


def make_beir(
    root: Path, qrels: str, corpus: list[dict] | None = None, queries: list[dict] | None = None, split: str = "test"
) -> Path:
    corpus = (
        corpus
        if corpus is not None
        else [{"_id": f"d{i}", "title": f"T{i}", "text": f"Document number {i}."} for i in range(1, 5)]
    )
    queries = (
        queries
        if queries is not None
        else [{"_id": f"q{i}", "text": f"What is document {i} about?"} for i in range(1, 4)]
    )
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in corpus) + "\n")
    (root / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in queries) + "\n")
    (root / "qrels" / f"{split}.tsv").write_text(qrels)
    return root


def test_reads_queries_with_judged_docs_in_qrels_order():
    src = BeirSource(BeirParams(path=str(MINI), split="test"))
    assert src.columns() == ["query_id", "query", "doc_ids", "doc_scores"]
    out = src.read_all()
    rows = out.rows
    assert rows["row_id"].to_list() == ["q1", "q2", "q3", "q4", "q5"]
    assert rows.filter(pl.col("query_id") == "q5")["doc_ids"].to_list() == [["d6", "d8"]]
    assert rows.filter(pl.col("query_id") == "q5")["doc_scores"].to_list() == [[1, 0]]
    assert out.stats["queries_without_qrels"] == 1  # q6 is judged in dev only
    side = {k: pl.concat(list(v())) for k, v in src.side_tables().items()}
    assert side["corpus"].columns == ["doc_id", "title", "passage"] and side["corpus"].height == 8
    assert side["qrels"].height == 6 and side["queries"].height == 6


def test_corpus_rows_and_other_split():
    src = BeirSource(BeirParams(path=str(MINI), split="dev", rows="corpus"))
    rows = src.read_all().rows
    assert rows.columns == ["row_id", "doc_id", "title", "passage"] and rows.height == 8
    assert pl.concat(list(src.side_tables()["qrels"]())).to_dicts() == [{"query_id": "q6", "doc_id": "d7", "score": 1}]


@pytest.mark.parametrize(
    "qrels,match",
    [
        ("query-id\tcorpus-id\tscore\nq1\td1\n", "expected 3 tab-separated fields"),
        ("query-id\tcorpus-id\tscore\nq1\td1\thigh\n", "not an integer"),
        ("query-id\tcorpus-id\tscore\nq9\td1\t1\n", "'q9' is judged but not in queries.jsonl"),
    ],
)
def test_bad_qrels_name_file_and_line(tmp_path, qrels, match):
    make_beir(tmp_path, qrels)
    with pytest.raises(InputError, match=match) as ei:
        BeirSource(BeirParams(path=str(tmp_path))).read_all()
    assert "test.tsv" in str(ei.value)


def test_missing_files_and_duplicate_ids(tmp_path):
    with pytest.raises(InputError, match="BEIR folder not found"):
        BeirSource(BeirParams(path=str(tmp_path / "nope"))).columns()
    make_beir(tmp_path, "q1\td1\t1\n", split="dev")
    with pytest.raises(InputError, match=r"file not found \(splits here: dev\)"):
        BeirSource(BeirParams(path=str(tmp_path), split="test")).read_all()
    make_beir(tmp_path, "q1\td1\t1\n", corpus=[{"_id": "d1", "text": "a"}, {"_id": "d1", "text": "b"}])
    with pytest.raises(InputError, match="duplicate document id 'd1'") as ei:
        list(BeirSource(BeirParams(path=str(tmp_path))).side_tables()["corpus"]())
    assert ei.value.line == 2


class DropQ2(MTBackend):
    """Translates by tagging; the query about document 2 comes back untranslated (a copy)."""

    engine = "fake"
    calls = 0

    @property
    def id(self):
        return "tag-mt"

    @property
    def revision(self):
        return "1"

    def translate_detailed(self, texts, src, tgt):
        DropQ2.calls += len(texts)
        return [Translation(t if "2" in t else f"Pergunta traduzida {len(t)} {tgt}", 3) for t in texts]


RECIPE = """
[dataset]
name = "beir-test"
version = "0.1.0"

[source]
uses = "beir.v1"
path = "bench"
split = "test"
{rows}

[[steps]]
uses = "translate.v1"
columns = {columns}
source_lang = "en"
target_langs = ["pt", "ky"]
engine = "fake"
gates = ["copy"]
keep_source = true

[output]
config_by = "lang"
splits = {{ test = 1.0 }}
format = ["hf", "beir"]
"""


@pytest.fixture
def drop_q2():
    with fake_mt_engine(DropQ2()) as mt:
        yield mt


def test_beir_output_keeps_qrels_exactly(tmp_path, drop_q2, write_recipe):
    from mlbuild.pipeline.runner import Runner
    from mlbuild.recipe import load_recipe

    qrels = "query-id\tcorpus-id\tscore\nq3\td4\t2\nq1\td1\t1\nq2\td2\t1\nq1\td3\t0\nq3\td9\t1\n"
    make_beir(tmp_path / "bench", qrels)
    path = write_recipe(RECIPE.format(rows="", columns='["query"]'))
    res = Runner(load_recipe(path), tmp_path / "out", quiet=True).run()
    beir = res.dataset_dir / "beir"
    assert sorted(p.name for p in beir.iterdir()) == ["eng_Latn", "index.json", "kir_Cyrl", "por_Latn"]
    original = qrels.splitlines()
    # English: every line as in the file; translations: q2 was dropped (copy), its lines go with it
    assert (beir / "eng_Latn" / "qrels" / "test.tsv").read_text().splitlines() == original
    for lang in ("por_Latn", "kir_Cyrl"):
        d = beir / lang
        assert (d / "qrels" / "test.tsv").read_text().splitlines() == [ln for ln in original if "q2\t" not in ln]
        queries = [json.loads(x) for x in (d / "queries.jsonl").read_text().splitlines()]
        assert [q["_id"] for q in queries] == ["q1", "q3"]
        assert all(q["text"].startswith("Pergunta traduzida") for q in queries)
        corpus = [json.loads(x) for x in (d / "corpus.jsonl").read_text().splitlines()]
        assert [c["_id"] for c in corpus] == ["d1", "d2", "d3", "d4"] and corpus[0]["text"] == "Document number 1."
    index = json.loads((beir / "index.json").read_text())
    assert index["languages"]["por_Latn"] == {"queries": 2, "documents": 4, "qrels": 4}
    # the Hub-layout rows keep the judged docs too
    pt = pl.read_parquet(res.dataset_dir / "data" / "por_Latn" / "test-00000-of-00001.parquet")
    assert pt.sort("query_id")["doc_ids"].to_list() == [["d1", "d3"], ["d4", "d9"]]
    assert (res.dataset_dir / "rejects").exists()


def test_translated_corpus_written_per_language(tmp_path, drop_q2, write_recipe):
    from mlbuild.pipeline.runner import Runner
    from mlbuild.recipe import load_recipe

    make_beir(tmp_path / "bench", "q1\td1\t1\nq3\td3\t1\n")
    path = write_recipe(RECIPE.format(rows='rows = "corpus"', columns='["title", "passage"]'))
    res = Runner(load_recipe(path), tmp_path / "out", quiet=True).run()
    d = res.dataset_dir / "beir" / "por_Latn"
    corpus = [json.loads(x) for x in (d / "corpus.jsonl").read_text().splitlines()]
    assert [c["_id"] for c in corpus] == ["d1", "d3", "d4"]  # d2 came back as a copy and was dropped
    assert all(c["text"].startswith("Pergunta traduzida") for c in corpus)
    assert (d / "qrels" / "test.tsv").read_text().splitlines() == [
        "query-id\tcorpus-id\tscore",
        "q1\td1\t1",
        "q3\td3\t1",
    ]
    assert len((d / "queries.jsonl").read_text().splitlines()) == 3
