"""The anthropic.messages node against the fake upstream (a real HTTP server in a subprocess)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from fake_upstream import (
    ANTHROPIC_ERRORS,
    expected_reply,
    expected_tool_reply,
    plausible_args,
    signature_for,
    thinking_for,
    tool_preamble,
)
from support_upstream import (
    READ_TOOL,
    FakeUpstream,
    ask,
    cancel_mid_stream,
    disconnected,
    folded,
    header,
    record_with,
    refused_port,
    upstream_fixture,
)

from plugin_runner.manifest import load_manifest
from plugin_sdk.errors import UpstreamError
from plugin_sdk.testing import NodeRun, run_node
from plugin_sdk.types import (
    BlockDelta,
    BlockStart,
    ImagePart,
    Message,
    Reasoning,
    Request,
    StreamStart,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    response_events,
    text_message,
)
from plugins.anthropic_api import node as an

upstream = upstream_fixture()
SPEC = load_manifest(Path(__file__).resolve().parent.parent / "manifests" / "anthropic_api.yaml").node_types[
    "anthropic.messages"]
KEY = "sk-ant-test-0123456789"


@pytest_asyncio.fixture(scope="module", loop_scope="session", autouse=True)
async def close_clients() -> AsyncIterator[None]:
    yield
    await an.close()


def cfg(up: FakeUpstream, model: str = "claude-fake", **kw: Any) -> dict[str, Any]:
    return {"model": model, "base_url": up.anthropic_base_url, "api_key": KEY, "provider": "ant", **kw}


async def call(up: FakeUpstream, req: Request, *, stream: bool, model: str = "claude-fake", **kw: Any) -> NodeRun:
    return await run_node(an.run, config=cfg(up, model, **kw), request=req, stream=stream, validate_with=SPEC,
                          node_type="anthropic.messages")


@pytest.mark.parametrize("stream", [False, True])
async def test_a_plain_question_reaches_the_messages_api_in_its_own_shape(upstream: FakeUpstream,
                                                                          stream: bool) -> None:
    marker = uuid.uuid4().hex
    req = Request(model="m", messages=[text_message("system", "be brief"), text_message("developer", "in French"),
                                       text_message("user", f"hello {marker}")])
    res = await call(upstream, req, stream=stream, beta=["b1", "b2"])
    assert res.response is not None and res.response.text() == expected_reply("claude-fake", f"hello {marker}")
    assert res.response.usage.input_tokens > 0 and res.response.usage.output_tokens > 0
    rec = record_with(upstream, marker)
    body = rec["body"]
    assert body["model"] == "claude-fake" and body["max_tokens"] == 4096
    assert body["system"] == [{"type": "text", "text": "be brief"}, {"type": "text", "text": "in French"}]
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": f"hello {marker}"}]}]
    assert header(rec, "anthropic-version") == "2023-06-01" and header(rec, "anthropic-beta") == "b1,b2"
    if stream:
        assert isinstance(res.events[0], StreamStart) and res.events[0].usage is not None
        assert res.events[0].usage.input_tokens == res.response.usage.input_tokens
        assert len([e for e in res.events if isinstance(e, BlockDelta)]) == 3  # one per word
        assert folded(res.events) == res.response


@pytest.mark.parametrize("stream", [False, True])
async def test_a_tool_call_and_its_result_round_trip_with_tool_results_leading_the_user_turn(
        upstream: FakeUpstream, stream: bool) -> None:
    marker = uuid.uuid4().hex
    builtin = Tool(name="web_search", kind="web_search", raw={"type": "web_search_20250305", "name": "web_search"})
    foreign = Tool(name="web_search_preview", kind="web_search", raw={"type": "web_search_preview"})
    req = ask(f"read it {marker}", tools=[READ_TOOL, builtin, foreign], tool_choice=ToolChoice(mode="required"),
              parallel_tool_calls=False)
    res = await call(upstream, req, stream=stream, model="tool-call")
    assert res.response is not None and res.response.stop_reason == "tool_use"
    preamble, tc = res.response.content
    assert preamble == TextPart(tool_preamble("Read"))
    assert isinstance(tc, ToolCallPart) and tc.name == "Read" and tc.id.startswith("toolu_")
    assert json.loads(tc.arguments) == plausible_args(READ_TOOL.parameters, f"read it {marker}")
    body = record_with(upstream, marker)["body"]
    assert body["tools"] == [{"name": "Read", "description": "Read a file", "input_schema": READ_TOOL.parameters},
                             {"type": "web_search_20250305", "name": "web_search"}]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    if stream:
        assert [e for e in res.events if isinstance(e, BlockStart)] == [
            BlockStart(0, TextPart("")), BlockStart(1, ToolCallPart(id=tc.id, name="Read"))]
        assert folded(res.events) == res.response

    marker2 = uuid.uuid4().hex
    follow = Request(model="m", tools=[READ_TOOL], messages=[
        *req.messages, Message(role="assistant", content=res.response.content),
        Message(role="tool", content=[ToolResultPart(tool_call_id=tc.id, content=[TextPart(f"bytes {marker2}")])]),
        text_message("user", "and summarise it"),
    ])
    res2 = await call(upstream, follow, stream=stream, model="tool-call")
    assert res2.response is not None
    assert res2.response.text() == expected_tool_reply("tool-call", "Read", f"bytes {marker2}")
    msgs = record_with(upstream, marker2)["body"]["messages"]
    assert msgs[1]["content"][1] == {"type": "tool_use", "id": tc.id, "name": "Read",
                                     "input": json.loads(tc.arguments)}
    assert msgs[2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": tc.id, "content": [{"type": "text", "text": f"bytes {marker2}"}]},
        {"type": "text", "text": "and summarise it"}]}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_thinking_signature_survives_the_round_trip_byte_exact(upstream: FakeUpstream, stream: bool) -> None:
    marker = uuid.uuid4().hex
    req = ask(f"ponder {marker}", reasoning=Reasoning(budget_tokens=2000))
    res = await call(upstream, req, stream=stream, model="thinking")
    assert res.response is not None
    thinking, text = res.response.content
    expected_thought = thinking_for(f"ponder {marker}")
    assert thinking == ThinkingPart(text=expected_thought, signature=signature_for(expected_thought))
    assert text == TextPart(expected_reply("thinking", f"ponder {marker}"))
    assert record_with(upstream, marker)["body"]["thinking"] == {"type": "enabled", "budget_tokens": 2000}
    if stream:
        assert folded(res.events) == res.response

    marker2 = uuid.uuid4().hex
    follow = Request(model="m", reasoning=req.reasoning, messages=[
        *req.messages, Message(role="assistant", content=res.response.content), text_message("user", marker2)])
    res2 = await call(upstream, follow, stream=stream, model="thinking")  # a bad signature would be a 400
    assert res2.response is not None
    sent = record_with(upstream, marker2)["body"]["messages"][1]["content"][0]
    assert sent == {"type": "thinking", "thinking": expected_thought, "signature": signature_for(expected_thought)}

    tampered = ThinkingPart(text=expected_thought, signature=signature_for(expected_thought)[:-3] + "A==")
    bad = Request(model="m", messages=[*req.messages, Message(role="assistant", content=[tampered, text]),
                                       text_message("user", "again")])
    with pytest.raises(UpstreamError) as info:
        await call(upstream, bad, stream=stream, model="thinking")
    assert info.value.status == 400 and "Invalid `signature` in `thinking` block" in info.value.message


async def test_redacted_thinking_round_trips_as_opaque_data(upstream: FakeUpstream) -> None:
    res = await call(upstream, ask("secret thoughts"), stream=True, model="redacted-thinking")
    assert res.response is not None
    redacted = res.response.content[0]
    assert isinstance(redacted, ThinkingPart) and redacted.redacted_data
    marker = uuid.uuid4().hex
    follow = Request(model="m", messages=[text_message("user", "secret thoughts"),
                                          Message(role="assistant", content=res.response.content),
                                          text_message("user", marker)])
    await call(upstream, follow, stream=False, model="redacted-thinking")
    sent = record_with(upstream, marker)["body"]["messages"][1]["content"][0]
    assert sent == {"type": "redacted_thinking", "data": redacted.redacted_data}


async def test_a_reasoning_effort_becomes_a_budget_that_the_clients_max_tokens_caps(upstream: FakeUpstream) -> None:
    marker = uuid.uuid4().hex
    await call(upstream, ask(marker, reasoning=Reasoning(effort="medium")), stream=False)
    body = record_with(upstream, marker)["body"]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 8192} and body["max_tokens"] == 8192 + 4096
    marker = uuid.uuid4().hex
    await call(upstream, ask(marker, reasoning=Reasoning(effort="high"), max_tokens=3000), stream=False)
    body = record_with(upstream, marker)["body"]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2999} and body["max_tokens"] == 3000


@pytest.mark.parametrize("stream", [False, True])
async def test_prompt_cache_writes_then_reads_are_counted_inside_the_input_tokens(upstream: FakeUpstream,
                                                                                 stream: bool) -> None:
    system = TextPart(f"You are a careful assistant {uuid.uuid4().hex}. " * 30, cache_control={"type": "ephemeral"})
    m1, m2 = uuid.uuid4().hex, uuid.uuid4().hex
    first = Request(model="m", messages=[Message(role="system", content=[system]), text_message("user", m1)])
    second = Request(model="m", messages=[Message(role="system", content=[system]), text_message("user", m2)])
    r1 = await call(upstream, first, stream=stream)
    r2 = await call(upstream, second, stream=stream)
    assert r1.response is not None and r2.response is not None
    u1, u2 = r1.response.usage, r2.response.usage
    assert u1.cache_write_tokens > 0 and u1.cache_read_tokens == 0
    assert u2.cache_read_tokens == u1.cache_write_tokens and u2.cache_write_tokens == 0
    assert u1.input_tokens == u2.input_tokens > u2.cache_read_tokens  # canonical input counts cached tokens too
    assert record_with(upstream, m1)["body"]["system"] == [{"type": "text", "text": system.text,
                                                            "cache_control": {"type": "ephemeral"}}]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("status", "retry_after"), [(429, "20"), (500, None), (529, None), (400, None)])
async def test_upstream_errors_keep_their_status_message_type_and_retry_after(
        upstream: FakeUpstream, stream: bool, status: int, retry_after: str | None) -> None:
    with pytest.raises(UpstreamError) as info:
        await call(upstream, ask("hi"), stream=stream, model=f"error-{status}")
    err = info.value
    kind, message = ANTHROPIC_ERRORS[status]
    # The type is kept as the protocol-neutral kind; ``code`` stays free for OpenAI-protocol codes.
    kinds = {"rate_limit_error": "rate_limit", "api_error": "api_error", "overloaded_error": "overloaded",
             "invalid_request_error": "invalid_request"}
    assert (err.status, err.message, err.retry_after, err.kind) == (status, message, retry_after, kinds[kind])
    assert err.code is None
    [span] = err.spans  # type: ignore[attr-defined]
    assert span.kind == "model_call" and span.error == message and span.output == {"status": status,
                                                                                    "message": message}


async def test_a_refused_connection_is_a_502_naming_the_host_but_not_the_key() -> None:
    with refused_port() as port:
        config = {"model": "m", "base_url": f"http://127.0.0.1:{port}", "api_key": KEY}
        with pytest.raises(UpstreamError) as info:
            await run_node(an.run, config=config, request=ask("hi"), stream=False)
    assert info.value.status == 502
    assert f"127.0.0.1:{port}" in info.value.message and KEY not in info.value.message
    assert KEY not in msgspec.json.encode(info.value.spans).decode()  # type: ignore[attr-defined]


async def test_the_api_key_reaches_the_upstream_but_never_the_spans(upstream: FakeUpstream) -> None:
    marker = uuid.uuid4().hex
    res = await call(upstream, ask(marker), stream=True)
    rec = record_with(upstream, marker)
    assert header(rec, "x-api-key") == KEY
    [span] = res.spans
    assert span.name == "ant/claude-fake" and span.provider == "ant" and span.model == "claude-fake"
    assert span.input["messages"][0]["content"][0]["text"] == marker
    assert span.usage == res.response.usage  # type: ignore[union-attr]
    assert KEY not in msgspec.json.encode(res.spans).decode()


async def test_a_mid_stream_error_event_or_a_cut_connection_fails_the_node(upstream: FakeUpstream) -> None:
    with pytest.raises(UpstreamError) as info:
        await call(upstream, ask("a b c d"), stream=True, model="stream-error")
    assert (info.value.status, info.value.message, info.value.kind) == (529, "Overloaded", "overloaded")
    with pytest.raises(UpstreamError) as info:
        await call(upstream, ask("a b c d"), stream=True, model="drop")
    assert info.value.status == 502 and "127.0.0.1" in info.value.message


async def test_images_go_as_base64_or_url_sources(upstream: FakeUpstream) -> None:
    marker = uuid.uuid4().hex
    req = Request(model="m", messages=[Message(role="user", content=[
        TextPart(f"look {marker}"), ImagePart(data="aGk=", media_type="image/jpeg"),
        ImagePart(url="data:image/png;base64,iVBO"), ImagePart(url="https://example.com/cat.png")])])
    res = await call(upstream, req, stream=False)
    assert res.response is not None and res.response.text() == expected_reply("claude-fake", f"look {marker}", 3)
    content = record_with(upstream, marker)["body"]["messages"][0]["content"]
    assert [b["source"] for b in content[1:]] == [
        {"type": "base64", "media_type": "image/jpeg", "data": "aGk="},
        {"type": "base64", "media_type": "image/png", "data": "iVBO"},
        {"type": "url", "url": "https://example.com/cat.png"}]


async def test_cancelling_a_streaming_node_closes_the_upstream_request(upstream: FakeUpstream) -> None:
    marker = uuid.uuid4().hex
    ctx = await cancel_mid_stream(an.run, node_type="anthropic.messages", config=cfg(upstream, "slow-20+words-500"),
                                  request=ask(marker))
    assert [s.error for s in ctx.spans] == ["cancelled"]
    assert (await disconnected(upstream, marker))["disconnected"] is True


async def test_a_server_that_ignores_the_stream_flag_is_still_streamed_to_the_client(upstream: FakeUpstream) -> None:
    res = await call(upstream, ask("answer at once"), stream=True, model="ignore-stream")
    assert res.response is not None and res.response.text() == expected_reply("ignore-stream", "answer at once")
    assert res.events == response_events(res.response)


async def test_a_schema_goes_in_output_config_beside_the_keys_an_anthropic_client_or_the_workflow_set(
        upstream: FakeUpstream) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    marker = uuid.uuid4().hex
    req = ask(marker, response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
              origin="messages", extra={"output_config": {"format": {"type": "json_schema", "schema": schema},
                                                          "effort": "low", "verbosity": "terse"}})
    await call(upstream, req, stream=False, params={"output_config": {"cache": "on"}})
    assert record_with(upstream, marker)["body"]["output_config"] == {
        "cache": "on", "verbosity": "terse", "format": {"type": "json_schema", "schema": schema}}
    marker = uuid.uuid4().hex  # from an OpenAI client, only the schema crosses over
    await call(upstream, ask(marker, origin="chat", response_format={"type": "json_schema", "json_schema": {
        "name": "n", "schema": schema}}, extra={"output_config": {"verbosity": "terse"}}), stream=False)
    assert record_with(upstream, marker)["body"]["output_config"] == {"format": {"type": "json_schema",
                                                                                 "schema": schema}}
