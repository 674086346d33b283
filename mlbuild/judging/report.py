"""Counts ``judge_relevance.v1`` keeps per shard (:class:`Tally`, summable), its rejected candidates, and
its report: grade distribution per language, drops, agreement with reference grades, tokens and cost."""

from __future__ import annotations

from typing import Any

import polars as pl

from ..accounting import usage_summary
from ..pipeline.base import ROW_ID, StepReport
from .agreement import agreement, cell, confusion_markdown
from .grades import MAX_GRADE

EXAMPLES_PER_SHARD = 3
SHOWN_EXAMPLES = 10


def as_grade(v: Any) -> int | None:
    """A reference value as an int grade (bools, floats and numeric strings too), or None."""
    if v is None:
        return None
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return None


class Tally:
    """What one shard of judgments counts, as stats that add up across shards."""

    def __init__(self, samples: int, listwise: bool):
        self.samples = samples
        self.layout = "lists" if listwise else "pairs"
        self.by_lang: dict[str, dict[str, Any]] = {}
        self.confusion: dict[str, dict[str, int]] = {}
        self.examples: list[dict[str, Any]] = []

    def _lang(self, lang: str) -> dict[str, Any]:
        return self.by_lang.setdefault(
            lang, {"judged": 0, "grades": {}, "unparsed": 0, "unanimous": 0, "dropped": {}, "rejected": {}}
        )

    def judged(self, lang: str, grade: int | None, agreeing: int, raw: str, ref: int | None, reason: str | None):
        s = self._lang(lang)
        s["judged"] += 1
        if grade is None:
            s["unparsed"] += 1
        else:
            s["grades"][str(grade)] = s["grades"].get(str(grade), 0) + 1
        s["unanimous"] += int(agreeing == self.samples)
        if reason:
            s["dropped"][reason] = s["dropped"].get(reason, 0) + 1
        if ref is not None:
            c = self.confusion.setdefault(lang, {})
            c[cell(ref, grade)] = c.get(cell(ref, grade), 0) + 1
        if len(self.examples) < EXAMPLES_PER_SHARD and (grade is None or not self.examples):
            self.examples.append({"lang": lang, "grade": grade, "reference": ref, "output": raw[:300]})

    def rejected(self, lang: str, reason: str) -> None:
        r = self._lang(lang)["rejected"]
        r[reason] = r.get(reason, 0) + 1

    def stats(self) -> dict[str, Any]:
        return {"layout": self.layout, "by_lang": self.by_lang, "confusion": self.confusion, "examples": self.examples}


def candidate_rejects(
    batch: pl.DataFrame, p: Any, removed: list[tuple[int, int]], judged: dict, qlangs: list[str]
) -> pl.DataFrame | None:
    """One reject row per candidate removed from a list: ``<row_id>/c<j>``, the query, the candidate text and
    index, its grade, the query's language, reason and detail."""
    if not removed:
        return None
    ids = batch[ROW_ID].to_list()
    queries = batch[p.query_column].to_list()
    cands = batch[p.passage_column].to_list()
    res = [judged[(i, j)] for i, j in removed]
    return pl.DataFrame(
        {
            ROW_ID: [f"{ids[i]}/c{j}" for i, j in removed],
            p.query_column: [queries[i] for i, _ in removed],
            "candidate": [cands[i][j] for i, j in removed],
            "candidate_index": [j for _, j in removed],
            p.grade_column: [r[0] for r in res],
            "lang": [qlangs[i] for i, _ in removed],
            "reason": [r[2] for r in res],
            "detail": [r[3] for r in res],
        },
        schema_overrides={p.grade_column: pl.Int64, "candidate": pl.Utf8, p.query_column: pl.Utf8},
    )


