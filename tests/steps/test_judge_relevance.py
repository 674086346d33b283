"""judge_relevance.v1: grade parsing and majority votes, kappa and confusion against known values, the two
input layouts (pairs / lists) in both modes, batching and the call cache, token accounting, an end-to-end
recipe against a fake OpenAI-compatible server, and a tiny random transformers model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers_http import FakeOpenAIServer

from mlbuild.accounting import approx_tokens
from mlbuild.errors import RecipeError
from mlbuild.judging.agreement import agreement, confusion_markdown, kappa
from mlbuild.judging.grades import majority, parse_grade
from mlbuild.pipeline.base import ROW_ID, RunContext
from mlbuild.pipeline.cache import CallCache
from mlbuild.pipeline.runner import Runner
from mlbuild.recipe import load_recipe
from mlbuild.steps import judge_relevance as J
from mlbuild.steps.judge_relevance import JudgeParams, JudgeRelevance

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize(
    ("text", "grade"),
    [
        ("##final score: 2", 2),
        (" 3", 3),
        (" 1\n", 1),
        ("**Final score:** 0", 0),
        ("M: 2, T: 3\n##final score: 1", 1),
        ("##final score: 1 ... ##final score: 3", 3),  # the last one counts
        ("2. The passage answers it.", 2),
        ("Score = 3", 3),
        ("Relevance: 0 (unrelated)", 0),
        ("##final score: 5", None),
        ("12", None),
        ("2.5", None),
        ("The passage is relevant.", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_grade(text, grade):
    assert parse_grade(text) == grade


def test_majority_vote():
    assert majority([1, 2, 2]) == (2, 2)
    assert majority([3, 3, 3]) == (3, 3)
    assert majority([1, 2]) == (1, 1)  # a tie goes to the lower grade
    assert majority([None, 3, None]) == (3, 1)
    assert majority([None, None]) == (None, 0)


# ------------------------------------------------------------------------------------------ agreement
def test_kappa_known_values():
    # the textbook 2x2 table: observed agreement 0.7, chance 0.5 -> kappa 0.4
    assert kappa([(0, 0, 20), (0, 1, 5), (1, 0, 10), (1, 1, 15)]) == pytest.approx(0.4)
    # perfect agreement, and agreement no better than chance
    assert kappa([(0, 0, 5), (3, 3, 5)]) == pytest.approx(1.0)
    assert kappa([(0, 0, 1), (0, 1, 1), (1, 0, 1), (1, 1, 1)]) == pytest.approx(0.0)
    # one label only on both sides: undefined
    assert kappa([(2, 2, 7)]) is None
    assert kappa([]) is None


def test_weighted_kappa_matches_expanded_labels():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(0)
    ref = rng.integers(0, 4, 300)
    judged = np.clip(ref + rng.integers(-1, 2, 300), 0, 3)
    cells: dict[tuple[int, int], int] = {}
    for r, j in zip(ref, judged):
        cells[(int(r), int(j))] = cells.get((int(r), int(j)), 0) + 1
    flat = [(r, j, n) for (r, j), n in cells.items()]
    for w in (None, "quadratic"):
        assert kappa(flat, w) == pytest.approx(cohen_kappa_score(ref, judged, weights=w))


def test_agreement_summary_and_table():
    conf = {"3/3": 8, "3/2": 2, "3/0": 1, "0/0": 7, "0/1": 2, "0/3": 1, "0/unparsed": 4}
    a = agreement(conf, relevant_at=2, reference_relevant_at=2)
    assert a["pairs"] == 21 and a["unparsed"] == 4
    assert a["precision_relevant"] == pytest.approx(10 / 11) and a["recall_relevant"] == pytest.approx(10 / 11)
    assert a["exact_agreement"] == pytest.approx(15 / 21) and a["binary_agreement"] == pytest.approx(19 / 21)
    assert a["kappa_binary"] == pytest.approx(1 - (2 / 21) / (1 - ((11 * 11 + 10 * 10) / 21**2)))
    table = confusion_markdown(conf)
    assert "| 0 | 7 | 2 | 0 | 1 | 4 |" in table and "| 3 | 1 | 0 | 2 | 8 | 0 |" in table


# ------------------------------------------------------------------------------------------ fake model
class FakeLLM:
    """Answers by the passage: 'relevant' -> 3, 'partly' -> 2, 'noise' -> garbage, else 0; records calls."""

    id = "fake-judge"
    revision = "r1"

    def __init__(self, answer=None):
        self.calls: list[list[str]] = []
        self.seeds: list[int] = []
        self.usage = {"generated_tokens": 0, "seconds": 0.0, "prompts": 0}
        self.answer = answer

    def generate(self, prompts, *, max_new_tokens, temperature, top_p, stop, seed, **kw):
        self.calls.append(list(prompts))
        self.seeds.append(seed)
        out = []
        for p in prompts:
            passage = re.findall(r"Passage: (.*)", p)[-1]
            if self.answer is not None:
                out.append(self.answer(passage, seed))
            elif "noise" in passage:
                out.append(" I cannot tell")
            else:
                out.append(" 3" if "relevant" in passage else " 2" if "partly" in passage else " 0")
        return out


def make(monkeypatch, llm=None, ctx=None, **params) -> tuple[JudgeRelevance, FakeLLM]:
    llm = llm or FakeLLM()
    monkeypatch.setattr(J, "load_llm", lambda *a, **k: llm)
    step = JudgeRelevance(JudgeParams(**params), ctx or RunContext(recipe_dir=ROOT, device="cpu"))
    step.setup()
    return step, llm


def triplets() -> pl.DataFrame:
    return pl.DataFrame(
        {
            ROW_ID: ["a", "b", "c", "d", "e"],
            "query": ["q1", "q2", "q3", "", "q5"],
            "positive": ["p"] * 5,
            "negative": ["a relevant text", "unrelated", "noise here", "unrelated", "partly related"],
            "lang": ["eng_Latn", "eng_Latn", "kir_Cyrl", "eng_Latn", "kir_Cyrl"],
        }
    )


def test_triplets_false_negatives_go_to_rejects(monkeypatch):
    step, llm = make(monkeypatch, batch_size=2)
    out = step.process(triplets())
    assert out.rows[ROW_ID].to_list() == ["b", "c"]
    assert out.rows["grade"].to_list() == [0, None]  # 'c' unparsed, kept (on_unparsed = keep)
    rej = {r[ROW_ID]: r for r in out.rejects.to_dicts()}
    assert rej["a"]["reason"] == "false_negative" and rej["a"]["detail"] == "graded 3 (relevant at 2)"
    assert rej["e"]["reason"] == "false_negative" and rej["d"]["reason"] == "empty_query"
    # batched per language: 2 English prompts in one call, 2 Kyrgyz in one call (batch_size 2)
    assert sorted(len(c) for c in llm.calls) == [2, 2]
    j = out.stats["judge"]["by_lang"]
    assert j["eng_Latn"]["grades"] == {"3": 1, "0": 1} and j["eng_Latn"]["rejected"] == {"empty_query": 1}
    assert j["kir_Cyrl"]["unparsed"] == 1 and j["kir_Cyrl"]["dropped"] == {"false_negative": 1}
    t = out.stats["tokens"]["eng_Latn"]
    assert t["prompts"] == 2 and t["computed_prompts"] == 2 and t["out"] == 2  # ' 3', ' 0' = 1 token each
    prompt = llm.calls[0][0]
    assert prompt.endswith("##final score:") and t["in"] == sum(approx_tokens(p) for p in llm.calls[0])
    assert out.stats["token_count_method"] == "approx:utf8_bytes/4"
    report = step.finalize(out.stats)
    assert "2 false negatives dropped" in report.summary and "kir_Cyrl" in report.markdown


def test_qrels_mode_keeps_every_row_and_drop_unparsed(monkeypatch):
    step, _ = make(monkeypatch, mode="qrels", on_unparsed="drop")
    out = step.process(triplets())
    assert out.rows[ROW_ID].to_list() == ["a", "b", "e"] and out.rows["grade"].to_list() == [3, 0, 2]
    reasons = dict(zip(out.rejects[ROW_ID], out.rejects["reason"]))
    assert reasons == {"c": "judge_unparsed", "d": "empty_query"}
    assert "I cannot tell" in out.rejects.filter(pl.col(ROW_ID) == "c")["detail"][0]


def test_votes_use_seeds_and_the_majority(monkeypatch):
    answers = {0: " 3", 1: " 1", 2: " 1"}  # by seed offset: majority 1
    llm = FakeLLM(answer=lambda passage, seed: answers[seed - 100])
    step, llm = make(monkeypatch, llm, samples=3, temperature=0.7, seed=100, mode="qrels")
    out = step.process(triplets().head(2))
    assert sorted(set(llm.seeds)) == [100, 101, 102]
    assert out.rows["grade"].to_list() == [1, 1]
    assert out.rows["grade_votes"].to_list() == [[3, 1, 1], [3, 1, 1]]
    assert out.stats["judge"]["by_lang"]["eng_Latn"]["unanimous"] == 0
    assert out.stats["tokens"]["eng_Latn"]["prompts"] == 6


def test_the_call_cache_makes_a_rerun_free(monkeypatch, tmp_path):
    cache = CallCache(tmp_path / "c.sqlite")
    ctx = RunContext(recipe_dir=ROOT, cache=cache)
    step, llm = make(monkeypatch, ctx=ctx)
    first = step.process(triplets())
    n = sum(len(c) for c in llm.calls)
    step2, llm2 = make(monkeypatch, ctx=ctx)
    again = step2.process(triplets())
    assert n == 4 and llm2.calls == []
    assert again.rows.equals(first.rows)
    t = again.stats["tokens"]["eng_Latn"]
    assert t["prompts"] == 2 and t["computed_prompts"] == 0 and t["in"] == first.stats["tokens"]["eng_Latn"]["in"]


def lists() -> pl.DataFrame:
    return pl.DataFrame(
        {
            ROW_ID: ["r1", "r2", "r3", "r4"],
            "query": ["q1", "q2", "q3", "q4"],
            "candidates": [
                ["unrelated a", "a relevant one", "noise", "unrelated b"],
                ["a relevant x", "partly y"],
                ["unrelated c", ""],
                ["x", "y"],
            ],
            "cand_ids": [["d1", "d2", "d3", "d4"], ["d5", "d6"], ["d7", "d8"], ["d9"]],
            "ref": [[0, 3, 0, 1], [3, 2], [0, None], [0, 0]],
        }
    )


def test_lists_remove_false_negatives_with_their_aligned_entries(monkeypatch):
    step, _ = make(monkeypatch, passage_column="candidates", aligned_columns=["cand_ids"], reference_column="ref")
    out = step.process(lists())
    assert out.rows[ROW_ID].to_list() == ["r1", "r3"]
    r1 = out.rows.row(0, named=True)
    assert r1["candidates"] == ["unrelated a", "noise", "unrelated b"] and r1["cand_ids"] == ["d1", "d3", "d4"]
    assert r1["grade"] == [0, None, 0]
    assert out.rows.row(1, named=True)["grade"] == [0, None]  # the empty candidate is not judged
    rej = {r[ROW_ID]: r for r in out.rejects.to_dicts()}
    assert rej["r1/c1"]["candidate"] == "a relevant one" and rej["r1/c1"]["reason"] == "false_negative"
    assert rej["r2/c0"]["grade"] == 3 and rej["r2/c1"]["grade"] == 2
    assert rej["r2"]["reason"] == "no_candidates_left" and rej["r4"]["reason"] == "misaligned"
    conf = out.stats["judge"]["confusion"]["und"]
    assert conf == {"0/0": 2, "3/3": 2, "0/unparsed": 1, "1/0": 1, "2/2": 1}
    rep = step.finalize(out.stats)
    assert rep.data["agreement"]["all"]["pairs"] == 6 and "## Agreement with `ref`" in rep.markdown


def test_a_users_template_renders_in_the_sandbox(monkeypatch, tmp_path):
    """A template from the recipe folder: its name, version and hash go to the manifest; one that reaches for
    Python internals is refused with its file and line before any model loads, or at render time."""
    ctx = RunContext(recipe_dir=tmp_path, device="cpu")
    (tmp_path / "mine.v2.j2").write_text("Query: {{ query }}\nPassage: {{ passage }}\n##final score:")
    step, llm = make(monkeypatch, ctx=ctx, template="mine.v2.j2", mode="qrels")
    assert step.process(triplets()).rows["grade"].to_list() == [3, 0, None, 2]
    assert llm.calls[0][0] == "Query: q1\nPassage: a relevant text\n##final score:"
    assert ctx.extra["template"]["file"] == "mine.v2.j2" and ctx.extra["template"]["version"] == "v2"
    (tmp_path / "evil.v1.j2").write_text("{{ passage }}\n{{ query.__class__.__mro__[1].__subclasses__() }}")
    loaded = []
    monkeypatch.setattr(J, "load_llm", lambda *a, **k: loaded.append(1))
    bad = JudgeRelevance(JudgeParams(template="evil.v1.j2"), ctx)
    with pytest.raises(RecipeError, match=r"evil.v1.j2: line 2: .*__class__") as e:
        bad.setup()
    assert e.value.exit_code == 2 and not loaded
    (tmp_path / "attr.v1.j2").write_text("{% set n = '_' ~ '_class_' ~ '_' %}{{ query|attr(n) }}")
    step, _ = make(monkeypatch, ctx=ctx, template="attr.v1.j2")
    with pytest.raises(RecipeError, match="template"):
        step.process(triplets())


def test_bad_layout_and_params_are_reported(monkeypatch, write_recipe):
    step, _ = make(monkeypatch, passage_column="n")
    with pytest.raises(RecipeError, match="expected text or a list"):
        step.process(pl.DataFrame({ROW_ID: ["a"], "query": ["q"], "n": [3]}))
    text = RECIPE.replace('base_url = "${vars.base_url}"\n', "").replace("samples = 1", "samples = 3")
    text = text.replace("input = 0.15", "inptu = 0.15").replace("output = 0.6", "output = -1.0")
    path = write_recipe(text, {"data/judge/triplets.jsonl": _triplet_lines()})
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    msg = str(e.value)
    for part in ("base_url", "temperature > 0", "price -> inptu", "did you mean 'input'", "price -> output"):
        assert part in msg


# ------------------------------------------------------------------------------------------ recipe + server
RECIPE = (ROOT / "recipes" / "judge-negatives.toml").read_text()


def _triplet_lines() -> str:
    rows = [
        ("en1", "where is the station", "The station is by the river.", "The station is next to the river.", "en"),
        ("en2", "how tall is the tower", "The tower is 300 m tall.", "Bananas are yellow.", "en"),
        ("ky1", "бекет кайда", "The station is by the river.", "The weather is nice today.", "ky"),
        ("ky2", "китеп кайда", "The book is on the table.", "The book is on the table, near a lamp.", "ky"),
    ]
    return "".join(
        json.dumps({"id": i, "query": q, "positive": p, "negative": n, "lang": lang}) + "\n"
        for i, q, p, n, lang in rows
    )


def _server_reply(body):
    content = body["messages"][-1]["content"]
    passage = re.findall(r"Passage: (.*)", content)[-1]
    return "##final score: 3" if "station is next" in passage or "near a lamp" in passage else "##final score: 0"


def test_recipe_against_an_openai_compatible_server(write_recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_TEST_KEY", "sk-judge-secret")
    with FakeOpenAIServer(_server_reply) as srv:
        path = write_recipe(RECIPE, {"data/judge/triplets.jsonl": _triplet_lines()})
        sets = [f"vars.base_url={srv.base_url}", "vars.model=test-judge", "steps.judge.api_key_env=JUDGE_TEST_KEY"]
        res = Runner(load_recipe(path, sets), tmp_path / "out", quiet=True).run()
        n = len(srv.requests)
        assert n == 4 and srv.requests[0].path.endswith("/chat/completions")
        assert srv.requests[0].headers["Authorization"] == "Bearer sk-judge-secret"
        m = res.manifest
        judge = next(s for s in m["steps"] if s["uses"] == "judge_relevance.v1")
        assert judge["rows_in"] == 4 and judge["rows_out"] == 2 and judge["dropped"] == {"false_negative": 2}
        assert any(v["id"] == "test-judge" for v in m["models"].values())
        data = pl.concat([pl.read_parquet(p) for p in res.dataset_dir.glob("data/*/*.parquet")])
        assert sorted(data["id"].to_list()) == ["en2", "ky1"] and data["grade"].to_list() == [0, 0]
        rep = json.loads((res.dataset_dir / "reports" / "judge.json").read_text())
        tokens = rep["tokens"]
        assert tokens["total"]["prompts"] == 4 and tokens["total"]["reported_in"] == 4  # the fake server says 1 each
        assert tokens["cost"]["currency"] == "USD" and tokens["cost"]["dataset"] > 0
        card = (res.dataset_dir / "README.md").read_text()
        assert "false negatives dropped" in card and "USD" in card
        files = [p for p in res.dataset_dir.rglob("*") if p.is_file()]
        assert not any("sk-judge-secret" in p.read_text(errors="ignore") for p in files)
        again = Runner(load_recipe(path, sets), tmp_path / "out", quiet=True, resume=False, overwrite=True).run()
        assert again.fingerprint == res.fingerprint and len(srv.requests) == n  # all from the call cache


def test_dry_run_estimate_from_the_recipe(write_recipe):
    from mlbuild.accounting import estimate_recipe, render_estimate

    path = write_recipe(RECIPE, {"data/judge/triplets.jsonl": _triplet_lines()})
    recipe = load_recipe(path, ["vars.base_url=http://127.0.0.1:9/v1"])
    (est,) = estimate_recipe(recipe, sample_rows=2)
    assert est.estimated and est.rows_sampled == 2 and est.rows_total == 4
    step = JudgeRelevance(recipe.steps[1].params, RunContext(recipe_dir=path.parent))
    prompts = [
        pr for _, pr in step.estimate_prompts(pl.read_ndjson(path.parent / "data/judge/triplets.jsonl").head(2))
    ]
    assert est.prompts == 4 and est.tokens_in == 2 * sum(approx_tokens(p) for p in prompts)
    assert est.tokens_out_max == 4 * 16 and list(est.by_lang) == ["en"]
    assert est.cost["min"] == pytest.approx(est.tokens_in * 0.15 / 1e6, rel=1e-3)
    text = render_estimate([est])
    assert "judge (judge_relevance.v1): ~4 calls" in text and "USD" in text


# ------------------------------------------------------------------------------------------ the shipped recipe, CLI
FALSE_NEGATIVES = {
    "en-2": "At its mouth",
    "en-4": "Every spider",
    "es-2": "La capital peruana",
    "pt-2": "Nenhum planeta",
}


def _shipped_reply(body):
    passage = re.findall(r"Passage: (.*)", body["messages"][-1]["content"])[-1]
    return "##final score: 3" if any(passage.startswith(s) for s in FALSE_NEGATIVES.values()) else "##final score: 1"


def test_shipped_recipe_through_the_cli_accounts_tokens_in_manifest_and_card(tmp_path, monkeypatch, capsys):
    """recipes/judge-negatives.toml as shipped, run with `mlbuild run` against a local OpenAI-compatible server:
    the planted false negatives are dropped and counted, the manifest's step row and the card carry tokens per
    language and the cost from the recipe's price table, and the key is nowhere in the output or the logs."""
    from mlbuild.cli import main

    recipe = ROOT / "recipes" / "judge-negatives.toml"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-shipped-secret")
    out = tmp_path / "out"
    with FakeOpenAIServer(_shipped_reply) as srv:
        args = ["run", str(recipe), "--out", str(out), "--set", f"vars.base_url={srv.base_url}"]
        assert main([*args, "--set", "vars.model=test-judge"]) == 0
        assert len(srv.requests) == 12
        assert all(r.headers["Authorization"] == "Bearer sk-shipped-secret" for r in srv.requests)
    logs = capsys.readouterr()
    (ds,) = [p.parent for p in out.rglob("manifest.json") if ".mlbuild" not in p.parts]
    m = json.loads((ds / "manifest.json").read_text())
    judge = next(s for s in m["steps"] if s["id"] == "judge")
    assert judge["dropped"] == {"false_negative": 4} and judge["rows_out"] == 8
    tokens = judge["tokens"]
    assert {k: v["prompts"] for k, v in tokens["by_lang"].items()} == {"en": 6, "es": 4, "pt": 2}
    assert tokens["total"]["reported_in"] == 12 and tokens["total"]["in"] > 12  # server's counts beside ours
    assert tokens["method"] == "approx:utf8_bytes/4"
    c = tokens["cost"]
    assert c["dataset"] == pytest.approx((tokens["total"]["in"] * 0.15 + tokens["total"]["out"] * 0.6) / 1e6)
    assert sum(c["by_lang"].values()) == pytest.approx(c["dataset"])
    assert "tokens" not in next(s for s in m["steps"] if s["id"] == "sample")
    card = (ds / "README.md").read_text()
    assert "### Model usage" in card and "| `judge` | es | 4 |" in card and "USD" in card
    (rej,) = (ds / "rejects").glob("*judge*.jsonl")
    rejected = [json.loads(x) for x in rej.read_text().splitlines()]
    assert sorted(r["row_id"] for r in rejected) == sorted(FALSE_NEGATIVES)
    assert {r["reason"] for r in rejected} == {"false_negative"} and {r["row"]["grade"] for r in rejected} == {3}
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not any("sk-shipped-secret" in p.read_text(errors="ignore") for p in files)
    assert "sk-shipped-secret" not in logs.out + logs.err


