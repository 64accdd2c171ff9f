"""The built-in plugin packages as the host uses them: loaded through the one pluggy hook, served by
a real plugin runner process, talking to the fake upstream."""

from __future__ import annotations

import ast
import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from fake_upstream import expected_reply
from support_upstream import FakeUpstream, upstream_fixture

from host.runners import RunnerPool
from plugin_runner.loader import load
from plugin_runner.manifest import load_manifests
from plugin_sdk.errors import UpstreamError
from plugin_sdk.types import Accumulator, BlockDelta, Request, StreamEvent, text_message

ROOT = Path(__file__).resolve().parent.parent
BUILT_IN = {"mock.chat", "openai.chat", "anthropic.messages", "template", "formatter", "verifier", "router"}
KEY = "sk-runner-test-0123456789"
upstream = upstream_fixture()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool() -> AsyncIterator[RunnerPool]:
    p = RunnerPool(load_manifests())
    await p.start()
    try:
        yield p
    finally:
        await p.close()


def test_every_built_in_package_loads_through_the_register_node_types_hook() -> None:
    manifests = load_manifests()
    loaded = load(manifests)
    assert BUILT_IN <= set(loaded.node_types)
    assert {m.id for m in manifests} >= {"mock", "openai_compat", "anthropic_api", "flow"}
    assert {pkg for pkg, _ in loaded.closers} >= {"openai_compat", "anthropic_api"}
    providers = {nt.provider_type: name for m in manifests for name, nt in m.node_types.items() if nt.provider_type}
    assert providers == {"mock": "mock.chat", "openai": "openai.chat", "anthropic": "anthropic.messages"}
    for m in manifests:
        for name, nt in m.node_types.items():
            assert nt.description and nt.timeout_s, name
            if nt.provider_type:
                assert nt.config_schema["required"] == ["model"] and not nt.input_schema, name


def test_plugins_import_only_plugin_sdk_their_own_package_and_third_party_libraries() -> None:
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        rel = path.relative_to(ROOT / "plugins").parts
        own = f"plugins.{rel[0]}" if len(rel) > 1 else "plugins"
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                top = name.split(".")[0]
                assert top not in ("host", "plugin_runner", "tests"), f"{path}: imports {name}"
                if top == "plugins":
                    assert name == own or name.startswith(own + "."), f"{path}: imports another plugin ({name})"


async def test_a_runner_process_streams_openai_chat_from_the_upstream_and_keeps_the_key_out_of_spans(
        pool: RunnerPool, upstream: FakeUpstream) -> None:
    marker = uuid.uuid4().hex
    req = Request(model="gw", messages=[text_message("user", f"via runner {marker}")])
    config = {"model": "small", "base_url": upstream.openai_base_url, "api_key": KEY, "provider": "up"}
    call = pool.call("openai.chat", node_id="answer", config=config, inputs={}, request=req, stream=True,
                     timeout_s=30)
    acc = Accumulator()
    events: list[StreamEvent] = []
    async for ev in call:
        events.append(ev)
        acc.feed(ev)
    res = await call.result()
    assert res.response is not None and res.response == acc.response()
    assert res.output["text"] == expected_reply("small", f"via runner {marker}")
    assert len([e for e in events if isinstance(e, BlockDelta)]) == 4
    [span] = res.spans
    assert span.name == "up/small" and span.input is not None and marker in span.input.decode()
    assert KEY not in span.input.decode() + (span.output or b"").decode()
    [rec] = [r for r in upstream.requests() if marker in json.dumps(r["body"])]
    assert rec["headers"]["Authorization"] == f"Bearer {KEY}"


async def test_a_runner_process_relays_an_anthropic_rate_limit_with_its_retry_after(
        pool: RunnerPool, upstream: FakeUpstream) -> None:
    req = Request(model="gw", messages=[text_message("user", "hi")])
    config = {"model": "error-429", "base_url": upstream.anthropic_base_url, "api_key": KEY}
    call = pool.call("anthropic.messages", node_id="a", config=config, inputs={}, request=req, stream=False,
                     timeout_s=30)
    try:
        await call.result()
    except UpstreamError as exc:
        assert (exc.status, exc.retry_after, exc.kind) == (429, "20", "rate_limit")
        assert KEY not in exc.message
    else:
        raise AssertionError("a 429 upstream answer must fail the call")


async def test_cancelling_a_call_in_the_runner_stops_the_upstream_stream(pool: RunnerPool,
                                                                         upstream: FakeUpstream) -> None:
    marker = uuid.uuid4().hex
    req = Request(model="gw", messages=[text_message("user", marker)])
    config = {"model": "slow-20+words-500", "base_url": upstream.openai_base_url}
    call = pool.call("openai.chat", node_id="a", config=config, inputs={}, request=req, stream=True, timeout_s=30)
    async for ev in call:
        if isinstance(ev, BlockDelta):
            break
    await call.cancel()
    for _ in range(500):
        recs = [r for r in await asyncio.to_thread(upstream.requests) if marker in json.dumps(r["body"])]
        if recs and recs[0]["disconnected"]:
            break
        await asyncio.sleep(0.02)
    assert recs[0]["disconnected"] is True


async def test_mock_and_flow_nodes_run_in_the_runner_process(pool: RunnerPool) -> None:
    req = Request(model="gw", messages=[text_message("user", "hi there")])
    res = await pool.call("mock.chat", node_id="m", config={"model": "mock-x"}, inputs={}, request=req,
                          stream=False, timeout_s=30).result()
    assert res.output["text"] == "Echo: hi there"
    res = await pool.call("router", node_id="r", config={"routes": [{"name": "greet", "contains": "hi"}]},
                          inputs={"text": res.output["text"]}, request=None, stream=False, timeout_s=30).result()
    assert res.output == {"route": "greet"}
