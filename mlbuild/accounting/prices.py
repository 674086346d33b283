"""A price table for an OpenAI-compatible endpoint, declared like any step parameter (bounds, unknown keys
with did-you-mean), and the cost of token counts under it.

Recipe (a step's ``price`` table)::

    price = { input = 0.15, output = 0.60, per = 1_000_000, currency = "USD" }   # USD per million tokens
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..pipeline import params as P
from ..pipeline.params import param

MAX_PRICE = 1e6


@dataclass(frozen=True)
class Price:
    input: float = param(doc="price of `per` input (prompt) tokens", ge=0.0, le=MAX_PRICE)
    output: float = param(doc="price of `per` output (generated) tokens", ge=0.0, le=MAX_PRICE)
    per: int = param(1_000_000, doc="the number of tokens the prices are for", ge=1, le=10**12)
    currency: str = param("USD", doc="currency code or symbol, for display", pattern=r"[A-Za-z$€£¥]{1,8}")


def parse_price(raw: dict[str, Any] | None, loc: str = "price") -> tuple[Price | None, list[tuple[str, str]]]:
    """``raw`` (a recipe table) checked against :class:`Price`: (price, problems with their location)."""
    if raw is None:
        return None, []
    if not isinstance(raw, dict):
        return None, [(loc, f"expected a table such as {{ input = 0.15, output = 0.6 }}, got {raw!r}")]
    return P.parse(Price, raw, loc, ignore=())


def cost(price: Price, tokens_in: int, tokens_out: int) -> float:
    """What ``tokens_in`` prompt tokens and ``tokens_out`` generated tokens cost under ``price``."""
    return (tokens_in * price.input + tokens_out * price.output) / price.per


def as_dict(price: Price) -> dict[str, Any]:
    return P.as_dict(price)


def check_price(engine: str, raw: dict[str, Any] | None) -> list[tuple[str, str]]:
    """A step's ``price`` parameter: a table for the ``openai`` engine only, checked like parameters."""
    out = []
    if raw is not None and engine != "openai":
        out.append(("price", "a price table applies to engine 'openai' (a local model is not billed per token)"))
    return out + parse_price(raw, "price")[1]


def price_extra(raw: dict[str, Any] | None) -> dict[str, Any]:
    """What a step puts into ``ctx.extra`` so the writer prices its tokens (nothing without a table)."""
    return {"price": dict(raw)} if raw is not None else {}
