"""The mining index and its on-disk stores: ids in first-seen order across batches, collisions detected,
texts and vectors read back, exclusions per query chunk equal to a brute-force set computation."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from mlbuild.mining.index import MiningIndex, Sources
from mlbuild.mining.keys import HashCollision, HashIndex, text_hashes
from mlbuild.mining.report import ScoreSample, quantiles
from mlbuild.mining.store import Scratch, TextStore, VectorFile


def test_hash_index_numbers_keys_in_first_seen_order_across_batches():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 5000, 20000).astype(np.uint64)
    ix = HashIndex()
    got = np.concatenate([ix.add(keys[s : s + 333]) for s in range(0, len(keys), 333)])
    first = {}
    want = np.array([first.setdefault(int(k), len(first)) for k in keys])
    assert (got == want).all() and len(ix) == len(first)
    assert len(ix.runs) < 12  # merged geometrically
    assert (ix.lookup(np.array([10**12], np.uint64))[0] == -1).all()


def test_hash_collisions_are_detected_not_merged():
    ix = HashIndex()
    ix.add(np.array([7, 8], np.uint64), np.array([1, 2], np.uint64))
    with pytest.raises(HashCollision):
        ix.add(np.array([7], np.uint64), np.array([99], np.uint64))
    with pytest.raises(HashCollision):
        HashIndex().add(np.array([5, 5], np.uint64), np.array([1, 2], np.uint64))
    h, c = text_hashes(["a", "b", "a"])
    assert h[0] == h[2] != h[1] and c[0] == c[2]


def test_text_store_and_vector_file_round_trip(tmp_path):
    ts = TextStore(tmp_path / "t.txt")
    texts = ["é", "", "hello\nworld", "\U0001f600 x", "z" * 1000]
    ts.append(texts[:2])
    ts.append(texts[2:])
    assert ts.get([4, 0, 2, 1, 3]) == [texts[4], texts[0], texts[2], texts[1], texts[3]]
    vf = VectorFile(tmp_path / "v.f32")
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    vf.append(a[:1])
    vf.append(a[1:])
    assert (vf.open() == a).all() and (vf.take([3, 0]) == a[[3, 0]]).all()
    with pytest.raises(ValueError):
        vf.append(np.zeros((1, 4), np.float32))
    with Scratch(tmp_path) as s:
        assert s.dir.is_dir()
    assert not s.dir.exists()


def _brute_same(rows: pl.DataFrame, corpus: pl.DataFrame, group: str | None, cols: list[str]):
    """(group, query) -> set of (group, text) sharing an exclude value with one of its positives."""
    ent_attrs: dict = {}
    for df, tcol in ((corpus, "text"), (rows, "positive")):
        for r in df.iter_rows(named=True):
            g = r[group] if group else ""
            for c in cols:
                if r[c] is not None:
                    ent_attrs.setdefault((g, r[tcol]), set()).add((c, r[c]))
            ent_attrs.setdefault((g, r[tcol]), set())
    pos: dict = {}
    for r in rows.iter_rows(named=True):
        g = r[group] if group else ""
        pos.setdefault((g, r["query"]), set()).add((g, r["positive"]))
    out = {}
    for (g, q), ps in pos.items():
        attrs = set().union(*(ent_attrs[p] for p in ps))
        out[(g, q)] = {e for e, a in ent_attrs.items() if e[0] == g and a & attrs} - ps
    return out


@pytest.mark.parametrize("group", [None, "lang"])
def test_exclusions_per_query_chunk_equal_a_set_computation(tmp_path, group):
    rng = np.random.default_rng(1)
    n = 300
    rows = pl.DataFrame(
        {
            "row_id": [f"r{i}" for i in range(n)],
            "query": [f"q{rng.integers(0, 120)}" for _ in range(n)],
            "positive": [f"p{rng.integers(0, 200)}" for _ in range(n)],
            "lang": [["en", "pt"][rng.integers(0, 2)] for _ in range(n)],
            "pid": [f"d{rng.integers(0, 40)}" if rng.random() < 0.8 else None for _ in range(n)],
        }
    )
    corpus = pl.DataFrame(
        {
            "text": [f"p{i}" for i in range(150, 400)],
            "lang": [["en", "pt", "es"][i % 3] for i in range(250)],
            "pid": [f"d{i % 55}" for i in range(250)],
        }
    )
    with Scratch(tmp_path) as s:
        ix = MiningIndex(s, Sources("query", "positive", group, ["pid"]))
        for b in range(0, corpus.height, 64):
            ix.add_corpus(corpus.slice(b, 64))
        for b in range(0, n, 37):
            ix.add_rows(rows.slice(b, 37))
        ix.finish()
        want = _brute_same(rows, corpus, group, ["pid"])
        qtext = ix.query_text.get(ix.query_qtext.array())
        groups = {code: g for g, code in ix.groups.items()}
        qg = ix.query_group.array()
        etext = ix.passage_text.get(ix.entry_text.array())
        eg = ix.entry_group.array()
        qids = np.arange(ix.n_queries)
        got: dict = {}
        for s0 in range(0, len(qids), 11):  # chunks
            r, e = ix.same_pairs(qids[s0 : s0 + 11])
            for rr, ee in zip(r, e):
                q = qids[s0 + rr]
                got.setdefault((groups[qg[q]], qtext[q]), set()).add((groups[eg[ee]], etext[ee]))
        assert {k: v for k, v in want.items() if v} == got
        # the grouped layout: each group's entries are one slice, in first-seen order
        for g in ix.groups:
            a, b = ix.group_slice(g)
            assert all(eg[e] == ix.groups[g] for e in ix.order[a:b]) and (np.diff(ix.order[a:b]) > 0).all()
        # first row of each query
        first = {}
        for i, (q, lg) in enumerate(rows.select("query", "lang").iter_rows()):
            first.setdefault((lg if group else "", q), i)
        assert [first[(groups[qg[q]], qtext[q])] for q in qids] == ix.first_rows().tolist()


def test_score_sample_is_exact_when_small_and_bounded_when_large():
    x = np.random.default_rng(0).standard_normal(5000)
    q = quantiles(x)
    assert q["count"] == 5000 and q["q50"] == pytest.approx(float(np.median(x)), abs=1e-6)
    s = ScoreSample(size=1000)
    for c in np.array_split(x, 17):
        s.add(c)
    q2 = s.quantiles()
    assert len(s.vals) == 1000 and q2["count"] == 5000 and q2["sampled"] == 1000
    assert q2["q00"] == pytest.approx(x.min()) and q2["q100"] == pytest.approx(x.max())
    assert abs(q2["q50"] - np.median(x)) < 0.15 and q2["mean"] == pytest.approx(x.mean(), abs=1e-6)
