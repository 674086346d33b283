"""Write the final table as a versioned Hub-layout folder:

``OUT/<name>/<version>/`` = ``data/<config>/<split>-NNNNN-of-NNNNN.parquet``, ``README.md`` (card),
``manifest.json``, ``recipe.lock.toml``, ``reports/``, ``rejects/``. The folder is built beside the
target and renamed into place, so a killed run never leaves half a dataset."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import tomli_w

from .. import langs
from ..errors import RecipeError
from ..pipeline import checkpoint as ck
from ..pipeline.base import ROW_ID, StepReport
from . import card as cardmod
from . import manifest as man

if TYPE_CHECKING:
    from ..pipeline.runner import Runner, RunResult, StageResult

log = logging.getLogger(__name__)


def _split_of(row_id: str, seed: int, cuts: list[tuple[float, str]]) -> str:
    h = hashlib.blake2b(f"{seed}\x1f{row_id}".encode(), digest_size=8).digest()
    u = int.from_bytes(h, "big") / 2**64
    for cut, name in cuts:
        if u < cut:
            return name
    return cuts[-1][1]


def assign_splits(table: pl.DataFrame, output) -> pl.DataFrame:
    if output.split_column:
        col = pl.col(output.split_column).cast(pl.Utf8)
        allowed = output.declared_splits
        bad = table.filter(col.is_null() | (~col.is_in(allowed) if allowed is not None else pl.lit(False)))
        if bad.height:
            vals = sorted(set(bad[output.split_column].cast(pl.Utf8).fill_null("null").to_list()))[:5]
            raise RecipeError(
                [("output -> split_column", f"values {vals} are not in splits {allowed} (row {bad[ROW_ID][0]})")]
            )
        return table.with_columns(col.alias("__split"))
    fractions = output.fractions
    names = list(fractions)
    if len(names) == 1:
        return table.with_columns(pl.lit(names[0]).alias("__split"))
    cuts, acc = [], 0.0
    for name in names:
        acc += fractions[name]
        cuts.append((acc, name))
    seed = output.split_seed
    # rows that are translations of one another share a parallel_id: keep them in the same split
    key = "parallel_id" if "parallel_id" in table.columns else ROW_ID
    return table.with_columns(
        pl.coalesce(pl.col(key).cast(pl.Utf8), pl.col(ROW_ID))
        .map_elements(lambda r: _split_of(r, seed, cuts), return_dtype=pl.Utf8)
        .alias("__split")
    )


def _config_name(v: Any) -> str:
    if v is None:
        return "und"
    s = str(v)
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in s) or "und"


def languages_of(table: pl.DataFrame, config_by: str | None) -> list[str]:
    """Languages present: the ``lang`` column, else the ``config_by`` column when it holds codes, else
    every detected ``*_lang`` column."""
    found: set[str] = set()
    if "lang" in table.columns:
        cols = ["lang"]
    elif config_by and config_by.endswith("lang"):
        cols = [config_by]
    else:
        cols = [c for c in table.columns if c.endswith("_lang")]
    for c in cols:
        if table.schema[c] != pl.Utf8:
            continue
        for v in table[c].drop_nulls().unique().to_list():
            if langs.is_valid(v):
                found.add(langs.normalize(v))
    return sorted(found)


def write_dataset(
    runner: Runner, stages: list[StageResult], final: pl.DataFrame, fingerprint: str, seconds: float
) -> RunResult:
    from ..pipeline.runner import RunResult

    rc = runner.recipe
    target = runner.dataset_dir
    old_manifest = target / "manifest.json"
    up_to_date = False
    if old_manifest.exists():
        old_fp = json.loads(old_manifest.read_text()).get("fingerprint")
        if old_fp != fingerprint and not runner.overwrite:
            raise RecipeError(
                [
                    (
                        "dataset -> version",
                        f"{target} already holds version {rc.dataset.version} built from a different recipe "
                        f"or input (fingerprint {old_fp[:12]}, now {fingerprint[:12]}); bump dataset.version "
                        "or pass --overwrite",
                    )
                ],
                path=str(rc.path),
            )
        up_to_date = old_fp == fingerprint
    tmp = target.parent / f".{target.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "data").mkdir(parents=True)
    (tmp / "reports").mkdir()
    (tmp / "rejects").mkdir()

    # ---- data files
    table = assign_splits(final, rc.output)
    cfg_col = rc.output.config_by
    if cfg_col:
        table = table.with_columns(
            pl.col(cfg_col).map_elements(_config_name, return_dtype=pl.Utf8, skip_nulls=False).alias("__config")
        )
    else:
        table = table.with_columns(pl.lit("default").alias("__config"))
    drop_cols = ["__split", "__config"]
    if rc.output.split_column:
        drop_cols.append(rc.output.split_column)
    configs: dict[str, dict[str, int]] = {}
    for cfg in sorted(table["__config"].unique().to_list()):
        part = table.filter(pl.col("__config") == cfg)
        configs[cfg] = {}
        for split in sorted(part["__split"].unique().to_list()):
            rows = part.filter(pl.col("__split") == split).drop([c for c in drop_cols if c in part.columns])
            if rows.height == 0:
                continue
            configs[cfg][split] = rows.height
            d = tmp / "data" / cfg
            d.mkdir(parents=True, exist_ok=True)
            m = rc.output.max_rows_per_file
            n = max(1, -(-rows.height // m))
            for i in range(n):
                rows.slice(i * m, m).write_parquet(d / f"{split}-{i:05d}-of-{n:05d}.parquet", compression="zstd")
    configs = {k: v for k, v in configs.items() if v}
    if not configs:
        log.warning("the dataset is empty: every row was dropped (see rejects/)")

    # ---- rejects
    reject_counts: dict[str, int] = {}
    src = stages[0]
    src_rej = ck.read_jsonl(src.dir / "rejects.jsonl")
    if src_rej:
        ck.write_jsonl(tmp / "rejects" / "00-source.jsonl", src_rej)
        reject_counts["source"] = len(src_rej)
    for name, df in runner.table_rejects.items():
        recs = ck.rejects_to_records(df, f"sources.{name}")
        ck.write_jsonl(tmp / "rejects" / f"00-sources.{name}.jsonl", recs)
        reject_counts[f"sources.{name}"] = len(recs)
    for i, st in enumerate(stages[1:], start=1):
        recs = []
        for s in st.shards:
            recs.extend(ck.read_rejects(st.dir, s))
        if recs:
            ck.write_jsonl(tmp / "rejects" / f"{i:02d}-{st.id}.jsonl", recs)
            reject_counts[st.id] = len(recs)

    # ---- step reports and recipe reports
    step_summaries: dict[str, Any] = {}
    for st in stages[1:]:
        step = getattr(st, "step", None)
        if step is not None:
            report = step.finalize(st.stats)
            if report is not None:
                step_summaries[st.id] = file_report(report, st.id, tmp / "reports")
    report_summaries: dict[str, Any] = {}
    models: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for st in stages[1:]:
        for role, info in st.models.items():
            models[f"{st.id}.{role}"] = info
        if st.extra:
            extra[st.id] = st.extra
    t_reports = time.perf_counter()
    for spec in rc.reports:
        ctx = runner._step_ctx()
        rep = spec.cls(spec.params, ctx)
        report_summaries[spec.id] = rep.run(final, tmp / "reports") or {}
        for role, info in ctx.models.items():
            models[f"reports.{spec.id}.{role}"] = info
    seconds += time.perf_counter() - t_reports
    report_files = sorted(str(p.relative_to(tmp)) for p in (tmp / "reports").rglob("*") if p.is_file())

    # ---- manifest
    step_rows = []
    for st in stages:
        s = st.stats
        step_rows.append(
            {
                "id": st.id,
                "uses": st.uses,
                "fingerprint": st.fingerprint,
                "rows_in": s.get("rows_in", 0),
                "rows_out": s.get("rows_out", 0),
                "dropped": dict(sorted(s.get("dropped", {}).items())),
                "seconds": round(s.get("seconds", 0.0), 3),
                "by_lang": s.get("by_lang", {}),
            }
        )
    languages = languages_of(final, cfg_col)
    ds = rc.dataset
    manifest = {
        "name": ds.name,
        "version": ds.version,
        "fingerprint": fingerprint,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "mlbuild": man.environment(),
        "git": man.git_commit(),
        "packages": man.package_versions(),
        "recipe": rc.path.name,
        "inputs": {
            Path(p).name
            if len({Path(q).name for q in runner.input_checksums}) == len(runner.input_checksums)
            else p: c
            for p, c in sorted(runner.input_checksums.items())
        },
        "seeds": {"dataset": ds.seed, "split": rc.output.split_seed},
        "models": models,
        "extra": extra,
        "steps": step_rows,
        "configs": configs,
        "languages": languages,
        "rows": final.height,
        "rejects": reject_counts,
        "reports": report_files,
        "step_summaries": step_summaries,
        "report_summaries": report_summaries,
        "seconds": round(seconds, 3),
    }
    ck.write_json(tmp / "manifest.json", manifest)

    # ---- resolved recipe
    lock = {k: v for k, v in rc.resolved.items()}
    lock.setdefault("dataset", {})
    header = (
        f"# Resolved recipe of {ds.name} {ds.version} (fingerprint {fingerprint}).\n"
        "# --set overrides and ${vars} are applied; run it again with `mlbuild run recipe.lock.toml`.\n"
    )
    (tmp / "recipe.lock.toml").write_text(header + tomli_w.dumps(_toml_safe(lock)), encoding="utf-8")

    # ---- card
    machine_text = any(getattr(getattr(st, "step", None), "machine_generated_text", False) for st in stages[1:])
    machine_ann = any(getattr(getattr(st, "step", None), "machine_generated_annotations", False) for st in stages[1:])
    multi = [getattr(getattr(st, "step", None), "multilinguality", None) for st in stages[1:]]
    if "translation" in multi:
        multilinguality = "translation"
    elif len(languages) > 1:
        multilinguality = "multilingual"
    else:
        multilinguality = "monolingual"
    task_categories = list(
        dict.fromkeys(
            [
                *ds.task_categories,
                *(t for st in stages[1:] for t in getattr(getattr(st, "step", None), "task_categories", ())),
            ]
        )
    )
    src_obj = rc.source.cls(rc.source.params)
    card_ctx = {
        "dataset": {
            "name": ds.name,
            "version": ds.version,
            "license": ds.license,
            "description": ds.description,
            "pretty_name": ds.pretty_name,
            "tags": ds.tags,
        },
        "fingerprint": fingerprint,
        "configs": configs,
        "languages": languages,
        "language_names": {c: langs.display_name(c) for c in languages},
        "total_rows": final.height,
        "columns": [c for c in final.columns],
        "multilinguality": multilinguality,
        "annotations_creators": ["machine-generated"] if machine_ann else ["no-annotation"],
        "language_creators": (["found", "machine-generated"] if machine_text else ["found"]),
        "source_datasets": ds.source_datasets or src_obj.source_datasets() or ["original"],
        "task_categories": task_categories,
        "steps": step_rows,
        "models": models,
        "reports": report_files,
        "step_summaries": step_summaries,
        "report_summaries": report_summaries,
        "rejects": reject_counts,
        "manifest": manifest,
    }
    template = cardmod.find_template(ds.card, rc.dir)
    (tmp / "README.md").write_text(cardmod.render(card_ctx, template), encoding="utf-8")

    # ---- extra output formats (BEIR folders per language, ...)
    for fmt in rc.output.format:
        if fmt == "hf":
            continue
        from importlib import import_module

        import_module(f"mlbuild.publish.{fmt}").write(runner, final, tmp)

    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(target)
    return RunResult(dataset_dir=target, fingerprint=fingerprint, manifest=manifest, up_to_date=up_to_date)


def file_report(report: StepReport, step_id: str, reports_dir: Path) -> dict[str, Any]:
    """Write a step's report as ``reports/<step id>.json|md|<plot>.png``; return its card summary."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    files = []
    if report.data is not None:
        p = reports_dir / f"{step_id}.json"
        p.write_text(json.dumps(report.data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        files.append(p.name)
    if report.markdown:
        p = reports_dir / f"{step_id}.md"
        p.write_text(report.markdown.rstrip("\n") + "\n", encoding="utf-8")
        files.append(p.name)
    for name, png in sorted(report.plots.items()):
        p = reports_dir / f"{step_id}.{name}.png"
        p.write_bytes(png)
        files.append(p.name)
    links = ", ".join(f"`reports/{n}`" for n in files)
    return {
        "markdown": report.summary + (f" (see {links})" if links else ""),
        "files": [f"reports/{n}" for n in files],
    }


def _toml_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _toml_safe(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_toml_safe(v) for v in obj if v is not None]
    return obj
