"""The one filter framework: verdicts combine in order, on_fail drop/keep/flag, typed counts that
merge across shards into one card sentence."""

from __future__ import annotations

import polars as pl
import pytest

from mlbuild.pipeline import filters
from mlbuild.pipeline.base import merge_stats
from mlbuild.pipeline.filters import FilterCounts, Verdict


def rows() -> pl.DataFrame:
    return pl.DataFrame({"row_id": ["a", "b", "c"], "text": ["ok", "x", ""]})


def test_first_failure_wins_in_filter_order():
    short = Verdict.from_mask([False, True, True], "too_short", ["1", "1", "0"])
    empty = Verdict.from_mask([False, False, True], "empty", [None, None, "no text"])
    v = filters.first_failure([empty, short])
    assert v.reasons == [None, "too_short", "empty"]
    assert v.details == [None, "1", "no text"]
    assert v.failed() == {"empty": 1, "too_short": 1}
    with pytest.raises(ValueError):
        filters.first_failure([short, Verdict.passing(2)])


@pytest.mark.parametrize("on_fail", ["drop", "keep", "flag"])
def test_on_fail(on_fail):
    v = Verdict([None, "too_short", "empty"], [None, "1 char", "no text"])
    kept, rejects, stats = filters.apply(rows(), v, on_fail, ok_column="ok", reason_column="why")
    assert stats["checks"]["failed"] == {"empty": 1, "too_short": 1}
    assert stats["checks"]["checked"] == 3
    if on_fail == "drop":
        assert kept["row_id"].to_list() == ["a"]
        assert rejects.select("row_id", "reason", "detail").rows() == [
            ("b", "too_short", "1 char"),
            ("c", "empty", "no text"),
        ]
    elif on_fail == "keep":
        assert kept.equals(rows()) and rejects is None
    else:
        assert kept["ok"].to_list() == [True, False, False]
        assert kept["why"].to_list() == [None, "too_short", "empty"]
        assert rejects is None


def test_counts_merge_across_shards_into_the_card_sentence():
    a = filters.apply(rows(), Verdict([None, "x", None]), "keep")[2]
    b = filters.apply(rows(), Verdict(["x", "y", None]), "keep")[2]
    merged = merge_stats(a, b)
    c = FilterCounts.from_stats(merged["checks"])
    assert (c.checked, c.failed, c.on_fail) == (6, {"x": 2, "y": 1}, "keep")
    assert filters.summary(merged) == "3 of 6 rows failed the checks (kept): `x` 2, `y` 1."


def test_take_spreads_a_verdict_over_the_batch():
    v = Verdict(["bad", None], ["d", None]).take([2, 0], 4)
    assert v.reasons == [None, None, "bad", None] and v.details[2] == "d"
