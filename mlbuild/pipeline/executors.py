"""Executors run the stages the runner plans. Every executor implements :class:`Executor`; the local one
runs everything in this process, another (Ray, :mod:`.ray_executor`) on a cluster, and both produce
the same files because each unit of work is one call of a function defined here:

- a **source part** (:func:`write_source_part`): read one part of the input, write its shards;
- a **row task** (:func:`run_task`): one shard (or a slice of one) of a row step;
- a **global stage** (:func:`run_global`): a global step streaming over its upstream table.

Stages are described by small frozen records (:class:`SourceStage`, :class:`RowStage`,
:class:`GlobalStage`) that carry the step id, the folders and the work, so no executor has to
guess anything from labels."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import polars as pl
from tqdm.auto import tqdm

from ..errors import MlbuildError, StepError
from . import checkpoint as ck
from .base import ROW_ID, Source, Step, StepOutput
from .checkpoint import ShardTarget, ShardWriter
from .tables import TableRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RowTask:
    """One unit of a row stage: rows ``[offset, offset + length)`` of upstream shard ``src`` (all of it
    when ``length`` is None) become output shard ``out``."""

    out: str
    src: str
    offset: int = 0
    length: int | None = None
    rows: int = 0  # rows in, for progress bars


@dataclass
class SourceStage:
    source: Source
    step_id: str  # "source" or "tables.<name>"
    label: str
    out_dir: Any
    parts: list[Any]
    limit: int | None
    target: ShardTarget
    side: str | None = None  # a side table of the source (its name), instead of the main rows


@dataclass
class RowStage:
    step: Step
    step_id: str
    label: str
    in_dir: Any
    out_dir: Any
    tasks: list[RowTask]
    on_setup: Callable[..., None]


@dataclass
class GlobalStage:
    step: Step
    step_id: str
    label: str
    table: TableRef
    out_dir: Any
    target: ShardTarget
    on_setup: Callable[..., None]
    timings: dict[str, float] = field(default_factory=dict)


class Executor(Protocol):
    """What the runner needs from an executor."""

    name: str

    def run_source(self, stage: SourceStage) -> list[str]: ...

    def run_row_stage(self, stage: RowStage) -> None: ...

    def run_global_stage(self, stage: GlobalStage) -> list[str]: ...

    def close(self) -> None: ...


# ------------------------------------------------------------------------------------------ units of work
def part_prefix(parts: list[Any], k: int) -> str:
    """Shard name prefix of source part ``k`` (names sort in input order)."""
    return "shard" if len(parts) == 1 else f"p{k:05d}"


def write_source_part(stage: SourceStage, k: int, progress: Callable[[int], None] | None = None) -> list[str]:
    """Read part ``k`` of a source (or of one of its side tables) and write its shards."""
    writer = ShardWriter(
        stage.out_dir, stage.label, stage.target, prefix=part_prefix(stage.parts, k), require_row_id=stage.side is None
    )
    if stage.side is not None:
        batches = (StepOutput(df, None, {"rows_in": df.height}) for df in stage.source.side_tables()[stage.side]())
    else:
        batches = stage.source.read(stage.parts[k], stage.limit)
    for out in batches:
        writer.emit(out)
        if progress is not None:
            progress(out.rows.height)
    return writer.close()


def read_task_input(in_dir: Any, task: RowTask) -> pl.DataFrame:
    batch = ck.read_shard(in_dir, task.src)
    if task.length is not None or task.offset:
        batch = batch.slice(task.offset, task.length)
    return batch


def finish_output(step_label: str, rows_in: int, out: StepOutput, seconds: float) -> StepOutput:
    """Add the counts every stage reports (rows in/out, drops by reason, per language, seconds)."""
    if ROW_ID not in out.rows.columns:
        raise RuntimeError(f"step {step_label} returned rows without a '{ROW_ID}' column")
    try:
        dropped = ck.count_rejects(out.rejects)
    except RuntimeError as e:
        raise RuntimeError(f"step {step_label} returned {e}") from None
    stats = {k: v for k, v in out.stats.items() if k not in ("rows_in", "rows_out", "dropped", "seconds")}
    out.stats = {"rows_in": rows_in, "rows_out": out.rows.height, "dropped": dropped, "seconds": seconds, **stats}
    by_lang = ck.lang_counts(out.rows, out.rejects)
    if by_lang:
        out.stats["by_lang"] = by_lang
    return out


def run_task(step: Step, step_label: str, in_dir: Any, out_dir: Any, task: RowTask) -> dict[str, Any]:
    """Process one task of a row step and write its shard (marker last). Returns its stats."""
    batch = read_task_input(in_dir, task)
    t0 = time.perf_counter()
    # a shard can be empty (every row of a part rejected upstream): nothing for the step to see
    out = step.process(batch) if batch.height else StepOutput(batch)
    out = finish_output(step_label, batch.height, out, time.perf_counter() - t0)
    ck.write_shard(out_dir, task.out, out, step_label)
    return out.stats


def run_global(step: Step, step_label: str, table: TableRef, out_dir: Any, target: ShardTarget) -> list[str]:
    """Run a global step over its upstream table, streaming its output into shards; then the stage's
    own stats and the stage marker."""
    ck.clear_stage(out_dir)
    writer = ShardWriter(out_dir, step_label, target)
    t0 = time.perf_counter()
    try:
        stats = step.run_global(table, writer.emit) or {}
    except MlbuildError:
        raise
    except Exception as e:  # reported with the step's name
        raise StepError(step_label, f"{type(e).__name__}: {e}") from e
    shards = writer.close()
    stats = {k: v for k, v in stats.items() if k not in ("rows_out", "dropped")}
    ck.write_json(out_dir / ck.STAGE_STATS, {**stats, "rows_in": table.rows, "seconds": time.perf_counter() - t0})
    ck.mark_stage_done(out_dir, shards, {"rows": writer.rows})
    return shards


def pending_tasks(step_label: str, out_dir: Any, tasks: list[RowTask]) -> list[RowTask]:
    """The tasks of a row stage that have no marker yet (all of them on a first run)."""
    done = ck.done_shards(out_dir)
    todo = [t for t in tasks if t.out not in done]
    if todo and len(todo) < len(tasks):
        log.info("%s: resuming, %d of %d shards already done", step_label, len(tasks) - len(todo), len(tasks))
    return todo


def stage_bar(step_label: str, rows: int | None, quiet: bool) -> tqdm:
    """The progress bar of one stage, in rows (any executor)."""
    return tqdm(total=rows, desc=step_label, unit="row", disable=True if quiet else None, mininterval=1.0, leave=False)


class LocalExecutor:
    """Runs every stage in this process, in order."""

    name = "local"

    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    def run_source(self, stage: SourceStage) -> list[str]:
        shards: list[str] = []
        with stage_bar(stage.label, None, self.quiet) as bar:
            for k in range(len(stage.parts)):
                shards += write_source_part(stage, k, bar.update)
        return shards

    def run_row_stage(self, stage: RowStage) -> None:
        todo = pending_tasks(stage.label, stage.out_dir, stage.tasks)
        if not todo:
            return
        stage.on_setup()
        with stage_bar(stage.label, sum(t.rows for t in todo), self.quiet) as bar:
            for task in todo:
                run_task(stage.step, stage.label, stage.in_dir, stage.out_dir, task)
                bar.update(task.rows)

    def run_global_stage(self, stage: GlobalStage) -> list[str]:
        stage.on_setup()
        return run_global(stage.step, stage.label, stage.table, stage.out_dir, stage.target)

    def close(self) -> None:
        """Nothing to release (other executors shut their cluster connection down here)."""
