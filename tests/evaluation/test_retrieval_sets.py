"""Retrieval sets read from MTEB-layout folders (ours or the Hub's naming) and BEIR folders."""

from __future__ import annotations

import polars as pl
import pytest
import yaml
from tiny_benchmark import DOCS, write_benchmark

from mlbuild.errors import InputError
from mlbuild.evaluation.data import guess_langs, load_sets


def _mteb_folder(root, subsets, shared_corpus=True):
    configs = []
    for sub in subsets:
        corpus = "corpus" if shared_corpus else f"{sub}-corpus"
        parts = {
            f"{sub}-corpus": (corpus, pl.DataFrame({"_id": ["a", "b"], "title": ["", "T"], "text": ["x y", "z"]})),
            f"{sub}-queries": (f"{sub}-queries", pl.DataFrame({"id": ["q1", "q2"], "text": ["x", "nothing"]})),
            f"{sub}-qrels": (f"{sub}-qrels", pl.DataFrame({"query-id": ["q1"], "corpus-id": ["a"], "score": [1]})),
        }
        for cfg, (folder, df) in parts.items():
            (root / folder).mkdir(parents=True, exist_ok=True)
            df.write_parquet(root / folder / "test-00000-of-00001.parquet")
            configs.append({"config_name": cfg, "data_files": [{"split": "test", "path": f"{folder}/test-*.parquet"}]})
    (root / "README.md").write_text("---\n" + yaml.safe_dump({"configs": configs}) + "---\n")
    return root


def test_mteb_layout_subsets_share_one_corpus(tmp_path):
    sets = load_sets(_mteb_folder(tmp_path / "m", ["deu-eng", "kir_Cyrl"]))
    assert [s.name for s in sets] == ["deu-eng", "kir_Cyrl"]
    assert sets[0].corpus is sets[1].corpus and sets[0].corpus.size() == 2
    assert sets[0].judged_queries() == {"q1": "x"} and sets[0].qrels == {"q1": {"a": 1}}
    assert (sets[0].query_lang, sets[0].corpus_lang) == ("deu_Latn", "eng_Latn")
    ids, texts = next(sets[0].corpus.batches())
    assert ids == ["a", "b"] and texts == ["x y", "T z"]  # _id read as id; title + text as MTEB joins them
    assert [s.name for s in load_sets(tmp_path / "m", subsets=["kir_Cyrl"])] == ["kir_Cyrl"]
    with pytest.raises(InputError, match="no subset"):
        load_sets(tmp_path / "m", subsets=["fra"])
    with pytest.raises(InputError, match="no split"):
        load_sets(tmp_path / "m", split="dev")


def test_beir_folder_and_errors(tmp_path):
    (s,) = load_sets(write_benchmark(tmp_path / "b"))
    assert s.name == "default" and s.corpus.kind == "beir" and s.corpus.size() == len(DOCS)
    assert "q7" in s.queries and "q7" not in s.judged_queries()
    with pytest.raises(InputError, match="no retrieval layout"):
        load_sets(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        load_sets(tmp_path / "missing")
    m = _mteb_folder(tmp_path / "broken", ["fra"])
    (m / "README.md").write_text(m.joinpath("README.md").read_text().replace("fra-qrels", "fra-judgements"))
    with pytest.raises(InputError, match="no config 'fra-qrels'"):
        load_sets(m)


def test_guess_langs():
    assert guess_langs("kir_Cyrl") == ("kir_Cyrl", None)
    assert guess_langs("eng_Latn-kir_Cyrl") == ("eng_Latn", "kir_Cyrl")
    assert guess_langs("default") == (None, None) and guess_langs("arguana") == (None, None)
