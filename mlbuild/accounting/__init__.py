"""Cost accounting for model-backed steps: token counters per language kept in step stats
(:mod:`.tokens`), a price table declared like step parameters (:mod:`.prices`), the usage of a finished
step for the manifest and card (:mod:`.summary`), and estimates before a run (:mod:`.estimate`)."""

from __future__ import annotations

from .estimate import StepEstimate, estimate_recipe, estimate_step, render_estimate
from .prices import Price, check_price, cost, parse_price, price_extra
from .summary import usage_markdown, usage_summary
from .tokens import APPROX, TokenCounter, Usage, approx_tokens, load_counter, totals

__all__ = [
    "APPROX",
    "Price",
    "StepEstimate",
    "TokenCounter",
    "Usage",
    "approx_tokens",
    "check_price",
    "cost",
    "estimate_recipe",
    "estimate_step",
    "load_counter",
    "parse_price",
    "price_extra",
    "render_estimate",
    "totals",
    "usage_markdown",
    "usage_summary",
]
