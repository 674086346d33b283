"""Estimate the tokens (and, with a price table, the cost) of a recipe's model-backed steps before running
it: each such step renders its prompts for a sample of the source's rows, with no model loaded, and the
counts are scaled to the source's size (``mlbuild run --dry-run``).

A step takes part by having three methods (``judge_relevance.v1`` has them)::

    def estimate_prompts(self, batch: pl.DataFrame) -> list[tuple[str, str]]   # (language, prompt) per call
    def estimate_counter(self) -> TokenCounter                                 # tokenizer, or the approximation
    def estimate_output_tokens(self) -> int                                    # at most this many out per call

Input tokens are counted exactly on the sample and scaled; output tokens are an upper bound (every call
generating its ``max_new_tokens``). The sample is the source's first ``sample_rows`` rows; the size is the
number of rows the source yields (one streaming pass, no model). Steps whose input columns only an
earlier step makes (mined negatives, synthesized queries) are listed as not estimated; earlier steps that
drop rows (``sample.v1``, filters) make the estimate an upper bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from .prices import cost, parse_price


@dataclass
class StepEstimate:
    id: str
    uses: str
    estimated: bool
    note: str = ""
    rows_sampled: int = 0
    rows_total: int = 0
    method: str = ""
    prompts: int = 0
    tokens_in: int = 0
    tokens_out_max: int = 0
    by_lang: dict[str, dict[str, int]] = field(default_factory=dict)
    cost: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _scale(n: int, factor: float) -> int:
    return int(round(n * factor))


def estimate_step(step: Any, sample: pl.DataFrame, rows_total: int, sid: str = "", uses: str = "") -> StepEstimate:
    """The estimate for one step from ``sample`` (rows of its input) scaled to ``rows_total`` input rows."""
    est = StepEstimate(sid or step.name, uses or step.name, True, rows_sampled=sample.height, rows_total=rows_total)
    if not sample.height:
        est.note = "no rows to sample"
        return est
    calls = step.estimate_prompts(sample)
    counter = step.estimate_counter()
    out_max = int(step.estimate_output_tokens())
    factor = rows_total / sample.height
    by_lang: dict[str, list[str]] = {}
    for lang, prompt in calls:
        by_lang.setdefault(lang or "und", []).append(prompt)
    est.method = counter.method
    for lang, prompts in sorted(by_lang.items()):
        n = _scale(len(prompts), factor)
        tin = _scale(sum(counter.count(prompts, special_tokens=True)), factor)
        est.by_lang[lang] = {"prompts": n, "in": tin, "out_max": n * out_max}
    est.prompts = sum(v["prompts"] for v in est.by_lang.values())
    est.tokens_in = sum(v["in"] for v in est.by_lang.values())
    est.tokens_out_max = sum(v["out_max"] for v in est.by_lang.values())
    price, _ = parse_price(getattr(step.params, "price", None))
    if price is not None:
        est.cost = {
            "currency": price.currency,
            "min": cost(price, est.tokens_in, 0),
            "max": cost(price, est.tokens_in, est.tokens_out_max),
        }
    return est


def _sample_and_size(source: Any, sample_rows: int, limit: int | None) -> tuple[pl.DataFrame, int]:
    """The first ``sample_rows`` rows of the source, and how many rows it yields in all (streamed)."""
    frames: list[pl.DataFrame] = []
    have = 0
    total = 0
    for part in source.parts() if limit is None else [None]:
        for out in source.read(part, limit):
            total += out.rows.height
            if have < sample_rows and out.rows.height:
                frames.append(out.rows.head(sample_rows - have))
                have += frames[-1].height
    sample = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    return sample, total


def estimate_recipe(recipe: Any, sample_rows: int = 200, limit: int | None = None) -> list[StepEstimate]:
    """Estimates for every model-backed step of ``recipe`` (a loaded :class:`~mlbuild.recipe.load.Recipe`);
    ``limit`` caps the source's size as ``mlbuild run --limit`` would."""
    from ..pipeline.base import RunContext

    ctx = RunContext(recipe_dir=recipe.dir, seed=recipe.dataset.seed, quiet=True)
    source = recipe.source.cls(recipe.source.params, ctx)
    sample, total = _sample_and_size(source, sample_rows, limit)
    out: list[StepEstimate] = []
    for spec in recipe.steps:
        step = spec.cls(spec.params, ctx)
        model_backed = any(hasattr(spec.params, k) for k in ("engine", "model"))
        if hasattr(step, "estimate_prompts"):
            missing = [c for c in step.input_columns() if c not in sample.columns]
            if missing:
                note = f"needs {', '.join(missing)}, made by an earlier step: not estimated (run it with --limit)"
                out.append(StepEstimate(spec.id, spec.uses, False, note))
            else:
                est = estimate_step(step, sample, total, spec.id, spec.uses)
                before = [s.id for s in recipe.steps[: recipe.steps.index(spec)]]
                if before:  # they may drop rows: the counts are for every source row
                    est.note = f"an upper bound: earlier steps ({', '.join(before)}) may drop rows"
                out.append(est)
        elif model_backed:
            out.append(StepEstimate(spec.id, spec.uses, False, "this step does not estimate its prompts"))
    return out


def render_estimate(estimates: list[StepEstimate]) -> str:
    """Plain text for the terminal."""
    if not estimates:
        return "no model-backed step: nothing to estimate"
    lines = []
    for e in estimates:
        if not e.estimated:
            lines.append(f"{e.id} ({e.uses}): {e.note}")
            continue
        head = (
            f"{e.id} ({e.uses}): ~{e.prompts:,} calls, ~{e.tokens_in:,} tokens in, at most {e.tokens_out_max:,} out "
            f"(from {e.rows_sampled} of {e.rows_total:,} source rows; {e.method})"
        )
        if e.cost:
            head += f"; cost {e.cost['min']:,.4f} to {e.cost['max']:,.4f} {e.cost['currency']}"
        lines.append(head + (f"; {e.note}" if e.note else ""))
        for lang, v in e.by_lang.items():
            lines.append(f"  {lang}: ~{v['prompts']:,} calls, ~{v['in']:,} in, <= {v['out_max']:,} out")
    return "\n".join(lines)
