"""Base classes: a source streams rows, a step maps rows (row step, shard by shard) or streams over the
whole table (global step), a report reads the final table and writes files under ``reports/``.

Rows flow as polars DataFrames with a stable string ``row_id`` column, in batches: no stage holds a
whole dataset in memory. A step declares the columns it reads (:meth:`Step.input_columns`) and the
columns it leaves (:meth:`Step.output_columns`), so the whole chain is checked before any model loads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

from .params import NoParams

ROW_ID = "row_id"


@dataclass
class RunContext:
    """What a component may use at run time. Built by the runner; tests build their own."""

    recipe_dir: Path = field(default_factory=Path.cwd)
    work_dir: Path | None = None  # checkpoints of this run
    cache: Any = None  # pipeline.cache.CallCache or None
    device: str = "auto"
    quiet: bool = True
    seed: int = 0
    tables: dict[str, Any] = field(default_factory=dict)  # named side tables: tables.TableRef (e.g. 'corpus')
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # model id -> {revision, ...} for manifest
    reports_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # manifest extras (template hashes, seeds...)

    def record_model(self, role: str, model_id: str, revision: str | None = None, **info: Any) -> None:
        self.models[role] = {"id": model_id, "revision": revision, **info}


@dataclass
class StepOutput:
    rows: pl.DataFrame
    rejects: pl.DataFrame | None = None  # original columns + 'reason' (+ optional 'detail')
    stats: dict[str, Any] = field(default_factory=dict)  # summable numbers, nested dicts allowed


@dataclass
class StepReport:
    """What a step tells about its run, returned by :meth:`Step.finalize`; the writer files it under
    ``reports/<step id>.json`` (``data``), ``reports/<step id>.md`` (``markdown``) and
    ``reports/<step id>.<name>.png`` (``plots``: name -> PNG bytes), and puts ``summary`` in the card."""

    summary: str = ""
    data: dict[str, Any] | None = None
    markdown: str | None = None
    plots: dict[str, bytes] = field(default_factory=dict)


def collect(outputs: Iterable[StepOutput]) -> StepOutput:
    """All batches of a stream in one output (for small inputs: tests, scripts)."""
    rows, rejects, stats = [], [], {}
    for out in outputs:
        if out.rows.width:
            rows.append(out.rows)
        if out.rejects is not None and out.rejects.height:
            rejects.append(out.rejects)
        stats = merge_stats(stats, out.stats)
    frame = pl.concat(rows, how="diagonal_relaxed") if rows else pl.DataFrame(schema={ROW_ID: pl.Utf8})
    return StepOutput(frame, pl.concat(rejects, how="diagonal_relaxed") if rejects else None, stats)


def reject(df: pl.DataFrame, reason: str | pl.Expr, detail: str | pl.Expr | None = None) -> pl.DataFrame:
    """Mark rows of ``df`` as rejected with a reason (and an optional detail)."""
    r = pl.lit(reason) if isinstance(reason, str) else reason
    out = df.with_columns(r.cast(pl.Utf8).alias("reason"))
    if detail is not None:
        d = pl.lit(detail) if isinstance(detail, str) else detail
        out = out.with_columns(d.cast(pl.Utf8).alias("detail"))
    return out


def concat_rejects(frames: list[pl.DataFrame | None]) -> pl.DataFrame | None:
    frames = [f for f in frames if f is not None and f.height]
    if not frames:
        return None
    return pl.concat(frames, how="diagonal_relaxed")


class Component:
    """Shared by sources, steps and reports: a registered, versioned name and declared params."""

    name: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams

    def __init__(self, params: Any, ctx: RunContext | None = None):
        self.params = params
        self.ctx = ctx or RunContext()

    @classmethod
    def check(cls, params: Any, columns: list[str] | None) -> list[tuple[str, str]]:
        """Extra checks beyond types (cross-parameter rules). Return (param, message) pairs."""
        return []

    @classmethod
    def doc(cls) -> str:
        return (cls.__doc__ or "").strip()


class Source(Component):
    """Reads the recipe's input as a stream of batches (:meth:`read`), never the whole input at once.

    A source may split its input into independent :meth:`parts` (byte ranges of a file, files of a
    folder) that executors read in parallel; the rows come out in the same order either way."""

    kind: ClassVar[str] = "source"

    def columns(self) -> list[str] | None:
        """Columns this source yields, found without reading everything (None when unknown)."""
        return None

    def columns_complete(self) -> bool:
        """False when :meth:`columns` comes from a sample of the input (checked again after reading)."""
        return True

    def side_table_names(self) -> list[str]:
        """Names of the side tables :meth:`side_tables` provides, known without reading."""
        return []

    def input_files(self) -> list[Path]:
        """Files whose checksums define the input (for the fingerprint and manifest)."""
        return []

    def parts(self) -> list[Any]:
        """Independent, ordered parts of the input (picklable descriptors); one part by default."""
        return [None]

    def read(self, part: Any = None, limit: int | None = None) -> Iterator[StepOutput]:
        """Batches of rows (with ``row_id``) and of rejected rows, in input order. ``limit``: stop after
        this many input records (lines, rows, sentences), counted before parsing. Each batch's
        ``stats["rows_in"]`` is the number of input records it consumed."""
        raise NotImplementedError

    def read_all(self, limit: int | None = None) -> StepOutput:
        """Every part read and checked, in one output: for small inputs (tests, scripts) only."""
        parts = self.parts() if limit is None else [None]
        out = collect(o for part in parts for o in self.read(part, limit))
        self.check_read(out.stats)
        return out

    def check_read(self, stats: dict[str, Any]) -> None:
        """Called once every part is read, with the merged stats of the stage: raise an InputError for
        problems only the whole input shows (a field the recipe names that no record has)."""

    def check_unique_ids(self) -> bool:
        """Whether row ids come from the data (an id column) and must be checked for duplicates; a
        duplicate becomes a reject (``duplicate_id``) naming the id."""
        return False

    def side_tables(self) -> dict[str, Callable[[], Iterator[pl.DataFrame]]]:
        """Extra named tables the source provides (a BEIR corpus, for example): name -> a function that
        streams the table's batches."""
        return {}

    def source_datasets(self) -> list[str]:
        return []