def test_dry_run_through_the_cli_estimates_and_writes_nothing(tmp_path, capsys):
    from mlbuild.cli import main

    recipe = ROOT / "recipes" / "judge-negatives.toml"
    assert main(["run", str(recipe), "--out", str(tmp_path / "out"), "--dry-run", "--dry-run-rows", "5"]) == 0
    text = capsys.readouterr().out
    assert "judge (judge_relevance.v1): ~12 calls" in text and "from 5 of 12 source rows" in text
    assert "USD" in text and "earlier steps (sample) may drop rows" in text
    assert not (tmp_path / "out").exists()
    assert main(["run", str(recipe), "--dry-run", "--dry-run-rows", "0"]) == 2
    assert "--dry-run-rows 0" in capsys.readouterr().err


QRELS_RECIPE = """
[dataset]
name = "graded"
version = "0.1.0"

[source]
uses = "jsonl.v1"
path = "queries.jsonl"

[sources.corpus]
uses = "jsonl.v1"
path = "corpus.jsonl"

[[steps]]
id = "judge"
uses = "judge_relevance.v1"
mode = "qrels"
passage_column = "candidates"
aligned_columns = ["doc_ids"]
grade_column = "doc_scores"
engine = "openai"
model = "test-judge"
base_url = "BASE_URL"

[output]
format = ["hf", "beir"]
"""


