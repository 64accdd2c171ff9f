"""What a model call cost, in USD, from its canonical ``Usage``.

Contract:
- ``cost_usd(model, usage, price=None)``: an explicit ``price`` (the workflow's, USD per 1M tokens,
  keys ``input``, ``output``, optional ``cache_read`` and ``cache_write`` which default to the
  ``input`` price) always wins. Otherwise the built-in table is used, matched on the longest known
  prefix of the model id that ends on a word boundary (so ``gpt-4o-2024-08-06`` is ``gpt-4o`` and
  ``claude-sonnet-4-5-20250929`` is ``claude-sonnet-4-5``). Mock models (``mock…``) cost 0. An
  unknown model without a price costs ``None`` (unknown, not free).
- Canonical ``Usage.input_tokens`` INCLUDES cache reads and writes, so the uncached part is billed at
  the input price and the cached parts at their own. Reasoning tokens are part of ``output_tokens``
  (OpenAI's convention) and are not billed twice.
- Prices are list prices for standard (non-batch, short-context) requests; long-context surcharges
  and 1-hour cache writes are not modelled. A workflow that needs them declares ``price``.

Lookups are compiled once: the table is a dict, and resolved model ids are memoised.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from plugin_sdk.types import Usage


class Price(NamedTuple):
    """USD per 1M tokens."""

    input: float
    output: float
    cache_read: float
    cache_write: float


def _openai(inp: float, out: float, cached: float | None = None) -> Price:
    # OpenAI caches automatically and does not charge extra for writing the cache.
    return Price(inp, out, inp if cached is None else cached, inp)


def _anthropic(inp: float, out: float) -> Price:
    # Anthropic: 5-minute cache writes cost 1.25x input, cache hits 0.1x input.
    return Price(inp, out, round(inp * 0.1, 6), round(inp * 1.25, 6))


_TABLE: dict[str, Price] = {
    # OpenAI
    "gpt-5.2": _openai(1.75, 14.00, 0.175),
    "gpt-5.1": _openai(1.25, 10.00, 0.125),
    "gpt-5": _openai(1.25, 10.00, 0.125),
    "gpt-5-mini": _openai(0.25, 2.00, 0.025),
    "gpt-5-nano": _openai(0.05, 0.40, 0.005),
    "gpt-5-pro": _openai(15.00, 120.00),
    "gpt-4.5-preview": _openai(75.00, 150.00, 37.50),
    "gpt-4.1": _openai(2.00, 8.00, 0.50),
    "gpt-4.1-mini": _openai(0.40, 1.60, 0.10),
    "gpt-4.1-nano": _openai(0.10, 0.40, 0.025),
    "gpt-4o": _openai(2.50, 10.00, 1.25),
    "gpt-4o-2024-05-13": _openai(5.00, 15.00),
    "gpt-4o-mini": _openai(0.15, 0.60, 0.075),
    "gpt-4-turbo": _openai(10.00, 30.00),
    "gpt-4": _openai(30.00, 60.00),
    "gpt-3.5-turbo": _openai(0.50, 1.50),
    "o1": _openai(15.00, 60.00, 7.50),
    "o1-mini": _openai(1.10, 4.40, 0.55),
    "o1-pro": _openai(150.00, 600.00),
    "o3": _openai(2.00, 8.00, 0.50),
    "o3-mini": _openai(1.10, 4.40, 0.55),
    "o3-pro": _openai(20.00, 80.00),
    "o4-mini": _openai(1.10, 4.40, 0.275),
    "codex-mini-latest": _openai(1.50, 6.00, 0.375),
    # Anthropic (current names and the Claude 3 style names)
    "claude-opus-4-6": _anthropic(5.00, 25.00),
    "claude-opus-4-5": _anthropic(5.00, 25.00),
    "claude-opus-4-1": _anthropic(15.00, 75.00),
    "claude-opus-4": _anthropic(15.00, 75.00),
    "claude-sonnet-4-6": _anthropic(3.00, 15.00),
    "claude-sonnet-4-5": _anthropic(3.00, 15.00),
    "claude-sonnet-4": _anthropic(3.00, 15.00),
    "claude-haiku-4-5": _anthropic(1.00, 5.00),
    "claude-3-7-sonnet": _anthropic(3.00, 15.00),
    "claude-3-5-sonnet": _anthropic(3.00, 15.00),
    "claude-3-5-haiku": _anthropic(0.80, 4.00),
    "claude-3-opus": _anthropic(15.00, 75.00),
    "claude-3-haiku": _anthropic(0.25, 1.25),
}

# A table key matches only if the id continues with one of these (or ends): "gpt-4" must not
# match "gpt-4o", but does match "gpt-4-0613"; "claude-3-5-sonnet" matches "…@20241022" (Vertex).
_BOUNDARIES = frozenset("-.:@_")
# Namespaces routers and clouds put in front of the vendor's id (OpenRouter "openai/…", Bedrock
# "us.anthropic.…"); the price follows the model, not the route.
_VENDOR_DOTS = ("anthropic.", "openai.")
_MOCK_PREFIX = "mock"
_ZERO = Price(0.0, 0.0, 0.0, 0.0)


def _normalise(model: str) -> str:
    m = model.strip().lower().rsplit("/", 1)[-1]
    for vendor in _VENDOR_DOTS:
        at = m.find(vendor)
        if at != -1 and m[:at].count(".") <= 1:  # "anthropic." or "<region>.anthropic."
            m = m[at + len(vendor):]
            break
    if m.startswith("claude"):
        m = m.replace(".", "-")  # "claude-sonnet-4.5" (OpenRouter) is "claude-sonnet-4-5"
    return m


@functools.lru_cache(maxsize=4096)
def price_for(model: str) -> Price | None:
    """The built-in price of ``model`` (USD per 1M tokens), or None when it is not known."""
    m = _normalise(model)
    if m.startswith(_MOCK_PREFIX):
        return _ZERO
    hit = _TABLE.get(m)
    if hit is not None:
        return hit
    # Longest prefix first: walk the boundary positions from the end.
    for i in range(len(m) - 1, 0, -1):
        if m[i] in _BOUNDARIES:
            hit = _TABLE.get(m[:i])
            if hit is not None:
                return hit
    return None


# Rates in pico-USD per token (USD per 1M tokens × 10⁶), as integers: a cost is then an exact integer sum
# divided once by 10¹², the nearest float to the true amount, without the float noise that summing
# float products leaves (and without ``round``'s decimal conversion, which was most of a call's time).
_Rates = tuple[int, int, int, int]  # input, output, cache_read, cache_write
_PICO = 1_000_000  # per-1M-token USD price → pico-USD per token
_PICO_PER_USD = 1e12


def _rates(p: Price) -> _Rates:
    return (round(p.input * _PICO), round(p.output * _PICO), round(p.cache_read * _PICO),
            round(p.cache_write * _PICO))


@functools.lru_cache(maxsize=4096)
def _rates_for(model: str) -> _Rates | None:
    p = price_for(model)
    return None if p is None else _rates(p)


def _explicit(price: dict[str, float]) -> _Rates | None:
    inp = price.get("input")
    out = price.get("output")
    if inp is None or out is None:
        return None
    return _rates(Price(float(inp), float(out), float(price.get("cache_read", inp)),
                        float(price.get("cache_write", inp))))


def cost_usd(model: str | None, usage: Usage, price: dict[str, float] | None = None) -> float | None:
    """USD for ``usage`` at ``price`` (per 1M tokens) or at ``model``'s built-in price; None if unknown."""
    r = _explicit(price) if price else None
    if r is None:
        if model is None:
            return None
        r = _rates_for(model)
        if r is None:
            return None
    read, write = usage.cache_read_tokens, usage.cache_write_tokens
    uncached = max(usage.input_tokens - read - write, 0)
    return (uncached * r[0] + usage.output_tokens * r[1] + read * r[2] + write * r[3]) / _PICO_PER_USD
