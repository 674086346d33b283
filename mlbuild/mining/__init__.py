"""Hard-negative mining at corpus scale, in pieces the ``mine_negatives.v1`` step puts together:

- :mod:`.rows`: input batches as the miner sees them (list positives split, empty rows rejected);
- :mod:`.keys`, :mod:`.store`: dense ids from hashed texts; growable columns, vector files, a text store;
- :mod:`.index`: the corpus and exclusion index, built in one streaming pass;
- :mod:`.vectors`: texts embedded chunk by chunk to disk, the corpus laid out by group;
- :mod:`.select`: candidates (with their retriever and teacher score) and their selection rules;
- :mod:`.mine`: exact search (:mod:`mlbuild.models.search`) and selection, a query chunk at a time;
- :mod:`.layouts`: output formats, one module each, registered by name;
- :mod:`.report`: bounded score samples and the report.

:func:`run_on_frame` mines a polars DataFrame directly (scripts, notebooks, tests)."""

from __future__ import annotations

from typing import Any

import polars as pl

from ..pipeline.base import StepOutput, collect


def run_on_frame(step: Any, frame: pl.DataFrame, batch_rows: int | None = None) -> StepOutput:
    """Run a set-up global step over ``frame`` read in batches of ``batch_rows``; all output in one
    :class:`StepOutput` whose stats are the step's (what ``finalize`` gets)."""
    from . import rows

    outs: list[StepOutput] = []
    old = rows.DEFAULT_BATCH_ROWS
    if batch_rows is not None:
        rows.DEFAULT_BATCH_ROWS = batch_rows
    try:
        stats = step.run_global(frame, outs.append) or {}
    finally:
        rows.DEFAULT_BATCH_ROWS = old
    out = collect(outs)
    return StepOutput(out.rows, out.rejects, stats)
