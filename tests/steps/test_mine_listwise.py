"""mine_negatives.v1 beyond sentence-transformers: pooled dense + BM25 candidates (tags, exclusions, one
score scale), the per-query list layouts (listwise, st-listwise, flag-reranker, rank-permutation) and
Margin-MSE triples with a tiny random cross-encoder teacher, on a crafted cross-lingual corpus with planted
translations and duplicates; the checks, the report and card lines, and a recipe run through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("bm25s")

from mlbuild.mining import run_on_frame  # noqa: E402
from mlbuild.pipeline.base import RunContext  # noqa: E402
from mlbuild.pipeline.params import declared  # noqa: E402
from mlbuild.steps.mine_negatives import MineNegatives, MineNegativesParams  # noqa: E402

D = 16
N = 24  # topics
NAMES = [f"{a}{b}" for a in ("tavo", "miren", "sulka", "orbe", "kestu", "lumar") for b in ("ra", "sol", "den", "vik")]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def vec_col(name: str, m: np.ndarray) -> pl.Series:
    return pl.Series(name, m.tolist(), dtype=pl.Array(pl.Float32, m.shape[1]))


def crafted(seed: int = 0):
    """English queries with English positives; a corpus of Portuguese translations of every positive (same
    ``parallel_id``, sharing the river's name and length with the query, so BM25 finds them, but with
    unrelated vectors, so the dense search does not), a near-duplicate of each positive (same id) and
    English distractors near each query. Topic 0 has a second positive; topic 1's row is duplicated."""
    rng = np.random.default_rng(seed)
    qv = unit(rng.standard_normal((N, D)))
    pos_v = unit(qv + 0.3 * rng.standard_normal((N, D)))
    q = [f"how long is the {NAMES[i]} river" for i in range(N)]
    p = [f"the {NAMES[i]} river flows {100 + i} km through the valley" for i in range(N)]
    rows = {
        "row_id": [f"r{i}" for i in range(N)] + ["r1dup", "r0b"],
        "query": q + [q[1], q[0]],
        "positive": p + [p[1], f"{NAMES[0]} flows north to the sea"],
        "parallel_id": [f"t{i}" for i in range(N)] + ["t1", "t0"],
        "doc_id": [f"en-{i}" for i in range(N)] + ["en-1", "en-0b"],
    }
    second = unit((qv[0] + 0.3 * rng.standard_normal(D))[None])
    rows_df = pl.DataFrame(rows).with_columns(
        vec_col("query_embedding", np.concatenate([qv, qv[1:2], qv[0:1]])),
        vec_col("positive_embedding", np.concatenate([pos_v, pos_v[1:2], second])),
    )
    trans = [f"o rio {NAMES[i]} corre {100 + i} km pelo vale" for i in range(N)]
    dups = [t + " today" for t in p]  # near-duplicates of the positives
    dist = [f"the mountain road {j} climbs through the valley" for j in range(2 * N)]
    corpus = pl.DataFrame(
        {
            "text": trans + dups + dist,
            "parallel_id": [f"t{i}" for i in range(N)] * 2 + [f"x{j}" for j in range(2 * N)],
            "_id": [f"pt-{i}" for i in range(N)] + [f"dup-{i}" for i in range(N)] + [f"d-{j}" for j in range(2 * N)],
        }
    ).with_columns(
        vec_col(
            "embedding",
            np.concatenate(
                [
                    unit(rng.standard_normal((N, D))),  # translations: far in vector space
                    unit(pos_v + 0.02 * rng.standard_normal((N, D))),  # duplicates: nearly the positive
                    unit(np.repeat(qv, 2, axis=0) + 0.5 * rng.standard_normal((2 * N, D))),
                ]
            ),
        )
    )
    return rows_df, corpus


def mine(rows: pl.DataFrame, corpus: pl.DataFrame, ctx_kw: dict | None = None, batch_rows=None, **kw):
    p = MineNegativesParams(engine="precomputed", corpus="corpus", **kw)
    problems = MineNegatives.check(p, rows.columns)
    assert not problems, problems
    step = MineNegatives(p, RunContext(tables={"corpus": corpus}, seed=3, **(ctx_kw or {})))
    step.setup()
    return step, run_on_frame(step, rows, batch_rows)


