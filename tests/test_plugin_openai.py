"""The openai.chat node against the fake upstream (a real HTTP server in a subprocess)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from fake_upstream import OPENAI_ERRORS, expected_reply, expected_tool_reply, filler, plausible_args, thinking_for
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
    BlockStop,
    ImagePart,
    Message,
    Reasoning,
    Request,
    StreamEnd,
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
from plugins.openai_compat import node as oa

SPEC = load_manifest(Path(__file__).resolve().parent.parent / "manifests" / "openai_compat.yaml").node_types["openai.chat"]
upstream = upstream_fixture()
KEY = "sk-test-openai-0123456789"


@pytest_asyncio.fixture(scope="module", loop_scope="session", autouse=True)
async def close_sessions() -> AsyncIterator[None]:
    yield
    await oa.close()


def cfg(up: FakeUpstream, model: str = "small", **kw: Any) -> dict[str, Any]:
    return {"model": model, "base_url": up.openai_base_url, "api_key": KEY, "provider": "up", **kw}


async def call(up: FakeUpstream, req: Request, *, stream: bool, model: str = "small", **kw: Any) -> NodeRun:
    return await run_node(oa.run, config=cfg(up, model, **kw), request=req, stream=stream, validate_with=SPEC,
                          node_type="openai.chat")


@pytest.mark.parametrize("stream", [False, True])
async def test_a_plain_question_is_sent_as_the_config_model_and_the_answer_comes_back(upstream: FakeUpstream,
                                                                                      stream: bool) -> None:
    marker = uuid.uuid4().hex
    res = await call(upstream, ask(f"hello {marker}"), stream=stream)
    assert res.response is not None
    assert res.response.text() == expected_reply("small", f"hello {marker}")
    assert res.output["text"] == res.response.text() and res.output["stop_reason"] == "end_turn"
    assert res.response.usage.input_tokens > 0 and res.response.usage.output_tokens > 0
    rec = record_with(upstream, marker)
    assert rec["body"]["model"] == "small"
    assert rec["body"]["messages"] == [{"role": "user", "content": f"hello {marker}"}]
    assert rec["body"].get("stream", False) is stream
    if stream:
        assert rec["body"]["stream_options"] == {"include_usage": True}


async def test_a_streamed_answer_arrives_word_by_word_as_canonical_events(upstream: FakeUpstream) -> None:
    res = await call(upstream, ask("one two three four"), stream=True)
    ev = res.events
    assert isinstance(ev[0], StreamStart) and ev[0].model == "small"
    assert ev[1] == BlockStart(0, TextPart(""))
    deltas = [e.text for e in ev if isinstance(e, BlockDelta)]
    assert deltas == ["[small] ", "one ", "two ", "three ", "four"]
    assert ev[-2] == BlockStop(0)
    assert isinstance(ev[-1], StreamEnd) and ev[-1].usage == res.response.usage  # type: ignore[union-attr]
    assert res.response is not None and res.response.usage.output_tokens == 5
    assert folded(ev) == res.response


@pytest.mark.parametrize("stream", [False, True])
async def test_a_tool_call_comes_back_and_its_result_goes_back_upstream(upstream: FakeUpstream, stream: bool) -> None:
    marker = uuid.uuid4().hex
    builtin = Tool(name="web_search", kind="web_search", raw={"type": "web_search_preview"})
    req = ask(f"read the file {marker}", tools=[READ_TOOL, builtin], tool_choice=ToolChoice(mode="auto"),
              parallel_tool_calls=False)
    res = await call(upstream, req, stream=stream, model="tool-call")
    assert res.response is not None and res.response.stop_reason == "tool_use"
    [tc] = res.response.tool_calls()
    assert tc.name == "Read" and tc.id.startswith("call_")
    assert json.loads(tc.arguments) == plausible_args(READ_TOOL.parameters, f"read the file {marker}")
    assert res.output["tool_calls"] == [{"id": tc.id, "name": "Read", "arguments": tc.arguments}]
    body = record_with(upstream, marker)["body"]
    assert [t["function"]["name"] for t in body["tools"]] == ["Read"]  # the built-in tool is not sent
    assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is False
    if stream:
        starts = [e for e in res.events if isinstance(e, BlockStart)]
        assert starts == [BlockStart(0, ToolCallPart(id=tc.id, name="Read"))]
        assert len([e for e in res.events if isinstance(e, BlockDelta) and e.arguments]) > 1

    marker2 = uuid.uuid4().hex
    follow = Request(model="client-model", tools=[READ_TOOL], messages=[
        *req.messages, Message(role="assistant", content=[tc]),
        Message(role="tool", content=[ToolResultPart(tool_call_id=tc.id, content=[TextPart(f"contents {marker2}")])]),
    ])
    res2 = await call(upstream, follow, stream=stream, model="tool-call")
    assert res2.response is not None
    assert res2.response.text() == expected_tool_reply("tool-call", "Read", f"contents {marker2}")
    msgs = record_with(upstream, marker2)["body"]["messages"]
    assert msgs[1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": tc.id, "type": "function", "function": {"name": "Read", "arguments": tc.arguments}}]}
    assert msgs[2] == {"role": "tool", "tool_call_id": tc.id, "content": f"contents {marker2}"}


@pytest.mark.parametrize("stream", [False, True])
async def test_cached_prompt_tokens_are_reported_as_cache_reads_within_the_input(upstream: FakeUpstream,
                                                                               stream: bool) -> None:
    res = await call(upstream, ask("a long shared prefix " * 20), stream=stream, model="cached")
    assert res.response is not None
    u = res.response.usage
    assert u.input_tokens > 0 and u.cache_read_tokens == u.input_tokens // 2


@pytest.mark.parametrize("stream", [False, True])
async def test_reasoning_content_becomes_a_thinking_block_with_reasoning_tokens(upstream: FakeUpstream,
                                                                              stream: bool) -> None:
    marker = uuid.uuid4().hex
    req = ask(f"think {marker}", reasoning=Reasoning(effort="high"))
    res = await call(upstream, req, stream=stream, model="thinking")
    assert res.response is not None
    thinking, text = res.response.content
    assert thinking == ThinkingPart(text=thinking_for(f"think {marker}"))
    assert text == TextPart(expected_reply("thinking", f"think {marker}"))
    assert res.response.usage.reasoning_tokens > 0
    assert record_with(upstream, marker)["body"]["reasoning_effort"] == "high"
    if stream:
        assert [e for e in res.events if isinstance(e, BlockStart)] == [BlockStart(0, ThinkingPart()),
                                                                         BlockStart(1, TextPart(""))]
        assert folded(res.events) == res.response


async def test_config_params_are_defaults_the_client_overrides_and_max_tokens_cuts_the_answer(
        upstream: FakeUpstream) -> None:
    marker = uuid.uuid4().hex
    req = ask(f"{marker} a b c d e f g", temperature=0.7, extra={"seed": 7, "model": "not-this"})
    res = await call(upstream, req, stream=True, params={"temperature": 0.1, "max_tokens": 3, "top_p": 0.5})
    body = record_with(upstream, marker)["body"]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0.7, 0.5, 3, 7)
    assert body["model"] == "small"
    assert res.response is not None and res.response.stop_reason == "max_tokens"
    assert res.response.text() == f"[small] {marker} a "

    marker = uuid.uuid4().hex
    await call(upstream, ask(marker, max_tokens=9), stream=False, max_tokens_field="max_completion_tokens",
               params={"max_tokens": 4})
    body = record_with(upstream, marker)["body"]
    assert body["max_completion_tokens"] == 9 and "max_tokens" not in body


async def test_system_developer_and_image_messages_take_the_chat_completions_shapes(upstream: FakeUpstream) -> None:
    marker = uuid.uuid4().hex
    req = Request(model="m", messages=[
        text_message("system", "be brief"), text_message("developer", "use French"),
        Message(role="user", content=[TextPart(f"what is this {marker}"), ImagePart(data="aGk=", media_type="image/jpeg"),
                                      ImagePart(url="https://example.com/cat.png", detail="low")]),
    ])
    res = await call(upstream, req, stream=False)
    assert res.response is not None
    assert res.response.text() == expected_reply("small", f"what is this {marker}", images=2)
    msgs = record_with(upstream, marker)["body"]["messages"]
    assert msgs[0] == {"role": "system", "content": "be brief"}
    assert msgs[1] == {"role": "system", "content": "use French"}
    assert msgs[2]["content"] == [
        {"type": "text", "text": f"what is this {marker}"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,aGk="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
    ]
    marker = uuid.uuid4().hex
    req = Request(model="m", messages=[text_message("developer", "dev"), text_message("user", marker)])
    await call(upstream, req, stream=False, developer_role="developer")
    assert record_with(upstream, marker)["body"]["messages"][0] == {"role": "developer", "content": "dev"}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("status", "code", "retry_after"), [(429, "rate_limit_exceeded", "20"),
                                                             (500, "server_error", None),
                                                             (400, "invalid_request_error", None)])
async def test_upstream_errors_keep_their_status_message_and_retry_after(
        upstream: FakeUpstream, stream: bool, status: int, code: str, retry_after: str | None) -> None:
    with pytest.raises(UpstreamError) as info:
        await call(upstream, ask("hi"), stream=stream, model=f"error-{status}")
    err = info.value
    assert (err.status, err.message, err.retry_after, err.code) == (status, OPENAI_ERRORS[status][0], retry_after, code)
    spans = err.spans  # type: ignore[attr-defined]
    assert [s.kind for s in spans] == ["model_call"] and spans[0].error == err.message
    assert spans[0].name == "up/error-" + str(status)


async def test_a_refused_connection_is_a_502_naming_the_host_but_not_the_key() -> None:
    with refused_port() as port:
        config = {"model": "m", "base_url": f"http://127.0.0.1:{port}/v1", "api_key": KEY}
        with pytest.raises(UpstreamError) as info:
            await run_node(oa.run, config=config, request=ask("hi"), stream=True)
    assert info.value.status == 502
    assert f"127.0.0.1:{port}" in info.value.message and KEY not in info.value.message
    assert KEY not in msgspec.json.encode(info.value.spans).decode()  # type: ignore[attr-defined]


async def test_the_api_key_reaches_the_upstream_but_never_the_spans(upstream: FakeUpstream) -> None:
    marker = uuid.uuid4().hex
    res = await call(upstream, ask(marker), stream=True, headers={"X-Team": "blue"})
    rec = record_with(upstream, marker)
    assert header(rec, "authorization") == f"Bearer {KEY}" and header(rec, "x-team") == "blue"
    [span] = res.spans
    assert span.kind == "model_call" and span.name == "up/small" and span.model == "small" and span.provider == "up"
    assert span.input["messages"][0]["content"] == marker and span.usage == res.response.usage  # type: ignore[union-attr]
    assert span.output["content"][0]["text"] == expected_reply("small", marker)
    assert KEY not in msgspec.json.encode(res.spans).decode()


async def test_a_mid_stream_error_or_a_cut_connection_fails_the_node(upstream: FakeUpstream) -> None:
    with pytest.raises(UpstreamError) as info:
        await call(upstream, ask("a b c d e"), stream=True, model="stream-error")
    assert info.value.status == 500 and info.value.message == OPENAI_ERRORS[500][0]
    with pytest.raises(UpstreamError) as info:
        await call(upstream, ask("a b c d e"), stream=True, model="drop")
    assert info.value.status == 502 and "127.0.0.1" in info.value.message


async def test_an_upstream_silent_past_timeout_s_is_a_504(upstream: FakeUpstream) -> None:
    with pytest.raises(UpstreamError) as info:
        await call(upstream, ask("anyone?"), stream=False, model="hang", timeout_s=0.2)
    assert info.value.status == 504 and "did not answer within 0.2 s" in info.value.message


async def test_cancelling_a_streaming_node_closes_the_upstream_request(upstream: FakeUpstream) -> None:
    marker = uuid.uuid4().hex
    ctx = await cancel_mid_stream(oa.run, node_type="openai.chat", config=cfg(upstream, "slow-20+words-500"),
                                  request=ask(marker))
    assert [s.error for s in ctx.spans] == ["cancelled"]
    rec = await disconnected(upstream, marker)
    assert rec["disconnected"] is True


async def test_concurrent_streams_share_one_pool_whose_connections_are_kept_alive(upstream: FakeUpstream) -> None:
    marker = uuid.uuid4().hex
    results = await asyncio.gather(*(call(upstream, ask(f"{marker} {i}"), stream=True, model="words-20")
                                     for i in range(50)))
    assert all(r.response is not None and r.response.text() == filler("words-20", 20) for r in results)
    first = {r["peer"] for r in upstream.requests() if marker in json.dumps(r["body"])}
    marker = uuid.uuid4().hex
    for i in range(5):
        await call(upstream, ask(f"{marker} {i}"), stream=True)
    again = {r["peer"] for r in upstream.requests() if marker in json.dumps(r["body"])}
    assert again <= first  # sequential requests went over connections the pool kept open


async def test_a_server_that_ignores_the_stream_flag_is_still_streamed_to_the_client(upstream: FakeUpstream) -> None:
    res = await call(upstream, ask("answer at once"), stream=True, model="ignore-stream")
    assert res.response is not None and res.response.text() == expected_reply("ignore-stream", "answer at once")
    assert res.events == response_events(res.response)
