"""Pricing a run's spans: the fast path for spans in recording order gives exactly what the general tree
walk gives, on many random span trees."""

from __future__ import annotations

import copy
import math
import random

import pytest
from support_store import T0

from host.tracing.recorder import _is_chain, _price_any, _price_preorder, price_run
from host.tracing.records import RunRow, SpanRow
from plugin_sdk.types import Usage

MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "mock-1", "no-such-model", None]


def random_run(rng: random.Random, n_spans: int) -> RunRow:
    """Spans in pre-order (each after its parent and after its earlier siblings' subtrees), with random
    usage, models, workflow prices and costs the engine already set (some not rounded)."""
    spans: list[SpanRow] = []

    def add(parent: str | None, depth: int) -> None:
        while len(spans) < n_spans:
            sid = f"s{len(spans)}"
            usage = Usage(rng.randint(0, 5000), rng.randint(0, 900), rng.randint(0, 300), rng.randint(0, 50),
                          rng.randint(0, 9)) if rng.random() < 0.6 else None
            # Large and unrounded preset costs make the order of every sum visible in its last digits.
            preset = rng.choice([None, None, None, 0.1 + 1e-15 * rng.random(), 0.000123, 98765.4321 * rng.random()])
            spans.append(SpanRow(id=sid, run_id="r", parent_id=parent, kind=rng.choice(["node", "model_call"]),
                                 name=sid, status="ok", started_at=T0, usage=usage, cost_usd=preset,
                                 model=rng.choice(MODELS),
                                 price=rng.choice([None, None, {"input": 1.5, "output": 6.0}])))
            if depth < 4 and rng.random() < 0.5:
                add(sid, depth + 1)
            if parent is not None and rng.random() < 0.4:
                return

    add(None, 0)
    return RunRow(id="r", workflow="wf", workflow_version=1, model="m", protocol="chat", status="ok",
                  started_at=T0, cost_usd=rng.choice([None, None, 2.5]), spans=spans)


def same_cost(a: float | None, b: float | None) -> bool:
    """Equal up to the order of a sum: None only with None."""
    return (a is None) == (b is None) and (a is None or b is None or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12))


def costs(run: RunRow) -> tuple[float | None, list[float | None]]:
    return run.cost_usd, [s.cost_usd for s in run.spans]


@pytest.mark.parametrize("seed", range(40))
def test_the_fast_path_prices_spans_in_recording_order_exactly_as_the_tree_walk(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(25):
        run = random_run(rng, rng.randint(1, 30))
        fast, walk = copy.deepcopy(run), copy.deepcopy(run)
        ids = {s.id for s in run.spans}
        _price_preorder(fast, ids)
        _price_any(walk, ids)
        assert costs(fast) == costs(walk)  # exactly: same spans billed, same sums in the same order


@pytest.mark.parametrize("seed", range(20))
def test_a_chain_of_spans_is_priced_exactly_as_the_tree_walk_prices_it(seed: int) -> None:
    rng = random.Random(500 + seed)
    for _ in range(25):
        run = random_run(rng, rng.randint(1, 8))
        for i, span in enumerate(run.spans):  # each span the child of the one before it
            span.parent_id = run.spans[i - 1].id if i else None
        assert _is_chain(run.spans)
        fast, walk = copy.deepcopy(run), copy.deepcopy(run)
        ids = {s.id for s in run.spans}
        _price_preorder(fast, ids)
        _price_any(walk, ids)
        assert costs(fast) == costs(walk)


def test_a_tree_with_a_fork_is_not_taken_for_a_chain() -> None:
    spans = [SpanRow(id=i, parent_id=p, kind="node", name=i, status="ok", started_at=T0)
             for i, p in (("a", None), ("b", "a"), ("c", "a"))]
    assert not _is_chain(spans)
    assert not _is_chain([spans[0], SpanRow(id="a", parent_id="a", kind="node", name="a", status="ok",
                                            started_at=T0)])


@pytest.mark.parametrize("seed", range(10))
def test_spans_out_of_recording_order_are_priced_like_the_same_tree_in_order(seed: int) -> None:
    rng = random.Random(1000 + seed)
    for _ in range(25):
        run = random_run(rng, rng.randint(2, 20))
        shuffled = copy.deepcopy(run)
        rng.shuffle(shuffled.spans)
        price_run(run)
        price_run(shuffled)
        by_id = {s.id: s.cost_usd for s in shuffled.spans}
        assert same_cost(shuffled.cost_usd, run.cost_usd)
        for s in run.spans:
            assert same_cost(by_id[s.id], s.cost_usd), s.id


def test_a_chain_of_workflow_node_and_call_bills_the_call_once_and_sums_upwards() -> None:
    usage = Usage(1_000_000, 100_000)
    spans = [SpanRow(id="w", run_id="r", parent_id=None, kind="workflow", name="wf", status="ok", started_at=T0,
                     usage=usage),
             SpanRow(id="n", run_id="r", parent_id="w", kind="node", name="n", status="ok", started_at=T0,
                     usage=usage),
             SpanRow(id="c", run_id="r", parent_id="n", kind="model_call", name="c", status="ok", started_at=T0,
                     usage=usage, model="gpt-4o")]
    run = RunRow(id="r", workflow="wf", workflow_version=1, model="m", protocol="chat", status="ok",
                 started_at=T0, usage=usage, spans=spans)
    price_run(run)
    # gpt-4o: $2.50 per 1M input, $10 per 1M output.
    assert [s.cost_usd for s in spans] == [3.5, 3.5, 3.5] and run.cost_usd == 3.5
