"""What model calls cost: built-in prices, cached tokens, explicit workflow prices."""

from __future__ import annotations

import pytest

from host.tracing.pricing import cost_usd, price_for
from plugin_sdk.types import Usage

M = 1_000_000


def test_plain_input_and_output_are_billed_at_the_model_list_price() -> None:
    # gpt-4o: $2.50 in, $10 out per 1M tokens.
    assert cost_usd("gpt-4o", Usage(input_tokens=M, output_tokens=M)) == pytest.approx(12.50)


def test_cached_input_is_billed_at_the_cache_price_and_not_again_as_input() -> None:
    # 1000 prompt tokens of which 600 came from the cache: 400 x 2.50 + 600 x 1.25 (+ 100 out x 10).
    usage = Usage(input_tokens=1000, cache_read_tokens=600, output_tokens=100)
    assert cost_usd("gpt-4o", usage) == pytest.approx((400 * 2.50 + 600 * 1.25 + 100 * 10.0) / M)


def test_anthropic_cache_writes_cost_more_than_input_and_reads_a_tenth() -> None:
    # Sonnet: $3 in, $3.75 cache write, $0.30 cache read, $15 out.
    usage = Usage(input_tokens=10_000, cache_write_tokens=6_000, cache_read_tokens=3_000, output_tokens=500)
    expected = (1_000 * 3.0 + 6_000 * 3.75 + 3_000 * 0.30 + 500 * 15.0) / M
    assert cost_usd("claude-sonnet-4-5-20250929", usage) == pytest.approx(expected)


def test_reasoning_tokens_are_part_of_output_and_not_billed_twice() -> None:
    with_reasoning = Usage(input_tokens=100, output_tokens=1000, reasoning_tokens=800)
    assert cost_usd("o4-mini", with_reasoning) == cost_usd("o4-mini", Usage(input_tokens=100, output_tokens=1000))


@pytest.mark.parametrize(("model", "family"), [
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
    ("gpt-5-nano-2025-08-07", "gpt-5-nano"),
    ("o3-2025-04-16", "o3"),
    ("GPT-4o", "gpt-4o"),
    ("openai/gpt-4.1", "gpt-4.1"),
    ("claude-sonnet-4-20250514", "claude-sonnet-4"),
    ("claude-opus-4-5-20251101", "claude-opus-4-5"),
    ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
    ("anthropic/claude-sonnet-4.5", "claude-sonnet-4-5"),
    ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet"),
    ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet"),
])
def test_dated_and_namespaced_ids_are_priced_as_their_model(model: str, family: str) -> None:
    assert price_for(model) is not None
    assert price_for(model) == price_for(family)


def test_the_longest_known_prefix_wins() -> None:
    mini, full = price_for("gpt-4o-mini-2024-07-18"), price_for("gpt-4o-2024-08-06")
    assert mini is not None and full is not None and mini.input < full.input
    opus45, opus4 = price_for("claude-opus-4-5"), price_for("claude-opus-4-20250514")
    assert opus45 is not None and opus4 is not None and opus45.input < opus4.input
    # A dated snapshot with its own price is not mistaken for the family.
    old, new = price_for("gpt-4o-2024-05-13"), price_for("gpt-4o-2024-11-20")
    assert old is not None and new is not None and old.input > new.input


@pytest.mark.parametrize("model", ["gpt-4x", "o3x-large", "gpt-4omni", "claude-sonnet", "llama-3-70b", ""])
def test_a_prefix_matches_only_at_a_word_boundary_and_unknown_models_cost_none(model: str) -> None:
    assert cost_usd(model, Usage(input_tokens=10)) is None


def test_no_model_and_no_price_is_unknown_not_free() -> None:
    assert cost_usd(None, Usage(input_tokens=10)) is None


def test_mock_models_cost_nothing() -> None:
    assert cost_usd("mock", Usage(input_tokens=10, output_tokens=5)) == 0.0
    assert cost_usd("mock-echo", Usage(input_tokens=10, output_tokens=5)) == 0.0


def test_an_explicit_price_wins_over_the_built_in_one() -> None:
    price = {"input": 1.0, "output": 2.0, "cache_read": 0.5, "cache_write": 1.5}
    usage = Usage(input_tokens=1000, cache_read_tokens=200, cache_write_tokens=300, output_tokens=100)
    expected = (500 * 1.0 + 200 * 0.5 + 300 * 1.5 + 100 * 2.0) / M
    assert cost_usd("gpt-4o", usage, price) == pytest.approx(expected)
    assert cost_usd("my-private-model", usage, price) == pytest.approx(expected)
    assert cost_usd(None, usage, price) == pytest.approx(expected)


def test_an_explicit_price_without_cache_prices_bills_cached_tokens_at_the_input_price() -> None:
    usage = Usage(input_tokens=1000, cache_read_tokens=400, output_tokens=10)
    assert cost_usd("x", usage, {"input": 2.0, "output": 4.0}) == pytest.approx((1000 * 2.0 + 10 * 4.0) / M)


def test_an_explicit_price_missing_input_or_output_falls_back_to_the_table() -> None:
    usage = Usage(input_tokens=M)
    assert cost_usd("gpt-4o", usage, {"input": 99.0}) == pytest.approx(2.50)
    assert cost_usd("unknown-model", usage, {"output": 1.0}) is None


def test_cache_counts_larger_than_the_input_never_make_a_negative_cost() -> None:
    # A provider that reports cache tokens outside input_tokens must not produce a negative bill.
    cost = cost_usd("gpt-4o", Usage(input_tokens=10, cache_read_tokens=100))
    assert cost is not None and cost >= 0.0
