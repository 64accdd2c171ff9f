"""The trace recorder: off the request path, batched, priced, resilient, flushable."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from support_store import T0, make_run, model_call

from host.store.db import Store
from host.tracing import recorder as recorder_module
from host.tracing.recorder import Recorder, price_run
from host.tracing.records import RunRow, SpanRow
from plugin_runner.framing import Gathered
from plugin_sdk.types import Usage

pytest_plugins = ["support_store_fixtures"]


class FakeWriter:
    """Records the batches it is given; fails the first ``fail_first`` calls; can be held."""

    def __init__(self, fail_first: int = 0, fail_ids: frozenset[str] = frozenset()) -> None:
        self.batches: list[list[str]] = []
        self.calls = 0
        self.fail_first = fail_first
        self.fail_ids = fail_ids
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, rows: list[RunRow]) -> None:
        self.calls += 1
        await self.gate.wait()
        if self.calls <= self.fail_first:
            raise ConnectionError("database went away")
        if any(r.id in self.fail_ids for r in rows):
            raise ValueError("unwritable run")
        self.batches.append([r.id for r in rows])

    @property
    def written(self) -> list[str]:
        return [i for b in self.batches for i in b]


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # Retry waits shortened so the failure tests do not idle; the retry logic is unchanged.
    monkeypatch.setattr(recorder_module, "RETRY_DELAYS_S", (0.001, 0.001, 0.001))


async def test_submit_never_blocks_and_drops_runs_beyond_the_queue_bound_with_a_count(
        caplog: pytest.LogCaptureFixture) -> None:
    writer = FakeWriter()
    rec = Recorder(writer, max_queue=3)  # not started: nothing drains the queue
    with caplog.at_level(logging.WARNING, logger="flowbase.tracing"):
        for i in range(10):
            rec.submit(make_run(f"r{i}"))
    assert rec.counters() == {"queued": 3, "written": 0, "dropped": 7, "failed": 0}
    # One warning for the burst, not one per dropped run.
    assert len([r for r in caplog.records if "dropped" in r.getMessage()]) == 1
    rec.start()
    assert await rec.flush(5.0)
    assert writer.written == ["r0", "r1", "r2"]
    await rec.close()


async def test_flush_makes_every_submitted_run_readable_from_the_store(sqlite_store: Store) -> None:
    rec = Recorder(sqlite_store.write_runs, interval_s=60.0)  # a long batching wait flush must cut short
    rec.start()
    for i in range(5):
        rec.submit(make_run(f"r{i}", started=T0 + i))
    assert await rec.flush(10.0)
    assert [r["id"] for r in await sqlite_store.list_runs()] == ["r4", "r3", "r2", "r1", "r0"]
    assert rec.counters() == {"queued": 0, "written": 5, "dropped": 0, "failed": 0}
    await rec.close()


async def test_runs_submitted_together_are_written_in_bounded_batches() -> None:
    writer = FakeWriter()
    writer.gate.clear()  # hold the first write so the rest pile up in the queue
    rec = Recorder(writer, max_batch=4)
    rec.start()
    for i in range(10):
        rec.submit(make_run(f"r{i}"))
    await asyncio.sleep(0)
    writer.gate.set()
    assert await rec.flush(5.0)
    assert writer.written == [f"r{i}" for i in range(10)]
    assert all(len(b) <= 4 for b in writer.batches) and len(writer.batches) < 10
    await rec.close()


def big_run(run_id: str, kb: int) -> RunRow:
    """A run whose spans document is about ``kb`` KB (an agent's conversation in its input)."""
    return make_run(run_id, spans=[SpanRow(id=0, parent_id=None, kind="workflow", name="wf", status="ok",
                                           started_at=T0, input={"text": "x" * (kb * 1024)})])


async def test_a_batch_is_written_as_soon_as_its_runs_hold_the_byte_bound_and_no_batch_holds_more() -> None:
    writer = FakeWriter()
    rec = Recorder(writer, interval_s=60.0, max_batch_bytes=100 * 1024)  # only bytes can end the wait early
    rec.start()
    for i in range(7):
        rec.submit(big_run(f"r{i}", 30))
    await asyncio.wait_for(_until(lambda: len(writer.written) >= 4), 5.0)
    # 30 KB runs: the fourth reaches 100 KB and closes the batch; the other three wait for more.
    assert writer.batches == [["r0", "r1", "r2", "r3"]] and rec.counters()["queued"] == 3
    assert await rec.flush(5.0)
    assert writer.written == [f"r{i}" for i in range(7)]
    await rec.close()


async def test_runs_beyond_the_queues_byte_bound_are_dropped_with_a_count_and_the_rest_are_written() -> None:
    writer = FakeWriter()
    writer.gate.clear()
    rec = Recorder(writer, max_queue_bytes=100 * 1024)  # not started yet: nothing drains the queue
    for i in range(5):
        rec.submit(big_run(f"r{i}", 30))
    await asyncio.sleep(0.05)  # sealing happens a moment after submit
    assert rec.counters() == {"queued": 3, "written": 0, "dropped": 2, "failed": 0}
    rec.start()
    writer.gate.set()
    assert await rec.flush(5.0)
    assert writer.written == ["r0", "r1", "r2"]
    await rec.close()


async def test_a_run_larger_than_the_queues_byte_bound_is_still_written_when_nothing_else_waits() -> None:
    writer = FakeWriter()
    rec = Recorder(writer, max_queue_bytes=10 * 1024)
    rec.start()
    rec.submit(big_run("huge", 50))
    assert await rec.flush(5.0)
    assert writer.written == ["huge"] and rec.counters()["dropped"] == 0
    await rec.close()


async def _until(cond: Callable[[], bool]) -> None:
    while not cond():
        await asyncio.sleep(0.005)


async def test_a_failing_write_is_retried_and_then_succeeds() -> None:
    writer = FakeWriter(fail_first=2)
    rec = Recorder(writer)
    rec.start()
    rec.submit(make_run("r1"))
    assert await rec.flush(5.0)
    assert writer.written == ["r1"] and writer.calls == 3
    assert rec.counters()["written"] == 1 and rec.counters()["failed"] == 0
    await rec.close()


async def test_a_write_that_keeps_failing_is_given_up_and_the_writer_goes_on() -> None:
    writer = FakeWriter(fail_first=4)  # the first attempt and all three retries fail
    rec = Recorder(writer)
    rec.start()
    rec.submit(make_run("lost"))
    assert await rec.flush(5.0)
    assert rec.counters() == {"queued": 0, "written": 0, "dropped": 0, "failed": 1}
    rec.submit(make_run("next"))
    assert await rec.flush(5.0)
    assert writer.written == ["next"] and rec.running
    assert rec.counters()["written"] == 1
    await rec.close()


async def test_one_unwritable_run_does_not_take_the_rest_of_its_batch_with_it(sqlite_store: Store) -> None:
    bad = make_run("bad", model=None)  # type: ignore[arg-type]  # NOT NULL column
    gate = asyncio.Event()

    async def write(rows: list[RunRow]) -> None:
        await gate.wait()
        await sqlite_store.write_runs(rows)

    rec = Recorder(write)
    rec.start()
    for run in (make_run("good1"), bad, make_run("good2")):
        rec.submit(run)
    gate.set()
    assert await rec.flush(10.0)
    assert sorted(r["id"] for r in await sqlite_store.list_runs()) == ["good1", "good2"]
    assert rec.counters() == {"queued": 0, "written": 2, "dropped": 0, "failed": 1}
    await rec.close()


async def test_flush_gives_up_at_its_timeout_when_the_write_is_stuck() -> None:
    writer = FakeWriter()
    writer.gate.clear()
    rec = Recorder(writer)
    rec.start()
    rec.submit(make_run("r1"))
    assert await rec.flush(0.05) is False
    writer.gate.set()
    assert await rec.flush(5.0)
    await rec.close()


async def test_flush_without_a_running_writer_does_not_hang() -> None:
    rec = Recorder(FakeWriter())
    assert await rec.flush() is True  # nothing submitted
    rec.submit(make_run("r1"))
    assert await rec.flush() is False


async def test_close_writes_what_is_queued_and_later_runs_are_dropped() -> None:
    writer = FakeWriter()
    rec = Recorder(writer, interval_s=60.0)
    rec.start()
    rec.submit(make_run("r1"))
    rec.submit(make_run("r2"))
    await rec.close()
    assert writer.written == ["r1", "r2"] and not rec.running
    rec.submit(make_run("r3"))
    assert rec.counters() == {"queued": 0, "written": 2, "dropped": 1, "failed": 0}


async def test_close_with_a_stuck_write_gives_up_within_its_timeout_and_counts_the_loss() -> None:
    writer = FakeWriter()
    writer.gate.clear()
    rec = Recorder(writer)
    rec.start()
    for i in range(3):
        rec.submit(make_run(f"r{i}"))
    await rec.close(timeout_s=0.05)
    assert not rec.running
    assert rec.counters() == {"queued": 0, "written": 0, "dropped": 0, "failed": 3}


async def test_the_writer_prices_runs_before_writing_them(sqlite_store: Store) -> None:
    root = SpanRow(id="r1.0", run_id="r1", parent_id=None, kind="workflow", name="wf", status="ok", started_at=T0,
                   usage=Usage(input_tokens=2000, output_tokens=200))
    node = SpanRow(id="r1.1", run_id="r1", parent_id="r1.0", kind="node", name="answer", status="ok",
                   started_at=T0, usage=Usage(input_tokens=1000, output_tokens=100), model="alias")
    calls = [model_call("r1", 2, "r1.1", model="gpt-4o", usage=Usage(input_tokens=1000, output_tokens=100)),
             model_call("r1", 3, "r1.1", model="gpt-4o-mini", usage=Usage(input_tokens=1000, output_tokens=100))]
    rec = Recorder(sqlite_store.write_runs)
    rec.start()
    rec.submit(make_run("r1", spans=[root, node, *calls]))
    assert await rec.flush(10.0)
    await rec.close()
    run = await sqlite_store.get_run("r1")
    assert run is not None
    gpt4o = (1000 * 2.50 + 100 * 10.0) / 1e6
    mini = (1000 * 0.15 + 100 * 0.60) / 1e6
    costs = [s["cost_usd"] for s in run["spans"]]
    assert costs == [pytest.approx(gpt4o + mini), pytest.approx(gpt4o + mini), pytest.approx(gpt4o),
                     pytest.approx(mini)]
    assert run["cost_usd"] == pytest.approx(gpt4o + mini)


def test_a_node_that_reported_no_model_calls_is_billed_for_its_own_usage() -> None:
    root = SpanRow(id="r.0", run_id="r", parent_id=None, kind="workflow", name="wf", status="ok", started_at=T0)
    node = SpanRow(id="r.1", run_id="r", parent_id="r.0", kind="node", name="n", status="ok", started_at=T0,
                   usage=Usage(input_tokens=1_000_000), model="x", price={"input": 3.0, "output": 1.0})
    run = make_run("r", spans=[root, node])
    price_run(run)
    assert (node.cost_usd, root.cost_usd, run.cost_usd) == (3.0, 3.0, 3.0)


def test_the_workflows_explicit_price_is_used_for_its_calls() -> None:
    root = SpanRow(id="r.0", run_id="r", parent_id=None, kind="workflow", name="wf", status="ok", started_at=T0)
    call = model_call("r", 1, "r.0", model="gpt-4o", usage=Usage(output_tokens=1_000_000), price={"input": 1.0,
                                                                                                "output": 7.0})
    run = make_run("r", spans=[root, call])
    price_run(run)
    assert run.cost_usd == pytest.approx(7.0)


def test_a_run_whose_calls_have_no_known_price_has_no_cost_and_partial_prices_add_up() -> None:
    unknown = make_run("u", spans=[model_call("u", 1, "u.0", model="private-llm", usage=Usage(input_tokens=5))])
    price_run(unknown)
    assert unknown.cost_usd is None
    mixed = make_run("m", spans=[model_call("m", 1, "m.0", model="private-llm", usage=Usage(input_tokens=5)),
                                 model_call("m", 2, "m.0", model="mock", usage=Usage(input_tokens=5))])
    price_run(mixed)
    assert mixed.cost_usd == 0.0


def test_costs_the_engine_already_set_are_kept() -> None:
    call = model_call("r", 1, "r.0", model="gpt-4o", usage=Usage(input_tokens=10))
    call.cost_usd = 1.5
    run = make_run("r", spans=[call], cost_usd=9.0)
    price_run(run)
    assert (call.cost_usd, run.cost_usd) == (1.5, 9.0)


def test_a_parent_cycle_in_spans_cannot_hang_pricing() -> None:
    a = SpanRow(id="a", run_id="r", parent_id="b", kind="node", name="a", status="ok", started_at=T0,
                usage=Usage(input_tokens=1), model="mock")
    b = SpanRow(id="b", run_id="r", parent_id="a", kind="node", name="b", status="ok", started_at=T0)
    run = make_run("r", spans=[a, b])
    price_run(run)  # returns; the cycle is simply not priced
    assert run.cost_usd is None


async def test_a_run_is_sealed_only_after_the_answer_written_in_the_same_callback_has_been_sent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, object]] = []
    real_seal = recorder_module.seal

    def seal(run: RunRow) -> None:
        events.append(("sealed", run.id))
        real_seal(run)

    monkeypatch.setattr(recorder_module, "seal", seal)
    rec = Recorder(FakeWriter())
    rec.start()
    answer = Gathered(lambda data: events.append(("sent", data)), asyncio.get_running_loop())
    rec.submit(make_run("r1"))  # as one callback of the host does: the run ends, then its answer is written
    answer.add(b"the answer")
    assert events == []
    assert await rec.flush(5.0)
    assert events == [("sent", b"the answer"), ("sealed", "r1")]
    await rec.close()


async def test_a_run_handed_over_as_a_builder_is_built_when_sealed_and_a_failing_builder_loses_only_its_run(
        caplog: pytest.LogCaptureFixture) -> None:
    writer = FakeWriter()
    rec = Recorder(writer)
    rec.start()
    built: list[str] = []

    def build(rid: str) -> RunRow:
        built.append(rid)
        return make_run(rid)

    def broken() -> RunRow:
        raise RuntimeError("cannot build this run")

    rec.submit(lambda: build("r1"))
    rec.submit(broken)
    rec.submit(make_run("r2"))
    assert built == []  # nothing is built on the caller's path
    assert await rec.flush(5.0)
    assert built == ["r1"] and writer.written == ["r1", "r2"]
    assert rec.counters() == {"queued": 0, "written": 2, "dropped": 1, "failed": 0}
    assert "cannot build or seal a run" in caplog.text
    await rec.close()
