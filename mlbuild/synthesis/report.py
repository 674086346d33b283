"""The report of ``synthesize_queries.v1`` from its merged stage stats: per query language, prompts,
kept queries, drops by reason, mean query length, language-ID and round-trip pass rates, tokens/s."""

from __future__ import annotations

from typing import Any


def _rate(a: float, b: float, digits: int = 4) -> float | None:
    return round(a / b, digits) if b else None


def synthesis_report(stats: dict[str, Any]) -> dict[str, Any]:
    """Per language: generated, kept, drops by reason, mean query length, round-trip pass rate, tokens/s."""
    langs_out = {}
    for lang, s in sorted(stats.get("synthesis", {}).items()):
        gen, kept = s.get("generated", 0), s.get("kept", 0)
        secs, toks = s.get("generation_seconds", 0.0), s.get("generated_tokens", 0)
        checked = s.get("roundtrip_checked", 0)
        langs_out[lang] = {
            "generated": gen,
            "kept": kept,
            "kept_rate": _rate(kept, gen),
            "dropped": dict(sorted(s.get("dropped", {}).items(), key=lambda kv: -kv[1])),
            "mean_query_words": _rate(s.get("query_words", 0), kept, 2),
            "lid_checked": s.get("lid_checked", 0),
            "lid_pass_rate": _rate(s.get("lid_passed", 0), s.get("lid_checked", 0)),
            "roundtrip_checked": checked,
            "roundtrip_pass_rate": _rate(s.get("roundtrip_passed", 0), checked),
            "generated_tokens": toks,
            "generation_seconds": round(secs, 3),
            "tokens_per_s": round(toks / secs, 2) if secs > 0 and toks else None,
        }
    out = {
        "passages_in": stats.get("passages_in", 0) + stats.get("passages_not_sampled", 0),
        "passages_not_sampled": stats.get("passages_not_sampled", 0),
        "languages": langs_out,
    }
    if "summaries" in stats:  # staged generation: one summary call per passage, shared by its queries
        s = stats["summaries"]
        secs, toks = s.get("generation_seconds", 0.0), s.get("generated_tokens", 0)
        out["summaries"] = {
            "generated": s.get("generated", 0),
            "generated_tokens": toks,
            "generation_seconds": round(secs, 3),
            "tokens_per_s": round(toks / secs, 2) if secs > 0 and toks else None,
        }
    return out


def synthesis_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Query synthesis (summarize-then-ask) over {report['passages_in']} passages"
        + (f", {report['passages_not_sampled']} not sampled" if report["passages_not_sampled"] else "")
        + ".",
        "",
        "| language | generated | kept | dropped (by reason) | mean query words | round-trip pass | tokens/s |",
        "|---|---|---|---|---|---|---|",
    ]

    def f(v: Any, pct: bool = False) -> str:
        if v is None:
            return "-"
        return f"{100 * v:.1f}%" if pct else str(v)

    for lang, s in report["languages"].items():
        drops = ", ".join(f"{r} {n}" for r, n in s["dropped"].items()) or "-"
        lines.append(
            f"| {lang} | {s['generated']} | {s['kept']} | {drops} | {f(s['mean_query_words'])} | "
            f"{f(s['roundtrip_pass_rate'], True)} | {f(s['tokens_per_s'])} |"
        )
    if "summaries" in report:
        s = report["summaries"]
        lines += [
            "",
            f"Summaries (one per passage, shared by its queries): {s['generated']}, {f(s['tokens_per_s'])} tokens/s.",
        ]
    return "\n".join(lines)
