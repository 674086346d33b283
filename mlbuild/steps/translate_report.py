"""The report of ``translate.v1``: per-target counters kept while translating (summed across shards),
and the report built from them at the end (``reports/<step id>.json`` and ``.md``, summarised in the card)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from .. import langs, qe

ENGINE_COUNTERS = (
    "segments",
    "unique_segments",
    "engine_segments",
    "engine_chars",
    "engine_seconds",
    "output_tokens",
    "output_words",
)


def engine_counters() -> dict[str, Any]:
    """Counters one call of the engine path adds to (segments, engine time, output size)."""
    return {k: 0.0 if k == "engine_seconds" else 0 for k in ENGINE_COUNTERS}


def target_stats(rows_in: int) -> dict[str, Any]:
    """The stats of one target language in one shard (``rows_out`` and ``dropped`` filled by the step)."""
    return {"rows_in": rows_in, "rows_out": 0, "dropped": {}, **engine_counters(), "truncated": 0}


def round_trip_scores(sources: list[str | None], back: list[dict[str, Any] | None]) -> list[float | None]:
    """Sentence chrF of each back-translation against its source (None where either is missing)."""
    from ..metrics.mt import sentence_chrf

    idx = [i for i, (s, b) in enumerate(zip(sources, back)) if s is not None and b is not None and s.strip()]
    scores = sentence_chrf([back[i]["text"] for i in idx], [sources[i] for i in idx])  # type: ignore[index]
    out: list[float | None] = [None] * len(sources)
    for i, s in zip(idx, scores):
        out[i] = round(s, 2)
    return out


def per_target(tgt: str, st: dict[str, Any]) -> dict[str, Any]:
    """One target's row of the report from its merged stats."""
    from ..metrics.mt import corpus_scores

    row: dict[str, Any] = {
        k: st.get(k, 0) for k in ("rows_in", "rows_out", "segments", "unique_segments", "engine_segments", "truncated")
    }
    row["dropped"] = dict(sorted(st.get("dropped", {}).items()))
    secs = st.get("engine_seconds", 0.0)
    row["engine_seconds"] = round(secs, 3)
    if st.get("output_tokens"):
        row["tokens_per_s"] = round(st["output_tokens"] / secs, 1) if secs else None
    row["words_per_s"] = round(st.get("output_words", 0) / secs, 1) if secs else None
    if st.get("rt_chrf_n"):
        row["round_trip_chrf"] = {c: round(st["rt_chrf_sum"][c] / n, 2) for c, n in st["rt_chrf_n"].items() if n}
    if st.get("qe"):
        row["qe"] = {c: qe.summarize(d) for c, d in sorted(st["qe"].items())}
    if st.get("refs"):
        row["reference_scores"] = {
            c: corpus_scores(d["hyp"], d["ref"], tgt) for c, d in st["refs"].items() if d["hyp"]
        }
    return row


