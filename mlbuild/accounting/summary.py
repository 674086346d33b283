"""Token counts and costs of a finished step, for the manifest and the card (the core calls these)."""

from __future__ import annotations

from typing import Any

from .prices import as_dict, cost, parse_price
from .tokens import APPROX, totals


def usage_summary(stats: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """A step's token usage from its merged stats (``stats["tokens"]``), priced with ``extra["price"]`` when
    the step recorded a price table there; None for a step that counts no tokens. ``dataset`` prices every
    prompt the data needs (a rerun without the cache); ``this_run`` prices what this run sent, with the
    server's own counts when it reported them."""
    tokens = stats.get("tokens")
    if not tokens:
        return None
    total = totals(tokens)
    out: dict[str, Any] = {
        "method": stats.get("token_count_method", APPROX),
        "total": total,
        "by_lang": {k: dict(v) for k, v in sorted(tokens.items())},
    }
    price, _ = parse_price((extra or {}).get("price"))
    if price is not None:
        reported = "reported_in" in total or "reported_out" in total
        run_in = total.get("reported_in", 0) if reported else total.get("computed_in", 0)
        run_out = total.get("reported_out", 0) if reported else total.get("computed_out", 0)
        out["cost"] = {
            "currency": price.currency,
            "dataset": cost(price, total.get("in", 0), total.get("out", 0)),
            "this_run": cost(price, run_in, run_out),
            "this_run_counts": "reported by the server" if reported else "counted",
            "by_lang": {k: cost(price, v.get("in", 0), v.get("out", 0)) for k, v in sorted(tokens.items())},
            "price": as_dict(price),
        }
    return out


def _money(x: float, currency: str) -> str:
    return f"{x:,.4f} {currency}" if x < 1 else f"{x:,.2f} {currency}"


def usage_markdown(steps: list[dict[str, Any]]) -> str:
    """A Markdown table of token usage per step and language from manifest step rows that carry ``tokens``
    (:func:`usage_summary`); '' when no step counted tokens."""
    rows = [s for s in steps if s.get("tokens")]
    if not rows:
        return ""
    lines = [
        "| step | language | prompts | tokens in | tokens out | sent this run (prompts) | cost |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for s in rows:
        u = s["tokens"]
        c = u.get("cost")
        for lang, v in u["by_lang"].items():
            price = _money(c["by_lang"][lang], c["currency"]) if c else "n/a"
            lines.append(
                f"| `{s['id']}` | {lang} | {v.get('prompts', 0)} | {v.get('in', 0)} | {v.get('out', 0)} | "
                f"{v.get('computed_prompts', 0)} | {price} |"
            )
        note = f"`{s['id']}`: tokens counted with {u['method']}"
        if c:
            note += (
                f"; whole dataset {_money(c['dataset'], c['currency'])}, this run "
                f"{_money(c['this_run'], c['currency'])} ({c['this_run_counts']})"
            )
        notes.append(note)
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
