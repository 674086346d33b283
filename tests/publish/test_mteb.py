"""The mteb output format: a built folder that MTEB's own retrieval loader reads, and that mteb.evaluate
scores (offline, with a tiny deterministic encoder) exactly as mlbuild's metrics do."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import polars as pl
import pytest
import yaml
from evaluation.tiny_benchmark import DOCS, PT, QRELS, QUERIES, build

from mlbuild.evaluation.metrics import Evaluator
from mlbuild.publish import mteb as mteb_format


def _configs(folder):
    head = (folder / "README.md").read_text(encoding="utf-8").split("---")[1]
    return {c["config_name"]: c["data_files"] for c in yaml.safe_load(head)["configs"]}


@pytest.fixture
def built(tmp_path, monkeypatch):
    return build(tmp_path, monkeypatch, formats='["hf", "mteb"]')


def test_layout_per_language_with_the_corpus_written_once(built):
    root = built / "mteb"
    cfg = _configs(root)
    assert set(cfg) == {f"{lang}-{p}" for lang in ("eng_Latn", "por_Latn") for p in ("corpus", "queries", "qrels")}
    # queries were translated, the corpus was not: both subsets point at the one corpus folder
    assert cfg["eng_Latn-corpus"] == cfg["por_Latn-corpus"] == [{"split": "test", "path": "corpus/test-*.parquet"}]
    assert sorted(p.name for p in root.iterdir() if p.is_dir() and "corpus" in p.name) == ["corpus"]
    corpus = pl.read_parquet(root / "corpus")
    assert corpus.columns == ["id", "title", "text"] and corpus.height == len(DOCS)
    pt = pl.read_parquet(root / "por_Latn-queries")
    assert sorted(pt["text"].to_list()) == sorted(PT.values())
    qrels = pl.read_parquet(root / "por_Latn-qrels")
    assert sorted(qrels.iter_rows()) == sorted(QRELS)
    index = json.loads((root / "index.json").read_text())
    assert index["subsets"]["por_Latn"] == {
        "queries": 6,
        "documents": 10,
        "qrels": len(QRELS),
        "query_lang": "por_Latn",
        "corpus_lang": None,
    }
    manifest = json.loads((built / "manifest.json").read_text())
    configs = manifest["formats"]["mteb"]["configs"]
    assert {
        "config_name": "por_Latn-corpus",
        "data_files": [{"split": "test", "path": "mteb/corpus/test-*.parquet"}],
    } in configs
    # the dataset root lists them too, so the root folder (or repo) loads the retrieval configs
    root_cfg = _configs(built)
    assert root_cfg["por_Latn-corpus"] == [{"split": "test", "path": "mteb/corpus/test-*.parquet"}]
    import datasets

    queries = datasets.load_dataset(str(built), "por_Latn-queries", split="test")
    assert queries.num_rows == 6


def _vec(text: str) -> np.ndarray:
    v = np.zeros(128, np.float32)
    for w in text.lower().replace("?", " ").replace(".", " ").replace(",", " ").split():
        v[int(hashlib.md5(w[:5].encode()).hexdigest(), 16) % 128] += 1
    return v / (np.linalg.norm(v) + 1e-9)


def test_mteb_loader_and_evaluate_read_the_folder(built):
    import mteb
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalDatasetLoader
    from mteb.abstasks.task_metadata import TaskMetadata
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ModelMeta

    path = str(built / "mteb")
    split = RetrievalDatasetLoader(path, revision=None, split="test", config="por_Latn").load()
    assert len(split["corpus"]) == len(DOCS)
    assert sorted(split["queries"]["text"]) == sorted(PT.values())  # the unjudged q7 is not there
    assert split["relevant_docs"]["q4"] == {"d6": 2, "d1": 0}

    class Tiny(AbsTaskRetrieval):
        metadata = TaskMetadata(
            name="TinyBenchRetrieval",
            description="mlbuild test",
            reference=None,
            dataset={"path": path, "revision": "local"},
            type="Retrieval",
            category="t2t",
            modalities=["text"],
            eval_splits=["test"],
            eval_langs={"eng_Latn": ["eng-Latn"], "por_Latn": ["por-Latn"]},
            main_score="ndcg_at_10",
            date=None,
            domains=None,
            task_subtypes=None,
            license=None,
            annotations_creators=None,
            dialect=None,
            sample_creation=None,
            bibtex_citation=None,
        )

    class HashEncoder(AbsEncoder):
        def __init__(self, model_name: str = "tiny-hash", revision: str | None = None, **kw):
            self.mteb_model_meta = ModelMeta.create_empty(overwrites={"name": "mlbuild/tiny-hash", "revision": "1"})

        def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kw):
            return np.stack([_vec(t) for batch in inputs for t in batch["text"]])

    res = mteb.evaluate(HashEncoder(), Tiny(), cache=None, show_progress_bar=False)
    scores = {s["hf_subset"]: s for s in res.task_results[0].scores["test"]}
    assert set(scores) == {"eng_Latn", "por_Latn"}
    # the same encoder ranked by mlbuild's exact search and metrics gives the same nDCG@10
    ids = list(DOCS)
    docs = np.stack([_vec(f"{t} {x}") for t, x in DOCS.values()])
    qrels: dict[str, dict[str, int]] = {}
    for q, d, s in QRELS:
        qrels.setdefault(q, {})[d] = s
    for sub, texts in (("eng_Latn", QUERIES), ("por_Latn", {q: PT.get(t) for q, t in QUERIES.items()})):
        run = {q: {ids[i]: float(v) for i, v in enumerate(docs @ _vec(texts[q]))} for q in qrels}
        ours = Evaluator(qrels, ["nDCG@10"]).aggregate(run)["nDCG@10"]
        assert scores[sub]["ndcg_at_10"] == pytest.approx(ours, abs=1e-5)
    assert scores["eng_Latn"]["ndcg_at_10"] > 0.5  # lexical overlap with the English corpus


def test_check_names_what_is_missing():
    assert mteb_format.check(["query_id", "query"], set())[0].startswith("the mteb format needs a corpus")
    assert "judgements" in mteb_format.check(["query_id", "query"], {"corpus"})[0]
    assert mteb_format.check(["query_id", "query", "doc_ids"], {"corpus"}) == []
    assert mteb_format.check(["query_id", "query", "doc_ids", "doc_id", "passage"], set()) == []
    assert "queries" in mteb_format.check(["doc_id", "passage"], set())[0]
    assert "query rows" in mteb_format.check(["text"], set())[0]