def build_report(name: str, params: Any, stats: dict[str, Any]) -> dict[str, Any]:
    """The report's data from the step's params and merged stats."""
    p = params
    return {
        "step": name,
        "engine": p.engine,
        "model": p.model or ("bergamot-en-pt" if p.engine == "bergamot" else None),
        "source_lang": p.source_lang,
        "columns": p.columns,
        "gates": p.gates,
        **({"qe": {"method": p.qe, "model": p.qe_model or "multilingual-e5-small"}} if "qe" in p.gates else {}),
        "per_lang": {tgt: per_target(tgt, st) for tgt, st in sorted(stats.get("mt", {}).items())},
    }


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: a table per target, then scores against references when there are any."""
    lines = [
        f"Machine translation of {', '.join(f'`{c}`' for c in report['columns'])} from "
        f"`{report['source_lang']}` with the `{report['engine']}` engine"
        + (f" (`{report['model']}`)" if report.get("model") else "")
        + ".",
        "",
        "| target | rows in | rows out | dropped (reason: n) | segments (unique, translated now) | "
        "round-trip chrF | tokens/s | words/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for tgt, r in report["per_lang"].items():
        drops = ", ".join(f"{k}: {v}" for k, v in r["dropped"].items()) or "none"
        rt = ", ".join(f"{c} {v}" for c, v in r.get("round_trip_chrf", {}).items()) or "-"
        tps = r.get("tokens_per_s")
        lines.append(
            f"| `{tgt}` | {r['rows_in']} | {r['rows_out']} | {drops} | {r['segments']} "
            f"({r['unique_segments']}, {r['engine_segments']}) | {rt} | {tps if tps else '-'} | "
            f"{r['words_per_s'] if r['words_per_s'] else '-'} |"
        )
    refs = [(tgt, c, s) for tgt, r in report["per_lang"].items() for c, s in r.get("reference_scores", {}).items()]
    if refs:
        lines += ["", "Against reference translations (sacrebleu):", ""]
        for tgt, c, s in refs:
            lines.append(
                f"- `{tgt}` `{c}` (n={s['n']}): chrF {s['chrf']} (`{s['chrf_signature']}`), "
                f"BLEU {s['bleu']} (`{s['bleu_signature']}`)"
            )
    qe_rows = {
        (f"{tgt} {c}" if len(report["columns"]) > 1 else tgt): s
        for tgt, r in report["per_lang"].items()
        for c, s in r.get("qe", {}).items()
    }
    if qe_rows:
        lines += ["", *qe.markdown(qe_rows, report["qe"]["method"])]
    lines += ["", "Segments translated now exclude those found in the cache; speeds count engine time only."]
    return "\n".join(lines)


class References:
    """Reference translations per target (``references = { pt = { query = "query_pt" } }``: a column of
    the rows, or a ``.jsonl`` file with ``id`` = the source row id): collects (hypothesis, reference) pairs
    of rows that passed the gates into the stats, for corpus chrF/BLEU in the report."""

    def __init__(self, references: dict[str, dict[str, str]], base_dir: Path):
        self.refs = {langs.normalize(lang): refs for lang, refs in references.items()}
        self.base_dir = base_dir
        self._files: dict[str, dict[str, Any]] = {}

    @staticmethod
    def check(references: dict[str, Any], targets: list[str], columns: list[str], available: list[str] | None):
        """Problems of a ``references`` table as (place, message) pairs (``available``: the input's columns)."""
        problems: list[tuple[str, str]] = []
        for lang, refs in references.items():
            if not langs.is_valid(lang) or langs.normalize(lang) not in set(targets):
                problems.append((f"references.{lang}", f"not one of target_langs ({', '.join(targets)})"))
            if not isinstance(refs, dict):
                problems.append((f"references.{lang}", "expected a table { column = reference }"))
                continue
            for col, ref in refs.items():
                where = f"references.{lang}.{col}"
                if col not in columns:
                    problems.append((where, f"'{col}' is not in columns"))
                if not isinstance(ref, str):
                    problems.append((where, "expected a column name or a .jsonl path"))
                elif available is not None and not ref.endswith(".jsonl") and ref not in available:
                    problems.append((where, f"no column '{ref}' (available: {', '.join(available)})"))
        return problems

    def collect(self, rows: pl.DataFrame, tgt: str, st: dict[str, Any], reasons: list[str | None]) -> None:
        """Add the (hypothesis, reference) pairs of ``rows`` (one target's) that passed to ``st["refs"]``."""
        for col, ref in self.refs.get(tgt, {}).items():
            if ref.endswith(".jsonl"):
                table = self._file(ref, col)
                rv = [table.get(pid) for pid in rows["parallel_id"].to_list()]
            else:
                rv = rows[ref].cast(pl.Utf8).to_list()
            d = st.setdefault("refs", {}).setdefault(col, {"hyp": [], "ref": []})
            for h, r, why in zip(rows[col].to_list(), rv, reasons):
                if why is None and isinstance(h, str) and isinstance(r, str) and r.strip():
                    d["hyp"].append(h)
                    d["ref"].append(r)

    def _file(self, path: str, col: str) -> dict[str, str]:
        key = f"{path}\x1f{col}"
        if key not in self._files:
            from ..sources.jsonl import read_jsonl

            f = Path(path) if Path(path).is_absolute() else self.base_dir / path
            records, _ = read_jsonl(f)
            self._files[key] = {str(r.get("id")): r.get(col) for r in records if r.get("id") is not None}
        return self._files[key]
