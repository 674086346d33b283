"""Executors run the shards of a row step and the whole-table call of a global step. The local executor
runs them in this process; another executor (Ray, :mod:`.ray_executor`) must produce the same files, so
each shard is one call of :func:`run_shard` and each global stage one call of :func:`run_global`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import polars as pl
from tqdm.auto import tqdm

from ..errors import MlbuildError, StepError
from . import checkpoint as ck
from .base import ROW_ID, Step, StepOutput

log = logging.getLogger(__name__)


def add_lang_counts(out: StepOutput) -> None:
    """Per-language counts of kept and rejected rows, when the rows carry a ``lang`` column."""
    if "lang" in out.rows.columns and out.rows.height:
        counts = out.rows.group_by("lang").len()
        out.stats.setdefault("by_lang", {})
        for lang, n in counts.iter_rows():
            out.stats["by_lang"].setdefault(str(lang), {})["rows_out"] = int(n)
    if out.rejects is not None and out.rejects.height and "lang" in out.rejects.columns:
        counts = out.rejects.group_by(["lang", "reason"]).len()
        for lang, reason, n in counts.iter_rows():
            d = out.stats.setdefault("by_lang", {}).setdefault(str(lang), {}).setdefault("dropped", {})
            d[reason] = d.get(reason, 0) + int(n)


def finish_output(step_name: str, batch_rows: int, out: StepOutput, seconds: float) -> StepOutput:
    if ROW_ID not in out.rows.columns:
        raise RuntimeError(f"step {step_name} returned rows without a '{ROW_ID}' column")
    dropped: dict[str, int] = {}
    if out.rejects is not None and out.rejects.height:
        if "reason" not in out.rejects.columns:
            raise RuntimeError(f"step {step_name} returned rejects without a 'reason' column")
        for reason, n in sorted(out.rejects.group_by("reason").len().iter_rows()):
            dropped[str(reason)] = int(n)
    out.stats = {
        "rows_in": batch_rows,
        "rows_out": out.rows.height,
        "dropped": dropped,
        "seconds": seconds,
        **{k: v for k, v in out.stats.items() if k not in ("rows_in", "rows_out", "dropped", "seconds")},
    }
    add_lang_counts(out)
    return out


def run_shard(step: Step, step_label: str, in_dir: ck.Loc, out_dir: ck.Loc, shard: str) -> dict[str, Any]:
    """Process one shard of a row step and write its files (marker last). Returns its stats."""
    batch = ck.read_shard(in_dir, shard)
    t0 = time.perf_counter()
    out = step.process(batch)
    out = finish_output(step_label, batch.height, out, time.perf_counter() - t0)
    ck.write_shard(out_dir, shard, out, step_label)
    return out.stats


def concat_frames(frames: list[pl.DataFrame]) -> pl.DataFrame:
    frames = [f for f in frames if f.width]
    if not frames:
        return pl.DataFrame({ROW_ID: []}, schema={ROW_ID: pl.Utf8})
    return pl.concat(frames, how="diagonal_relaxed")


def run_global(
    step: Step, step_label: str, in_dir: ck.Loc, in_shards: list[str], out_dir: ck.Loc, shard_rows: int
) -> list[str]:
    """Run a global step over the whole upstream table and write its shards, then the stage marker."""
    table = concat_frames([ck.read_shard(in_dir, s) for s in in_shards])
    t0 = time.perf_counter()
    try:
        out = step.process_table(table)
    except MlbuildError:
        raise
    except Exception as e:  # noqa: BLE001 - reported with the step's name
        raise StepError(step_label, f"{type(e).__name__}: {e}") from e
    out = finish_output(step_label, table.height, out, time.perf_counter() - t0)
    shards = []
    rows = out.rows
    n = max(1, -(-rows.height // shard_rows))
    for i in range(n):
        name = ck.shard_name(i)
        part = StepOutput(
            rows.slice(i * shard_rows, shard_rows), out.rejects if i == 0 else None, out.stats if i == 0 else {}
        )
        ck.write_shard(out_dir, name, part, step_label)
        shards.append(name)
    ck.mark_stage_done(out_dir, shards, {"rows": rows.height})
    return shards


def pending_shards(step_label: str, out_dir: ck.Loc, shards: list[str]) -> list[str]:
    """The shards of a row stage that have no marker yet (all of them on a first run)."""
    done = ck.done_shards(out_dir)
    todo = [s for s in shards if s not in done]
    if todo and len(todo) < len(shards):
        log.info("%s: resuming, %d of %d shards already done", step_label, len(shards) - len(todo), len(shards))
    return todo


def stage_bar(step_label: str, rows: int, quiet: bool) -> tqdm:
    """The progress bar of one stage, in rows (any executor)."""
    return tqdm(total=rows, desc=step_label, unit="row", disable=True if quiet else None, mininterval=1.0, leave=False)


class LocalExecutor:
    name = "local"

    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    def run_row_stage(
        self,
        step: Step,
        step_label: str,
        in_dir: ck.Loc,
        out_dir: ck.Loc,
        shards: list[str],
        shard_rows: dict[str, int],
        on_setup: Callable[[], None],
    ) -> None:
        todo = pending_shards(step_label, out_dir, shards)
        if not todo:
            return
        on_setup()
        with stage_bar(step_label, sum(shard_rows.get(s, 0) for s in todo), self.quiet) as bar:
            for shard in todo:
                run_shard(step, step_label, in_dir, out_dir, shard)
                bar.update(shard_rows.get(shard, 0))

    def run_global_stage(
        self,
        step: Step,
        step_label: str,
        in_dir: ck.Loc,
        in_shards: list[str],
        out_dir: ck.Loc,
        shard_rows: int,
        on_setup: Callable[[], None],
    ) -> list[str]:
        on_setup()
        return run_global(step, step_label, in_dir, in_shards, out_dir, shard_rows)

    def close(self) -> None:
        """Nothing to release (other executors shut their cluster connection down here)."""
