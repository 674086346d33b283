"""Write a build as a versioned Hub-layout folder, from the :class:`~mlbuild.pipeline.build.BuildRecord`
alone (the writer never reaches back into the runner):

``OUT/<name>/<version>/`` = ``data/<config>/<split>-NNNNN-of-NNNNN.parquet``, ``README.md`` (card),
``manifest.json``, ``recipe.lock.toml``, ``reports/``, ``rejects/``, and any extra output formats.
Everything streams shard by shard. The folder is built beside the target and swapped into place
atomically, so a killed run never leaves half a dataset, or no dataset where a version was."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import langs
from ..accounting import usage_markdown, usage_summary
from ..pipeline import checkpoint as ck
from ..pipeline.base import StepReport
from ..pipeline.build import BuildRecord, StageRecord
from . import card as cardmod
from . import formats
from . import manifest as man
from .layout import DataSummary, write_data
from .lock import CARD_COPY, write_lock
from .swap import recover, swap_into_place

log = logging.getLogger(__name__)


@dataclass
class WriteResult:
    dataset_dir: Path
    fingerprint: str
    manifest: dict[str, Any]


def read_manifest(dataset_dir: Path) -> dict[str, Any]:
    return json.loads((Path(dataset_dir) / "manifest.json").read_text(encoding="utf-8"))


def write_dataset(build: BuildRecord) -> WriteResult:
    target = build.dataset_dir
    recover(target)
    tmp = target.parent / f".{target.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    for d in ("data", "reports", "rejects"):
        (tmp / d).mkdir(parents=True)
    rc = build.recipe
    data = write_data(build.final, rc.output, tmp / "data")
    reject_counts = write_rejects(build, tmp / "rejects")
    step_summaries = {  # named by the recipe step, whatever stage of it carries the report
        (st.step_id or st.id): file_report(st.report, st.step_id or st.id, tmp / "reports")
        for st in build.stages[1:]
        if st.report is not None
    }
    if build.reports_dir is not None and Path(build.reports_dir).exists():
        shutil.copytree(build.reports_dir, tmp / "reports", dirs_exist_ok=True)
    report_files = sorted(str(p.relative_to(tmp)) for p in (tmp / "reports").rglob("*") if p.is_file())
    format_summaries = {}
    for fm in rc.output.format:
        if fm != "hf":
            format_summaries[fm] = formats.module(fm).write(build, tmp) or {}
    manifest = make_manifest(build, data, reject_counts, report_files, step_summaries, format_summaries)
    ck.write_json(tmp / "manifest.json", manifest)
    custom_card = cardmod.user_template(rc.dataset.card, rc.dir)  # never a file outside the recipe folder
    if custom_card is not None:  # a recipe's own card template travels with the version (the lock points to it)
        shutil.copyfile(custom_card, tmp / CARD_COPY)
    write_lock(build, tmp / "recipe.lock.toml", target)
    (tmp / "README.md").write_text(render_card(build, data, manifest), encoding="utf-8")
    swap_into_place(tmp, target)
    return WriteResult(dataset_dir=target, fingerprint=build.fingerprint, manifest=manifest)


def write_rejects(build: BuildRecord, rejects_dir: Path) -> dict[str, int]:
    """Every stage's rejects, streamed shard by shard into ``rejects/NN-<id>.jsonl``."""
    counts: dict[str, int] = {}
    named = [("00-source", build.stages[0])]
    named += [(f"00-{st.id}", st) for st in build.table_stages]
    named += [(f"{i:02d}-{st.id}", st) for i, st in enumerate(build.stages[1:], start=1)]
    for fname, st in named:
        n = 0
        path = rejects_dir / f"{fname}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for s in st.table.shards:
                for rec in ck.iter_rejects(st.table.dir, s):
                    f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
                    n += 1
        if n:
            counts[st.id] = n
        else:
            path.unlink()
    return counts


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


