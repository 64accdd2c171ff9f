"""Runs, spans, sessions and stats in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from support_store import T0, make_run, model_call

from host.store.base import UnknownCursor
from host.store.db import Store
from host.store.schema import run_spans
from host.tracing.records import SpanRow
from plugin_sdk.types import Message, Request, TextPart, Usage

pytest_plugins = ["support_store_fixtures"]

USAGE = Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1000, cache_write_tokens=100,
              reasoning_tokens=50)
USAGE_DICT = {"input_tokens": 1200, "output_tokens": 300, "cache_read_tokens": 1000, "cache_write_tokens": 100,
              "reasoning_tokens": 50}


async def span_count(store: Store) -> int:
    async with store.read() as conn:
        return sum(len(doc) for doc in (await conn.execute(select(run_spans.c.spans))).scalars())


async def test_a_run_round_trips_with_its_spans_usage_cost_and_error(store: Store) -> None:
    req = Request(model="m-a", messages=[Message(role="user", content=[TextPart(text="hello")])])
    root = SpanRow(id="r1.0", run_id="r1", parent_id=None, kind="workflow", name="wf-a", status="error",
                   started_at=T0, ended_at=T0 + 2.0, input=req, output=None, usage=USAGE, cost_usd=0.25,
                   error="upstream said no")
    node = SpanRow(id="r1.1", run_id="r1", parent_id="r1.0", kind="node", name="answer", status="error",
                   started_at=T0 + 0.1, ended_at=T0 + 1.9, input={"prompt": "hello"}, output={"text": "partial"},
                   error="upstream said no", model="small", provider="up")
    call = model_call("r1", 2, "r1.1", model="gpt-4o", usage=USAGE)
    call.cost_usd = 0.25
    run = make_run("r1", status="error", usage=USAGE, error="upstream said no", cost_usd=0.25, session_id="s1",
                   stream=True, spans=[root, node, call], duration_s=2.0)
    await store.write_runs([run])

    got = await store.get_run("r1")
    assert got is not None
    spans = got.pop("spans")
    assert got == {"id": "r1", "workflow": "wf-a", "workflow_version": 1, "model": "m-a", "protocol": "chat",
                   "status": "error", "stream": True, "session_id": "s1", "started_at": "2025-06-15T15:06:40.000Z",
                   "ended_at": "2025-06-15T15:06:42.000Z", "duration_ms": 2000.0, "usage": USAGE_DICT,
                   "cost_usd": 0.25, "error": "upstream said no"}
    assert [s["id"] for s in spans] == ["r1.0", "r1.1", "r1.2"]
    assert spans[0]["input"] == {"model": "m-a", "messages": [{"role": "user",
                                                                "content": [{"type": "text", "text": "hello"}]}]}
    assert spans[0]["usage"] == USAGE_DICT and spans[0]["error"] == "upstream said no"
    assert spans[1] == {"id": "r1.1", "parent_id": "r1.0", "kind": "node", "name": "answer", "status": "error",
                        "started_at": "2025-06-15T15:06:40.100Z", "ended_at": "2025-06-15T15:06:41.900Z",
                        "duration_ms": pytest.approx(1800.0), "input": {"prompt": "hello"},
                        "output": {"text": "partial"}, "usage": None, "cost_usd": None, "error": "upstream said no",
                        "model": "small", "provider": "up"}
    assert (spans[2]["kind"], spans[2]["model"], spans[2]["cost_usd"]) == ("model_call", "gpt-4o", 0.25)


async def test_spans_come_back_in_recorded_order_not_id_order(store: Store) -> None:
    spans = [SpanRow(id=name, run_id="r1", parent_id=None, kind="node", name=name, status="ok", started_at=T0)
             for name in ("zz", "aa", "mm")]
    await store.write_runs([make_run("r1", spans=spans)])
    got = await store.get_run("r1")
    assert got is not None and [s["id"] for s in got["spans"]] == ["zz", "aa", "mm"]


async def test_a_run_that_has_not_ended_has_no_end_or_duration(store: Store) -> None:
    await store.write_runs([make_run("r1", duration_s=None)])
    got = await store.get_run("r1")
    assert got is not None and (got["ended_at"], got["duration_ms"]) == (None, None)


async def test_odd_objects_in_span_output_are_stored_as_text_not_lost(store: Store) -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd-thing"

    span = SpanRow(id="r1.0", run_id="r1", parent_id=None, kind="node", name="n", status="ok", started_at=T0,
                   output={"value": Odd(), "bytes": b"hi"})
    await store.write_runs([make_run("r1", spans=[span])])
    got = await store.get_run("r1")
    assert got is not None and got["spans"][0]["output"] == {"value": "odd-thing", "bytes": "aGk="}


async def test_a_batch_is_one_transaction_so_a_bad_run_stores_none_of_it(store: Store) -> None:
    bad = make_run("bad", model=None)  # type: ignore[arg-type]  # NOT NULL column
    with pytest.raises(Exception):  # noqa: B017 - the database's own integrity error, whichever it is
        await store.write_runs([make_run("good"), bad])
    assert await store.get_run("good") is None
    assert await store.get_run("bad") is None


async def test_writing_a_batch_again_neither_duplicates_nor_changes_what_was_stored(store: Store) -> None:
    await store.write_runs([make_run("r1", status="ok"), make_run("r2")])
    changed = make_run("r1", status="error", error="second try")
    await store.write_runs([changed, make_run("r2"), make_run("r3"), make_run("r3")])
    r1 = await store.get_run("r1")
    assert r1 is not None and (r1["status"], r1["error"], len(r1["spans"])) == ("ok", None, 1)
    assert sorted(r["id"] for r in await store.list_runs()) == ["r1", "r2", "r3"]
    assert await span_count(store) == 3


async def test_an_empty_batch_writes_nothing(store: Store) -> None:
    await store.write_runs([])
    assert await store.list_runs() == []


async def seed_listing(store: Store) -> None:
    await store.write_runs([
        make_run("r1", started=T0 + 1, model="m-a", workflow="wf-a", status="ok", session_id="s1"),
        make_run("r2", started=T0 + 2, model="m-b", workflow="wf-b", status="error", session_id="s1"),
        make_run("r3", started=T0 + 3, model="m-a", workflow="wf-a", status="error", session_id="s2"),
        make_run("r4", started=T0 + 4, model="m-b", workflow="wf-b", status="ok"),
        make_run("r5", started=T0 + 5, model="m-a", workflow="wf-a", status="cancelled", session_id="s2"),
    ])


async def test_runs_are_listed_newest_first_without_spans(store: Store) -> None:
    await seed_listing(store)
    listed = await store.list_runs()
    assert [r["id"] for r in listed] == ["r5", "r4", "r3", "r2", "r1"]
    assert all("spans" not in r for r in listed)
    assert listed[0]["usage"] == dict.fromkeys(USAGE_DICT, 0)


@pytest.mark.parametrize(("filters", "expected"), [
    ({"model": "m-a"}, ["r5", "r3", "r1"]),
    ({"status": "error"}, ["r3", "r2"]),
    ({"session_id": "s1"}, ["r2", "r1"]),
    ({"workflow": "wf-b"}, ["r4", "r2"]),
    ({"model": "m-a", "status": "error", "session_id": "s2"}, ["r3"]),
    ({"model": "nobody"}, []),
])
async def test_runs_can_be_filtered_by_model_status_session_and_workflow(
        store: Store, filters: dict[str, Any], expected: list[str]) -> None:
    await seed_listing(store)
    assert [r["id"] for r in await store.list_runs(**filters)] == expected


async def test_pages_follow_each_other_through_the_before_cursor_even_when_start_times_tie(store: Store) -> None:
    # Six runs, three of them starting at the same instant: the id breaks the tie.
    await store.write_runs([make_run(f"r{i}", started=T0 + min(i, 3)) for i in range(6)])
    seen: list[str] = []
    before = None
    while True:
        page = await store.list_runs(limit=2, before=before)
        seen += [r["id"] for r in page]
        if len(page) < 2:
            break
        before = page[-1]["id"]
    assert seen == ["r5", "r4", "r3", "r2", "r1", "r0"]


async def test_a_cursor_combines_with_filters(store: Store) -> None:
    await seed_listing(store)
    assert [r["id"] for r in await store.list_runs(model="m-a", before="r5")] == ["r3", "r1"]
    assert [r["id"] for r in await store.list_runs(model="m-a", before="r4")] == ["r3", "r1"]


async def test_an_unknown_cursor_is_refused(store: Store) -> None:
    await seed_listing(store)
    with pytest.raises(UnknownCursor, match="no-such-run"):
        await store.list_runs(before="no-such-run")


async def test_sessions_add_up_their_runs_and_name_their_models(store: Store) -> None:
    await store.write_runs([
        make_run("a1", started=T0 + 10, session_id="sa", model="m-a", usage=Usage(input_tokens=10, output_tokens=1),
                 cost_usd=0.5),
        make_run("a2", started=T0 + 20, session_id="sa", model="m-b", status="error",
                 usage=Usage(input_tokens=5, output_tokens=2, cache_read_tokens=3), cost_usd=0.25),
        make_run("b1", started=T0 + 15, session_id="sb", model="m-a"),
        make_run("x1", started=T0 + 30),
    ])
    sessions = await store.list_sessions()
    assert [s["session_id"] for s in sessions] == ["sa", "sb"]  # most recently active first
    sa = sessions[0]
    assert (sa["runs"], sa["errors"], sa["cost_usd"], sa["models"]) == (2, 1, 0.75, ["m-a", "m-b"])
    assert sa["usage"] == {"input_tokens": 15, "output_tokens": 3, "cache_read_tokens": 3, "cache_write_tokens": 0,
                           "reasoning_tokens": 0}
    assert (sa["first_at"], sa["last_at"]) == ("2025-06-15T15:06:50.000Z", "2025-06-15T15:07:01.000Z")
    assert sessions[1]["cost_usd"] is None  # no run of it had a known price
    assert [s["session_id"] for s in await store.list_sessions(limit=1)] == ["sa"]


async def test_a_session_replays_its_runs_oldest_first_with_their_spans(store: Store) -> None:
    call = model_call("a2", 1, "a2.0", model="gpt-4o", usage=Usage(input_tokens=7))
    root = SpanRow(id="a2.0", run_id="a2", parent_id=None, kind="workflow", name="wf-a", status="ok", started_at=T0)
    await store.write_runs([
        make_run("a2", started=T0 + 20, session_id="sa", spans=[root, call], cost_usd=0.125),
        make_run("a1", started=T0 + 10, session_id="sa"),
        make_run("b1", started=T0 + 15, session_id="sb"),
    ])
    session = await store.get_session("sa")
    assert session is not None
    assert [r["id"] for r in session["runs"]] == ["a1", "a2"]
    assert [s["id"] for s in session["runs"][1]["spans"]] == ["a2.0", "a2.1"]
    assert session["runs"][1]["spans"][1]["usage"]["input_tokens"] == 7
    assert (session["cost_usd"], session["errors"], session["models"]) == (0.125, 0, ["m-a"])
    assert await store.get_session("nobody") is None


async def test_stats_count_runs_errors_tokens_cost_and_duration_percentiles(store: Store) -> None:
    await store.write_runs([
        make_run("a1", started=T0 + 1, duration_s=0.1, model="m-a", usage=Usage(input_tokens=10), cost_usd=0.5),
        make_run("a2", started=T0 + 2, duration_s=0.2, model="m-a", usage=Usage(output_tokens=5), status="error"),
        make_run("a3", started=T0 + 3, duration_s=0.3, model="m-a", cost_usd=0.25),
        make_run("a4", started=T0 + 4, duration_s=0.4, model="m-a"),
        make_run("a5", started=T0 + 5, duration_s=0.5, model="m-a"),
        make_run("b1", started=T0 + 6, duration_s=1.0, model="m-b", workflow="wf-b"),
        make_run("b2", started=T0 + 7, duration_s=None, model="m-b", workflow="wf-b", status="error"),
    ])
    stats = await store.stats()
    by_model = {m["model"]: m for m in stats["models"]}
    a = by_model["m-a"]
    assert (a["runs"], a["errors"], a["cost_usd"]) == (5, 1, 0.75)
    assert (a["usage"]["input_tokens"], a["usage"]["output_tokens"]) == (10, 5)
    # Linear interpolation between ranks: p50 of 100..500 ms is 300, p95 is 400 + 0.8 * 100.
    assert a["p50_ms"] == pytest.approx(300.0) and a["p95_ms"] == pytest.approx(480.0)
    b = by_model["m-b"]
    assert (b["runs"], b["errors"], b["cost_usd"]) == (2, 1, None)
    assert b["p50_ms"] == pytest.approx(1000.0) and b["p95_ms"] == pytest.approx(1000.0)
    assert [(w["workflow"], w["runs"]) for w in stats["workflows"]] == [("wf-a", 5), ("wf-b", 2)]
    assert (stats["total"]["runs"], stats["total"]["errors"], stats["total"]["cost_usd"]) == (7, 2, 0.75)
    assert stats["total"]["p50_ms"] == pytest.approx(350.0)


async def test_stats_since_a_time_leave_out_older_runs(store: Store) -> None:
    await store.write_runs([make_run("old", started=T0), make_run("new", started=T0 + 100, duration_s=2.0)])
    stats = await store.stats(since=T0 + 50)
    assert stats["since"] == "2025-06-15T15:07:30.000Z"
    assert stats["total"]["runs"] == 1 and stats["total"]["p50_ms"] == pytest.approx(2000.0)


async def test_stats_of_an_empty_store_are_zero_not_an_error(store: Store) -> None:
    stats = await store.stats()
    assert stats["total"]["runs"] == 0 and stats["total"]["p50_ms"] is None
    assert stats["models"] == [] and stats["workflows"] == []
