"""Run a recipe's steps on Ray: ``mlbuild run RECIPE --executor ray [--ray-address auto|ray://...]``.

The runner stays on the driver (validation, fingerprints, the plan, the writer), which never holds
the dataset: this executor runs

- a **source** as one Ray task per part of the input (byte ranges of a JSONL file, files of a parquet
  folder), each reading its own part and writing its own shards with the same
  :func:`~mlbuild.pipeline.executors.write_source_part` the local executor calls;
- a **row step** as Ray Data ``map_batches`` over the list of its pending tasks, with an actor pool
  (:class:`ShardUDF`): each actor rebuilds the step once (``cls(params, ctx)`` + ``setup()``, so a
  model loads once per actor) and then processes one task (an upstream shard or a slice of one) per
  call, with the same :func:`~mlbuild.pipeline.executors.run_task` the local executor calls: the same
  parquet, rejects, stats and marker files come out, only written by another process. Tasks are
  fixed by the runner, so the result does not depend on how many actors there are or in which order
  they finish. (Ray Data batches of rows would re-cut the shards by block sizes, which vary with the
  cluster; the marker per fixed shard is what makes a retry or a resume exact.)
- a **global step** as one Ray task (with the step's GPUs) that streams the upstream shard files and
  writes the stage through :func:`~mlbuild.pipeline.executors.run_global`.

Checkpoints and the model-call cache live in the run's work dir: ``OUT/.mlbuild`` (every node must
see it at the same path) or any fsspec URL given as ``--work-dir`` (``s3://bucket/prefix``), where
the cache is kept as segment files that several machines can write (:class:`~.cache.SegmentCache`).
A worker killed mid-shard is restarted by Ray and the shard is retried (``max_retries``); a shard
whose marker exists is skipped, and files are written whole with the marker last, so a retry neither
loses nor duplicates rows. An exception raised by a step is not retried: it is reported as a
:class:`~mlbuild.errors.StepError` that names the shard and, found by bisecting the shard, the row
ids that fail.

Resources per actor: ``num_gpus`` from the executor's ``resources`` table (keyed by step id or
registered name), else what :meth:`~mlbuild.pipeline.base.Step.resources` asks for (only when the
cluster has GPUs and the run's device is not ``cpu``), else none; ``num_cpus`` defaults to 1.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any

from ..errors import MlbuildError, RecipeError, StepError, requires
from . import checkpoint as ck
from .base import ROW_ID, RunContext, Step
from .executors import (
    GlobalStage,
    RowStage,
    RowTask,
    SourceStage,
    pending_tasks,
    read_task_input,
    run_global,
    run_task,
    stage_bar,
    write_source_part,
)

log = logging.getLogger(__name__)

INSTALL = "pip install 'mlbuild[ray]'"
MAX_PROBES = 48  # extra process() calls spent finding the failing rows of a failed shard
MAX_REPORTED_ROWS = 10


@dataclass
class StepSpec:
    """What a worker needs to rebuild a step: its class, declared params and a picklable context."""

    cls: type
    params: Any
    label: str
    ctx: RunContext
    cache: Any  # where the run's call cache lives (a sqlite path or a URL, see cache.open_cache), or None


def step_spec(step: Step, label: str, use_cache: bool = True) -> StepSpec:
    cache = step.ctx.cache if use_cache else None
    ctx = dataclasses.replace(step.ctx, cache=None, models={}, extra={})
    return StepSpec(type(step), step.params, label, ctx, cache.location if cache is not None else None)


def build_step(spec: StepSpec) -> Step:
    """Build the step on a worker and set it up (models load here, on the worker's device)."""
    cache = None
    if spec.cache is not None:
        from .cache import open_cache

        cache = open_cache(spec.cache)
    ctx = dataclasses.replace(spec.ctx, cache=cache, models={}, extra={})
    step = spec.cls(spec.params, ctx)
    try:
        step.setup()
    except MlbuildError:
        raise
    except Exception as e:  # reported with the step's name
        raise StepError(spec.label, f"setup failed: {type(e).__name__}: {e}") from e
    return step


def _error_payload(e: BaseException, **where: Any) -> dict[str, Any]:
    """Exceptions travel back as plain data: mlbuild errors do not unpickle from their message alone."""
    return {
        "error": {
            "type": type(e).__name__,
            "message": str(e),
            "row_id": getattr(e, "row_id", None),
            "mlbuild": isinstance(e, MlbuildError),
            "traceback": traceback.format_exc(),
            **where,
        }
    }


def locate_failing_rows(
    step: Step, batch, max_probes: int = MAX_PROBES, max_rows: int = MAX_REPORTED_ROWS
) -> list[str]:
    """Bisect a batch on which ``step.process`` raised; return the row ids that fail on their own.

    Empty when the failure needs the whole batch (out of memory, for example) or the probe budget
    runs out before a single row is isolated."""
    found: list[str] = []
    todo = [batch]
    probes = 0
    while todo and probes < max_probes and len(found) < max_rows:
        df = todo.pop(0)
        if df.height == 1:
            found.append(str(df[ROW_ID][0]))
            continue
        half = df.height // 2
        for part in (df.slice(0, half), df.slice(half)):
            if probes >= max_probes:
                break
            probes += 1
            try:
                step.process(part)
            except Exception:  # any failure narrows the search
                todo.append(part)
    return found


class ShardUDF:
    """The ``map_batches`` callable of a row stage: Ray Data makes one per actor of the pool, which
    builds (and sets up) the step once; each call gets one shard name and returns one result row.

    Errors come back as data (``error`` in the row), not as exceptions: an exception raised by a step
    is a fault of the data or the step, which a retry would only repeat, whereas the death of the
    process (out of memory, a lost node) is retried by Ray Data on a restarted actor."""

    def __init__(self, spec_box: list, in_dir: Any, out_dir: Any):
        import ray

        t0 = time.perf_counter()
        self.in_dir, self.out_dir = in_dir, out_dir
        self.step: Step | None = None
        self.error: dict[str, Any] | None = None
        try:
            spec = spec_box[0]
            self.spec = ray.get(spec) if isinstance(spec, ray.ObjectRef) else spec
            self.step = build_step(self.spec)
        except Exception as e:  # every shard of this actor reports it
            self.error = _error_payload(e, phase="setup")
        self.setup_seconds = time.perf_counter() - t0

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {"result": [json.dumps(self.run(RowTask(**json.loads(str(t)))), default=str) for t in batch["task"]]}

    def run(self, task: RowTask) -> dict[str, Any]:
        t0 = time.perf_counter()
        shard = task.out
        info = {"shard": shard, "pid": os.getpid(), "node": _node_id(), "setup_seconds": self.setup_seconds}
        if self.error is not None:
            return {**info, "error": {**self.error["error"], "shard": shard}}
        if ck.is_done(self.out_dir, shard):  # a retry after the files were complete
            return {**info, "skipped": True, "seconds": 0.0}
        try:
            run_task(self.step, self.spec.label, self.in_dir, self.out_dir, task)
        except Exception as e:  # reported with the shard and rows
            payload = _error_payload(e, phase="process", shard=shard)
            try:
                batch = read_task_input(self.in_dir, task)
                ids = batch[ROW_ID].cast(str).to_list() if ROW_ID in batch.columns else []
                payload["error"]["shard_rows"] = len(ids)
                payload["error"]["first_row"] = ids[0] if ids else None
                payload["error"]["last_row"] = ids[-1] if ids else None
                payload["error"]["failing_rows"] = locate_failing_rows(self.step, batch) if ids else []
            except Exception:  # the report of the first error matters more
                pass
            return {**info, **payload}
        return {
            **info,
            "skipped": False,
            "seconds": time.perf_counter() - t0,
            "models": self.step.ctx.models,
            "extra": self.step.ctx.extra,
        }


def _source_task(stage: SourceStage, k: int) -> dict[str, Any]:
    """A Ray task: read part ``k`` of a source and write its shards."""
    try:
        t0 = time.perf_counter()
        shards = write_source_part(stage, k)
        return {"shards": shards, "pid": os.getpid(), "seconds": time.perf_counter() - t0}
    except Exception as e:  # returned as data, raised on the driver
        return _error_payload(e, phase="source", part=k)


def _global_task(spec: StepSpec, table: Any, out_dir: ck.Loc, target: Any) -> dict[str, Any]:
    """A Ray task: set up a global step, stream it over its upstream table and write its stage."""
    step = None
    try:
        step = build_step(spec)
        t0 = time.perf_counter()
        shards = run_global(step, spec.label, table, out_dir, target)
        return {
            "shards": shards,
            "models": step.ctx.models,
            "extra": step.ctx.extra,
            "pid": os.getpid(),
            "seconds": time.perf_counter() - t0,
        }
    except Exception as e:
        return _error_payload(e, phase="process_table")
    finally:
        if step is not None and step.ctx.cache is not None:
            step.ctx.cache.close()


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # only informative
        return None


def _first_line(e: BaseException) -> str:
    return next((line for line in str(e).splitlines() if line.strip()), "")


def _raise_payload(label: str, err: dict[str, Any]) -> None:
    log.debug("%s: worker traceback:\n%s", label, err.get("traceback", ""))
    msg = err["message"]
    if err.get("mlbuild") and msg.startswith(f"step {label}"):
        msg = msg.split(": ", 1)[-1]  # already names the step
    shard = err.get("shard")
    if shard is not None:
        where = f"shard {shard}"
        if err.get("first_row") is not None:
            where += f" ({err.get('shard_rows')} rows, {err['first_row']} .. {err['last_row']})"
        rows = err.get("failing_rows") or []
        if rows:
            where += f"; failing rows: {', '.join(rows)}"
        elif err.get("phase") == "process":
            where += "; no single row fails alone"
        if not err.get("mlbuild"):
            msg = f"{err['type']}: {msg}"
        raise StepError(label, f"{where}: {msg}", row_id=(rows[0] if rows else err.get("row_id")))
    raise StepError(label, msg if err.get("mlbuild") else f"{err['type']}: {msg}", row_id=err.get("row_id"))


@dataclass
class StageTiming:
    """Where the time of one stage went (for ``scripts/bench_ray.py`` and debugging)."""

    label: str
    kind: str
    workers: int = 0
    shards: int = 0
    start_seconds: float = 0.0  # actors started and steps set up (models loaded)
    run_seconds: float = 0.0  # shards processed, after setup
    total_seconds: float = 0.0
    setup_seconds: list[float] = field(default_factory=list)  # per actor, inside the actor
    shard_seconds: list[float] = field(default_factory=list)  # per shard, inside the actor
    pids: list[int] = field(default_factory=list)


class RayExecutor:
    """Runs row steps as Ray Data ``map_batches`` on actor pools and global steps as Ray tasks.

    ``address``: ``None`` starts a local Ray (unless this process is already connected), ``auto``
    joins the cluster of this node, ``ray://host:10001`` a remote one (the out dir must be on a
    filesystem the cluster shares). ``num_workers``: actors per row step (default: as many as the
    cluster's free CPUs or GPUs allow, at most one per shard). ``resources``: per step id or name,
    ``{"num_gpus": 1, "num_cpus": 4, "num_workers": 8}``. ``max_retries``: restarts of a dead worker
    and retries of its shard. ``cache``: ``shared`` (workers use the run's call cache: the sqlite file
    of a local work dir, or the segment files of a URL work dir) or ``off`` (workers call models
    without it); default from ``MLBUILD_RAY_CACHE``. Several machines must not share one sqlite file:
    give them a URL work dir (``file:///mnt/shared/work`` works too) or turn the cache off."""

    name = "ray"

    def __init__(
        self,
        quiet: bool = False,
        address: str | None = None,
        num_workers: int | None = None,
        num_cpus: int | None = None,
        object_store_memory: int | None = 500 * 1024**2,
        resources: dict[str, dict[str, Any]] | None = None,
        max_retries: int = 3,
        runtime_env: dict[str, Any] | None = None,
        cache: str | None = None,
    ):
        self.quiet = quiet
        self.cache = cache or os.environ.get("MLBUILD_RAY_CACHE", "shared")
        if self.cache not in ("shared", "off"):
            raise RecipeError(f"Ray cache mode {self.cache!r}: expected 'shared' or 'off' (MLBUILD_RAY_CACHE)")
        self.address = address
        self.num_workers = num_workers
        self.num_cpus = num_cpus
        self.object_store_memory = object_store_memory
        self.resources = resources or {}
        self.max_retries = max_retries
        self.runtime_env = runtime_env
        self.timings: list[StageTiming] = []
        self._started = False
        self._ray = None

    # ------------------------------------------------------------------ cluster
    def _connect(self):
        if self._ray is not None:
            return self._ray
        ray = requires("ray", INSTALL, "--executor ray")
        if not ray.is_initialized():
            kw: dict[str, Any] = {
                "address": self.address,
                "logging_level": logging.WARNING,
                "log_to_driver": not self.quiet,
                "include_dashboard": False,
            }
            if self.address is None and not os.environ.get("RAY_ADDRESS"):  # a local Ray started here: keep it small
                kw.update(num_cpus=self.num_cpus, object_store_memory=self.object_store_memory)
            if self.runtime_env:
                kw["runtime_env"] = self.runtime_env
            plugins = os.environ.get("MLBUILD_PLUGINS")
            if plugins:
                env = dict(kw.get("runtime_env") or {})
                env["env_vars"] = {"MLBUILD_PLUGINS": plugins, **env.get("env_vars", {})}
                kw["runtime_env"] = env
            try:
                ray.init(**kw)
            except Exception as e:  # one clean line for the CLI
                where = self.address or os.environ.get("RAY_ADDRESS") or "a new local Ray"
                raise MlbuildError(f"cannot start or join Ray ({where}): {type(e).__name__}: {_first_line(e)}") from e
            self._started = True
        import ray.data

        dctx = ray.data.DataContext.get_current()
        dctx.enable_progress_bars = False  # one bar per stage, ours, as with the local executor
        dctx.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # no "execution finished" lines
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "bars disabled": ours show
        self._ray = ray
        return ray

    def close(self) -> None:
        """Stop the workers; shut down the Ray this executor started (a cluster it joined is left running)."""
        if self._started and self._ray is not None:
            self._ray.shutdown()
        self._started = False
        self._ray = None

    def _step_resources(self, step: Step, label: str, sid: str | None = None) -> dict[str, Any]:
        """Ray resources of one worker of this step: the ``resources`` table (by step id, then by name),
        else what the step's :meth:`~mlbuild.pipeline.base.Step.resources` asks for when the
        cluster has GPUs and the run's device is not ``cpu``. CPUs, unless the table says: one per row
        worker; for a global step (one task doing the whole table) every CPU of the largest node that
        has the GPUs it needs, capped by the CPUs free now. Ray limits a task's BLAS/OpenMP threads to
        its CPUs, so a global step given one CPU would embed or search with a single thread."""
        sid = sid if sid is not None else label.split(" ", 1)[0]
        res = dict(self.resources.get(sid) or self.resources.get(type(step).name) or {})
        cluster_gpus = self._ray.cluster_resources().get("GPU", 0)
        if "num_gpus" not in res:
            want = float(step.resources().get("num_gpus", 0))
            res["num_gpus"] = want if want and cluster_gpus and step.ctx.device != "cpu" else 0
        elif res["num_gpus"] and not cluster_gpus:
            log.warning(
                "%s asks for %s GPUs per worker but the cluster has none now; its workers wait until GPU nodes join",
                label,
                res["num_gpus"],
            )
        if "num_cpus" not in res:
            res["num_cpus"] = self._node_cpus(res["num_gpus"]) if step.kind == "global" else 1
        return res

    def _node_cpus(self, gpus: float) -> int:
        nodes = [n.get("Resources", {}) for n in self._ray.nodes() if n.get("Alive")]
        cpus = max((r.get("CPU", 0) for r in nodes if r.get("GPU", 0) >= gpus), default=1)
        free = self._ray.available_resources().get("CPU", 1)
        return max(1, int(min(cpus, free)))

    def _wait_released(self, before: dict[str, float], timeout: float = 10.0) -> None:
        """Ray Data stops a stage's actors in the background; wait (briefly) until their CPUs and GPUs
        are free again, so the next stage sizes its pool on what the cluster really has."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self._ray.available_resources()
            if all(now.get(k, 0) >= before.get(k, 0) for k in ("CPU", "GPU")):
                return
            time.sleep(0.05)

    def _pool(self, res: dict[str, Any], n_shards: int) -> tuple[int, int]:
        """(min, max) actors of a row stage: ``num_workers`` when given (a fixed pool); else as many as
        the cluster's free CPUs/GPUs hold now, which Ray Data may grow up to one actor per shard when
        more resources appear (an autoscaling cluster adding GPU nodes during the stage)."""
        n = res.get("num_workers") or self.num_workers
        if n:
            n = max(1, min(int(n), n_shards))
            return n, n
        free = self._ray.available_resources()
        lo = int(free.get("CPU", 0) // res["num_cpus"]) if res["num_cpus"] else n_shards
        if res["num_gpus"]:
            lo = min(lo, int(free.get("GPU", 0) // res["num_gpus"]))
        lo = max(1, min(lo, n_shards))
        return lo, max(lo, n_shards)

    # ------------------------------------------------------------------ stages
    def run_source(self, stage: SourceStage) -> list[str]:
        """Each part of the input is read by a Ray task of its own (the driver holds none of it)."""
        ray = self._connect()
        t0 = time.perf_counter()
        task = ray.remote(_source_task).options(max_retries=self.max_retries, num_cpus=1)
        refs = [task.remote(stage, k) for k in range(len(stage.parts))]
        shards: list[str] = []
        try:
            outs = ray.get(refs)
        except ray.exceptions.RayError as e:
            raise StepError(
                stage.label, f"a Ray worker died reading the input: {type(e).__name__}: {_first_line(e)}"
            ) from e
        for out in outs:
            if "error" in out:
                err = out["error"]
                if err.get("type") == "InputError":
                    from ..errors import InputError

                    raise InputError(stage.label, err["message"])
                _raise_payload(stage.label, err)
            shards += out["shards"]
        self.timings.append(
            StageTiming(
                stage.label,
                "source",
                workers=len({o["pid"] for o in outs}),
                shards=len(shards),
                total_seconds=time.perf_counter() - t0,
                pids=sorted({o["pid"] for o in outs}),
            )
        )
        return shards

    def run_row_stage(self, stage: RowStage) -> None:
        # Slightly over 80 lines: the Ray Data pipeline (pool, map_batches, result stream, first error) is
        # one sequence; the per-shard work itself is run_task, shared with the local executor.
        step, step_label, in_dir, out_dir, on_setup = (
            stage.step,
            stage.label,
            stage.in_dir,
            stage.out_dir,
            stage.on_setup,
        )
        todo = pending_tasks(step_label, out_dir, stage.tasks)
        rows_of = {t.out: t.rows for t in stage.tasks}
        if not todo:
            return
        ray = self._connect()
        t_start = time.perf_counter()
        res = self._step_resources(step, step_label, stage.step_id)
        free_before = dict(ray.available_resources())
        lo, hi = self._pool(res, len(todo))
        timing = StageTiming(step_label, "row", workers=hi, shards=len(todo))
        # the spec (with any side tables) goes to the object store once, in a box so that Ray Data
        # hands the reference, not the value, to each actor's constructor
        spec_box = [ray.put(step_spec(step, step_label, self.cache == "shared"))]
        opts = {k: v for k, v in res.items() if k != "num_workers"}
        retries = {"max_restarts": self.max_retries}
        if self.max_retries:
            retries["max_task_retries"] = self.max_retries
        with warnings.catch_warnings():
            # Ray Data has no named parameter for an actor's restarts yet; the generic remote args it
            # still takes (until Ray 2.64, hence the pin in pyproject.toml) warn that they are deprecated
            warnings.filterwarnings("ignore", message=r".*ray_remote_args.*deprecated", category=Warning)
            items = [{"task": json.dumps(dataclasses.asdict(t))} for t in todo]
            ds = ray.data.from_items(items, override_num_blocks=len(todo)).map_batches(
                ShardUDF,
                batch_size=1,
                batch_format="numpy",
                # a fixed pool takes one shard per actor at a time; a growing pool queues a second one per
                # actor, since Ray Data grows a pool only when its actors have work waiting
                compute=ray.data.ActorPoolStrategy(
                    min_size=lo, max_size=hi, initial_size=lo, max_tasks_in_flight_per_actor=1 if lo == hi else 2
                ),
                fn_constructor_args=(spec_box, in_dir, out_dir),
                **opts,
                **retries,
            )
        setup_reported = False
        batches = ds.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=0)
        try:
            with stage_bar(step_label, sum(t.rows for t in todo), self.quiet) as bar:
                for batch in batches:
                    for text in batch["result"]:
                        out = json.loads(text)
                        if "error" in out:
                            _raise_payload(step_label, out["error"])
                        if out["pid"] not in timing.pids:
                            timing.pids.append(out["pid"])
                            timing.setup_seconds.append(out["setup_seconds"])
                        if not setup_reported:
                            timing.start_seconds = time.perf_counter() - t_start - out["seconds"]
                            if "models" in out:
                                on_setup({"models": out["models"], "extra": out["extra"]})
                                setup_reported = True
                        timing.shard_seconds.append(out["seconds"])
                        bar.update(rows_of.get(out["shard"], 0))
        except MlbuildError:
            raise
        except Exception as e:  # Ray Data gave up on a worker
            raise StepError(
                step_label,
                f"a Ray worker died and was retried {self.max_retries} times: {type(e).__name__}: {_first_line(e)}",
            ) from e
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()  # stops the pipeline (its actors) when leaving early
        self._wait_released(free_before)
        if not setup_reported:  # every shard was finished by an earlier attempt: set the step up here
            on_setup()
        timing.run_seconds = time.perf_counter() - t_start - timing.start_seconds
        timing.total_seconds = time.perf_counter() - t_start
        self.timings.append(timing)
        missing = [t.out for t in stage.tasks if t.out not in ck.done_shards(out_dir)]
        if missing:  # never expected: every shard returned without error
            raise StepError(step_label, f"{len(missing)} shards have no completion marker: {', '.join(missing[:5])}")

    def run_global_stage(self, stage: GlobalStage) -> list[str]:
        ray = self._connect()
        t0 = time.perf_counter()
        step_label = stage.label
        res = self._step_resources(stage.step, step_label, stage.step_id)
        opts = {k: v for k, v in res.items() if k != "num_workers"}
        task = ray.remote(_global_task).options(max_retries=self.max_retries, **opts)
        try:
            out = ray.get(
                task.remote(
                    step_spec(stage.step, step_label, self.cache == "shared"), stage.table, stage.out_dir, stage.target
                )
            )
        except ray.exceptions.RayError as e:
            raise StepError(
                step_label,
                f"the Ray worker died and was retried {self.max_retries} times: {type(e).__name__}: {_first_line(e)}",
            ) from e
        if "error" in out:
            _raise_payload(step_label, out["error"])
        stage.on_setup({"models": out["models"], "extra": out["extra"]})
        total = time.perf_counter() - t0
        self.timings.append(
            StageTiming(
                step_label,
                "global",
                workers=1,
                shards=len(out["shards"]),
                run_seconds=out["seconds"],
                start_seconds=total - out["seconds"],
                total_seconds=total,
                pids=[out["pid"]],
            )
        )
        return out["shards"]
