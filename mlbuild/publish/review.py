"""The review queue of span projection: export the rows a person should look at, fold their corrections
back in as a new dataset version.

Export (:func:`export_queue`) reads a built dataset (``OUT/<name>/<version>``): rows of the data files
whose ``projection_status`` is not ``ok`` (failed or ``low_confidence``), and rows ``project_spans.v1``
sent to ``rejects/`` (``on_fail = "drop"``). Each becomes one JSON line a person can fix in a text
editor: ``source`` and ``target`` hold the texts with numbered markers ``[1]..[/1]`` around the spans
(the attempted target spans; missing ones are absent), ``labels`` names each number. The person edits
``target`` (moves, adds or removes markers, fixes the translation) or sets ``"reviewed": true`` to accept
it as is. Annotation tools can edit ``target_text`` + ``target_spans`` (offsets) instead and delete
``target``.

Import (:func:`import_corrections`) parses every edited line (markers must be complete: one start and
one end per span, no crossing), then writes a NEW version folder beside the old one: corrected rows get
the new text and spans, ``projection_status = "ok"``, ``projection_method = "human"`` and
``human_corrected = true`` (a column added to every row, one schema for every data file); rows from
``rejects/`` are added back to the data as one more file of the config and split the writer would give
them (:mod:`mlbuild.publish.layout`; existing files are renamed to the new count, never read whole).
``manifest.json`` records the parent version and the corrections file's checksum (the new fingerprint
hashes both) and counts the new files, rows and rejects; ``conll/`` (``format = ["hf", "conll"]``) is
written again from the corrected data; the card's metadata is made again (new fingerprint, counts,
``expert-generated`` among the annotation creators) and its body counts the human-corrected rows. The
new version is moved into place whole (:func:`mlbuild.publish.swap.swap_into_place`). Lines left unedited
are skipped; lines whose markers are still broken are reported and skipped (an error with ``strict``).
Rows of the review queue are rows of the data, file by file: memory grows with one data file and the
queue, not with the dataset.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import tomllib
import yaml

from .. import spans as S
from ..errors import InputError
from ..pipeline import checkpoint as ck
from ..pipeline.base import ROW_ID
from ..pipeline.cache import hash_text
from ..pipeline.tables import conform
from .layout import CONFIG, SPLIT, assign_configs, assign_splits
from .swap import swap_into_place

log = logging.getLogger(__name__)

STEP = "project_spans.v1"
MARKERS = S.style("brackets")


@dataclass
class Columns:
    """Where a dataset keeps the projection's texts and spans (read from its recipe.lock.toml)."""

    source_text: str
    source_spans: str
    target_text: str
    step_id: str


def projection_columns(dataset_dir: Path, step_id: str | None = None) -> Columns:
    lock = dataset_dir / "recipe.lock.toml"
    if not lock.exists():
        raise InputError(str(lock), "no recipe.lock.toml: point at a dataset built by mlbuild (OUT/<name>/<version>)")
    steps = tomllib.loads(lock.read_text(encoding="utf-8")).get("steps", [])
    found = [
        (i, s) for i, s in enumerate(steps) if s.get("uses") == STEP and (step_id is None or s.get("id") == step_id)
    ]
    if not found:
        raise InputError(str(lock), f"no {STEP} step" + (f" with id {step_id!r}" if step_id else ""))
    i, s = found[-1]
    sid = s.get("id") or s["uses"].split(".")[0]
    return Columns(s["text_column"], s["spans_column"], s.get("target_column") or "target_text", sid)


def _data_files(dataset_dir: Path) -> list[tuple[str, str, Path]]:
    out = []
    for f in sorted((dataset_dir / "data").glob("*/*.parquet")):
        out.append((f.parent.name, f.name.split("-")[0], f))
    return out


def _marked(text: str, spans: list[S.Span]) -> str:
    return S.insert_markers(text, spans, MARKERS) if not S.check_spans(text, spans) else text