def _step_row(st: StageRecord) -> dict[str, Any]:
    s = st.stats
    row = {
        "id": st.id,
        "uses": st.uses,
        "fingerprint": st.fingerprint,
        "rows_in": s.get("rows_in", 0),
        "rows_out": s.get("rows_out", 0),
        "dropped": dict(sorted(s.get("dropped", {}).items())),
        "seconds": round(s.get("seconds", 0.0), 3),
        "by_lang": s.get("by_lang", {}),
    }
    usage = usage_summary(s, st.extra)  # tokens in/out per language (and cost) of a model-backed step
    if usage is not None:
        row["tokens"] = usage
    return row


def make_manifest(
    build: BuildRecord,
    data: DataSummary,
    reject_counts: dict[str, int],
    report_files: list[str],
    step_summaries: dict[str, Any],
    format_summaries: dict[str, Any],
) -> dict[str, Any]:
    rc, ds = build.recipe, build.recipe.dataset
    models = {f"{st.id}.{role}": info for st in build.stages[1:] for role, info in st.models.items()}
    models.update(build.report_models)
    names = {Path(p).name for p in build.input_checksums}
    unique = len(names) == len(build.input_checksums)
    return {
        "name": ds.name,
        "version": ds.version,
        "fingerprint": build.fingerprint,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "mlbuild": man.environment(),
        "git": man.git_commit(),
        "packages": man.package_versions(),
        "recipe": rc.path.name,
        "inputs": {(Path(p).name if unique else p): c for p, c in sorted(build.input_checksums.items())},
        "seeds": {"dataset": ds.seed, "split": rc.output.split_seed},
        "models": models,
        "extra": {st.id: st.extra for st in build.stages[1:] if st.extra},
        "steps": [_step_row(st) for st in build.stages],
        "tables": {st.id: _step_row(st) for st in build.table_stages},
        "configs": data.configs,
        "files": data.files,
        "languages": data.languages,
        "rows": data.rows,
        "rejects": reject_counts,
        "reports": report_files,
        "step_summaries": step_summaries,
        "report_summaries": build.report_summaries,
        "formats": format_summaries,
        "seconds": round(build.seconds, 3),
    }


def render_card(build: BuildRecord, data: DataSummary, manifest: dict[str, Any]) -> str:
    rc, ds = build.recipe, build.recipe.dataset
    steps = build.stages[1:]
    if "translation" in [st.multilinguality for st in steps]:
        multilinguality = "translation"
    elif len(data.languages) > 1:
        multilinguality = "multilingual"
    else:
        multilinguality = "monolingual"
    task_categories = list(dict.fromkeys([*ds.task_categories, *(t for st in steps for t in st.task_categories)]))
    ctx = {
        "dataset": {
            "name": ds.name,
            "version": ds.version,
            "license": ds.license,
            "description": ds.description,
            "pretty_name": ds.pretty_name,
            "tags": ds.tags,
        },
        "fingerprint": build.fingerprint,
        "configs": data.configs,
        "languages": data.languages,
        "language_names": {c: langs.display_name(c) for c in data.languages},
        "total_rows": data.rows,
        "columns": data.columns,
        "multilinguality": multilinguality,
        "annotations_creators": ["machine-generated"]
        if any(st.machine_generated_annotations for st in steps)
        else ["no-annotation"],
        "language_creators": ["found", "machine-generated"]
        if any(st.machine_generated_text for st in steps)
        else ["found"],
        "source_datasets": ds.source_datasets or list(build.source_datasets) or ["original"],
        "task_categories": task_categories,
        "steps": manifest["steps"],
        "models": manifest["models"],
        "reports": manifest["reports"],
        "step_summaries": manifest["step_summaries"],
        "usage": usage_markdown(manifest["steps"]),
        "report_summaries": manifest["report_summaries"],
        "rejects": manifest["rejects"],
        "manifest": manifest,
        "extra_configs": [c for f in manifest.get("formats", {}).values() for c in (f.get("configs") or [])],
    }
    template = cardmod.find_template(ds.card, rc.dir)
    return cardmod.render(ctx, template)