def _pct(n: int, d: int) -> str:
    return f"{100 * n / d:.1f}%" if d else "n/a"


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def build(name: str, p: Any, stats: dict[str, Any]) -> StepReport | None:
    j = stats.get("judge")
    if not j:
        return None
    by_lang: dict[str, Any] = j.get("by_lang", {})
    grades = [str(g) for g in range(MAX_GRADE + 1)]
    tot: dict[str, Any] = {
        "judged": 0,
        "unparsed": 0,
        "unanimous": 0,
        "grades": dict.fromkeys(grades, 0),
        "dropped": {},
    }
    for s in by_lang.values():
        for k in ("judged", "unparsed", "unanimous"):
            tot[k] += s.get(k, 0)
        for g, n in s.get("grades", {}).items():
            tot["grades"][g] = tot["grades"].get(g, 0) + n
        for r, n in s.get("dropped", {}).items():
            tot["dropped"][r] = tot["dropped"].get(r, 0) + n
    ref_at = p.reference_relevant_at if p.reference_relevant_at is not None else p.relevant_at
    conf_by_lang: dict[str, dict[str, int]] = j.get("confusion", {})
    conf_all: dict[str, int] = {}
    for c in conf_by_lang.values():
        for k, n in c.items():
            conf_all[k] = conf_all.get(k, 0) + n
    agree = {lang: agreement(c, p.relevant_at, ref_at) for lang, c in sorted(conf_by_lang.items())}
    if conf_all:
        agree["all"] = agreement(conf_all, p.relevant_at, ref_at)
    usage = usage_summary(stats, {"price": p.price} if p.price else None)
    n = tot["judged"]
    dist = ", ".join(f"{g}: {_pct(tot['grades'][g], n)}" for g in grades)
    fn = tot["dropped"].get("false_negative", 0)
    summary = f"Judged {n} query-passage pairs ({j.get('layout', 'pairs')}; {p.mode} mode) with `{p.model}`: {dist}"
    summary += f"; {tot['unparsed']} unparsed" + (f"; {fn} false negatives dropped" if p.mode == "negatives" else "")
    if "all" in agree:
        a = agree["all"]
        summary += (
            f"; agreement with `{p.reference_column}`: kappa {_fmt(a['kappa'])}, binary {_fmt(a['kappa_binary'])}"
        )
        summary += f" over {a['pairs']} pairs"
    if usage:
        t = usage["total"]
        summary += f"; tokens {t.get('in', 0)} in / {t.get('out', 0)} out ({usage['method']})"
        if "cost" in usage:
            summary += f", cost {usage['cost']['dataset']:.4f} {usage['cost']['currency']}"
    summary += "."
    data = {
        "mode": p.mode,
        "layout": j.get("layout"),
        "samples": p.samples,
        "relevant_at": p.relevant_at,
        "totals": tot,
        "by_lang": by_lang,
        "agreement": agree,
        "confusion": {"all": conf_all, **conf_by_lang},
        "tokens": usage,
        "examples": j.get("examples", [])[:SHOWN_EXAMPLES],
    }
    return StepReport(summary=summary, data=data, markdown=_markdown(name, p, summary, data))


def _markdown(name: str, p: Any, summary: str, data: dict[str, Any]) -> str:
    grades = [str(g) for g in range(MAX_GRADE + 1)]
    lines = [f"# {name}", "", summary, "", "## Grades per language", ""]
    head = "| language | judged | " + " | ".join(grades) + " | unparsed | dropped |"
    lines += [head + (" unanimous |" if p.samples > 1 else ""), "|---|" + "---:|" * (7 + (p.samples > 1))]
    for lang, s in sorted(data["by_lang"].items()):
        n = s.get("judged", 0)
        cells = [_pct(s.get("grades", {}).get(g, 0), n) for g in grades]
        dropped = "; ".join(f"{r}: {c}" for r, c in sorted(s.get("dropped", {}).items())) or "none"
        row = f"| {lang} | {n} | " + " | ".join(cells) + f" | {s.get('unparsed', 0)} | {dropped} |"
        lines.append(row + (f" {_pct(s.get('unanimous', 0), n)} |" if p.samples > 1 else ""))
    if data["agreement"]:
        lines += ["", f"## Agreement with `{p.reference_column}`", ""]
        lines += [
            "| language | pairs | kappa | kappa (quadratic) | kappa (binary) | exact | binary | precision | recall |"
        ]
        lines += ["|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for lang, a in data["agreement"].items():
            vals = [a[k] for k in ("kappa", "kappa_quadratic", "kappa_binary", "exact_agreement", "binary_agreement")]
            vals += [a["precision_relevant"], a["recall_relevant"]]
            lines.append(f"| {lang} | {a['pairs']} | " + " | ".join(_fmt(v) for v in vals) + " |")
        lines += ["", "Confusion (all languages):", "", confusion_markdown(data["confusion"]["all"])]
    if data["tokens"]:
        from ..accounting import usage_markdown

        lines += ["", "## Tokens", "", usage_markdown([{"id": name, "tokens": data["tokens"]}]).rstrip()]
    if data["examples"]:
        lines += ["", "## Example outputs", ""]
        lines += [f"- {e['lang']}: grade {e['grade']} from {e['output']!r}" for e in data["examples"]]
    return "\n".join(lines) + "\n"