def _entry(rec: dict[str, Any], cols: Columns, dataset_dir: Path, where: dict[str, Any]) -> dict[str, Any]:
    src = rec.get(cols.source_text) or ""
    src_spans = S.to_spans(rec.get(cols.source_spans))
    tgt = rec.get(cols.target_text) or ""
    tgt_spans = S.to_spans(rec.get("target_spans"))
    # number the attempted target spans like the source spans (matched by label, in order)
    numbered: list[S.Span] = []
    labels = {str(i): s.label for i, s in enumerate(src_spans, start=1)}
    remaining = list(tgt_spans)
    slots: list[S.Span | None] = []
    for s in src_spans:
        hit = next((t for t in remaining if t.label == s.label), None)
        if hit is not None:
            remaining.remove(hit)
        slots.append(hit)
    events = []
    for i, t in enumerate(slots, start=1):
        if t is not None:
            numbered.append(t)
            events.append((t.start, 1, -t.end, MARKERS.open(i)))
            events.append((t.end, 0, -t.start, MARKERS.close(i)))
    events.sort()
    parts, prev = [], 0
    for pos, _, _, m in events:
        parts.append(S.escape(tgt[prev:pos], MARKERS))
        parts.append(m)
        prev = pos
    parts.append(S.escape(tgt[prev:], MARKERS))
    target = "".join(parts)
    return {
        ROW_ID: rec[ROW_ID],
        "status": rec.get("projection_status"),
        "detail": rec.get("projection_detail"),
        "target_lang": rec.get("target_lang"),
        "labels": labels,
        "source": _marked(src, src_spans),
        "target": target,
        "reviewed": False,
        "target_text": tgt,
        "target_spans": S.to_records(tgt_spans),
        "_dataset": str(dataset_dir.resolve()),
        "_where": where,
        "_exported_target": target,
    }


def export_queue(
    dataset_dir: str | Path, out_file: str | Path, *, min_confidence: float | None = None, step_id: str | None = None
) -> dict[str, int]:
    """Write the review queue of ``dataset_dir`` to ``out_file`` (JSONL), file by file. Returns counts by status."""
    d = Path(dataset_dir)
    cols = projection_columns(d, step_id)
    counts: dict[str, int] = {}
    with open(out_file, "w", encoding="utf-8") as out:

        def put(rec: dict[str, Any], where: dict[str, Any]) -> None:
            e = _entry(rec, cols, d, where)
            counts[e["status"]] = counts.get(e["status"], 0) + 1
            out.write(json.dumps(e, ensure_ascii=False) + "\n")

        for cfg, split, f in _data_files(d):
            if "projection_status" not in pl.read_parquet_schema(f):
                continue
            flag = pl.col("projection_status") != "ok"
            if min_confidence is not None:
                flag = flag | (pl.col("projection_confidence") < min_confidence)
            for rec in pl.read_parquet(f).filter(flag).iter_rows(named=True):
                put(rec, {"origin": "data", "config": cfg, "split": split, "file": f.name})
        for rf in sorted((d / "rejects").glob(f"*-{cols.step_id}.jsonl")):
            for r in _jsonl(rf):
                rec = {ROW_ID: r["row_id"], **r["row"]}
                if "projection_status" in rec:
                    put(rec, {"origin": "rejects", "file": rf.name})
    return counts