# ------------------------------------------------------------------------------ retrievers
def test_default_retrievers_keep_fingerprints_and_columns():
    p = MineNegativesParams(engine="precomputed")
    new = {"retrievers", "bm25_lang", "num_candidates", "corpus_id_column", "positive_id_column", "prompt"}
    assert not new & set(declared(p))  # unset: the fingerprint is the one before these params existed
    assert declared(MineNegativesParams(retrievers=["dense", "bm25"]))["retrievers"] == ["dense", "bm25"]
    step = MineNegatives(p, RunContext())
    assert step.output_columns(["row_id", "query", "positive"]) == ["row_id", "query", "positive", "negative"]


def test_bm25_pooling_tags_negatives_and_keeps_translations_out():
    rows, corpus = crafted()
    par = dict(zip(corpus["text"], corpus["parallel_id"])) | dict(zip(rows["positive"], rows["parallel_id"]))
    pid_of_row = dict(zip(rows["row_id"], rows["parallel_id"]))
    kw = dict(num_negatives=4, output_format="triplet", include_scores=True)

    def own_translations(df):
        return [
            r
            for r in df.select(
                "row_id", "negative", *(["negative_retriever"] if "negative_retriever" in df.columns else [])
            ).iter_rows()
            if r[1].startswith("o rio") and par[r[1]] == pid_of_row[r[0].split("/")[0]]
        ]

    dense = mine(rows, corpus, **kw)[1].rows
    assert "negative_retriever" not in dense.columns
    assert len(own_translations(dense)) <= 2  # far in vector space: the dense search (nearly) never finds them
    pooled = mine(rows, corpus, retrievers=["dense", "bm25"], **kw)[1].rows
    tags = pooled["negative_retriever"].to_list()
    assert set(tags) <= {"dense", "bm25", "dense+bm25"} and "bm25" in tags
    found = own_translations(pooled)
    assert len(found) >= N - 2 and "bm25" in {r[2] for r in found}  # BM25 finds them (the test can fail)
    step, out = mine(rows, corpus, retrievers=["dense", "bm25"], exclude_same=["parallel_id"], **kw)
    for r, p, n in out.rows.select("row_id", "positive", "negative").iter_rows():
        assert par[n] != pid_of_row[r.split("/")[0]], (p, n)  # never a translation or duplicate
    assert out.stats["skipped"]["exclude_same"] >= N
    assert out.stats["negatives_by_retriever"].get("bm25", 0) > 0
    # one score scale: a BM25-only negative carries its exact dense cosine
    qv = dict(zip(rows["query"], rows["query_embedding"].to_numpy()))
    cv = dict(zip(corpus["text"], corpus["embedding"].to_numpy())) | dict(
        zip(rows["positive"], rows["positive_embedding"].to_numpy())
    )
    checked = set()
    for q, n, s, t in out.rows.select("query", "negative", "negative_score", "negative_retriever").iter_rows():
        assert s == pytest.approx(float(qv[q] @ cv[n]), abs=1e-5)
        checked.add(t)
    assert "bm25" in checked


def test_pooled_output_does_not_depend_on_batches_or_chunks():
    rows, corpus = crafted(1)
    kw = dict(retrievers=["dense", "bm25"], num_negatives=3, output_format="n-tuple", exclude_same=["parallel_id"])
    a = mine(rows, corpus, **kw)[1].rows
    b = mine(rows, corpus, batch_rows=5, query_chunk=4, **kw)[1].rows
    assert a.equals(b) and "negative_retrievers" in a.columns


def test_bm25_follows_the_group_language():
    rows, corpus = crafted(2)
    rows = rows.with_columns(pl.lit("en").alias("lang"))
    corpus = corpus.with_columns(pl.lit("en").alias("lang"))
    step, out = mine(
        rows, corpus, retrievers=["dense", "bm25"], group_by="lang", num_negatives=2, exclude_same=["parallel_id"]
    )
    assert out.rows.height and out.stats["by_group"]["en"]["queries"] == N
    from mlbuild.models.bm25 import stemmer_name

    assert stemmer_name("en") == "english"  # what the group's index used (bm25_lang unset: the group value)


