"""The Chat Completions adapter: golden translations, the official openai SDK reading our output
(non-streamed and through its real stream machinery), requests as the SDK writes them, and
precise errors for malformed input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessageFunctionToolCall
from support_openai_protocol import captured_body, golden_cases, parse_sse, run_golden, sdk_client

from host.protocols import openai_chat
from plugin_sdk.errors import InvalidRequest, NodeError, UpstreamError
from plugin_sdk.types import (
    BlockDelta,
    BlockStart,
    BlockStop,
    Request,
    Response,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    Usage,
    response_events,
)

SSE = "text/event-stream"


def _answer() -> Response:
    return Response(
        id="r1", model="m", stop_reason="tool_use",
        usage=Usage(input_tokens=120, output_tokens=30, cache_read_tokens=100, reasoning_tokens=12),
        content=[ThinkingPart("Need the weather.", signature="sig"), TextPart("Let me check."),
                 ToolCallPart("call_1", "get_weather", '{"city":"Paris"}'),
                 ToolCallPart("call_2", "get_time", '{"tz":"CET"}')],
    )


def _stream_bytes(resp: Response, options: dict[str, object]) -> bytes:
    enc = openai_chat.StreamEncoder("wf", options)
    return b"".join(enc.event(ev) for ev in response_events(resp)) + enc.end()


def _parse(wire: object) -> tuple[Request, dict[str, Any]]:
    return openai_chat.parse_request(json.dumps(wire).encode())


@pytest.mark.parametrize("path", golden_cases("openai_chat"), ids=lambda p: p.stem)
def test_golden_file_matches_what_the_adapter_produces(path: Path) -> None:
    run_golden(path, openai_chat)


# ---- the official SDK reads our output ---------------------------------------------------------


def test_non_streamed_answer_validates_as_an_sdk_chat_completion_with_tool_calls_and_usage() -> None:
    body = openai_chat.render_response(_answer(), "wf", {})
    completion = ChatCompletion.model_validate_json(body)
    msg = completion.choices[0].message
    assert completion.id.startswith("chatcmpl-") and completion.model == "wf"
    assert completion.choices[0].finish_reason == "tool_calls"
    assert msg.content == "Let me check."
    calls = [c for c in msg.tool_calls or [] if isinstance(c, ChatCompletionMessageFunctionToolCall)]
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_1", "get_weather", '{"city":"Paris"}'), ("call_2", "get_time", '{"tz":"CET"}')]
    assert json.loads(body)["choices"][0]["message"]["reasoning_content"] == "Need the weather."
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        120, 30, 150)
    assert completion.usage.prompt_tokens_details and completion.usage.prompt_tokens_details.cached_tokens == 100
    assert completion.usage.completion_tokens_details
    assert completion.usage.completion_tokens_details.reasoning_tokens == 12


def test_answer_with_only_tool_calls_has_null_content() -> None:
    resp = Response(id="r", model="m", stop_reason="tool_use", content=[ToolCallPart("c", "f", "{}")])
    msg = json.loads(openai_chat.render_response(resp, "wf", {}))["choices"][0]["message"]
    assert msg["content"] is None and msg["tool_calls"][0]["id"] == "c"


def test_sdk_client_reads_a_non_streamed_completion_over_http() -> None:
    client = sdk_client(openai_chat.render_response(_answer(), "wf", {}))
    completion = client.chat.completions.create(model="wf", messages=[{"role": "user", "content": "hi"}])
    calls = completion.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls if isinstance(c, ChatCompletionMessageFunctionToolCall)] == [
        "get_weather", "get_time"]


def test_sdk_stream_reassembles_text_tool_calls_and_final_usage_chunk() -> None:
    client = sdk_client(_stream_bytes(_answer(), {"include_usage": True}), content_type=SSE)
    chunks = list(client.chat.completions.create(model="wf", messages=[{"role": "user", "content": "hi"}],
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.id == chunks[0].id for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Let me check."
    args: dict[int, str] = {}
    ids: dict[int, str] = {}
    for c in chunks:
        for call in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            if call.id:
                ids[call.index] = call.id
            args[call.index] = args.get(call.index, "") + (call.function.arguments or "" if call.function else "")
    assert ids == {0: "call_1", 1: "call_2"}
    assert args == {0: '{"city":"Paris"}', 1: '{"tz":"CET"}'}
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["tool_calls"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 150
    assert all(c.usage is None for c in chunks[:-1])


def test_sdk_stream_helper_builds_the_final_completion_from_our_chunks() -> None:
    client = sdk_client(_stream_bytes(_answer(), {}), content_type=SSE)
    with client.chat.completions.stream(model="wf", messages=[{"role": "user", "content": "hi"}]) as stream:
        final = stream.get_final_completion()
    msg = final.choices[0].message
    assert msg.content == "Let me check."
    assert [c.function.arguments for c in msg.tool_calls or []] == ['{"city":"Paris"}', '{"tz":"CET"}']
    assert final.choices[0].finish_reason == "tool_calls"
    assert getattr(msg, "reasoning_content", None) == "Need the weather."


def test_stream_without_include_usage_has_no_usage_fields_and_ends_with_done() -> None:
    data = _stream_bytes(Response(id="r", model="m", content=[TextPart("ok")]), {})
    messages = parse_sse(data)
    assert messages[-1]["data"] == "[DONE]"
    assert all("usage" not in m["data"] for m in messages[:-1])
    assert messages[-2]["data"]["choices"][0]["finish_reason"] == "stop"


def test_mid_stream_error_chunk_raises_api_error_in_the_sdk_with_our_message() -> None:
    enc = openai_chat.StreamEncoder("wf", {})
    data = enc.event(StreamStart("r", "m")) + enc.event(BlockStart(0, TextPart(""))) + enc.event(
        BlockDelta(0, text="Part")) + enc.error(UpstreamError("upstream said no", status=500))
    client = sdk_client(data, content_type=SSE)
    stream = client.chat.completions.create(model="wf", messages=[{"role": "user", "content": "x"}], stream=True)
    text = ""
    with pytest.raises(openai.APIError, match="upstream said no"):
        for chunk in stream:
            text += chunk.choices[0].delta.content or ""
    assert text == "Part"


def test_rate_limit_error_reaches_the_sdk_as_rate_limit_error_with_retry_after() -> None:
    status, body, headers = openai_chat.error_body(UpstreamError("slow down", status=429, retry_after="3"))
    assert headers == {"retry-after": "3"}
    client = sdk_client(body, status=status, headers=headers)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="wf", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 429
    assert info.value.code == "rate_limit_exceeded" and info.value.message.endswith("slow down")
    assert info.value.response.headers["retry-after"] == "3"


def test_unknown_model_error_has_code_model_not_found_and_404() -> None:
    from plugin_sdk.errors import NotFound

    status, body, _ = openai_chat.error_body(NotFound("The model 'x' does not exist", code="model_not_found",
                                                      param="model"))
    client = sdk_client(body, status=status)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="x", messages=[{"role": "user", "content": "x"}])
    assert (info.value.code, info.value.type, info.value.param) == ("model_not_found", "invalid_request_error", "model")


def test_internal_error_body_is_a_server_error_the_sdk_maps_to_internal_server_error() -> None:
    status, body, headers = openai_chat.error_body(NodeError("node 'x' crashed"))
    assert (status, headers) == (500, {})
    client = sdk_client(body, status=status)
    with pytest.raises(openai.InternalServerError, match="node 'x' crashed"):
        client.chat.completions.create(model="wf", messages=[{"role": "user", "content": "x"}])


def test_models_listing_reads_as_sdk_models() -> None:
    client = sdk_client(openai_chat.render_models([("support-bot", 1700000000), ("agent", 1700000001)]))
    models = list(client.models.list())
    assert [(m.id, m.created, m.owned_by, m.object) for m in models] == [
        ("support-bot", 1700000000, "flowbase", "model"), ("agent", 1700000001, "flowbase", "model")]


# ---- requests as the official SDK writes them ---------------------------------------------------


def test_sdk_written_request_with_tools_images_and_history_parses_to_canonical() -> None:
    body = captured_body(lambda c: c.chat.completions.create(
        model="agent",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"png"}'}}]},
            {"role": "tool", "tool_call_id": "call_9", "content": "a PNG header"},
        ],
        tools=[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
        tool_choice="required", max_completion_tokens=50, stream=True, stream_options={"include_usage": True},
        reasoning_effort="low", seed=3,
    ))
    req, options = openai_chat.parse_request(body)
    assert options == {"include_usage": True}
    assert req.stream and req.max_tokens == 50 and req.extra == {"seed": 3}
    assert req.reasoning is not None and req.reasoning.effort == "low"
    assert req.tool_choice is not None and req.tool_choice.mode == "required"
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "tool"]
    image = req.messages[1].content[1]
    assert msgspec.to_builtins(image) == {"type": "image", "data": "iVBORw0KGgo=", "media_type": "image/png"}
    assert req.messages[2].content == [ToolCallPart("call_9", "lookup", '{"q":"png"}')]
    assert req.messages[3].content == [ToolResultPart("call_9", [TextPart("a PNG header")])]


def test_our_answer_fed_back_by_the_sdk_as_history_round_trips() -> None:
    completion = ChatCompletion.model_validate_json(openai_chat.render_response(_answer(), "wf", {}))
    assistant = completion.choices[0].message.model_dump(exclude_none=True)
    body = captured_body(lambda c: c.chat.completions.create(model="wf", messages=[
        {"role": "user", "content": "weather?"}, assistant,  # type: ignore[list-item]
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "10:00"}]))
    req, _ = openai_chat.parse_request(body)
    assert req.messages[1].content == [ThinkingPart("Need the weather."), TextPart("Let me check."),
                                       *_answer().tool_calls()]
    assert [m.content[0] for m in req.messages[2:]] == [ToolResultPart("call_1", [TextPart("sunny")]),
                                                        ToolResultPart("call_2", [TextPart("10:00")])]


# ---- streaming details ------------------------------------------------------------------------


def test_tool_call_deltas_are_keyed_by_ordinal_among_tool_calls_not_block_index() -> None:
    enc = openai_chat.StreamEncoder("wf", {})
    events: list[StreamEvent] = [
        StreamStart("r", "m"), BlockStart(0, ThinkingPart()), BlockStop(0), BlockStart(1, TextPart("")),
        BlockStop(1), BlockStart(5, ToolCallPart("c1", "f", "")), BlockDelta(5, arguments="{}"), BlockStop(5),
        StreamEnd(stop_reason="tool_use")]
    out = b"".join(enc.event(ev) for ev in events)
    calls = [tc for m in parse_sse(out) for tc in m["data"]["choices"][0]["delta"].get("tool_calls", [])]
    assert [c["index"] for c in calls] == [0, 0]
    assert calls[0]["id"] == "c1" and calls[1] == {"index": 0, "function": {"arguments": "{}"}}


def test_first_chunk_is_sent_even_when_the_stream_starts_with_a_block() -> None:
    enc = openai_chat.StreamEncoder("wf", {})
    first = parse_sse(enc.event(BlockStart(0, TextPart("Hi"))))
    assert [m["data"]["choices"][0]["delta"] for m in first] == [{"role": "assistant", "content": ""},
                                                                 {"content": "Hi"}]


def test_deltas_for_unknown_blocks_and_empty_deltas_produce_no_bytes() -> None:
    enc = openai_chat.StreamEncoder("wf", {})
    enc.event(StreamStart("r", "m"))
    assert enc.event(BlockDelta(3, text="lost")) == b""
    enc.event(BlockStart(0, TextPart("")))
    assert enc.event(BlockDelta(0, text="")) == b""
    assert enc.event(BlockStop(0)) == b""


# ---- sessions --------------------------------------------------------------------------------


def test_session_id_prefers_flowbase_header_then_session_headers_then_metadata_then_user() -> None:
    req, opts = _parse({"model": "m", "messages": [{"role": "user", "content": "x"}], "user": "u1",
                        "metadata": {"session_id": "meta-1"}})
    assert openai_chat.session_id({"x-flowbase-session": "fb", "session-id": "s"}, req, opts) == "fb"
    assert openai_chat.session_id({"x-session-id": "xs"}, req, opts) == "xs"
    assert openai_chat.session_id({}, req, opts) == "meta-1"
    req2, opts2 = _parse({"model": "m", "messages": [{"role": "user", "content": "x"}], "user": "u1"})
    assert openai_chat.session_id({}, req2, opts2) == "u1"
    req3, opts3 = _parse({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert openai_chat.session_id({}, req3, opts3) is None


def test_session_id_reads_starlette_style_case_insensitive_headers() -> None:
    req, opts = _parse({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    headers = httpx2.Headers({"Session-Id": "abc"})
    assert openai_chat.session_id(headers, req, opts) == "abc"


# ---- malformed input ----------------------------------------------------------------------------

MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(("body", "message", "param"), [
    (b"", "request body is empty: expected a JSON object", None),
    (b"{not json", "request body is not valid JSON", None),
    (b"[1, 2]", "request body: expected a JSON object, got an array", None),
    (json.dumps({"messages": MSG}).encode(), "model: required field is missing", "model"),
    (json.dumps({"model": 3, "messages": MSG}).encode(), "model: expected a string, got a number", "model"),
    (json.dumps({"model": "m"}).encode(), "messages: required field is missing", "messages"),
    (json.dumps({"model": "m", "messages": {}}).encode(), "messages: expected an array, got an object", "messages"),
    (json.dumps({"model": "m", "messages": []}).encode(), "messages: expected at least one message", "messages"),
    (json.dumps({"model": "m", "messages": ["hi"]}).encode(), "messages[0]: expected a message object, got a string",
     "messages[0]"),
    (json.dumps({"model": "m", "messages": [*MSG, *MSG, {"role": "user", "content": 5}]}).encode(),
     "messages[2].content: expected a string or an array of content parts, got a number", "messages[2].content"),
    (json.dumps({"model": "m", "messages": [{"role": "robot", "content": "x"}]}).encode(),
     "messages[0].role: expected one of system, developer, user, assistant, tool, got 'robot'", "messages[0].role"),
    (json.dumps({"model": "m", "messages": [{"content": "x"}]}).encode(),
     "messages[0].role: required field is missing", "messages[0].role"),
    (json.dumps({"model": "m", "messages": [{"role": "user"}]}).encode(),
     "messages[0].content: required field is missing", "messages[0].content"),
    (json.dumps({"model": "m", "messages": [{"role": "tool", "content": "x"}]}).encode(),
     "messages[0].tool_call_id: required field is missing", "messages[0].tool_call_id"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio",
                                                                          "input_audio": {}}]}]}).encode(),
     "messages[0].content[0]: content parts of type 'input_audio' are not supported", "messages[0].content[0]"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": [{"type": "video"}]}]}).encode(),
     "messages[0].content[0].type: unknown content part type 'video'", "messages[0].content[0].type"),
    (json.dumps({"model": "m", "messages": [{"role": "system", "content": [
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}).encode(),
     "messages[0].content[0]: image parts are only allowed in user and tool messages", "messages[0].content[0]"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]}]}).encode(),
     "messages[0].content[0].image_url.url: a data URL must be base64", "messages[0].content[0].image_url.url"),
    (json.dumps({"model": "m", "messages": [{"role": "assistant"}]}).encode(),
     "messages[0]: an assistant message needs content or tool_calls", "messages[0].content"),
    (json.dumps({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                                                                  "function": {"arguments": "{}"}}]}]}
                ).encode(),
     "messages[0].tool_calls[0].function.name: required field is missing", "messages[0].tool_calls[0].function.name"),
    (json.dumps({"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]}).encode(),
     "messages[0].role: legacy 'function' messages are not supported", "messages[0].role"),
    (json.dumps({"model": "m", "messages": MSG, "n": 2}).encode(), "n: only n=1 is supported, got 2", "n"),
    (json.dumps({"model": "m", "messages": MSG, "temperature": "hot"}).encode(),
     "temperature: expected a number, got a string", "temperature"),
    (json.dumps({"model": "m", "messages": MSG, "max_tokens": 1.5}).encode(),
     "max_tokens: expected an integer, got a number", "max_tokens"),
    (json.dumps({"model": "m", "messages": MSG, "stop": ["a", 1]}).encode(),
     "stop: expected a string or an array of strings, got an array", "stop"),
    (json.dumps({"model": "m", "messages": MSG, "stream": "yes"}).encode(),
     "stream: expected a boolean, got a string", "stream"),
    (json.dumps({"model": "m", "messages": MSG, "seed": "x"}).encode(), "seed: expected an integer, got a string",
     "seed"),
    (json.dumps({"model": "m", "messages": MSG, "tools": [{"type": "function"}]}).encode(),
     "tools[0].function: required field is missing", "tools[0].function"),
    (json.dumps({"model": "m", "messages": MSG, "tools": [{"type": "function", "function": {"name": "f",
                                                                                          "parameters": []}}]}
                ).encode(),
     "tools[0].function.parameters: expected an object, got an array", "tools[0].function.parameters"),
    (json.dumps({"model": "m", "messages": MSG, "tool_choice": "always"}).encode(),
     "tool_choice: expected 'auto', 'none', 'required' or an object naming a function, got 'always'", "tool_choice"),
    (json.dumps({"model": "m", "messages": MSG, "tool_choice": {"type": "function", "function": {}}}).encode(),
     "tool_choice.function.name: required field is missing", "tool_choice.function.name"),
    (json.dumps({"model": "m", "messages": MSG, "stream": True, "stream_options": {"include_usage": 1}}).encode(),
     "stream_options.include_usage: expected a boolean, got a number", "stream_options.include_usage"),
])
def test_malformed_request_is_rejected_with_a_precise_message_and_param(body: bytes, message: str,
                                                                         param: str | None) -> None:
    with pytest.raises(InvalidRequest) as info:
        openai_chat.parse_request(body)
    assert info.value.message.startswith(message), info.value.message
    assert info.value.param == param
    assert info.value.status == 400


def test_unknown_tool_types_and_tool_choice_shapes_are_kept_not_rejected() -> None:
    req, _ = _parse({"model": "m", "messages": MSG,
                     "tools": [{"type": "web_search_preview", "search_context_size": "low"}],
                     "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": []}}})
    assert req.tools[0].kind == "web_search_preview" and req.tools[0].name == "web_search_preview"
    assert req.tools[0].raw == {"type": "web_search_preview", "search_context_size": "low"}
    assert req.tool_choice is not None and req.tool_choice.mode == "required"
    assert req.extra["tool_choice"]["type"] == "allowed_tools"


def test_integral_float_is_accepted_where_an_integer_is_expected() -> None:
    req, _ = _parse({"model": "m", "messages": MSG, "max_tokens": 100.0})
    assert req.max_tokens == 100 and isinstance(req.max_tokens, int)


def test_reasoning_effort_none_disables_reasoning() -> None:
    req, _ = _parse({"model": "m", "messages": MSG, "reasoning_effort": "none"})
    assert req.reasoning is not None and not req.reasoning.enabled


def test_error_in_chunk_stream_matches_openai_error_object() -> None:
    enc = openai_chat.StreamEncoder("wf", {})
    [msg] = parse_sse(enc.error(InvalidRequest("bad tool output", param="tools[0]")))
    assert msg["data"] == {"error": {"message": "bad tool output", "type": "invalid_request_error",
                                     "param": "tools[0]", "code": None}}


def test_text_part_cache_control_hint_is_passed_through() -> None:
    req, _ = _parse({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "long doc", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "q"}]}]})
    assert req.messages[0].content == [TextPart("long doc", {"type": "ephemeral"}), TextPart("q")]
