"""The runner: source -> row/global steps (checkpointed shards) -> versioned Hub-layout folder.

Work files live in ``WORK/<name>/<version>/<stage>-<fingerprint>/``; the model-call cache in
``WORK/cache.sqlite`` (a local WORK) or ``WORK/cache/`` (a URL). WORK is ``OUT/.mlbuild`` unless
``work_dir`` names another folder or an fsspec URL (``s3://bucket/prefix``), which lets a run resume
on another machine or cluster. A rerun skips finished shards and cached model calls, so killing
``mlbuild run`` at any moment and rerunning gives the same dataset with nothing lost or repeated.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ..errors import InputError, MlbuildError, RecipeError, StepError
from ..recipe import Recipe
from ..recipe.load import _check_columns
from . import checkpoint as ck
from . import store
from .base import ROW_ID, RunContext, Step, StepOutput, merge_stats
from .cache import hash_text, open_cache, stable_json
from .executors import LocalExecutor, concat_frames, finish_output
from .fingerprint import component_fingerprint, file_sha256, source_fingerprint
from .params import declared

log = logging.getLogger(__name__)

SHARD_ROWS = 256


@dataclass
class StageResult:
    id: str
    uses: str
    fingerprint: str
    dir: ck.Loc
    shards: list[str]
    stats: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    dataset_dir: Path
    fingerprint: str
    manifest: dict[str, Any]
    up_to_date: bool = False


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
        work_dir: str | Path | None = None,
    ):
        self.recipe = recipe
        self.out_root = Path(out).resolve()
        self.resume = resume
        self.overwrite = overwrite
        self.limit = limit
        self.device = device
        self.quiet = quiet
        self.shard_rows = shard_rows
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
            reports_dir=None,
        )

    def _stage_dir(self, index: int, sid: str, fp: str) -> ck.Loc:
        d = self.work / f"{index:02d}-{sid}-{fp[:16]}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    # ---------------------------------------------------------------- stages
    def _run_source(self) -> StageResult:
        spec = self.recipe.source
        src = spec.cls(spec.params, self._ctx())
        files = src.input_files()
        checksums = {}
        for f in files:
            if not Path(f).exists():
                raise InputError(str(f), "input file not found")
            checksums[str(f)] = file_sha256(f)
        self.input_checksums.update(checksums)
        fp = source_fingerprint(spec.uses, spec.params, checksums, self.limit)
        sdir = self._stage_dir(0, "source", fp)
        done = ck.stage_done(sdir)
        if done is not None:
            return StageResult("source", spec.uses, fp, sdir, done["shards"], ck.read_json(sdir / "stats.json"))
        t0 = time.perf_counter()
        out = src.read()
        rows = out.rows
        if ROW_ID not in rows.columns:
            raise StepError(spec.uses, f"source returned no '{ROW_ID}' column")
        if self.limit is not None:
            rows = rows.head(self.limit)
        out = finish_output(
            spec.uses,
            rows.height + (out.rejects.height if out.rejects is not None else 0),
            StepOutput(rows, out.rejects, out.stats),
            time.perf_counter() - t0,
        )
        shards = []
        n = max(1, -(-rows.height // self.shard_rows))
        for i in range(n):
            name = ck.shard_name(i)
            ck.write_parquet(sdir / f"{name}.parquet", rows.slice(i * self.shard_rows, self.shard_rows))
            shards.append(name)
        ck.write_jsonl(sdir / "rejects.jsonl", ck.rejects_to_records(out.rejects, spec.uses))
        ck.write_json(sdir / "stats.json", out.stats)
        ck.mark_stage_done(sdir, shards, {"rows": rows.height})
        return StageResult("source", spec.uses, fp, sdir, shards, out.stats)

    def _load_tables(self) -> str:
        """Read named side tables ([sources.<name>] and the source's own); return their combined fingerprint."""
        parts = []
        for name, spec in sorted(self.recipe.tables.items()):
            src = spec.cls(spec.params, self._ctx())
            checks = {str(f): file_sha256(f) for f in src.input_files()}
            self.input_checksums.update(checks)
            out = src.read()
            self.tables[name] = out.rows
            if out.rejects is not None and out.rejects.height:
                self.table_rejects[name] = out.rejects
            parts.append(source_fingerprint(spec.uses, spec.params, checks, None))
        main = self.recipe.source
        for name, df in main.cls(main.params, self._ctx()).side_tables().items():
            self.tables.setdefault(name, df)
        return hash_text(*parts)

    def _step_ctx(self) -> RunContext:
        return dataclasses.replace(self._ctx(), models={}, extra={})

    def _run_step(self, index: int, spec, upstream: StageResult, up_fp: str) -> StageResult:
        # the dataset seed reaches every step (ctx.seed); files its params point to are hashed by content
        extra = {"seed": self.recipe.dataset.seed}
        fp = component_fingerprint(up_fp, spec.uses, spec.params, extra)
        sdir = self._stage_dir(index, spec.id, fp)
        label = f"{spec.id} ({spec.uses})"
        ctx = self._step_ctx()
        step: Step = spec.cls(spec.params, ctx)
        meta_path = sdir / "meta.json"
        setup_done = False

        def on_setup(info: dict[str, Any] | None = None) -> None:
            # ``info``: the models/extras recorded by a step set up elsewhere (Ray workers); else set up here
            nonlocal setup_done
            if not setup_done:
                if info is not None:
                    ctx.models.update(info.get("models", {}))
                    ctx.extra.update(info.get("extra", {}))
                else:
                    log.info("%s: loading", label)
                    try:
                        step.setup()
                    except MlbuildError:
                        raise
                    except Exception as e:  # noqa: BLE001 - reported with the step's name
                        raise StepError(label, f"setup failed: {type(e).__name__}: {e}") from e
                ck.write_json(meta_path, {"models": ctx.models, "extra": ctx.extra})
                setup_done = True

        done = ck.stage_done(sdir)
        if step.kind == "global":
            if done is None:
                self.executor.run_global_stage(
                    step, label, upstream.dir, list(upstream.shards), sdir, self.shard_rows, on_setup
                )
                done = ck.stage_done(sdir)
            shards = done["shards"]
        else:
            shards = list(upstream.shards)
            if done is None:
                up_done = ck.done_shards(upstream.dir)
                shard_rows = {
                    s: ck.read_json(upstream.dir / f"{s}.done")["rows"] if s in up_done else self.shard_rows
                    for s in shards
                }
                try:
                    self.executor.run_row_stage(step, label, upstream.dir, sdir, shards, shard_rows, on_setup)
                except MlbuildError:
                    raise
                except Exception as e:  # noqa: BLE001
                    raise StepError(label, f"{type(e).__name__}: {e}") from e
                ck.mark_stage_done(sdir, shards, {})
        stats: dict[str, Any] = {}
        for s in shards:
            stats = merge_stats(stats, ck.read_stats(sdir, s))
        meta = ck.read_json(meta_path) if meta_path.exists() else {"models": ctx.models, "extra": ctx.extra}
        res = StageResult(spec.id, spec.uses, fp, sdir, shards, stats, meta.get("models", {}), meta.get("extra", {}))
        res.step = step  # type: ignore[attr-defined]
        return res

    # ---------------------------------------------------------------- main
    def run(self) -> RunResult:
        from ..publish import writer

        rc = self.recipe
        self._open_work()
        self.tables: dict[str, pl.DataFrame] = {}
        self.table_rejects: dict[str, pl.DataFrame] = {}
        self.input_checksums: dict[str, str] = {}
        t_start = time.perf_counter()
        try:
            src = self._run_source()
            tables_fp = self._load_tables()
            # column contracts again, now that the data is known (sources with unknown columns)
            first = ck.read_shard(src.dir, src.shards[0]) if src.shards else pl.DataFrame()
            self._check_runtime_columns(first.columns)
            stages = [src]
            up_fp = hash_text(src.fingerprint, tables_fp)
            for i, spec in enumerate(rc.steps, start=1):
                res = self._run_step(i, spec, stages[-1], up_fp)
                stages.append(res)
                up_fp = res.fingerprint
            final = _concat([ck.read_shard(stages[-1].dir, s) for s in stages[-1].shards])
            fingerprint = dataset_fingerprint(rc, up_fp)
            result = writer.write_dataset(self, stages, final, fingerprint, time.perf_counter() - t_start)
            self._compact_cache()
        finally:
            self.cache.close()
            self.executor.close()
        return result

    def _compact_cache(self) -> None:
        """Merge a URL cache's many one-batch segment files (a speed-up for later runs, never needed)."""
        compact = getattr(self.cache, "compact", None)
        if compact is None:
            return
        try:
            compact()
        except Exception as e:  # noqa: BLE001 - the dataset is written; this can wait for the next run
            log.warning("call cache %s: not compacted: %s: %s", self.cache_location, type(e).__name__, e)

    def _open_work(self) -> None:
        """Create the work dir (or clear it with resume off) and open the call cache there; a URL that
        cannot be used (unknown protocol, missing fsspec backend, no bucket, no credentials) stops
        the run here, before any work, with one line that names it."""
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
        except Exception as e:  # noqa: BLE001 - fsspec backends raise anything
            first = next((line for line in str(e).splitlines() if line.strip()), "")
            raise MlbuildError(f"work dir {self.work_root}: cannot write there: {type(e).__name__}: {first}") from e
        self.scratch.mkdir(parents=True, exist_ok=True)

    def _check_runtime_columns(self, columns: list[str]) -> None:
        if not columns:
            return
        rc = self.recipe
        problems = _check_columns(rc.source, rc.tables, rc.steps, rc.reports, rc.output, columns=columns)
        if problems:
            raise RecipeError(problems, path=str(rc.path))


_concat = concat_frames


def dataset_fingerprint(recipe: Recipe, steps_fp: str) -> str:
    ds = dataclasses.asdict(recipe.dataset)
    ds.pop("version", None)
    out = dataclasses.asdict(recipe.output)
    reports = [(r.uses, stable_json(declared(r.params))) for r in recipe.reports]
    return hash_text(steps_fp, stable_json(ds), stable_json(out), stable_json(reports))