# ------------------------------------------------------------------------------ per-query layouts
def test_listwise_rows_hold_positives_and_unique_candidates_in_a_seeded_order():
    rows, corpus = crafted()
    kw = dict(
        retrievers=["dense", "bm25"],
        exclude_same=["parallel_id"],
        output_format="listwise",
        num_candidates=5,
        corpus_id_column="_id",
        positive_id_column="doc_id",
    )
    step, out = mine(rows, corpus, **kw)
    df = out.rows
    assert df.height == N and "positive" not in df.columns  # one row per query
    assert out.stats["merged_rows"] == 2
    id_of = dict(zip(corpus["text"], corpus["_id"])) | dict(zip(rows["positive"], rows["doc_id"]))
    par = dict(zip(corpus["text"], corpus["parallel_id"])) | dict(zip(rows["positive"], rows["parallel_id"]))
    positives = rows.group_by("query").agg(pl.col("positive").unique())
    pos_of = {q: set(ps) for q, ps in positives.iter_rows()}
    positions = []
    for r in df.iter_rows(named=True):
        docs, labels = r["docs"], r["labels"]
        assert len(docs) == 5 == len(set(docs))  # k candidates, unique
        assert {d for d, lab in zip(docs, labels) if lab == 1} == pos_of[r["query"]]
        assert r["doc_ids"] == [id_of[d] for d in docs]
        pos_par = {par[d] for d, lab in zip(docs, labels) if lab}
        assert all(par[d] not in pos_par for d, lab in zip(docs, labels) if not lab)  # no translation/duplicate
        assert [t == "positive" for t in r["retrievers"]] == [bool(x) for x in labels]
        assert len(r["scores"]) == 5
        positions.append(labels.index(1))
    assert len(set(positions)) > 1  # positives are not always first
    assert len([r for r in df["labels"].to_list() if sum(r) == 2]) == 1  # topic 0 has two positives
    again = mine(rows, corpus, batch_rows=4, query_chunk=3, **kw)[1].rows
    assert again.equals(df)  # the order is seeded by (seed, group, query), not by batches


def test_st_listwise_and_flag_reranker_layouts():
    rows, corpus = crafted()
    kw = dict(exclude_same=["parallel_id"], num_candidates=4)
    st = mine(rows, corpus, output_format="st-listwise", **kw)[1].rows
    assert {"query", "docs", "labels"} <= set(st.columns) and "teacher_scores" not in st.columns
    assert all(len(d) == 4 and sum(lab) >= 1 for d, lab in st.select("docs", "labels").iter_rows())
    fl = mine(rows, corpus, output_format="flag-reranker", prompt="Is the passage relevant?", **kw)[1].rows
    r = fl.filter(pl.col("query") == rows["query"][0]).row(0, named=True)
    assert sorted(r["pos"]) == sorted([rows["positive"][0], rows["positive"][-1]])
    assert len(r["neg"]) == 2 and len(r["pos_scores"]) == 2 and len(r["neg_scores"]) == 2
    assert r["prompt"] == "Is the passage relevant?"
    assert r["neg_scores"] == sorted(r["neg_scores"], reverse=True)  # dense cosine without a teacher
    rec = json.loads(
        fl.select("query", "pos", "neg", "pos_scores", "neg_scores", "prompt").write_ndjson().split("\n")[0]
    )
    assert set(rec) == {"query", "pos", "neg", "pos_scores", "neg_scores", "prompt"}


def test_checks_name_what_the_layouts_and_retrievers_need():
    cases = {
        "num_candidates": dict(output_format="listwise"),
        "teacher": dict(output_format="rank-permutation", num_candidates=4),
        "retrievers": dict(retrievers=["bm25"]),
        "bm25_lang": dict(bm25_lang="en"),
        "prompt": dict(prompt="x"),
    }
    for field, kw in cases.items():
        where = {w for w, _ in MineNegatives.check(MineNegativesParams(engine="precomputed", **kw), None)}
        assert field in where, (field, where)
    margin = MineNegatives.check(MineNegativesParams(engine="precomputed", output_format="margin"), None)
    assert ("teacher", "output_format 'margin' needs a teacher cross-encoder") in margin
    many = MineNegatives.check(
        MineNegativesParams(engine="precomputed", output_format="listwise", num_candidates=20, range_max=10), None
    )
    assert any(w == "num_negatives" for w, _ in many)  # 19 negatives cannot fit in range_max 10


