"""RunnerPool against real plugin runner subprocesses: results, streams, routing, errors."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from support_runner import MANIFESTS, invoke, running_pool

from host.runners import RunnerPool
from plugin_runner.manifest import load_manifests
from plugin_sdk.errors import NodeError, UpstreamError
from plugin_sdk.types import Accumulator, BlockDelta, StreamEnd, StreamStart


@pytest_asyncio.fixture(scope="module")
async def pool() -> AsyncIterator[RunnerPool]:
    async with running_pool() as p:
        yield p


async def test_a_node_result_comes_back_from_the_runner_process(pool: RunnerPool) -> None:
    res = await invoke(pool, "fx.echo", inputs={"text": "hi"}).result()
    assert res.output["text"] == "hi"
    assert res.output["pid"] != os.getpid()
    assert res.output["pid"] == pool.processes()["shared"]


async def test_hello_lists_every_node_type_of_the_hosted_packages(pool: RunnerPool) -> None:
    assert {"fx.echo", "fx.stream", "fx.boom", "fx.iso_pid"} <= pool.node_types()


async def test_streamed_events_arrive_in_order_and_then_the_result_with_its_spans(pool: RunnerPool) -> None:
    call = invoke(pool, "fx.stream", inputs={"words": ["a", "b", "c"]}, stream=True)
    events = [ev async for ev in call]
    res = await call.result()
    assert isinstance(events[0], StreamStart)
    assert isinstance(events[-1], StreamEnd)
    assert [e.text for e in events if isinstance(e, BlockDelta)] == ["a", "b", "c"]
    acc = Accumulator()
    for ev in events:
        acc.feed(ev)
    assert acc.response().text() == "abc"
    assert res.response is not None and res.response.text() == "abc"
    assert res.output["text"] == "abc"
    assert res.output["usage"] == {"input_tokens": 3, "output_tokens": 3}
    assert [(s.kind, s.name) for s in res.spans] == [("model_call", "fx-model")]


async def test_span_input_and_output_cross_to_the_host_as_json_text(pool: RunnerPool) -> None:
    res = await invoke(pool, "fx.odd_span").result()
    assert res.output == {"text": "recorded"}
    [span] = res.spans
    assert (span.kind, span.name) == ("tool_call", "fx-odd")
    # Nothing JSON cannot hold fails the node: an object becomes its str, and a value JSON cannot
    # encode at all turns the payload into a note saying why.
    assert span.output is not None and json.loads(span.output) == {"thing": "an opaque object", "n": 3}
    assert span.input is not None and json.loads(span.input).startswith("<cannot be recorded as JSON: ")


async def test_a_span_that_cannot_be_sent_fails_its_call_at_once_without_the_spans(pool: RunnerPool) -> None:
    with pytest.raises(NodeError, match="node output cannot be sent to the host") as info:
        await invoke(pool, "fx.bad_span_usage", timeout_s=30).result()
    assert info.value.spans == []  # type: ignore[attr-defined]
    assert (await invoke(pool, "fx.echo", inputs={"text": "still up"}).result()).output["text"] == "still up"


async def test_a_non_streaming_call_gets_no_events_but_the_whole_response(pool: RunnerPool) -> None:
    call = invoke(pool, "fx.stream", stream=False)
    res = await call.result()
    assert [ev async for ev in call] == []
    assert res.output["text"] == "hello world"


async def test_many_concurrent_calls_are_routed_back_by_id(pool: RunnerPool) -> None:
    # Later calls finish first, so answers come back out of order on the one socket.
    calls = [invoke(pool, "fx.delay_echo", node_id=f"n{i}", inputs={"n": i, "delay": (50 - i) / 1000})
             for i in range(50)]
    results = await asyncio.gather(*(c.result() for c in calls))
    assert [r.output["n"] for r in results] == list(range(50))


async def test_one_task_can_stream_a_call_while_another_awaits_its_result(pool: RunnerPool) -> None:
    call = invoke(pool, "fx.stream", inputs={"words": ["x", "y"]}, stream=True)

    async def consume() -> int:
        return len([ev async for ev in call])

    count, res = await asyncio.gather(consume(), call.result())
    assert count == 6 and res.output["text"] == "xy"


async def test_a_plugin_printing_to_stdout_does_not_corrupt_the_channel(pool: RunnerPool) -> None:
    res = await invoke(pool, "fx.noisy").result()
    assert res.output == {"text": "still clean"}
    assert (await invoke(pool, "fx.echo", inputs={"text": "after"}).result()).output["text"] == "after"


async def test_off_schema_output_fails_with_a_node_error_naming_node_type_and_path(pool: RunnerPool) -> None:
    with pytest.raises(NodeError) as info:
        await invoke(pool, "fx.off_schema", node_id="counter").result()
    msg = info.value.message
    assert info.value.status == 500 and info.value.kind == "api_error"
    assert "node 'counter' (fx.off_schema)" in msg
    assert "output_schema at $.items[1].count" in msg
    assert "'three' is not of type 'integer'" in msg


async def test_off_schema_inputs_are_refused_before_the_node_runs(pool: RunnerPool) -> None:
    with pytest.raises(NodeError) as info:
        await invoke(pool, "fx.echo", node_id="e", inputs={"text": 5}).result()
    assert "node 'e' (fx.echo) got inputs that do not match its input_schema at $.text" in info.value.message


async def test_a_plugin_exception_becomes_a_node_error_naming_the_node(pool: RunnerPool) -> None:
    with pytest.raises(NodeError) as info:
        await invoke(pool, "fx.boom", node_id="exploder").result()
    assert info.value.message == "node 'exploder' (fx.boom) failed: ValueError: kaboom"
    assert info.value.status == 500
    assert type(info.value) is NodeError


async def test_a_result_the_host_cannot_decode_fails_only_that_call(pool: RunnerPool) -> None:
    pid = pool.processes()["shared"]
    with pytest.raises(NodeError, match="node 'keys' sent a result the host cannot decode"):
        await invoke(pool, "fx.int_keys", node_id="keys").result()
    assert (await invoke(pool, "fx.echo", inputs={"text": "ok"}).result()).output == {"text": "ok", "pid": pid}


async def test_multi_megabyte_inputs_and_outputs_cross_the_hop(pool: RunnerPool) -> None:
    text = "x" * (5 * 1024 * 1024) + "end"
    res = await invoke(pool, "fx.echo", inputs={"text": text}).result()
    assert res.output["text"] == text


async def test_upstream_error_status_message_and_retry_after_survive_the_hop(pool: RunnerPool) -> None:
    with pytest.raises(UpstreamError) as info:
        await invoke(pool, "fx.upstream").result()
    exc = info.value
    assert (exc.status, exc.kind, exc.message) == (429, "rate_limit", "Rate limit reached for fx-model")
    assert exc.retry_after == "7"
    assert exc.code == "rate_limit_exceeded"
    spans = exc.spans  # type: ignore[attr-defined]
    assert [(s.name, s.status, s.error) for s in spans] == [("fx-upstream", "error", "429 from upstream")]


async def test_an_unknown_node_type_fails_the_call_with_a_clear_error(pool: RunnerPool) -> None:
    with pytest.raises(NodeError, match="no plugin provides node type 'fx.nope'"):
        await invoke(pool, "fx.nope").result()


async def test_plugin_log_records_reach_the_host_logger(pool: RunnerPool, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flowbase.runner"):
        await invoke(pool, "fx.log", inputs={"word": "bonjour"}).result()
        # The Log frame was written before the Result on the same socket, so it is already in.
    assert any("fixture says bonjour" in r.getMessage() and r.name == "flowbase.runner" for r in caplog.records)


async def test_cancelling_a_call_leaves_the_runner_serving(pool: RunnerPool) -> None:
    call = invoke(pool, "fx.hang", node_id="patient")
    await asyncio.sleep(0)
    await call.cancel()
    with pytest.raises(NodeError, match="cancelled"):
        await call.result()
    assert (await invoke(pool, "fx.echo", inputs={"text": "ok"}).result()).output["text"] == "ok"


async def test_a_package_with_its_own_runner_value_gets_its_own_process(pool: RunnerPool) -> None:
    iso = await invoke(pool, "fx.iso_pid").result()
    shared = await invoke(pool, "fx.echo", inputs={"text": "x"}).result()
    assert iso.output["pid"] != shared.output["pid"]
    assert pool.processes() == {"shared": shared.output["pid"], "isolated": iso.output["pid"]}


async def test_a_runner_applies_the_largest_memory_limit_of_its_packages_and_no_core_dumps(
        pool: RunnerPool) -> None:
    limits = (await invoke(pool, "fx.iso_limits").result()).output
    assert limits == {"address_space": 2048 * 1024 * 1024, "core": 0}


async def test_a_pool_built_from_manifests_alone_passes_their_folders_to_the_runner() -> None:
    pool = RunnerPool(load_manifests([MANIFESTS]))
    await pool.start()
    try:
        assert (await invoke(pool, "fx.echo", inputs={"text": "found"}).result()).output["text"] == "found"
    finally:
        await pool.close()


async def test_close_shuts_runners_down_and_runs_the_packages_close_callbacks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "closed.txt"
    monkeypatch.setenv("FX_CLOSE_MARKER", str(marker))
    async with running_pool() as p:
        pids = list(p.processes().values())
        assert (await invoke(p, "fx.echo", inputs={"text": "x"}).result()).output["text"] == "x"
    assert marker.read_text() == "closed"
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