def test_graded_qrels_for_new_queries_in_beir_layout(write_recipe, tmp_path):
    """New queries with retrieved candidates, judged in qrels mode into doc_scores: the beir format writes the
    grades as a graded qrels file per language."""
    corpus = {"d1": "The station is by the river.", "d2": "Bananas are yellow.", "d3": "Trains leave hourly."}
    queries = [
        {"query_id": "q1", "query": "where is the station", "lang": "en", "doc_ids": ["d1", "d2", "d3"]},
        {"query_id": "q2", "query": "¿dónde está la estación?", "lang": "es", "doc_ids": ["d2", "d1"]},
    ]
    for q in queries:
        q["candidates"] = [corpus[d] for d in q["doc_ids"]]
    grade = {"The station is by the river.": 3, "Trains leave hourly.": 1}

    def reply(body):
        passage = re.findall(r"Passage: (.*)", body["messages"][-1]["content"])[-1]
        return f"##final score: {grade.get(passage, 0)}"

    files = {
        "queries.jsonl": "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in queries),
        "corpus.jsonl": "".join(
            json.dumps({"doc_id": k, "title": "", "passage": v}) + "\n" for k, v in corpus.items()
        ),
    }
    with FakeOpenAIServer(reply) as srv:
        path = write_recipe(QRELS_RECIPE.replace("BASE_URL", srv.base_url), files)
        res = Runner(load_recipe(path), tmp_path / "out", quiet=True).run()
    qrels = {
        lang: (res.dataset_dir / "beir" / lang / "qrels" / "test.tsv").read_text().splitlines()
        for lang in ("en", "es")
    }
    assert qrels["en"] == ["query-id\tcorpus-id\tscore", "q1\td1\t3", "q1\td2\t0", "q1\td3\t1"]
    assert qrels["es"] == ["query-id\tcorpus-id\tscore", "q2\td2\t0", "q2\td1\t3"]
    rep = json.loads((res.dataset_dir / "reports" / "judge.json").read_text())
    assert rep["by_lang"]["en"]["grades"] == {"0": 1, "1": 1, "3": 1} and rep["totals"]["judged"] == 5