# ------------------------------------------------------------------------------ teacher layouts
def tokenizer(words: list[str]):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate([*specials, *words])}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A tiny random BERT encoder and a cross-encoder (one output) over the crafted corpus's words."""
    rows, corpus = crafted()
    words = sorted({w for t in [*rows["query"], *rows["positive"], *corpus["text"]] for w in t.split()})
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny")
    cfg = transformers.BertConfig(
        vocab_size=len(words) + 4,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        pad_token_id=0,
        num_labels=1,
        initializer_range=0.5,  # scores that differ (at 0.02 a random cross-encoder scores every pair alike)
    )
    transformers.BertModel(cfg).save_pretrained(d / "enc")
    transformers.BertForSequenceClassification(cfg).save_pretrained(d / "ce")
    for sub in ("enc", "ce"):
        tokenizer(words).save_pretrained(d / sub)
    return {"encoder": d / "enc", "teacher": d / "ce"}


def teacher_scores(path: Path, query: str, docs: list[str]) -> np.ndarray:
    from mlbuild.models.rerank import CrossEncoderScorer

    return CrossEncoderScorer(str(path), device="cpu").score([query] * len(docs), docs)


def test_listwise_teacher_scores_order_and_rank_permutation(tiny, tmp_path):
    from mlbuild.pipeline.cache import CallCache

    rows, corpus = crafted()
    cache = CallCache(tmp_path / "calls.sqlite")
    kw = dict(exclude_same=["parallel_id"], num_candidates=4, teacher=str(tiny["teacher"]), device="cpu")
    step, out = mine(
        rows, corpus, ctx_kw={"cache": cache}, output_format="listwise", retrievers=["dense", "bm25"], **kw
    )
    assert step.ctx.models["teacher"]["id"] == str(tiny["teacher"])
    df = out.rows
    for r in df.head(5).iter_rows(named=True):
        want = teacher_scores(tiny["teacher"], r["query"], r["docs"])
        assert r["teacher_scores"] == pytest.approx(want.tolist(), abs=1e-5)
    assert all(len({round(x, 4) for x in ts}) > 2 for ts in df["teacher_scores"])  # the order is not ties
    for ts, order in df.select("teacher_scores", "teacher_order").iter_rows():
        assert sorted(order) == list(range(len(ts)))
        assert order != list(range(len(ts))) or ts == sorted(ts, reverse=True)
        assert all(ts[a] >= ts[b] for a, b in zip(order, order[1:]))  # the ordering follows the scores
    report = step.finalize(out.stats)
    assert f"Teacher: `{tiny['teacher']}`" in report.markdown and "Layout: `listwise`, 4 candidates" in report.markdown
    assert "teacher" in report.summary and "listwise" in report.summary
    perm = mine(rows, corpus, ctx_kw={"cache": cache}, output_format="rank-permutation", **kw)[1].rows
    for r in perm.iter_rows(named=True):
        order = [int(x.strip("[]")) - 1 for x in r["permutation"].split(" > ")]
        assert sorted(order) == list(range(len(r["docs"])))
        ts = r["teacher_scores"]
        assert all(ts[a] >= ts[b] for a, b in zip(order, order[1:]))


def test_teacher_scores_come_from_the_call_cache_on_a_rerun(tiny, tmp_path, monkeypatch):
    from mlbuild.models.rerank import CrossEncoderScorer
    from mlbuild.pipeline.cache import CallCache

    rows, corpus = crafted()
    cache = CallCache(tmp_path / "calls.sqlite")
    kw = dict(output_format="listwise", num_candidates=3, teacher=str(tiny["teacher"]), device="cpu")
    calls = []
    real = CrossEncoderScorer.score

    def counting(self, queries, passages):
        calls.append(len(queries))
        return real(self, queries, passages)

    monkeypatch.setattr(CrossEncoderScorer, "score", counting)
    first = mine(rows, corpus, ctx_kw={"cache": cache}, **kw)[1].rows
    assert sum(calls) > 0
    calls.clear()
    again = mine(rows, corpus, ctx_kw={"cache": cache}, **kw)[1].rows
    assert calls == [] and again.equals(first)