class Step(Component):
    """A row step maps each shard independently; a global step sees the whole table."""

    kind: ClassVar[str] = "row"  # "row" | "global"
    # What the card should say about the text and annotations this step makes.
    machine_generated_text: ClassVar[bool] = False
    machine_generated_annotations: ClassVar[bool] = False
    task_categories: ClassVar[tuple[str, ...]] = ()
    multilinguality: ClassVar[str | None] = None  # e.g. "translation"

    # engines that run a model on an accelerator when there is one (a step's ``engine`` parameter)
    gpu_engines: ClassVar[tuple[str, ...]] = ("transformers",)

    def input_columns(self) -> list[str]:
        return []

    def output_columns(self, columns: list[str]) -> list[str]:
        return list(columns)

    def resources(self) -> dict[str, float]:
        """What one worker of this step asks a cluster for (``num_gpus``, ``num_cpus``) unless the recipe's
        ``[resources.<id>]`` says otherwise: one GPU when the step's ``engine`` runs a model on one
        (see :attr:`gpu_engines`); the packaged CPU engines and HTTP endpoints need none."""
        engine = getattr(self.params, "engine", None)
        return {"num_gpus": 1.0} if engine in self.gpu_engines else {}

    def stages(self) -> list[tuple[str, Step]]:
        """The stages this step runs as, in order: ``[("", self)]`` for one stage. A step whose work has
        a cheap part that streams and a part that needs the whole table (generation on every worker,
        then a global filter) returns several named sub-steps, e.g. ``[("generate", Gen(...)),
        ("roundtrip", RoundTrip(...))]``: each is a stage of its own (own kind, setup, checkpoints
        and fingerprint), and :meth:`finalize` of this step sees their stats merged."""
        return [("", self)]

    def setup(self) -> None:
        """Load models. Called once, just before the first shard that needs work."""

    # A row step's preferred shard size in rows, by the work per row: a model step asks for small shards
    # (a resume repeats less, a cluster spreads the work); None keeps the upstream shards (cheap steps).
    rows_per_shard: ClassVar[int | None] = None

    def process(self, batch: pl.DataFrame) -> StepOutput:
        raise NotImplementedError

    def run_global(self, table: Any, emit: Callable[[StepOutput], None]) -> dict[str, Any]:
        """A global step: read ``table`` (a :class:`~mlbuild.pipeline.tables.TableRef`, batch by batch) and
        ``emit`` output batches in order; return stats about the stage as a whole."""
        raise NotImplementedError(f"{type(self).__name__} is a global step without run_global()")

    def finalize(self, stats: dict[str, Any]) -> StepReport | None:
        """This step's report from its merged stats (the writer names and places the files)."""
        return None


class Report(Component):
    """Reads the final table (and the run's context), writes files into ``reports_dir``."""

    kind: ClassVar[str] = "report"

    def input_columns(self) -> list[str]:
        return []

    def run(self, table: Any, reports_dir: Path) -> dict[str, Any]:
        """``table``: the final rows as a :class:`~mlbuild.pipeline.tables.TableRef`."""
        raise NotImplementedError


def merge_stats(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Sum numeric leaves, merge nested dicts, concatenate lists."""
    out = dict(a)
    for k, v in b.items():
        if k not in out:
            out[k] = json.loads(json.dumps(v)) if isinstance(v, (dict, list)) else v
        elif isinstance(v, dict) and isinstance(out[k], dict):
            out[k] = merge_stats(out[k], v)
        elif isinstance(v, list) and isinstance(out[k], list):
            out[k] = out[k] + v
        elif isinstance(v, (int, float)) and isinstance(out[k], (int, float)):
            out[k] = out[k] + v
        else:
            out[k] = v
    return out
