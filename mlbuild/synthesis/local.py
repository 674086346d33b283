"""Run a chain of stages in this process over a small in-memory table (tests and scripts): each stage
sees the previous one's rows, the way the runner chains them, without shards or checkpoints."""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl

from ..pipeline.base import Step, StepOutput, collect, concat_rejects, merge_stats


class FrameTable:
    """A DataFrame with the reading interface of :class:`~mlbuild.pipeline.tables.TableRef`, cut into
    batches of ``batch_rows`` (several batches exercise the streaming code paths)."""

    def __init__(self, frame: pl.DataFrame, batch_rows: int = 50_000):
        self.frame, self.batch_rows = frame, batch_rows

    @property
    def rows(self) -> int:
        return self.frame.height

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns)

    def iter_batches(self, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
        df = self.frame if columns is None else self.frame.select(columns)
        yield from df.iter_slices(self.batch_rows)

    def read(self, columns: list[str] | None = None) -> pl.DataFrame:
        return self.frame if columns is None else self.frame.select(columns)


def run_stages(stages: list[tuple[str, Step]], table: pl.DataFrame, batch_rows: int = 50_000) -> StepOutput:
    """Every stage in turn over ``table`` (already set up); rows of the last, rejects and stats of all.
    A row stage gets its input in batches of ``batch_rows``."""
    rows, rejects, stats = table, [], {}
    for _name, stage in stages:
        outs: list[StepOutput] = []
        if stage.kind == "global":
            extra = stage.run_global(FrameTable(rows, batch_rows), outs.append) or {}
        else:
            outs = [stage.process(b) for b in rows.iter_slices(batch_rows)] or [stage.process(rows.clear())]
            extra = {}
        out = collect(outs)
        rows = out.rows
        rejects.append(out.rejects)
        stats = merge_stats(merge_stats(stats, out.stats), extra)
    return StepOutput(rows, concat_rejects(rejects), stats)


__all__ = ["FrameTable", "run_stages"]
