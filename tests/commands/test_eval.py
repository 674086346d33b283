"""``mlbuild eval retrieval``: retrievers per language subset of a build, TREC runs, files, the card section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from evaluation.tiny_benchmark import build, write_benchmark
from helpers_tiny_bert import build_tiny_bert

from mlbuild.cli import main

TREC = Path(__file__).resolve().parent.parent / "evaluation" / "data" / "trec_eval"


@pytest.fixture(scope="module")
def tiny_dense(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("dense") / "tiny-dense")


def test_eval_build_per_language_json_files_and_card(tmp_path, monkeypatch, capsys, tiny_dense):
    ds = build(tmp_path, monkeypatch)
    out = tmp_path / "eval"
    argv = ["eval", "retrieval", str(ds), "--retriever", "bm25", "--retriever", str(tiny_dense)]
    argv += ["--metrics", "ndcg@10", "recall@100", "mrr@10", "--out", str(out), "--corpus-lang", "en", "--json"]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res) == {"bm25", "tiny-dense"}
    assert set(res["bm25"]) == {"eng_Latn", "por_Latn"}
    assert set(res["bm25"]["eng_Latn"]) == {"nDCG@10", "R@100", "RR@10"}
    # English queries share words with the English corpus; the Portuguese ones hardly any
    assert res["bm25"]["eng_Latn"]["nDCG@10"] > 0.8
    assert res["bm25"]["por_Latn"]["nDCG@10"] < res["bm25"]["eng_Latn"]["nDCG@10"]
    assert all(0.0 <= v <= 1.0 for sub in res["tiny-dense"].values() for v in sub.values())
    for name in ("eval-retrieval.json", "eval-retrieval.md", "eval-retrieval.png"):
        assert (out / name).is_file() and (ds / "reports" / name).is_file()
    assert (out / "eval-retrieval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = (out / "runs" / "bm25" / "eng_Latn.trec").read_text().splitlines()
    assert run[0].split()[1] == "Q0" and run[0].split()[5] == "bm25"
    saved = json.loads((out / "eval-retrieval.json").read_text())
    assert saved["results"] == res and saved["systems"]["bm25"]["analyzer"] == "unicode words, snowball english"
    md = (out / "eval-retrieval.md").read_text()
    assert "| eng_Latn |" in md and "**nDCG@10**" in md
    card = (ds / "README.md").read_text()
    assert card.count("## Retrieval evaluation") == 1
    # a rerun replaces the section: never two
    assert main(["eval", "retrieval", str(ds), "--metrics", "AP", "--quiet"]) == 0
    card2 = (ds / "README.md").read_text()
    assert card2.count("## Retrieval evaluation") == 1 and "**AP**" in card2 and "**nDCG@10**" not in card2
    assert card2.startswith(card.split("<!-- mlbuild:eval-retrieval:start -->")[0])  # the card above is untouched
    # --no-card leaves the dataset as it is
    assert main(["eval", "retrieval", str(ds), "--metrics", "P@10", "--no-card", "--quiet"]) == 0
    assert (ds / "README.md").read_text() == card2


def test_eval_trec_run_files_as_trec_eval(capsys):
    argv = ["eval", "retrieval", "--run", str(TREC / "results.test"), "--qrels", str(TREC / "qrels.test")]
    assert main([*argv, "--metrics", "map", "P_10", "recip_rank", "recall_100", "ndcg_cut_10", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    got = {k: round(v, 4) for k, v in res["results"]["all"].items()}
    assert got == {"AP": 0.1785, "P@10": 0.3, "RR": 0.4064, "R@100": 0.4980, "nDCG@10": 0.3016}


def test_eval_a_beir_folder(tmp_path, capsys):
    folder = write_benchmark(tmp_path / "bench")
    assert main(["eval", "retrieval", str(folder), "--metrics", "nDCG@10", "--json", "--corpus-lang", "en"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert list(res["bm25"]) == ["default"] and res["bm25"]["default"]["nDCG@10"] > 0.8


def test_eval_errors_exit_2(tmp_path, capsys):
    trec = ["--run", str(TREC / "results.test")]
    assert main(["eval", "retrieval", *trec]) == 2
    assert "needs --qrels" in capsys.readouterr().err
    assert main(["eval", "retrieval", *trec, "--qrels", str(TREC / "qrels.test"), "--metrics", "vibes@3"]) == 2
    assert "unknown metric" in capsys.readouterr().err
    assert main(["eval", "retrieval", str(tmp_path)]) == 2
    assert "no retrieval layout" in capsys.readouterr().err
    assert main(["eval", "retrieval", str(tmp_path), "--depth", "0"]) == 2
    assert "--depth" in capsys.readouterr().err
    assert main(["eval", "retrieval"]) == 2
    bad = tmp_path / "bad.run"
    bad.write_text("q1 Q0 d1 1 x run\n")
    assert main(["eval", "retrieval", "--run", str(bad), "--qrels", str(TREC / "qrels.test")]) == 2
    assert "bad.run:1" in capsys.readouterr().err
    assert main(["eval"]) == 2


@pytest.mark.slow
def test_benchmark_extension_recipe_then_eval(tmp_path, capsys):
    """The how-to: recipes/benchmark-extension.toml (a tiny random NLLB instead of the Hub one, so most
    translations fail the gates and go to rejects/), then BM25 and the packaged e5 per language."""
    from helpers_mt import build_tiny_mt

    recipe = Path(__file__).resolve().parent.parent.parent / "recipes" / "benchmark-extension.toml"
    mt = build_tiny_mt(tmp_path / "nllb", "nllb")
    bench = write_benchmark(tmp_path / "bench")
    argv = ["run", str(recipe), "--out", str(tmp_path / "out"), "--quiet"]
    assert main([*argv, "--set", f"vars.mt_model={mt}", "--set", f"vars.benchmark={bench}"]) == 0
    ds = tmp_path / "out" / "benchmark-extension" / "0.1.0"
    assert (ds / "mteb" / "corpus").is_dir() and (ds / "beir" / "index.json").is_file()
    capsys.readouterr()
    argv = ["eval", "retrieval", str(ds), "--retriever", "bm25", "--retriever", "multilingual-e5-small"]
    assert main([*argv, "--corpus-lang", "en", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["multilingual-e5-small"]["eng_Latn"]["nDCG@10"] > 0.8