def test_margin_layout_is_the_teacher_difference(tiny):
    rows, corpus = crafted()
    step, out = mine(
        rows,
        corpus,
        output_format="margin",
        num_negatives=2,
        exclude_same=["parallel_id"],
        teacher=str(tiny["teacher"]),
        device="cpu",
    )
    df = out.rows
    assert {"query", "positive", "negative", "margin"} <= set(df.columns) and df.height == 2 * (N + 2)
    for r in df.head(6).iter_rows(named=True):
        tp, tn = teacher_scores(tiny["teacher"], r["query"], [r["positive"], r["negative"]])
        assert r["margin"] == pytest.approx(float(tp - tn), abs=1e-5)
        assert r["teacher_positive_score"] - r["teacher_negative_score"] == pytest.approx(r["margin"], abs=1e-5)


# ------------------------------------------------------------------------------ recipe through the CLI
RECIPE = """
[dataset]
name = "listwise"
version = "1.0.0"
license = "cc-by-4.0"
description = "Listwise candidates."

[source]
uses = "jsonl.v1"
path = "rows.jsonl"
text_columns = ["query", "passage"]
id_column = "id"

[sources.corpus]
uses = "jsonl.v1"
path = "corpus.jsonl"
text_columns = ["text"]

[[steps]]
uses = "mine_negatives.v1"
positive_column = "passage"
corpus = "corpus"
corpus_id_column = "_id"
engine = "transformers"
model = "{model}"
retrievers = ["dense", "bm25"]
exclude_same = ["parallel_id"]
output_format = "{fmt}"
num_candidates = 4
teacher = "{teacher}"
device = "cpu"
"""


def test_cli_run_writes_the_layout_and_names_the_teacher(tiny, write_recipe, tmp_path):
    fmt = "listwise"
    rows, corpus = crafted()
    lines = [
        {"id": r["row_id"], "query": r["query"], "passage": r["positive"], "parallel_id": r["parallel_id"]}
        for r in rows.iter_rows(named=True)
    ]
    clines = [
        {"_id": i, "text": t, "parallel_id": p} for t, p, i in corpus.select("text", "parallel_id", "_id").iter_rows()
    ]
    path = write_recipe(
        RECIPE.format(model=tiny["encoder"], teacher=tiny["teacher"], fmt=fmt),
        {
            "rows.jsonl": "".join(json.dumps(r) + "\n" for r in lines),
            "corpus.jsonl": "".join(json.dumps(r) + "\n" for r in clines),
        },
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = tmp_path / "out"
    p = subprocess.run(
        [sys.executable, "-m", "mlbuild.cli", "run", str(path), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    ds = next(out.glob("listwise/1.0.0"))
    df = pl.concat([pl.read_parquet(f) for f in sorted((ds / "data").rglob("*.parquet"))])
    assert df.height == N
    if fmt == "listwise":
        assert {"docs", "doc_ids", "labels", "scores", "retrievers", "teacher_scores", "teacher_order"} <= set(
            df.columns
        )
    else:
        assert {"query", "pos", "neg", "pos_scores", "neg_scores", "prompt"} <= set(df.columns)
    card = (ds / "README.md").read_text()
    assert str(tiny["teacher"]) in card and fmt in card
    assert f"Layout: `{fmt}`" in (ds / "reports" / "mine_negatives.md").read_text()


@pytest.mark.slow  # the packaged models: bergamot-en-pt, multilingual-e5-small
def test_mine_listwise_recipe_keeps_translations_out(tmp_path):
    from mlbuild.pipeline.runner import Runner
    from mlbuild.recipe import load_recipe

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "mine-listwise.toml"
    res = Runner(load_recipe(recipe), tmp_path / "out", quiet=True, limit=12).run()
    df = pl.concat([pl.read_parquet(f) for f in sorted((res.dataset_dir / "data").rglob("*.parquet"))])
    assert df.height > 12  # English and Portuguese queries
    pid = {d: r["parallel_id"] for r in df.iter_rows(named=True) for d, lab in zip(r["docs"], r["labels"]) if lab}
    for r in df.iter_rows(named=True):
        assert len(set(r["docs"])) == len(r["docs"]) == 8 and sum(r["labels"]) == 1
        assert all(pid.get(d) != r["parallel_id"] for d, lab in zip(r["docs"], r["labels"]) if not lab)
