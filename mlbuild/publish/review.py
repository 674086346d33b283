"""The review queue of span projection: export the rows a person should look at, fold their corrections
back in as a new dataset version.

Export (:func:`export_queue`) reads a built dataset (``OUT/<name>/<version>``): rows of the data files
whose ``projection_status`` is not ``ok`` (failed or ``low_confidence``), and rows ``project_spans.v1``
sent to ``rejects/`` (``on_failure = "drop"``). Each becomes one JSON line a person can fix in a text
editor: ``source`` and ``target`` hold the texts with numbered markers ``[1]..[/1]`` around the spans
(the attempted target spans; missing ones are absent), ``labels`` names each number. The person edits
``target`` (moves, adds or removes markers, fixes the translation) or sets ``"reviewed": true`` to accept
it as is. Annotation tools can edit ``target_text`` + ``target_spans`` (offsets) instead and delete
``target``.

Import (:func:`import_corrections`) parses every edited line (markers must be complete: one start and
one end per span, no crossing), then writes a NEW version folder beside the old one: corrected rows get
the new text and spans, ``projection_status = "ok"``, ``projection_method = "human"`` and
``human_corrected = true`` (a column added to every row); rows from ``rejects/`` are added back to the
data. ``manifest.json`` records the parent version and the corrections file's checksum (the new
fingerprint hashes both), and the card counts the human-corrected rows and lists
``expert-generated`` among the annotation creators. Lines left unedited are skipped; lines whose
markers are still broken are reported and skipped (an error with ``strict``).
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
from ..pipeline.base import ROW_ID
from ..pipeline.cache import hash_text

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
    """Write the review queue of ``dataset_dir`` to ``out_file`` (JSONL). Returns counts by status."""
    d = Path(dataset_dir)
    cols = projection_columns(d, step_id)
    entries, counts = [], {}
    for cfg, split, f in _data_files(d):
        df = pl.read_parquet(f)
        if "projection_status" not in df.columns:
            continue
        flag = pl.col("projection_status") != "ok"
        if min_confidence is not None:
            flag = flag | (pl.col("projection_confidence") < min_confidence)
        for rec in df.filter(flag).to_dicts():
            entries.append(_entry(rec, cols, d, {"origin": "data", "config": cfg, "split": split, "file": f.name}))
    for rf in sorted((d / "rejects").glob(f"*-{cols.step_id}.jsonl")):
        for line in rf.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            rec = {ROW_ID: r["row_id"], **r["row"]}
            if "projection_status" in rec:
                entries.append(_entry(rec, cols, d, {"origin": "rejects", "file": rf.name}))
    for e in entries:
        counts[e["status"]] = counts.get(e["status"], 0) + 1
    Path(out_file).write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries), encoding="utf-8")
    return counts


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


def import_corrections(
    queue_file: str | Path,
    dataset_dir: str | Path | None = None,
    version: str | None = None,
    *,
    overwrite: bool = False,
    strict: bool = False,
) -> ImportResult:
    qf = Path(queue_file)
    if not qf.exists():
        raise InputError(str(qf), "file not found")
    entries: list[tuple[int, dict[str, Any]]] = []
    for n, line in enumerate(qf.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                entries.append((n, json.loads(line)))
            except json.JSONDecodeError as e:
                raise InputError(str(qf), f"malformed JSON ({e.msg} at column {e.colno})", line=n) from None
    if dataset_dir is None:
        sets = {e.get("_dataset") for _, e in entries}
        if len(sets) != 1 or None in sets:
            raise InputError(str(qf), "the lines do not name one dataset; pass --dataset OUT/<name>/<version>")
        dataset_dir = sets.pop()
    old = Path(dataset_dir)
    manifest = json.loads((old / "manifest.json").read_text(encoding="utf-8"))
    new_version = version or _bump(manifest["version"])
    new = old.parent / new_version
    if new.exists() and not overwrite:
        raise InputError(str(new), "this version exists already; pass another --version or --overwrite")
    res = ImportResult(new)
    fixes: dict[str, tuple[str, list[S.Span], dict[str, Any]]] = {}
    for n, e in entries:
        for k in (ROW_ID, "labels"):
            if k not in e:
                raise InputError(str(qf), "missing field", line=n, field=k)
        edited = e.get("reviewed") or e.get("target") != e.get("_exported_target")
        if not edited:
            res.unedited += 1
            continue
        got = _parse_fix(e)
        if isinstance(got, str):
            res.invalid.append((n, e[ROW_ID], got))
            continue
        fixes[e[ROW_ID]] = (got[0], got[1], e)
    if strict and res.invalid:
        n, rid, problem = res.invalid[0]
        raise InputError(str(qf), f"row {rid}: {problem} ({len(res.invalid)} lines still broken)", line=n)
    cols = projection_columns(old, None)

    tmp = old.parent / f".{new_version}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(old, tmp)
    lock = tomllib.loads((old / "recipe.lock.toml").read_text(encoding="utf-8"))
    # rows dropped to rejects/ come back into the data, in the config and split the writer would give them
    back = [rid for rid, (_, _, e) in fixes.items() if e.get("_where", {}).get("origin") == "rejects"]
    if back:
        _restore_rejects(tmp, cols, set(back), lock)
    configs: dict[str, dict[str, int]] = {}
    for cfg, split, f in _data_files(tmp):
        df = pl.read_parquet(f)
        if ROW_ID in df.columns and "projection_status" in df.columns:
            df, n = _apply(df, fixes, cols)
            res.corrected += n
            df.write_parquet(f, compression="zstd")
        configs.setdefault(cfg, {})[split] = configs.get(cfg, {}).get(split, 0) + df.height
    res.added_from_rejects = len(back)
    sha = hashlib.sha256(qf.read_bytes()).hexdigest()
    parent = {"version": manifest["version"], "fingerprint": manifest["fingerprint"]}
    manifest.update(
        version=new_version,
        fingerprint=hash_text(manifest["fingerprint"], sha),
        parent=parent,
        configs=configs,
        rows=sum(sum(v.values()) for v in configs.values()),
        human_corrected={
            "rows": res.corrected,
            "added_from_rejects": res.added_from_rejects,
            "file": qf.name,
            "sha256": sha,
            "step": cols.step_id,
        },
    )
    (tmp / "manifest.json").write_text(
        json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True, default=str), encoding="utf-8"
    )
    _update_card(tmp / "README.md", manifest, parent)
    if new.exists():
        shutil.rmtree(new)
    tmp.rename(new)
    return res


def _apply(df: pl.DataFrame, fixes: dict, cols: Columns) -> tuple[pl.DataFrame, int]:
    if "human_corrected" not in df.columns:
        df = df.with_columns(pl.lit(False).alias("human_corrected"))
    recs = df.to_dicts()
    n = 0
    for r in recs:
        fx = fixes.get(r[ROW_ID])
        if fx is None:
            continue
        text, spans, _ = fx
        r[cols.target_text] = text
        r["target_spans"] = S.to_records(spans)
        r.update(
            projection_status="ok",
            projection_method="human",
            projection_confidence=1.0,
            projection_detail="human-corrected",
            human_corrected=True,
        )
        if "target_tags" in r:
            offs = S.tokenize(text)
            r["target_tokens"] = [text[a:b] for a, b in offs]
            try:
                r["target_tags"] = S.spans_to_bio(S.snap_to_tokens(spans, offs), offs)
            except S.SpanError:
                r["target_tags"] = None
        n += 1
    if not n:
        return df, 0
    known = {c: t for c, t in df.schema.items() if t != pl.Null}  # all-null columns take the new values' type
    return pl.DataFrame(recs, schema_overrides=known, infer_schema_length=None), n


def _restore_rejects(tmp: Path, cols: Columns, ids: set[str], lock: dict[str, Any]) -> None:
    from ..pipeline.params import parse
    from ..recipe.load import OutputSpec
    from .layout import config_name, split_of

    out, _ = parse(OutputSpec, lock.get("output", {}), "output", ignore=())
    out = out or OutputSpec()
    cfg_col = out.config_by
    split_col = out.split_column
    cuts, acc = [], 0.0
    for name, frac in (out.fractions or {}).items():
        acc += frac
        cuts.append((acc, name))
    rows_by_place: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rf in sorted((tmp / "rejects").glob(f"*-{cols.step_id}.jsonl")):
        keep = []
        for line in rf.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            if r["row_id"] in ids:
                rec = {ROW_ID: r["row_id"], **r["row"]}
                cfg = config_name(rec.get(cfg_col)) if cfg_col else "default"
                split = (
                    str(rec.get(split_col))
                    if split_col
                    else (
                        cuts[0][1]
                        if len(cuts) == 1
                        else split_of(rec.get("parallel_id") or rec[ROW_ID], out.split_seed, cuts)
                    )
                )
                rec.pop(split_col, None) if split_col else None
                rows_by_place.setdefault((cfg, split), []).append(rec)
            else:
                keep.append(line)
        rf.write_text("".join(k + "\n" for k in keep), encoding="utf-8")
    # every data file holds the final table's columns: restored rows take that schema
    any_file = next(iter(sorted((tmp / "data").glob("*/*.parquet"))), None)
    schema = pl.read_parquet_schema(any_file) if any_file else None
    for (cfg, split), recs in rows_by_place.items():
        d = tmp / "data" / cfg
        d.mkdir(parents=True, exist_ok=True)
        existing = sorted(d.glob(f"{split}-*.parquet"))
        add = pl.DataFrame(recs, infer_schema_length=None, strict=False)
        for c in ("target_spans", cols.source_spans):
            if c in add.columns:
                add = add.with_columns(S.spans_series(c, [S.to_spans(v) for v in add[c]]))
        if schema is not None:
            add = add.select(
                [pl.col(c).cast(schema[c]) if schema[c] != pl.Null else pl.col(c) for c in add.columns if c in schema]
            )
        if existing:
            base = pl.concat([pl.read_parquet(f) for f in existing], how="diagonal_relaxed")
            add = pl.concat([base, add], how="diagonal_relaxed")
            for f in existing:
                f.unlink()
        add.write_parquet(d / f"{split}-00000-of-00001.parquet", compression="zstd")


def _update_card(readme: Path, manifest: dict[str, Any], parent: dict[str, Any]) -> None:
    text = readme.read_text(encoding="utf-8")
    head, body = "", text
    if text.startswith("---\n"):
        end = text.index("\n---\n", 4)
        head, body = text[4:end], text[end + 5 :]
    meta = yaml.safe_load(head) or {}
    creators = [c for c in meta.get("annotations_creators", []) if c != "no-annotation"]
    meta["annotations_creators"] = list(dict.fromkeys([*creators, "expert-generated"]))
    hc = manifest["human_corrected"]
    body = re.sub(
        r"- \*\*Version:\*\* .*",
        f"- **Version:** {manifest['version']} (from {parent['version']}, with {hc['rows']} human-corrected rows)",
        body,
        count=1,
    )
    body = re.sub(
        r"- \*\*Fingerprint:\*\* `[0-9a-f]+`", f"- **Fingerprint:** `{manifest['fingerprint']}`", body, count=1
    )
    section = (
        f"## Human corrections\n\n{hc['rows']} rows were corrected by hand from the span-projection review "
        f"queue (`{hc['file']}`, sha256 `{hc['sha256'][:16]}`), {hc['added_from_rejects']} of them brought "
        f'back from `rejects/`. They carry `human_corrected = true`, `projection_method = "human"` and '
        f'`projection_status = "ok"`; every other row is as in version {parent["version"]} '
        f"(fingerprint `{parent['fingerprint'][:16]}`).\n\n"
    )
    body = body.replace("## Models", section + "## Models", 1) if "## Models" in body else body + "\n" + section
    readme.write_text(
        "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n" + body, encoding="utf-8"
    )
