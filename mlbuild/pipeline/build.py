"""The build record: what a run produced, handed by the runner to the writer and nothing else.

It is frozen and holds no live objects (no steps, no models, no runner): the recipe, the stages with
their shard locations (as :class:`~mlbuild.pipeline.tables.TableRef`), stats, models, reports, the
side tables, input checksums, the dataset fingerprint and timings. The writer turns it into the
versioned folder and returns the manifest."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import StepReport
from .tables import TableRef


@dataclass(frozen=True)
class StageRecord:
    """One finished stage: the source, a side table, or a step."""

    id: str  # "source", "sources.<name>", or the step id
    uses: str  # registered name, e.g. "translate.v1"
    kind: str  # "source" | "table" | "row" | "global"
    fingerprint: str
    table: TableRef
    stats: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    report: StepReport | None = None
    step_id: str = ""  # the recipe step this stage belongs to (a step may run as several stages)
    # what the card says about the text and annotations the step makes (from the step's class)
    machine_generated_text: bool = False
    machine_generated_annotations: bool = False
    task_categories: tuple[str, ...] = ()
    multilinguality: str | None = None


@dataclass(frozen=True)
class BuildRecord:
    recipe: Any  # mlbuild.recipe.Recipe
    dataset_dir: Path
    fingerprint: str
    stages: tuple[StageRecord, ...]  # the source first, then the steps in order
    tables: dict[str, TableRef] = field(default_factory=dict)  # side tables by name
    table_stages: tuple[StageRecord, ...] = ()  # [sources.<name>] stages (their rejects)
    input_checksums: dict[str, str] = field(default_factory=dict)
    source_datasets: tuple[str, ...] = ()
    reports_dir: Path | None = None  # files the recipe's [[reports]] wrote
    report_summaries: dict[str, Any] = field(default_factory=dict)
    report_models: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    work_dir: str = ""  # where the checkpoints are (for messages)

    @property
    def final(self) -> TableRef:
        return self.stages[-1].table
