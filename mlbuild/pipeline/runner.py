"""The runner: plan (every fingerprint, before any work) -> source and side tables -> row/global steps
(checkpointed shards) -> a frozen :class:`~mlbuild.pipeline.build.BuildRecord` -> the writer.

Work files live in ``WORK/<name>/<version>/<NN>-<id>-<fingerprint>/`` (side tables under
``tables/``); the model-call cache in ``WORK/cache.sqlite`` (a local WORK) or ``WORK/cache/`` (a URL).
WORK is ``OUT/.mlbuild`` unless ``work_dir`` names another folder or an fsspec URL
(``s3://bucket/prefix``), which lets a run resume on another machine or cluster. A rerun skips
finished shards and cached model calls, so killing ``mlbuild run`` at any moment and rerunning gives
the same dataset with nothing lost or repeated. Every stage streams: memory depends on the shard
size, never on the size of the input.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from ..errors import EmptyBuildError, InputError, MlbuildError, RecipeError, StepError
from ..recipe import Recipe
from ..recipe.load import check_chain
from . import checkpoint as ck
from . import store
from .base import ROW_ID, RunContext, Source, Step, merge_stats
from .build import BuildRecord, StageRecord
from .cache import hash_text, open_cache, stable_json
from .checkpoint import ShardTarget
from .executors import GlobalStage, LocalExecutor, RowStage, RowTask, SourceStage
from .fingerprint import component_fingerprint, file_sha256, source_fingerprint
from .lock import OutputLock, existing_fingerprint
from .params import declared
from .tables import TableRef
from .unique import reject_duplicate_ids

log = logging.getLogger(__name__)

SHARD_ROWS = 50_000
COUNTS = ("rows_in", "rows_out", "dropped", "seconds", "by_lang")
SHARD_BYTES = 64 << 20


@dataclass
class RunResult:
    dataset_dir: Path
    fingerprint: str
    manifest: dict[str, Any]
    up_to_date: bool = False


@dataclass(frozen=True)
class Plan:
    """Every fingerprint of a run, computed from the recipe and the input checksums before any work."""

    source: str
    tables: dict[str, str]
    steps: list[list[str]]  # per recipe step, the fingerprint of each of its stages
    dataset: str
    checksums: dict[str, str]


def make_executor(name: str, quiet: bool, **kw: Any):
    if name == "local":
        return LocalExecutor(quiet=quiet)
    if name == "ray":
        try:
            from .ray_executor import RayExecutor
        except ImportError as e:
            raise MlbuildError(f"--executor ray is not available: {e}") from e
        return RayExecutor(quiet=quiet, **kw)
    raise RecipeError(f"unknown executor {name!r} (known: local, ray)")


class Runner:
    def __init__(
        self,
        recipe: Recipe,
        out: str | Path = "out",
        *,
        resume: bool = True,
        overwrite: bool = False,
        limit: int | None = None,
        device: str = "auto",
        quiet: bool = False,
        executor: str = "local",
        executor_options: dict[str, Any] | None = None,
        shard_rows: int = SHARD_ROWS,
        shard_bytes: int = SHARD_BYTES,
        work_dir: str | Path | None = None,
    ):
        if limit is not None and limit < 0:
            raise RecipeError(f"--limit {limit}: expected 0 or more input records")
        self.recipe = recipe
        self.out_root = Path(out).resolve()
        self.resume = resume
        self.overwrite = overwrite
        self.limit = limit
        self.device = device
        self.quiet = quiet
        self.target = ShardTarget(shard_rows, shard_bytes)
        opts = dict(executor_options or {})
        if executor == "ray" and recipe.resources:
            # the recipe's [resources] table, under what the caller passed for the same steps
            opts["resources"] = {**recipe.resources, **(opts.get("resources") or {})}
        self.executor = make_executor(executor, quiet, **opts)
        ds = recipe.dataset
        self.dataset_dir = self.out_root / ds.name / ds.version
        # checkpoints and the call cache: OUT/.mlbuild, another folder, or any fsspec URL
        self.work_root = store.work_path(work_dir) if work_dir else self.out_root / ".mlbuild"
        self.work = self.work_root / ds.name / ds.version
        remote = isinstance(self.work_root, store.RemotePath)
        self.cache_location = self.work_root / ("cache" if remote else "cache.sqlite")
        # files steps keep for themselves (embedding caches) stay on this machine's disk
        self.scratch = self.out_root / ".mlbuild" / ds.name / ds.version if remote else self.work
        self.cache = None
        self.tables: dict[str, TableRef] = {}

    # ---------------------------------------------------------------- plan
    def plan(self) -> Plan:
        """Every stage's fingerprint and the dataset's, from the recipe and input checksums alone."""
        rc = self.recipe
        checksums: dict[str, str] = {}

        def sums(spec) -> dict[str, str]:
            src = spec.cls(spec.params, self._ctx())
            out = {}
            for f in src.input_files():
                if not Path(f).exists():
                    raise InputError(str(f), "input file not found")
                out[str(f)] = file_sha256(f)
            checksums.update(out)
            return out

        src_fp = source_fingerprint(rc.source.uses, rc.source.params, sums(rc.source), self.limit)
        tables = {
            name: source_fingerprint(spec.uses, spec.params, sums(spec), None)
            for name, spec in sorted(rc.tables.items())
        }
        up = hash_text(src_fp, hash_text(*tables.values()))
        steps = []
        for spec in rc.steps:
            fps = []
            for name, _ in spec.cls(spec.params, self._ctx()).stages():
                # the dataset seed reaches every step (ctx.seed); files its params point to are hashed by content
                uses = f"{spec.uses}#{name}" if name else spec.uses
                up = component_fingerprint(up, uses, spec.params, {"seed": rc.dataset.seed})
                fps.append(up)
            steps.append(fps)
        return Plan(src_fp, tables, steps, dataset_fingerprint(rc, up), checksums)

    # ---------------------------------------------------------------- helpers
    def _ctx(self) -> RunContext:
        return RunContext(
            recipe_dir=self.recipe.dir,
            work_dir=self.scratch,
            cache=self.cache,
            device=self.device,
            quiet=self.quiet,
            seed=self.recipe.dataset.seed,
            tables=self.tables,
        )

    def _source(self, spec) -> Source:
        """A source as executors get it: picklable (no call cache, no side tables), so a cluster's
        workers can each read their own part."""
        ctx = dataclasses.replace(self._ctx(), cache=None, tables={})
        return spec.cls(spec.params, ctx)

    def _stage_dir(self, name: str) -> ck.Loc:
        d = self.work / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    # ---------------------------------------------------------------- sources
    def _read_source(self, src: Source, step_id: str, label: str, sdir: ck.Loc, side: str | None = None) -> None:
        """Stream a source (or one of its side tables) into a finished stage folder."""
        ck.clear_stage(sdir)
        t0 = time.perf_counter()
        limit = self.limit if step_id == "source" else None
        parts = src.parts() if limit is None and side is None else [None]
        stage = SourceStage(src, step_id, label, sdir, parts, limit, self.target, side)
        shards = self.executor.run_source(stage)
        if side is None:
            src.check_read(ck.stage_stats(sdir, shards))
        if side is None and src.check_unique_ids():
            reject_duplicate_ids(sdir, shards, label, self.out_root / ".mlbuild")
        rows = sum(ck.shard_rows(sdir, s) for s in shards)
        ck.write_json(sdir / ck.STAGE_STATS, {"seconds": time.perf_counter() - t0})
        ck.mark_stage_done(sdir, shards, {"rows": rows})

    def _run_source(self, plan: Plan) -> StageRecord:
        spec = self.recipe.source
        src = self._source(spec)
        sdir = self._stage_dir(f"00-source-{plan.source[:16]}")
        if ck.stage_done(sdir) is None:
            self._read_source(src, "source", f"source ({spec.uses})", sdir)
        table = TableRef.of_stage(sdir, "source")
        stats = ck.stage_stats(sdir, list(table.shards))
        if not stats.get("rows_in"):
            files = ", ".join(str(f) for f in src.input_files()) or spec.uses
            raise InputError(files, "the input holds no records: nothing to build from (an empty file?)")
        for name in src.side_tables():
            tdir = self._stage_dir(f"tables/{name}-{plan.source[:16]}")
            if ck.stage_done(tdir) is None:
                self._read_source(src, f"tables.{name}", f"{name} ({spec.uses})", tdir, side=name)
            self.tables.setdefault(name, TableRef.of_stage(tdir, name))
        return StageRecord("source", spec.uses, "source", plan.source, table, stats)

    def _run_tables(self, plan: Plan) -> list[StageRecord]:
        """The recipe's [sources.<name>] tables, each a stage of its own."""
        out = []
        for name, spec in sorted(self.recipe.tables.items()):
            fp = plan.tables[name]
            tdir = self._stage_dir(f"tables/{name}-{fp[:16]}")
            if ck.stage_done(tdir) is None:
                self._read_source(self._source(spec), f"sources.{name}", f"sources.{name} ({spec.uses})", tdir)
            table = TableRef.of_stage(tdir, name)
            self.tables[name] = table
            out.append(
                StageRecord(f"sources.{name}", spec.uses, "table", fp, table, ck.stage_stats(tdir, list(table.shards)))
            )
        return out

    # ---------------------------------------------------------------- steps
    def _tasks(self, step: Step, upstream: TableRef) -> list[RowTask]:
        """A row stage's work: one task per upstream shard, cut into slices of the step's preferred size."""
        rps = step.rows_per_shard
        tasks = []
        for s in upstream.shards:
            n = ck.shard_rows(upstream.dir, s)
            if rps and n > rps:
                k = -(-n // rps)
                for j in range(k):
                    a, b = j * n // k, (j + 1) * n // k
                    tasks.append(RowTask(f"{s}-{j:04d}", s, a, b - a, b - a))
            else:
                tasks.append(RowTask(s, s, 0, None, n))
        return tasks

    def _run_step(self, index: int, spec, upstream: TableRef, fps: list[str]) -> list[StageRecord]:
        """Run one recipe step (each of its stages in turn); its report comes from all their stats."""
        ctx = dataclasses.replace(self._ctx(), models={}, extra={})
        step: Step = spec.cls(spec.params, ctx)
        records = []
        for (name, sub), fp in zip(step.stages(), fps):
            sid = f"{spec.id}.{name}" if name else spec.id
            folder = f"{index:02d}-{spec.id}{'.' + name if name else ''}-{fp[:16]}"
            table, stats, meta = self._run_stage(sub, sid, f"{sid} ({spec.uses})", folder, upstream)
            records.append(
                StageRecord(
                    sid,
                    spec.uses,
                    sub.kind,
                    fp,
                    table,
                    stats,
                    meta.get("models", {}),
                    meta.get("extra", {}),
                    machine_generated_text=step.machine_generated_text,
                    machine_generated_annotations=step.machine_generated_annotations,
                    task_categories=tuple(step.task_categories),
                    multilinguality=step.multilinguality,
                )
            )
            upstream = table
        merged: dict[str, Any] = {}
        for r in records:
            merged = merge_stats(merged, {k: v for k, v in r.stats.items() if k not in COUNTS})
        merged.update({k: records[-1].stats.get(k) for k in COUNTS if k in records[-1].stats})
        merged["rows_in"] = records[0].stats.get("rows_in", 0)
        report = step.finalize(merged)
        records = [dataclasses.replace(r, step_id=spec.id) for r in records]
        records[-1] = dataclasses.replace(records[-1], report=report)
        return records

    def _run_stage(
        self, step: Step, sid: str, label: str, folder: str, upstream: TableRef
    ) -> tuple[TableRef, dict[str, Any], dict[str, Any]]:
        sdir = self._stage_dir(folder)
        ctx = step.ctx
        meta_path = sdir / "meta.json"
        setup_done = False

        def on_setup(info: dict[str, Any] | None = None) -> None:
            # ``info``: the models/extras recorded by a step set up elsewhere (Ray workers); else set up here
            nonlocal setup_done
            if setup_done:
                return
            if info is not None:
                ctx.models.update(info.get("models", {}))
                ctx.extra.update(info.get("extra", {}))
            else:
                log.info("%s: loading", label)
                try:
                    step.setup()
                except MlbuildError:
                    raise
                except Exception as e:  # reported with the step's name
                    raise StepError(label, f"setup failed: {type(e).__name__}: {e}") from e
            ck.write_json(meta_path, {"models": ctx.models, "extra": ctx.extra})
            setup_done = True

        if ck.stage_done(sdir) is None:
            if step.kind == "global":
                self.executor.run_global_stage(GlobalStage(step, sid, label, upstream, sdir, self.target, on_setup))
            else:
                tasks = self._tasks(step, upstream)
                try:
                    self.executor.run_row_stage(RowStage(step, sid, label, upstream.dir, sdir, tasks, on_setup))
                except MlbuildError:
                    raise
                except Exception as e:
                    raise StepError(label, f"{type(e).__name__}: {e}") from e
                shards = [t.out for t in tasks]
                ck.mark_stage_done(sdir, shards, {"rows": sum(ck.shard_rows(sdir, s) for s in shards)})
        table = TableRef.of_stage(sdir, sid)
        stats = ck.stage_stats(sdir, list(table.shards))
        meta = ck.read_json(meta_path) if meta_path.exists() else {"models": ctx.models, "extra": ctx.extra}
        return table, stats, meta

    # ---------------------------------------------------------------- reports
    def _run_reports(self, final: TableRef, fp: str) -> tuple[Path | None, dict[str, Any], dict[str, Any]]:
        """The recipe's [[reports]], written into a local folder the writer copies from."""
        rc = self.recipe
        if not rc.reports:
            return None, {}, {}
        rdir = (
            Path(self.scratch if isinstance(self.scratch, Path) else self.out_root / ".mlbuild") / f"reports-{fp[:16]}"
        )
        store.rmtree(rdir)
        rdir.mkdir(parents=True, exist_ok=True)
        summaries: dict[str, Any] = {}
        models: dict[str, Any] = {}
        for spec in rc.reports:
            ctx = dataclasses.replace(self._ctx(), models={}, extra={})
            rep = spec.cls(spec.params, ctx)
            summaries[spec.id] = rep.run(final, rdir) or {}
            for role, info in ctx.models.items():
                models[f"reports.{spec.id}.{role}"] = info
        return rdir, summaries, models

    # ---------------------------------------------------------------- main
    def run(self) -> RunResult:
        from ..publish import writer

        rc = self.recipe
        t_start = time.perf_counter()
        plan = self.plan()
        with OutputLock(self.dataset_dir):
            old = existing_fingerprint(self.dataset_dir)
            if old is not None and old != plan.dataset and not self.overwrite:
                raise RecipeError(
                    [
                        (
                            "dataset -> version",
                            f"{self.dataset_dir} already holds version {rc.dataset.version} built from a different "
                            f"recipe or input (fingerprint {old[:12]}, now {plan.dataset[:12]}); bump "
                            "dataset.version or pass --overwrite",
                        )
                    ],
                    path=str(rc.path),
                )
            if old == plan.dataset:
                log.info("%s is up to date (fingerprint %s)", self.dataset_dir, old[:12])
                return RunResult(self.dataset_dir, old, writer.read_manifest(self.dataset_dir), up_to_date=True)
            self._open_work()
            try:
                record = self._build(plan, t_start)
                if record.final.rows == 0:
                    self._empty_build(record)
                result = writer.write_dataset(record)
                self._compact_cache()
            finally:
                if self.cache is not None:
                    self.cache.close()
                self.executor.close()
        return RunResult(result.dataset_dir, result.fingerprint, result.manifest)

    def _build(self, plan: Plan, t_start: float) -> BuildRecord:
        rc = self.recipe
        src = self._run_source(plan)
        table_stages = self._run_tables(plan)
        # column contracts again, now that the data is known (sources with unknown or sampled columns)
        self._check_runtime_columns(src.table.columns)
        self._check_split_values(src.table)
        stages = [src]
        for i, spec in enumerate(rc.steps, start=1):
            stages += self._run_step(i, spec, stages[-1].table, plan.steps[i - 1])
        reports_dir, summaries, report_models = self._run_reports(stages[-1].table, plan.dataset)
        main = rc.source.cls(rc.source.params, self._ctx())
        return BuildRecord(
            recipe=rc,
            dataset_dir=self.dataset_dir,
            fingerprint=plan.dataset,
            stages=tuple(stages),
            tables=dict(self.tables),
            table_stages=tuple(table_stages),
            input_checksums=dict(plan.checksums),
            source_datasets=tuple(main.source_datasets()),
            reports_dir=reports_dir,
            report_summaries=summaries,
            report_models=report_models,
            seconds=time.perf_counter() - t_start,
            work_dir=str(self.work),
        )

    def _empty_build(self, record: BuildRecord) -> None:
        """No row survived: nothing is written to OUT (a Hub dataset cannot hold an empty split); the rejects
        go to a local folder the error names, with the step that dropped the most rows."""
        from ..publish.writer import write_rejects

        where = self.out_root / ".mlbuild" / self.recipe.dataset.name / self.recipe.dataset.version / "empty-build"
        store.rmtree(where)
        (where / "rejects").mkdir(parents=True, exist_ok=True)
        counts = write_rejects(record, where / "rejects")
        stage = max(record.stages, key=lambda st: sum(st.stats.get("dropped", {}).values()))  # first of equals
        dropped = stage.stats.get("dropped", {})
        why = ", ".join(f"{r} {n}" for r, n in sorted(dropped.items(), key=lambda kv: -kv[1])[:5]) or "no reason"
        raise EmptyBuildError(
            f"the dataset would be empty: every row was dropped ({record.stages[0].stats.get('rows_in', 0)} read; "
            f"most by {stage.id} ({stage.uses}): {why}). Nothing was written to {self.dataset_dir}; the "
            f"{sum(counts.values())} rejected rows and their reasons are in {where / 'rejects'}"
        )

    def _compact_cache(self) -> None:
        """Merge a URL cache's many one-batch segment files (a speed-up for later runs, never needed)."""
        compact = getattr(self.cache, "compact", None)
        if compact is None:
            return
        try:
            compact()
        except Exception as e:  # the dataset is written; this can wait for the next run
            log.warning("call cache %s: not compacted: %s: %s", self.cache_location, type(e).__name__, e)

    def _open_work(self) -> None:
        """Create the work dir (or clear it with resume off) and open the call cache there; a URL that
        cannot be used (unknown protocol, missing fsspec backend, no bucket, no credentials) stops the
        run here, before any work, with one line that names it."""
        try:
            if not self.resume:
                store.rmtree(self.work)
            self.work.mkdir(parents=True, exist_ok=True)
            if isinstance(self.work, store.RemotePath):
                probe = self.work / f".probe-{os.getpid()}"
                probe.write_bytes(b"")
                probe.unlink(missing_ok=True)
            self.cache = open_cache(self.cache_location)
        except MlbuildError:
            raise
        except Exception as e:  # fsspec backends raise anything
            first = next((line for line in str(e).splitlines() if line.strip()), "")
            raise MlbuildError(f"work dir {self.work_root}: cannot write there: {type(e).__name__}: {first}") from e
        self.scratch.mkdir(parents=True, exist_ok=True)

    def _check_runtime_columns(self, columns: list[str]) -> None:
        if not columns:
            return
        rc = self.recipe
        problems = check_chain(rc.source, rc.tables, rc.steps, rc.reports, rc.output, columns=columns)
        if problems:
            raise RecipeError(problems, path=str(rc.path))

    def _check_split_values(self, table: TableRef) -> None:
        """With ``split_column`` read from the source, refuse values outside the declared splits (or a
        missing split) before any step runs."""
        out = self.recipe.output
        col = out.split_column
        if not col or col not in table.columns:
            return
        bad: set[str] = set()
        first_bad = None
        for df in table.iter_batches([ROW_ID, col]):
            vals = df[col].cast(pl.Utf8)
            mask = vals.is_null()
            if out.declared_splits is not None:
                mask = mask | ~vals.is_in(out.declared_splits)
            if mask.any():
                bad.update(vals.filter(mask).fill_null("<missing>").unique().to_list())
                first_bad = first_bad or df.filter(mask)[ROW_ID][0]
        if bad:
            allowed = out.declared_splits
            raise RecipeError(
                [
                    (
                        "output -> split_column",
                        f"column '{col}' holds {sorted(bad)[:5]} (first at row {first_bad}), "
                        + (f"not in splits {allowed}" if allowed is not None else "and every row needs a split"),
                    )
                ],
                path=str(self.recipe.path),
            )


def dataset_fingerprint(recipe: Recipe, steps_fp: str) -> str:
    from ..publish.card import find_template

    ds = dataclasses.asdict(recipe.dataset)
    ds.pop("version", None)
    ds["card"] = file_sha256(find_template(recipe.dataset.card, recipe.dir))  # the template, wherever it is
    out = dataclasses.asdict(recipe.output)
    reports = [(r.uses, stable_json(declared(r.params))) for r in recipe.reports]
    return hash_text(steps_fp, stable_json(ds), stable_json(out), stable_json(reports))
