"""The projection checks as pure functions (each a Verdict), the acceptance gate, the per-language counts
and the report built from them."""

from __future__ import annotations

from mlbuild import spans as S
from mlbuild.projection import checks, counts
from mlbuild.projection.rows import Projected

Sp = S.Span


def test_source_spans_and_empty_translation():
    v = checks.source_spans(["abc", "abc", ""], [[Sp(0, 2, "X")], [Sp(1, 9, "X")], []])
    assert v.reasons == [None, "invalid_source_spans", None]
    assert v.details[1] and v.details[0] is None
    v = checks.empty_translation(["a", " ", ""], "MT returned an empty text")
    assert (
        v.reasons == [None, "empty_translation", "empty_translation"] and v.details[1] == "MT returned an empty text"
    )
    # with spans: a row without spans has nothing to carry and passes
    v = checks.empty_translation(["", ""], "empty", spans=[[], [Sp(0, 1, "X")]])
    assert v.reasons == [None, "empty_translation"]


def test_markers_verdict_names_the_category_and_lists_every_problem():
    ok = S.Extraction("a b", [Sp(0, 1, "X")], "ok")
    bad = S.Extraction("a b", [None, None], "missing_marker", ["missing_marker: span 1", "wrong_order: span 2"])
    v = checks.markers([ok, None, bad])
    assert v.reasons == [None, None, "missing_marker"]
    assert v.details == [None, None, "missing_marker: span 1; wrong_order: span 2"]


def test_aligned_checks_run_in_order():
    src = [[Sp(0, 1, "A"), Sp(2, 3, "B")]] * 4
    v = checks.aligned(
        problems=[["unaligned: span 1 ('x')", "discontinuous: span 2 ('y')"], [], [], []],
        projected=[[Sp(0, 4, "B")], [Sp(0, 4, "A"), Sp(2, 6, "B")], [Sp(0, 1, "A"), Sp(2, 3, "B")], []],
        sources=src,
        confidences=[0.0, 1.0, 0.3, 0.9],
        min_confidence=0.5,
    )
    assert v.reasons == ["unaligned", "crossed_spans", "low_confidence", None]
    assert v.details[0] == "unaligned: span 1 ('x'); discontinuous: span 2 ('y')"
    assert v.details[1] == "crossed_spans: projected spans overlap" and v.details[2] == "low_confidence: 0.30 < 0.5"
    # spans that nest in the source may overlap in the target
    nested = [Sp(0, 5, "A"), Sp(0, 2, "B")]
    assert checks.crossed_spans([[Sp(0, 5, "A"), Sp(0, 2, "B")]], [nested]).reasons == [None]


def test_plain_text_check():
    v = checks.plain_text([True, False], [[], ["Sfia"]], ["x", "Pedro contou a Sofia"])
    assert v.reasons == [None, "low_confidence"]
    assert (
        v.details[1]
        == "not in the translation made without markers: 'Sfia' (that translation: 'Pedro contou a Sofia')"
    )


def test_record_keeps_passing_rows_and_acceptance_keeps_low_confidence():
    rows = [Projected(), Projected(), Projected()]
    checks.record(rows, [2, 0], checks.empty_translation(["", "x"], "empty"))
    assert [r.status for r in rows] == ["ok", "ok", "empty_translation"]
    rows[1].status, rows[1].detail = "low_confidence", "0.2 < 0.5"
    gate = checks.acceptance(rows)
    assert gate.reasons == [None, None, "empty_translation"] and gate.details == [None, None, "empty"]


def test_counts_per_language_and_report():
    a = Projected(text="a b", spans=[Sp(0, 1, "X")], method="markers", repairs=["stray_space"])
    b = Projected(status="missing_marker", method="markers", markers_failure="missing_marker", detail="d")
    c = Projected(
        text="c", spans=[Sp(0, 1, "X")], status="low_confidence", method="align", markers_failure="wrong_order"
    )
    stats = counts.count([a, b, c], [[Sp(0, 1, "X")], None, [Sp(0, 1, "Y")]], ["por_Latn", "por_Latn", "spa_Latn"])
    pt = stats["por_Latn"]
    assert (pt["rows_in"], pt["projected"], pt["review_queued"], pt["spans_projected"]) == (2, 1, 1, 1)
    assert pt["failed"] == {"missing_marker": 1} and pt["repairs"] == {"stray_space": 1}
    assert pt["markers_failed"] == {"missing_marker": 1} and pt["recovered_by_align"] == 0
    assert pt["gold"] == {"rows": 1, "tp": 1, "fp": 0, "fn": 0}
    es = stats["spa_Latn"]
    assert es["low_confidence"] == 1 and es["recovered_by_align"] == 1 and es["gold"]["fp"] == 1
    assert "gold" not in counts.count([a], [None], ["x"])["x"]
    rep = counts.report(stats, method="fallback", marker_style="brackets", aligner="eflomal")
    assert rep.data["languages"]["por_Latn"]["gold"]["f1"] == 1.0
    assert "missing_marker: 1 (markers failed: missing_marker 1; recovered by alignment: 0)" in rep.markdown
    assert (
        rep.summary.startswith("Span projection:")
        and counts.report({}, method="x", marker_style=None, aligner=None) is None
    )