# ------------------------------------------------------------------------------------------ tiny real model
@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("tiny-judge")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        ["final score relevant passage query 0 1 2 3"] * 20, vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"]
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.save_pretrained(d)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    LlamaForCausalLM(cfg).save_pretrained(d)
    return d


def test_tiny_transformers_model_runs_and_counts_with_its_tokenizer(tiny_lm):
    step = JudgeRelevance(
        JudgeParams(model=str(tiny_lm), max_new_tokens=3, mode="qrels", batch_size=4),
        RunContext(recipe_dir=ROOT, device="cpu"),
    )
    step.setup()
    out = step.process(triplets())
    assert out.rows.height == 4 and out.rows["grade"].dtype == pl.Int64
    j = out.stats["judge"]["by_lang"]
    assert sum(s["judged"] for s in j.values()) == 4
    assert out.stats["token_count_method"].startswith("tokenizer:")
    t = out.stats["tokens"]["eng_Latn"]
    assert t["in"] == sum(
        len(step.llm.tokenizer(p)["input_ids"])
        for p in [
            step.prompt.render("q1", "a relevant text", "eng_Latn"),
            step.prompt.render("q2", "unrelated", "eng_Latn"),
        ]
    )
    assert step.ctx.models["judge"]["revision"].startswith("sha256:")


def test_completions_api_ends_the_prompt_with_the_answer_prefix(tiny_lm):
    with FakeOpenAIServer(lambda body: " 2\n\nQuery: more") as srv:
        p = JudgeParams(
            engine="openai", api="completions", model="m", base_url=srv.base_url, mode="qrels", tokenizer=str(tiny_lm)
        )
        step = JudgeRelevance(p, RunContext(recipe_dir=ROOT))
        step.setup()
        out = step.process(triplets().head(2))
        body = srv.requests[0].body
        assert srv.requests[0].path.endswith("/completions") and body["prompt"].endswith("##final score:")
        assert body["stop"] == ["\n\n", "\nQuery:"] and body["max_tokens"] == 16
        assert out.rows["grade"].to_list() == [2, 2]
        assert out.stats["token_count_method"] == f"tokenizer:{tiny_lm}"
        assert out.stats["tokens"]["eng_Latn"]["reported_in"] == 2  # the fake server reports 1 per request
