"""The fast trace write path (flat rows, several per INSERT, straight to the driver), on SQLite and PostgreSQL:
large and ragged batches round-trip exactly, a run's spans are stored as the serializer's JSON of them, a
client's request body kept as it came reads back as the canonical request,
idempotency and all-or-nothing hold across statement boundaries."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import func, select, text
from support_store import T0, make_run

from host.protocols import anthropic_messages, openai_chat, openai_responses
from host.store.base import iso, json_dumps
from host.store.db import Store, sqlite_url
from host.store.runs import ROWS_PER_STATEMENT, TRACE_WRITER_NICE, USAGE_KEYS, WRITE_CHUNK_RUNS
from host.store.schema import run_spans
from host.store.schema import runs as runs_table
from host.tracing.records import RunRow, SpanRow
from plugin_sdk.types import Message, Request, TextPart, Usage

pytest_plugins = ["support_store_fixtures"]


def ragged_run(i: int) -> RunRow:
    """Run ``i`` of a batch: 0 … 11 spans (so statements hold full groups and remainders), every optional
    field sometimes set and sometimes None."""
    rid = f"run-{i:05d}"
    started = T0 + i * 0.25
    spans = []
    for j in range(i % 12):
        spans.append(SpanRow(
            id=f"{rid}.{j}", run_id=rid, parent_id=None if j == 0 else f"{rid}.{j - 1}",
            kind=("workflow", "node", "model_call", "tool_call")[j % 4], name=f"step {j} ✓",
            status="error" if (i + j) % 7 == 0 else "ok", started_at=started + j * 0.001,
            ended_at=None if j % 5 == 4 else started + j * 0.001 + 0.5,
            input=(Request(model="m", messages=[Message(role="user", content=[TextPart(text=f"hi {i}")])])
                   if j % 3 == 0 else {"n": j, "list": [1, 2.5, None, True], "s": "é\u2028\x00"} if j % 3 == 1 else None),
            output=None if j % 4 == 3 else {"text": f"out {i}.{j}"},
            usage=None if j % 2 else Usage(i, j, i % 3, 0, j % 2),
            cost_usd=None if j % 3 else 0.000125 * j, error="boom" if (i + j) % 7 == 0 else None,
            model=None if j % 2 else f"model-{j}", provider=None if j % 2 else "up"))
    return RunRow(id=rid, workflow=f"wf-{i % 3}", workflow_version=1 + i % 2, model=f"m-{i % 4}",
                  protocol=("chat", "responses", "messages")[i % 3], status="error" if i % 5 == 0 else "ok",
                  started_at=started, ended_at=None if i % 9 == 8 else started + 1.5, stream=i % 2 == 0,
                  usage=Usage(10 * i, i, i % 4, i % 5, i % 6), cost_usd=None if i % 3 else 0.5 + i,
                  error="failed" if i % 5 == 0 else None, session_id=f"s-{i % 4}" if i % 2 else None,
                  spans=spans)


def public_usage(u: Usage | None) -> dict[str, int] | None:
    return None if u is None else {k: getattr(u, k) for k in USAGE_KEYS}


def plain(value: Any) -> Any:
    """What a JSON column gives back for ``value``."""
    return msgspec.json.decode(json_dumps(value))


def expected(r: RunRow) -> dict[str, Any]:
    def ms(a: float, b: float | None) -> float | None:
        return None if b is None else round((b - a) * 1000.0, 3)

    return {"id": r.id, "workflow": r.workflow, "workflow_version": r.workflow_version, "model": r.model,
            "protocol": r.protocol, "status": r.status, "stream": r.stream, "session_id": r.session_id,
            "started_at": iso(r.started_at), "ended_at": iso(r.ended_at), "duration_ms": ms(r.started_at, r.ended_at),
            "usage": public_usage(r.usage), "cost_usd": r.cost_usd, "error": r.error,
            "spans": [{"id": s.id, "parent_id": s.parent_id, "kind": s.kind, "name": s.name, "status": s.status,
                       "started_at": iso(s.started_at), "ended_at": iso(s.ended_at),
                       "duration_ms": ms(s.started_at, s.ended_at),
                       "input": None if s.input is None else plain(s.input),
                       "output": None if s.output is None else plain(s.output), "usage": public_usage(s.usage),
                       "cost_usd": s.cost_usd, "error": s.error, "model": s.model, "provider": s.provider}
                      for s in r.spans]}


async def counts(store: Store) -> tuple[int, int]:
    async with store.read() as conn:
        n_runs = (await conn.execute(select(func.count()).select_from(runs_table))).scalar_one()
        n_spans = sum(len(doc) for doc in (await conn.execute(select(run_spans.c.spans))).scalars())
    return int(n_runs), n_spans


async def test_a_large_ragged_batch_round_trips_every_field_of_every_run_and_span(store: Store) -> None:
    # More runs than one chunk, span counts that leave remainders of every size.
    rows = [ragged_run(i) for i in range(WRITE_CHUNK_RUNS + 3 * ROWS_PER_STATEMENT + 5)]
    await store.write_runs(rows)
    for r in rows:
        assert await store.get_run(r.id) == expected(r), r.id
    assert await counts(store) == (len(rows), sum(len(r.spans) for r in rows))


async def test_a_runs_spans_are_stored_as_the_serializers_json_of_them(store: Store) -> None:
    r = ragged_run(7)  # spans 0-6: inputs of every kind, None inputs, usage and outputs
    await store.write_runs([r])
    async with store.read() as conn:
        stored = (await conn.execute(text("SELECT CAST(spans AS TEXT) FROM run_spans WHERE run_id = :r"),
                                     {"r": r.id})).scalar_one()
        # SQLite keeps the document's bytes as they were encoded (a BLOB), PostgreSQL its json text.
        kind = (await conn.execute(text("SELECT typeof(spans) FROM run_spans WHERE run_id = :r"), {"r": r.id})
                ).scalar_one() if store.dialect == "sqlite" else "json"
    assert stored == json_dumps(r.spans) and kind == ("blob" if store.dialect == "sqlite" else "json")
    # None fields and zero usage counts are left out of the text; reading puts them back.
    assert '"ended_at"' not in json_dumps(r.spans[4]) and '"cache_write_tokens"' not in stored


async def test_numbered_span_ids_and_an_output_two_spans_share_are_stored_once_and_read_back_whole(
        store: Store) -> None:
    answer = {"text": "a long answer " * 40, "tool_calls": []}
    spans = [SpanRow(id=0, parent_id=None, kind="workflow", name="wf", status="ok", started_at=T0, output_of=1),
             SpanRow(id=1, parent_id=0, kind="node", name="answer", status="ok", started_at=T0, output=answer),
             SpanRow(id=2, parent_id=1, kind="model_call", name="up/m", status="ok", started_at=T0, output={"n": 2}),
             SpanRow(id="custom", parent_id=2, kind="tool_call", name="t", status="ok", started_at=T0,
                     output_of="nowhere")]
    await store.write_runs([make_run("run-n", spans=spans, session_id="sess-n")])
    async with store.read() as conn:
        stored = (await conn.execute(text("SELECT CAST(spans AS TEXT) FROM run_spans WHERE run_id = 'run-n'"))).scalar_one()
    assert stored.count("a long answer") == 40
    got = await store.get_run("run-n")
    session = await store.get_session("sess-n")
    assert got is not None and session is not None and session["runs"][0]["spans"] == got["spans"]
    assert [(s["id"], s["parent_id"]) for s in got["spans"]] == [
        ("run-n.0", None), ("run-n.1", "run-n.0"), ("run-n.2", "run-n.1"), ("custom", "run-n.2")]
    assert got["spans"][0]["output"] == got["spans"][1]["output"] == answer
    assert got["spans"][3]["output"] is None  # shares the output of a span the run does not have
    assert "output_of" not in got["spans"][0]


async def test_a_batch_mixing_stored_and_new_runs_adds_only_the_new_ones_unchanged(store: Store) -> None:
    first = [ragged_run(i) for i in range(0, 40, 2)]
    await store.write_runs(first)
    again = [ragged_run(i) for i in range(40)]
    for r in again:  # what a retry would carry if it differed: must not overwrite what is stored
        r.status, r.error = "cancelled", "retried"
        for s in r.spans:
            s.name = "changed"
    await store.write_runs(again + again[:5])
    for i in range(40):
        got = await store.get_run(f"run-{i:05d}")
        assert got is not None
        assert got == expected(first[i // 2] if i % 2 == 0 else again[i])
    assert await counts(store) == (40, sum(len(r.spans) for r in again))


async def test_a_span_id_repeated_within_a_run_keeps_its_first_row(store: Store) -> None:
    spans = [SpanRow(id=f"s{i % 3}", run_id="r", parent_id=None, kind="node", name=f"n{i}", status="ok",
                     started_at=T0) for i in range(2 * ROWS_PER_STATEMENT + 1)]
    await store.write_runs([make_run("r", spans=spans)])
    got = await store.get_run("r")
    assert got is not None and [(s["id"], s["name"]) for s in got["spans"]] == [("s0", "n0"), ("s1", "n1"),
                                                                                 ("s2", "n2")]


async def test_a_bad_run_deep_in_a_large_batch_stores_nothing_of_the_batch(store: Store) -> None:
    rows = [ragged_run(i) for i in range(WRITE_CHUNK_RUNS + 10)]
    victim = rows[WRITE_CHUNK_RUNS + 3]  # in the second chunk, after the first chunk's statements ran
    victim.workflow = None  # type: ignore[assignment]  # NOT NULL column
    with pytest.raises(Exception):  # noqa: B017 - the database's own integrity error, whichever it is
        await store.write_runs(rows)
    assert await counts(store) == (0, 0)
    # The store is usable afterwards and the good runs can be written.
    await store.write_runs(rows[:WRITE_CHUNK_RUNS])
    assert await counts(store) == (WRITE_CHUNK_RUNS, sum(len(r.spans) for r in rows[:WRITE_CHUNK_RUNS]))


async def test_trace_batches_and_workflow_saves_running_at_once_all_land(store: Store) -> None:
    # On SQLite the trace batches go through a connection of their own: both writers must queue for
    # the one write lock instead of failing or deadlocking.
    batches = [[ragged_run(i) for i in range(k * 30, k * 30 + 30)] for k in range(6)]
    saves = [store.save_workflow(f"wf{k}", f"model{k}", "nodes: []\n", {"nodes": [], "k": k}) for k in range(6)]
    await asyncio.gather(*(store.write_runs(b) for b in batches), *saves)
    assert await counts(store) == (180, sum(len(r.spans) for b in batches for r in b))
    assert sorted(w["name"] for w in await store.list_workflows()) == [f"wf{k}" for k in range(6)]


async def test_an_in_memory_store_writes_runs_on_its_one_connection() -> None:
    store = await Store.open("sqlite+aiosqlite://")
    try:
        rows = [ragged_run(i) for i in range(2 * ROWS_PER_STATEMENT + 3)]
        await store.write_runs(rows)
        for r in rows:
            assert await store.get_run(r.id) == expected(r)
    finally:
        await store.close()


async def test_runs_written_before_close_are_there_when_the_file_is_opened_again(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    store = await Store.open(url)
    await store.write_runs([ragged_run(i) for i in range(20)])
    await store.close()
    again = await Store.open(url)
    try:
        assert await counts(again) == (20, sum(len(ragged_run(i).spans) for i in range(20)))
        await again.write_runs([ragged_run(20)])  # and the reopened store writes too
        assert await again.get_run("run-00020") == expected(ragged_run(20))
    finally:
        await again.close()


async def test_the_sqlite_trace_writer_runs_at_a_lower_priority_than_the_requests_thread(tmp_path: Path) -> None:
    store = await Store.open(sqlite_url(tmp_path))
    try:
        await store.write_runs([ragged_run(1)])
        writers = [t.native_id for t in threading.enumerate() if t.name.startswith("flowbase-trace-sqlite")]
        ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        assert writers and all(tid is not None and os.getpriority(os.PRIO_PROCESS, tid) == min(
            ours + TRACE_WRITER_NICE, 19) > ours for tid in writers)
    finally:
        await store.close()


async def test_spans_sharing_one_usage_object_each_store_their_own_usage(store: Store) -> None:
    shared, other = Usage(5, 6, 1, 0, 2), Usage(7, 8)
    usages = [shared, None, shared, shared, other, None, None, shared, other]
    spans = [SpanRow(id=f"s{i}", run_id="r", parent_id=None, kind="node", name="n", status="ok", started_at=T0,
                     usage=u) for i, u in enumerate(usages)]
    await store.write_runs([make_run("r", spans=spans, usage=shared)])
    got = await store.get_run("r")
    assert got is not None
    assert [s["usage"] for s in got["spans"]] == [public_usage(u) for u in usages]
    assert got["usage"] == public_usage(shared)


async def test_a_store_closed_twice_or_written_after_close_keeps_working(tmp_path: Path) -> None:
    store = await Store.open(sqlite_url(tmp_path))
    await store.write_runs([ragged_run(1)])
    await store.close()
    await store.close()
    # The engine reconnects after dispose; so does the trace writer.
    await store.write_runs([ragged_run(2)])
    assert await store.get_run("run-00002") == expected(ragged_run(2))
    await store.close()
    again = await Store.open(sqlite_url(tmp_path))
    try:
        assert await counts(again) == (2, len(ragged_run(1).spans) + len(ragged_run(2).spans))
    finally:
        await again.close()


async def test_batches_of_every_remainder_shape_up_to_two_statements_store_every_run(store: Store) -> None:
    # Whatever is left after the full statements goes out in halving groups: every size must add up.
    # Sizes 1-40 cover the small groups in every combination, the rest each larger group on its own and
    # next to full statements.
    written = 0
    n = ROWS_PER_STATEMENT
    for size in (*range(1, 41), n // 2 - 1, n // 2, n // 2 + 1, n - 1, n, n + 1, n + n // 2 + 3, 2 * n, 2 * n + 1):
        rows = [ragged_run(written + i) for i in range(size)]
        await store.write_runs(rows)
        written += size
        assert await counts(store) == (written, sum(len(ragged_run(i).spans) for i in range(written))), size
    for i in (0, written // 2, written - 1):
        assert await store.get_run(f"run-{i:05d}") == expected(ragged_run(i))


GOLDEN = Path(__file__).parent / "golden"
# The request bodies of the protocol golden files (``request.wire``: what the client sent).
CLIENT_BODIES = [(protocol, path.stem, json.loads(path.read_text())["request"]["wire"])
                 for protocol, folder in (("chat", "openai_chat"), ("responses", "openai_responses"),
                                          ("messages", "anthropic_messages"))
                 for path in sorted((GOLDEN / folder).glob("*.json")) if "request" in json.loads(path.read_text())]


async def test_a_client_body_kept_as_it_came_reads_back_as_the_canonical_request_it_parses_to(store: Store) -> None:
    assert {p for p, _, _ in CLIENT_BODIES} == {"chat", "responses", "messages"}
    parsers = {"chat": openai_chat.parse_request, "responses": openai_responses.parse_request,
               "messages": anthropic_messages.parse_request}
    rows, want = [], {}
    for i, (protocol, name, request) in enumerate(CLIENT_BODIES):
        body = json.dumps(request, indent=1).encode()  # as a client may send it: spaced, keys in its order
        canonical, _ = parsers[protocol](body)
        canonical.origin = protocol
        want[f"run-body-{i}"] = (name, msgspec.json.decode(json_dumps(canonical)))
        rows.append(make_run(f"run-body-{i}", spans=[SpanRow(id=0, parent_id=None, kind="workflow", name="wf",
                                                             status="ok", started_at=T0, input=msgspec.Raw(body),
                                                             input_format=protocol)]))
    await store.write_runs(rows)
    for run_id, (name, canonical) in want.items():
        run = await store.get_run(run_id)
        assert run is not None and run["spans"][0]["input"] == canonical, name


async def test_a_kept_client_body_that_no_longer_parses_reads_back_as_it_was_stored(store: Store) -> None:
    odd = {"model": "m", "messages": "not a list"}
    await store.write_runs([make_run("run-odd", spans=[
        SpanRow(id=0, parent_id=None, kind="workflow", name="wf", status="ok", started_at=T0,
                input=msgspec.Raw(json.dumps(odd).encode()), input_format="chat"),
        SpanRow(id=1, parent_id=0, kind="node", name="n", status="ok", started_at=T0, input=odd,
                input_format="a protocol of the future")])])
    run = await store.get_run("run-odd")
    assert run is not None and [s["input"] for s in run["spans"]] == [odd, odd]
