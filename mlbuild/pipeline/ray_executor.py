"""Run a recipe's steps on Ray: ``mlbuild run RECIPE --executor ray [--ray-address auto|ray://...]``.

The runner stays on the driver (validation, fingerprints, source, writer); this executor runs

- a **row step** on a pool of Ray actors. Each actor rebuilds the step once (``cls(params, ctx)`` +
  ``setup()``, so a model loads once per actor) and then processes whole upstream shards with the
  same :func:`~mlbuild.pipeline.executors.run_shard` the local executor calls: the same parquet,
  rejects, stats and marker files come out, only written by another process. Shards are handed out
  one at a time as actors free up; shard boundaries are fixed by the runner, so the result does not
  depend on how many actors there are or in which order they finish. The pool outlives the stage:
  the next row step with the same resources reuses the started processes.
- a **global step** as one Ray task (with the step's GPUs) that reads the upstream shard files and
  writes the stage through :func:`~mlbuild.pipeline.executors.run_global`.

Checkpoints and the model-call cache live under the run's out dir, which every node must see at the
same path (a shared filesystem). A worker killed mid-shard is restarted by Ray and the shard is
retried (``max_retries``); a shard whose marker exists is skipped, and files are written
atomically with the marker last, so a retry neither loses nor duplicates rows. An exception raised
by a step is not retried: it is reported as a :class:`~mlbuild.errors.StepError` that names the shard
and, found by bisecting the shard, the row ids that fail.

Resources per actor: ``num_gpus`` from the executor's ``resources`` table (keyed by step id or
registered name), else the step's ``num_gpus`` (a class attribute or a property; asked only when the
cluster has GPUs and the run's device is not ``cpu``), else none; ``num_cpus`` defaults to 1.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import MlbuildError, RecipeError, StepError, requires
from . import checkpoint as ck
from .base import ROW_ID, RunContext, Step
from .executors import run_global, run_shard

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
    cache_path: str | None  # the run's sqlite call cache (shared filesystem), or None


def step_spec(step: Step, label: str, use_cache: bool = True) -> StepSpec:
    cache = step.ctx.cache if use_cache else None
    ctx = dataclasses.replace(step.ctx, cache=None, models={}, extra={})
    return StepSpec(type(step), step.params, label, ctx, str(cache.path) if cache is not None else None)


def build_step(spec: StepSpec) -> Step:
    """Build the step on a worker and set it up (models load here, on the worker's device)."""
    cache = None
    if spec.cache_path is not None:
        from .cache import CallCache

        cache = CallCache(spec.cache_path)
    ctx = dataclasses.replace(spec.ctx, cache=cache, models={}, extra={})
    step = spec.cls(spec.params, ctx)
    try:
        step.setup()
    except MlbuildError:
        raise
    except Exception as e:  # noqa: BLE001 - reported with the step's name
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
            except Exception:  # noqa: BLE001 - any failure narrows the search
                todo.append(part)
    return found


class ShardWorker:
    """A Ray actor that runs shards of whatever row step it is handed. It builds (and sets up) a step
    once and keeps it for every shard of that stage; the pool of workers lives for the whole run, so
    the process start and imports are paid once. Every call carries the stage's key and its spec (in
    a list, so Ray does not fetch it unless the step must be built): a worker that Ray restarted
    after its process died rebuilds the step from it."""

    def __init__(self):
        self.key: str | None = None
        self.spec: StepSpec | None = None
        self.step: Step | None = None
        self.setup_seconds = 0.0

    def _load(self, key: str, spec_box: list) -> None:
        if self.key == key and self.step is not None:
            return
        self.release()
        import ray

        t0 = time.perf_counter()
        spec = spec_box[0]
        self.spec = ray.get(spec) if isinstance(spec, ray.ObjectRef) else spec
        self.step = build_step(self.spec)
        self.key = key
        self.setup_seconds = time.perf_counter() - t0

    def setup(self, key: str, spec_box: list) -> dict[str, Any]:
        try:
            self._load(key, spec_box)
        except Exception as e:  # noqa: BLE001
            return _error_payload(e, phase="setup")
        return {
            "models": self.step.ctx.models,
            "extra": self.step.ctx.extra,
            "pid": os.getpid(),
            "node": _node_id(),
            "setup_seconds": self.setup_seconds,
        }

    def run(self, key: str, spec_box: list, in_dir: str, out_dir: str, shard: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        in_dir, out_dir = Path(in_dir), Path(out_dir)
        if ck.is_done(out_dir, shard):  # a retry after the files were complete
            return {"shard": shard, "skipped": True, "pid": os.getpid(), "seconds": 0.0}
        try:
            self._load(key, spec_box)
        except Exception as e:  # noqa: BLE001
            return _error_payload(e, phase="setup", shard=shard)
        try:
            run_shard(self.step, self.spec.label, in_dir, out_dir, shard)
        except Exception as e:  # noqa: BLE001 - reported with the shard and rows
            payload = _error_payload(e, phase="process", shard=shard)
            try:
                batch = ck.read_shard(in_dir, shard)
                ids = batch[ROW_ID].cast(str).to_list() if ROW_ID in batch.columns else []
                payload["error"]["shard_rows"] = len(ids)
                payload["error"]["first_row"] = ids[0] if ids else None
                payload["error"]["last_row"] = ids[-1] if ids else None
                payload["error"]["failing_rows"] = locate_failing_rows(self.step, batch) if ids else []
            except Exception:  # noqa: BLE001 - the report of the first error matters more
                pass
            return payload
        return {"shard": shard, "skipped": False, "pid": os.getpid(), "seconds": time.perf_counter() - t0}

    def release(self) -> None:
        """Drop the step (and its models) at the end of a stage; the process stays for the next one."""
        if self.step is not None and self.step.ctx.cache is not None:
            self.step.ctx.cache.close()
        self.step = self.spec = self.key = None
        import gc

        gc.collect()


def _global_task(spec: StepSpec, in_dir: str, in_shards: list[str], out_dir: str, shard_rows: int) -> dict[str, Any]:
    """A Ray task: set up a global step, run it over the whole table and write its stage."""
    step = None
    try:
        step = build_step(spec)
        t0 = time.perf_counter()
        shards = run_global(step, spec.label, Path(in_dir), in_shards, Path(out_dir), shard_rows)
        return {
            "shards": shards,
            "models": step.ctx.models,
            "extra": step.ctx.extra,
            "pid": os.getpid(),
            "seconds": time.perf_counter() - t0,
        }
    except Exception as e:  # noqa: BLE001
        return _error_payload(e, phase="process_table")
    finally:
        if step is not None and step.ctx.cache is not None:
            step.ctx.cache.close()


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - only informative
        return None


def _shape(res: dict[str, Any]) -> tuple:
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in res.items() if k != "num_workers"))


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
    """Runs row steps on an actor pool and global steps as tasks on a Ray cluster.

    ``address``: ``None`` starts a local Ray (unless this process is already connected), ``auto``
    joins the cluster of this node, ``ray://host:10001`` a remote one (the out dir must be on a
    filesystem the cluster shares). ``num_workers``: actors per row step (default: as many as the
    cluster's free CPUs or GPUs allow, at most one per shard). ``resources``: per step id or name,
    ``{"num_gpus": 1, "num_cpus": 4, "num_workers": 8}``. ``max_retries``: restarts of a dead worker
    and retries of its shard. ``cache``: ``shared`` (workers use the run's sqlite call cache; right on
    one node) or ``off`` (workers call models without it, for clusters whose shared filesystem
    cannot hold a sqlite database written from several machines); default from ``MLBUILD_RAY_CACHE``."""

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
        self._pool: list = []  # ShardWorker actors, kept from one row stage to the next
        self._pool_shape: tuple | None = None

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
            except Exception as e:  # noqa: BLE001 - one clean line for the CLI
                where = self.address or os.environ.get("RAY_ADDRESS") or "a new local Ray"
                raise MlbuildError(f"cannot start or join Ray ({where}): {type(e).__name__}: {_first_line(e)}") from e
            self._started = True
        self._ray = ray
        return ray

    def close(self) -> None:
        """Stop the workers; shut down the Ray this executor started (a cluster it joined is left running)."""
        self._drop_pool()
        if self._started and self._ray is not None:
            self._ray.shutdown()
        self._started = False
        self._ray = None

    def _step_resources(self, step: Step, label: str) -> dict[str, Any]:
        """Ray resources of one worker of this step: the ``resources`` table (by step id, then by name),
        else the step's ``num_gpus`` (a class attribute, or a property that reads the params) when the
        cluster has GPUs and the run's device is not ``cpu``; one CPU unless told otherwise."""
        sid = label.split(" ", 1)[0]
        res = dict(self.resources.get(sid) or self.resources.get(type(step).name) or {})
        cluster_gpus = self._ray.cluster_resources().get("GPU", 0)
        if "num_gpus" not in res:
            want = float(getattr(step, "num_gpus", 0) or 0)
            res["num_gpus"] = want if want and cluster_gpus and step.ctx.device != "cpu" else 0
        elif res["num_gpus"] and not cluster_gpus:
            log.warning(
                "%s asks for %s GPUs per worker but the cluster has none now; its workers wait until GPU nodes join",
                label,
                res["num_gpus"],
            )
        res.setdefault("num_cpus", 1)
        return res

    def _pool_size(self, res: dict[str, Any], n_shards: int) -> int:
        n = res.get("num_workers") or self.num_workers
        if not n:
            free = dict(self._ray.available_resources())
            if self._pool and self._pool_shape == _shape(res):  # our idle workers hold some of it
                free["CPU"] = free.get("CPU", 0) + len(self._pool) * res["num_cpus"]
                free["GPU"] = free.get("GPU", 0) + len(self._pool) * res["num_gpus"]
            n = int(free.get("CPU", 1) // res["num_cpus"]) if res["num_cpus"] else n_shards
            if res["num_gpus"]:
                n = min(n, int(free.get("GPU", 0) // res["num_gpus"]))
        return max(1, min(int(n), n_shards))

    def _drop_pool(self) -> None:
        for a in self._pool:
            try:
                self._ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001 - best effort: the actor may be gone already
                pass
        self._pool, self._pool_shape = [], None

    def _workers(self, res: dict[str, Any], n: int) -> list:
        """``n`` workers with these resources: the pool of the last stage when it fits, grown as needed.
        Only one pool lives at a time, so idle workers never hold the resources another stage needs."""
        opts = {k: v for k, v in res.items() if k != "num_workers"}
        shape = _shape(res)
        if shape != self._pool_shape:
            self._drop_pool()
            self._pool_shape = shape
        if len(self._pool) < n:
            cls = self._ray.remote(ShardWorker).options(
                max_restarts=self.max_retries, max_task_retries=self.max_retries, **opts
            )
            self._pool += [cls.remote() for _ in range(n - len(self._pool))]
        return self._pool[:n]

    # ------------------------------------------------------------------ stages
    def run_row_stage(
        self,
        step: Step,
        step_label: str,
        in_dir: Path,
        out_dir: Path,
        shards: list[str],
        shard_rows: dict[str, int],
        on_setup: Callable[..., None],
    ) -> None:
        todo = [s for s in shards if not ck.is_done(out_dir, s)]
        if not todo:
            return
        if len(todo) < len(shards):
            log.info("%s: resuming, %d of %d shards already done", step_label, len(shards) - len(todo), len(shards))
        ray = self._connect()
        t_start = time.perf_counter()
        res = self._step_resources(step, step_label)
        n = self._pool_size(res, len(todo))
        timing = StageTiming(step_label, "row", workers=n, shards=len(todo))
        # the spec (with any side tables) goes to the object store once; the key names this stage
        spec_box = [ray.put(step_spec(step, step_label, self.cache == "shared"))]
        key = f"{out_dir}"
        actors = self._workers(res, n)
        try:
            infos = ray.get([a.setup.remote(key, spec_box) for a in actors])
            for info in infos:
                if "error" in info:
                    _raise_payload(step_label, info["error"])
            on_setup({"models": infos[0]["models"], "extra": infos[0]["extra"]})
            timing.setup_seconds = [i["setup_seconds"] for i in infos]
            timing.pids = sorted({i["pid"] for i in infos})
            timing.start_seconds = time.perf_counter() - t_start
            self._run_pool(
                ray,
                actors,
                todo,
                step_label,
                shard_rows,
                timing,
                lambda a, s: a.run.remote(key, spec_box, str(in_dir), str(out_dir), s),
            )
        except ray.exceptions.RayError as e:
            self._drop_pool()
            raise StepError(
                step_label,
                f"a Ray worker died and was retried {self.max_retries} times: {type(e).__name__}: {_first_line(e)}",
            ) from e
        except BaseException:
            self._drop_pool()  # workers may still be busy with this stage's other shards
            raise
        try:
            ray.get([a.release.remote() for a in actors], timeout=60)
        except ray.exceptions.RayError:  # a worker that cannot let go of its model is not kept
            self._drop_pool()
        timing.run_seconds = time.perf_counter() - t_start - timing.start_seconds
        timing.total_seconds = time.perf_counter() - t_start
        self.timings.append(timing)
        missing = [s for s in shards if not ck.is_done(out_dir, s)]
        if missing:  # never expected: every shard returned without error
            raise StepError(step_label, f"{len(missing)} shards have no completion marker: {', '.join(missing[:5])}")

    def _run_pool(
        self,
        ray,
        actors: list,
        todo: list[str],
        label: str,
        shard_rows: dict[str, int],
        timing: StageTiming,
        submit: Callable[[Any, str], Any],
    ) -> None:
        queue = list(todo)
        pending: dict[Any, tuple[Any, str]] = {}
        total = sum(shard_rows.get(s, 0) for s in todo)
        with tqdm(
            total=total, desc=label, unit="row", disable=True if self.quiet else None, mininterval=1.0, leave=False
        ) as bar:
            for a in actors:
                if queue:
                    s = queue.pop(0)
                    pending[submit(a, s)] = (a, s)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                ref = ready[0]
                actor, shard = pending.pop(ref)
                out = ray.get(ref)
                if "error" in out:
                    _raise_payload(label, out["error"])
                timing.shard_seconds.append(out["seconds"])
                if out["pid"] not in timing.pids:
                    timing.pids.append(out["pid"])
                bar.update(shard_rows.get(shard, 0))
                if queue:
                    s = queue.pop(0)
                    pending[submit(actor, s)] = (actor, s)

    def run_global_stage(
        self,
        step: Step,
        step_label: str,
        in_dir: Path,
        in_shards: list[str],
        out_dir: Path,
        shard_rows: int,
        on_setup: Callable[..., None],
    ) -> list[str]:
        ray = self._connect()
        self._drop_pool()  # idle row workers must not hold the CPUs/GPUs this task needs
        t0 = time.perf_counter()
        res = self._step_resources(step, step_label)
        opts = {k: v for k, v in res.items() if k != "num_workers"}
        task = ray.remote(_global_task).options(max_retries=self.max_retries, **opts)
        try:
            out = ray.get(
                task.remote(
                    step_spec(step, step_label, self.cache == "shared"),
                    str(in_dir),
                    list(in_shards),
                    str(out_dir),
                    shard_rows,
                )
            )
        except ray.exceptions.RayError as e:
            raise StepError(
                step_label,
                f"the Ray worker died and was retried {self.max_retries} times: {type(e).__name__}: {_first_line(e)}",
            ) from e
        if "error" in out:
            _raise_payload(step_label, out["error"])
        on_setup({"models": out["models"], "extra": out["extra"]})
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