def _jsonl(path: Path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


@dataclass
class ImportResult:
    dataset_dir: Path
    corrected: int = 0
    added_from_rejects: int = 0
    unedited: int = 0
    invalid: list[tuple[int, str, str]] = field(default_factory=list)  # (line, row_id, problem)


def _parse_fix(e: dict[str, Any]) -> tuple[str, list[S.Span]] | str:
    """The corrected (text, spans) of an entry, or a problem."""
    labels = [e["labels"][k] for k in sorted(e.get("labels", {}), key=int)]
    if e.get("target") is not None:
        ex = S.extract_markers(e["target"], MARKERS, labels)
        if ex.status != "ok":
            return "; ".join(ex.problems)
        return ex.text, [s for s in ex.spans if s is not None]
    text = e.get("target_text") or ""
    spans = S.to_spans(e.get("target_spans"))
    problem = S.check_spans(text, spans)
    return problem if problem else (text, spans)


def _bump(version: str) -> str:
    m = re.match(r"^(\d+)\.(\d+)\.(\d+)(.*)$", version)
    if not m:
        raise InputError(version, "cannot bump this version; pass --version")
    return f"{m.group(1)}.{m.group(2)}.{int(m.group(3)) + 1}"


def _read_queue(qf: Path) -> list[tuple[int, dict[str, Any]]]:
    if not qf.exists():
        raise InputError(str(qf), "file not found")
    entries = []
    for n, line in enumerate(qf.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                entries.append((n, json.loads(line)))
            except json.JSONDecodeError as e:
                raise InputError(str(qf), f"malformed JSON ({e.msg} at column {e.colno})", line=n) from None
    return entries


@dataclass
class Fix:
    """A corrected row: its target text and spans, and whether it comes back from ``rejects/``."""

    text: str
    spans: list[S.Span]
    from_rejects: bool = False


def _fixes(entries: list[tuple[int, dict[str, Any]]], res: ImportResult, qf: Path, strict: bool) -> dict[str, Fix]:
    """The corrections of the edited lines (row id -> fix); unedited and still broken lines are counted."""
    fixes: dict[str, Fix] = {}
    for n, e in entries:
        for k in (ROW_ID, "labels"):
            if k not in e:
                raise InputError(str(qf), "missing field", line=n, field=k)
        if not (e.get("reviewed") or e.get("target") != e.get("_exported_target")):
            res.unedited += 1
            continue
        got = _parse_fix(e)
        if isinstance(got, str):
            res.invalid.append((n, e[ROW_ID], got))
        else:
            fixes[e[ROW_ID]] = Fix(got[0], got[1], e.get("_where", {}).get("origin") == "rejects")
    if strict and res.invalid:
        n, rid, problem = res.invalid[0]
        raise InputError(str(qf), f"row {rid}: {problem} ({len(res.invalid)} lines still broken)", line=n)
    return fixes


def import_corrections(
    queue_file: str | Path,
    dataset_dir: str | Path | None = None,
    version: str | None = None,
    *,
    overwrite: bool = False,
    strict: bool = False,
) -> ImportResult:
    """Fold the corrections of ``queue_file`` into a new version of the dataset it came from (see the module
    docstring); the old version is not touched, the new one appears whole or not at all."""
    qf = Path(queue_file)
    entries = _read_queue(qf)
    if dataset_dir is None:
        named = {e.get("_dataset") for _, e in entries}
        if len(named) != 1 or None in named:
            raise InputError(str(qf), "the lines do not name one dataset; pass --dataset OUT/<name>/<version>")
        dataset_dir = named.pop()
    old = Path(dataset_dir)
    manifest = json.loads((old / "manifest.json").read_text(encoding="utf-8"))
    new_version = version or _bump(manifest["version"])
    new = old.parent / new_version
    if new.exists() and not overwrite:
        raise InputError(str(new), "this version exists already; pass another --version or --overwrite")
    res = ImportResult(new)
    fixes = _fixes(entries, res, qf, strict)
    cols = projection_columns(old, None)
    tmp = old.parent / f".{new_version}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(old, tmp)
    back = {rid for rid, fx in fixes.items() if fx.from_rejects}
    lock = tomllib.loads((old / "recipe.lock.toml").read_text(encoding="utf-8"))
    schema = _schema(tmp, cols)  # the data's schema before rows come back from rejects/ (JSON) into it
    restored = _restore_rejects(tmp, cols, back, lock) if back else {}
    res.corrected = _apply_all(tmp, fixes, cols, schema)
    res.added_from_rejects = sum(restored.values())
    sha = hashlib.sha256(qf.read_bytes()).hexdigest()
    parent = {"version": manifest["version"], "fingerprint": manifest["fingerprint"]}
    _update_manifest(tmp, manifest, new_version, hash_text(manifest["fingerprint"], sha), parent, restored)
    manifest["human_corrected"] = {
        "rows": res.corrected,
        "added_from_rejects": res.added_from_rejects,
        "file": qf.name,
        "sha256": sha,
        "step": cols.step_id,
    }
    ck.write_json(tmp / "manifest.json", manifest)
    _update_card(tmp / "README.md", manifest, parent, [c for c in schema if c != ROW_ID])
    swap_into_place(tmp, new)
    return res


# ---------------------------------------------------------------------------------------------- the new version


def _schema(tmp: Path, cols: Columns) -> dict[str, pl.DataType]:
    """The data files' columns and types (a column all-null in some files takes the others' type), with the
    types of the columns corrections write, and ``human_corrected``."""
    frames = [pl.DataFrame(schema=pl.read_parquet_schema(f)) for _, _, f in _data_files(tmp)]
    schema = dict(pl.concat(frames, how="diagonal_relaxed").schema) if frames else {}
    written = {
        cols.target_text: pl.Utf8,
        "target_spans": S.SPANS_DTYPE,
        "projection_status": pl.Utf8,
        "projection_method": pl.Utf8,
        "projection_confidence": pl.Float64,
        "projection_detail": pl.Utf8,
        "target_tokens": pl.List(pl.Utf8),
        "target_tags": pl.List(pl.Utf8),
    }
    schema.update({c: t for c, t in written.items() if c in schema})
    schema["human_corrected"] = pl.Boolean
    return schema


def _apply_all(tmp: Path, fixes: dict[str, Fix], cols: Columns, schema: dict[str, pl.DataType]) -> int:
    """Rewrite every data file with the corrections that fall in it, in ``schema`` (every file gets
    ``human_corrected``). Returns the rows corrected."""
    n = 0
    for _, _, f in _data_files(tmp):
        df = pl.read_parquet(f)
        if "human_corrected" not in df.columns:
            df = df.with_columns(pl.lit(False).alias("human_corrected"))
        if ROW_ID in df.columns and "projection_status" in df.columns:
            df, k = _apply(df, fixes, cols)
            n += k
        conform(df, schema).write_parquet(f, compression="zstd")
    return n


def _apply(df: pl.DataFrame, fixes: dict[str, Fix], cols: Columns) -> tuple[pl.DataFrame, int]:
    """``df`` with the corrections of its rows: the new text and spans, ``projection_status = "ok"``,
    ``projection_method = "human"``, ``human_corrected = true`` (and tokens and tags with ``bio``)."""
    ids = [rid for rid in df[ROW_ID].to_list() if rid in fixes]
    if not ids:
        return df, 0
    fx = [fixes[rid] for rid in ids]
    upd: dict[str, Any] = {
        ROW_ID: ids,
        cols.target_text: pl.Series([f.text for f in fx], dtype=pl.Utf8),
        "target_spans": S.spans_series("target_spans", [f.spans for f in fx]),
        "projection_status": ["ok"] * len(ids),
        "projection_method": ["human"] * len(ids),
        "projection_confidence": [1.0] * len(ids),
        "projection_detail": ["human-corrected"] * len(ids),
        "human_corrected": [True] * len(ids),
    }
    if "target_tags" in df.columns:
        toks, tags = [], []
        for f in fx:
            offs = S.tokenize(f.text)
            toks.append([f.text[a:b] for a, b in offs])
            try:
                tags.append(S.spans_to_bio(S.snap_to_tokens(f.spans, offs), offs))
            except S.SpanError:
                tags.append(None)
        upd["target_tokens"] = pl.Series(toks, dtype=pl.List(pl.Utf8))
        upd["target_tags"] = pl.Series(tags, dtype=pl.List(pl.Utf8))
    new = pl.DataFrame({k: v for k, v in upd.items() if k in df.columns})
    schema = {c: (t if t != pl.Null else new.schema.get(c, t)) for c, t in df.schema.items()}
    out = conform(df, schema).update(conform(new, {c: schema[c] for c in new.columns}), on=ROW_ID, include_nulls=True)
    return out, len(ids)


def _restore_rejects(tmp: Path, cols: Columns, ids: set[str], lock: dict[str, Any]) -> dict[str, int]:
    """Move the rows ``ids`` from ``rejects/`` into the data, in the config and split the writer would give
    them (:mod:`mlbuild.publish.layout`), as one more file of that split. Returns rows added per
    ``config/split``."""
    from ..pipeline.params import parse
    from ..recipe.load import OutputSpec

    out, _ = parse(OutputSpec, lock.get("output", {}), "output", ignore=())
    out = out or OutputSpec()
    recs = []
    for rf in sorted((tmp / "rejects").glob(f"*-{cols.step_id}.jsonl")):
        keep = []
        for r in _jsonl(rf):
            if r["row_id"] in ids:
                recs.append({ROW_ID: r["row_id"], **r["row"]})
            else:
                keep.append(json.dumps(r, ensure_ascii=False) + "\n")
        if keep:
            rf.write_text("".join(keep), encoding="utf-8")
        else:
            rf.unlink()  # as the writer does: no file for a step without rejects
    if not recs:
        return {}
    add = pl.DataFrame(recs, infer_schema_length=None, strict=False)
    for c in ("target_spans", cols.source_spans):
        if c in add.columns:
            add = add.with_columns(S.spans_series(c, [S.to_spans(v) for v in add[c]]))
    add = assign_configs(assign_splits(add, out), out.config_by)
    added: dict[str, int] = {}
    drop = [c for c in (out.split_column,) if c]
    for (cfg, split), part in add.partition_by([CONFIG, SPLIT], as_dict=True, maintain_order=True).items():
        _append_file(tmp / "data" / str(cfg), str(split), part.drop([CONFIG, SPLIT, *drop], strict=False))
        added[f"{cfg}/{split}"] = part.height
    return added


def _append_file(folder: Path, split: str, rows: pl.DataFrame) -> None:
    """``rows`` as one more file of ``split`` in ``folder``: the existing files are renamed to the new count
    (``train-00000-of-00003.parquet``), never read."""
    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(folder.glob(f"{split}-*.parquet"))
    n = len(existing) + 1
    for i, f in enumerate(existing):
        f.rename(folder / f"{split}-{i:05d}-of-{n:05d}.parquet")
    rows.write_parquet(folder / f"{split}-{n - 1:05d}-of-{n:05d}.parquet", compression="zstd")


def _update_manifest(
    tmp: Path, manifest: dict[str, Any], version: str, fingerprint: str, parent: dict[str, Any], restored: dict
) -> None:
    """The new version's counts, files, rejects and formats (in place)."""
    configs: dict[str, dict[str, int]] = {}
    files: dict[str, list[str]] = {}
    for cfg, split, f in _data_files(tmp):
        configs.setdefault(cfg, {})[split] = (
            configs.get(cfg, {}).get(split, 0) + pl.scan_parquet(f).select(pl.len()).collect().item()
        )
        files.setdefault(f"{cfg}/{split}", []).append(f.name)
    rejects = {}
    for rf in sorted((tmp / "rejects").glob("*.jsonl")):
        n = sum(1 for _ in _jsonl(rf))
        if n:
            rejects[rf.stem.split("-", 1)[1]] = n
    manifest.update(
        version=version,
        fingerprint=fingerprint,
        parent=parent,
        configs=configs,
        files=files,
        rows=sum(sum(v.values()) for v in configs.values()),
        rejects=rejects,
    )
    if "conll" in manifest.get("formats", {}):
        manifest["formats"]["conll"] = _rewrite_conll(tmp)
    for fm in set(manifest.get("formats", {})) - {"conll"}:
        log.warning("%s: the %s files are those of version %s, without the corrections", tmp, fm, parent["version"])


class _DataFiles:
    """The data folder as the table :func:`mlbuild.publish.conll.write` streams: each file's rows, with the
    config and split the file sits in."""

    CONFIG, SPLIT = "__file_config", "__file_split"

    def __init__(self, root: Path):
        self.files = _data_files(root)
        names = [c for _, _, f in self.files for c in pl.read_parquet_schema(f)]
        self.columns = [*dict.fromkeys(names), self.CONFIG, self.SPLIT]

    def iter_batches(self, columns: list[str]):
        for cfg, split, f in self.files:
            have = pl.read_parquet_schema(f)
            df = pl.read_parquet(f, columns=[c for c in columns if c in have])
            yield df.with_columns(pl.lit(cfg).alias(self.CONFIG), pl.lit(split).alias(self.SPLIT))


def _rewrite_conll(tmp: Path) -> dict[str, Any]:
    """``conll/`` written again from the corrected data, by the same writer as a build."""
    from types import SimpleNamespace

    from . import conll

    shutil.rmtree(tmp / "conll", ignore_errors=True)
    table = _DataFiles(tmp)
    output = SimpleNamespace(
        config_by=table.CONFIG, split_column=table.SPLIT, declared_splits=None, fractions=None, split_seed=0
    )
    return conll.write(SimpleNamespace(final=table, recipe=SimpleNamespace(output=output)), tmp)


def _update_card(readme: Path, manifest: dict[str, Any], parent: dict[str, Any], columns: list[str]) -> None:
    """The parent's card with the new version's metadata (made by :func:`mlbuild.publish.card.metadata`, so
    ``datasets`` sees the new fingerprint), counts, columns and rejects, and a "Human corrections" section."""
    from .card import metadata

    text = readme.read_text(encoding="utf-8")
    head, body = "", text
    if text.startswith("---\n"):
        end = text.index("\n---\n", 4)
        head, body = text[4:end], text[end + 5 :]
    meta = yaml.safe_load(head) or {}
    creators = [c for c in meta.get("annotations_creators", []) if c != "no-annotation"]
    ctx = {
        "dataset": {
            "name": manifest["name"],
            "version": manifest["version"],
            "license": meta.get("license"),
            "pretty_name": meta.get("pretty_name"),
            "tags": [t for t in meta.get("tags", []) if t != "mlbuild"],
        },
        "configs": manifest["configs"],
        "fingerprint": manifest["fingerprint"],
        "languages": manifest.get("languages", []),
        "multilinguality": meta.get("multilinguality"),
        "total_rows": manifest["rows"],
        "annotations_creators": list(dict.fromkeys([*creators, "expert-generated"])),
        "language_creators": meta.get("language_creators"),
        "source_datasets": meta.get("source_datasets"),
        "task_categories": meta.get("task_categories"),
    }
    hc = manifest["human_corrected"]
    body = _sub(
        body,
        r"- \*\*Version:\*\* .*",
        f"- **Version:** {manifest['version']} (from {parent['version']}, with {hc['rows']} human-corrected rows)",
    )
    body = _sub(body, r"- \*\*Fingerprint:\*\* `[0-9a-f]+`", f"- **Fingerprint:** `{manifest['fingerprint']}`")
    table = "".join(
        f"| `{c}` | {sp} | {n} |\n" for c, splits in manifest["configs"].items() for sp, n in splits.items()
    )
    body = _sub(
        body, r"(\| config \| split \| rows \|\n\|---\|---\|---:\|\n)(?:\|.*\|\n)*", lambda m: m.group(1) + table
    )
    body = _sub(body, r"Columns: .*\.", "Columns: " + ", ".join(f"`{c}`" for c in columns) + ".")
    rejects = ", ".join(f"{k}: {n}" for k, n in manifest["rejects"].items())
    body = _sub(
        body,
        r"(Every dropped row is kept with its reason in `rejects/`)(?: \(.*?\))?\.",
        lambda m: m.group(1) + (f" ({rejects})." if rejects else "."),
    )
    section = (
        f"## Human corrections\n\n{hc['rows']} rows were corrected by hand from the span-projection review "
        f"queue (`{hc['file']}`, sha256 `{hc['sha256'][:16]}`), {hc['added_from_rejects']} of them brought "
        f'back from `rejects/`. They carry `human_corrected = true`, `projection_method = "human"` and '
        f'`projection_status = "ok"`; every other row is as in version {parent["version"]} '
        f"(fingerprint `{parent['fingerprint'][:16]}`).\n\n"
    )
    if "## Human corrections" in body:  # a correction of a corrected version: this round's section replaces it
        body = re.sub(r"## Human corrections\n\n.*?\n\n", lambda m: section, body, count=1, flags=re.S)
    elif "## Models" in body:
        body = body.replace("## Models", section + "## Models", 1)
    else:
        body = body + "\n" + section
    head = yaml.safe_dump(metadata(ctx), sort_keys=False, allow_unicode=True)
    readme.write_text("---\n" + head + "---\n" + body, encoding="utf-8")


def _sub(text: str, pattern: str, repl: Any) -> str:
    return re.sub(pattern, repl if callable(repl) else (lambda m: repl), text, count=1)
