"""The Responses API adapter: golden translations, the official openai SDK reading our output
(non-streamed, ``responses.create(stream=True)`` and ``responses.stream().get_final_response()``),
what Codex's SSE reader relies on, requests as the SDK writes them, and malformed input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from openai.types.responses import (
    Response as SdkResponse,
)
from openai.types.responses import (
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseFunctionToolCall,
    ResponseIncompleteEvent,
    ResponseOutputMessage,
    ResponseReasoningItem,
)
from support_openai_protocol import captured_body, golden_cases, parse_sse, run_golden, sdk_client

from host.protocols import openai_responses
from plugin_sdk.errors import InvalidRequest, UpstreamError
from plugin_sdk.types import (
    BlockDelta,
    BlockStart,
    ImagePart,
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
TOOLS: list[Any] = [{"type": "function", "name": "get_weather", "description": "weather", "strict": True,
                     "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                    "required": ["city"], "additionalProperties": False}}]


def _answer(stop: Any = "tool_use") -> Response:
    return Response(
        id="r1", model="m", stop_reason=stop,
        usage=Usage(input_tokens=300, output_tokens=40, cache_read_tokens=256, reasoning_tokens=16),
        content=[ThinkingPart("Check the weather.", signature="sig/+=="), TextPart("Looking it up."),
                 ToolCallPart("call_1", "get_weather", '{"city":"Paris"}')],
    )


def _stream(events: list[StreamEvent], options: dict[str, Any] | None = None) -> bytes:
    enc = openai_responses.StreamEncoder("wf", options or {})
    return b"".join(enc.event(ev) for ev in events) + enc.end()


def _parse(wire: dict[str, Any]) -> tuple[Request, dict[str, Any]]:
    return openai_responses.parse_request(json.dumps(wire).encode())


@pytest.mark.parametrize("path", golden_cases("openai_responses"), ids=lambda p: p.stem)
def test_golden_file_matches_what_the_adapter_produces(path: Path) -> None:
    run_golden(path, openai_responses)


# ---- the official SDK reads our output ---------------------------------------------------------


def test_non_streamed_answer_validates_as_an_sdk_response_with_reasoning_message_and_call() -> None:
    options = {"echo": {"tools": TOOLS, "tool_choice": "auto"}, "instructions": "Be brief."}
    resp = SdkResponse.model_validate_json(openai_responses.render_response(_answer(), "wf", options))
    assert resp.status == "completed" and resp.model == "wf" and resp.id.startswith("resp_")
    assert resp.instructions == "Be brief." and resp.tools[0].type == "function"
    reasoning, message, call = resp.output
    assert isinstance(reasoning, ResponseReasoningItem) and reasoning.id.startswith("rs_")
    assert [s.text for s in reasoning.summary] == ["Check the weather."]
    assert reasoning.encrypted_content == "sig/+=="
    assert isinstance(message, ResponseOutputMessage) and message.id.startswith("msg_")
    assert resp.output_text == "Looking it up."
    assert isinstance(call, ResponseFunctionToolCall) and call.id and call.id.startswith("fc_")
    assert (call.call_id, call.name, call.arguments, call.status) == ("call_1", "get_weather", '{"city":"Paris"}',
                                                                      "completed")
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.total_tokens) == (300, 40, 340)
    assert resp.usage.input_tokens_details.cached_tokens == 256
    assert resp.usage.output_tokens_details.reasoning_tokens == 16


def test_answer_cut_by_max_tokens_is_incomplete_with_reason_max_output_tokens() -> None:
    resp = SdkResponse.model_validate_json(
        openai_responses.render_response(_answer("max_tokens"), "wf", {}))
    assert resp.status == "incomplete"
    assert resp.incomplete_details is not None and resp.incomplete_details.reason == "max_output_tokens"


def test_sdk_client_reads_a_non_streamed_response_over_http() -> None:
    client = sdk_client(openai_responses.render_response(_answer(), "wf", {}))
    resp = client.responses.create(model="wf", input="weather in Paris?")
    assert resp.output_text == "Looking it up."


def test_sdk_raw_stream_yields_typed_events_in_openai_order_with_increasing_sequence_numbers() -> None:
    client = sdk_client(_stream(response_events(_answer())), content_type=SSE)
    events = list(client.responses.create(model="wf", input="hi", stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    for e in events:  # every event parsed into its own SDK model, not a generic fallback
        assert type(e).__name__ != "BaseModel" and type(e).model_fields["type"].annotation is not str
    opened: dict[int, str] = {}
    for e in events:
        if e.type == "response.output_item.added":
            assert e.item.id is not None
            opened[e.output_index] = e.item.id
        elif hasattr(e, "output_index") and hasattr(e, "item_id"):
            assert opened[e.output_index] == e.item_id, f"{e.type} before its item was added"
    assert types.count("response.output_item.added") == types.count("response.output_item.done") == 3


def test_sdk_stream_helper_builds_the_final_response_from_our_events() -> None:
    client = sdk_client(_stream(response_events(_answer()), {"echo": {"tools": TOOLS}}), content_type=SSE)
    with client.responses.stream(model="wf", input="hi", tools=TOOLS) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "Looking it up."
    reasoning, _, call = final.output
    assert isinstance(reasoning, ResponseReasoningItem) and reasoning.encrypted_content == "sig/+=="
    assert reasoning.summary[0].text == "Check the weather."
    assert call.type == "function_call" and call.arguments == '{"city":"Paris"}'
    assert call.parsed_arguments == {"city": "Paris"}  # the SDK parsed it against the strict tool
    assert final.usage is not None and final.usage.total_tokens == 340


def test_incomplete_stream_ends_with_response_incomplete_that_the_sdk_reports() -> None:
    client = sdk_client(_stream(response_events(_answer("max_tokens"))), content_type=SSE)
    events = list(client.responses.create(model="wf", input="hi", stream=True))
    last = events[-1]
    assert isinstance(last, ResponseIncompleteEvent)
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"
    assert len(last.response.output) == 3 and last.response.usage is not None


def test_mid_stream_failure_reaches_the_sdk_as_error_and_response_failed_events() -> None:
    enc = openai_responses.StreamEncoder("wf", {})
    ours: list[StreamEvent] = [StreamStart("r", "m"), BlockStart(0, TextPart("")), BlockDelta(0, text="Part")]
    data = b"".join(enc.event(ev) for ev in ours)
    data += enc.error(UpstreamError("Rate limit reached. Please try again in 2s.", status=429))
    client = sdk_client(data, content_type=SSE)
    events = list(client.responses.create(model="wf", input="hi", stream=True))
    error, failed = events[-2:]
    assert isinstance(error, ResponseErrorEvent) and error.code == "rate_limit_exceeded"
    assert isinstance(failed, ResponseFailedEvent) and failed.response.status == "failed"
    assert failed.response.error is not None and failed.response.error.code == "rate_limit_exceeded"
    assert failed.response.error.message.startswith("Rate limit reached")
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_events_after_the_end_or_an_error_produce_nothing() -> None:
    enc = openai_responses.StreamEncoder("wf", {})
    enc.event(StreamStart("r", "m"))
    enc.event(StreamEnd())
    assert enc.event(BlockStart(0, TextPart("late"))) == b""
    assert enc.error(UpstreamError("late", status=500)) == b""
    assert enc.end() == b""


# ---- what Codex's SSE reader relies on ------------------------------------------------------


def test_stream_carries_the_fields_codex_reads() -> None:
    messages = parse_sse(_stream(response_events(_answer())))
    for m in messages:  # Codex dispatches on the data's type; the SSE event name must agree
        assert m["event"] == m["data"]["type"]
    done = [m["data"]["item"] for m in messages if m["event"] == "response.output_item.done"]
    assert done[0]["type"] == "reasoning" and done[0]["summary"] == [{"type": "summary_text",
                                                                       "text": "Check the weather."}]
    assert done[0]["encrypted_content"] == "sig/+=="
    assert done[1]["role"] == "assistant" and done[1]["content"][0]["type"] == "output_text"
    assert {k: done[2][k] for k in ("name", "arguments", "call_id")} == {
        "name": "get_weather", "arguments": '{"city":"Paris"}', "call_id": "call_1"}
    summary_deltas = [m["data"] for m in messages if m["event"] == "response.reasoning_summary_text.delta"]
    assert all(d["summary_index"] == 0 for d in summary_deltas)
    completed = messages[-1]["data"]["response"]
    usage = completed["usage"]
    assert completed["id"].startswith("resp_")
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (300, 40, 340)
    assert usage["input_tokens_details"]["cached_tokens"] == 256
    assert usage["output_tokens_details"]["reasoning_tokens"] == 16


def test_response_created_has_an_empty_output_and_the_same_id_as_completed() -> None:
    messages = parse_sse(_stream(response_events(_answer())))
    created, completed = messages[0]["data"]["response"], messages[-1]["data"]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    assert created["id"] == completed["id"]


# ---- requests as the official SDK writes them, and our output fed back ---------------------------


def test_sdk_written_request_parses_to_canonical_with_options() -> None:
    body = captured_body(lambda c: c.responses.create(
        model="agent", instructions="Be brief.", input=[
            {"role": "user", "content": [{"type": "input_text", "text": "Hi"},
                                         {"type": "input_image", "image_url": "https://x.test/a.png",
                                          "detail": "auto"}]}],
        tools=TOOLS, tool_choice={"type": "function", "name": "get_weather"}, max_output_tokens=99,
        reasoning={"effort": "low", "summary": "concise"}, store=False, previous_response_id="resp_prev",
        include=["reasoning.encrypted_content"], prompt_cache_key="pck", metadata={"k": "v"}, stream=True,
        text={"format": {"type": "json_object"}},
    ))
    req, options = openai_responses.parse_request(body)
    assert [m.role for m in req.messages] == ["system", "user"]
    assert req.messages[1].content[1] == ImagePart(url="https://x.test/a.png", detail="auto")
    assert req.tools[0].name == "get_weather" and req.tools[0].strict is True
    assert req.tool_choice is not None and (req.tool_choice.mode, req.tool_choice.name) == ("tool", "get_weather")
    assert req.max_tokens == 99 and req.stream and req.metadata == {"k": "v"}
    assert req.reasoning is not None and (req.reasoning.effort, req.reasoning.summary) == ("low", "concise")
    assert req.response_format == {"type": "json_object"}
    assert req.extra == {"prompt_cache_key": "pck"}
    assert options["previous_response_id"] == "resp_prev" and options["store"] is False
    assert options["include"] == ["reasoning.encrypted_content"] and options["instructions"] == "Be brief."
    assert options["echo"]["tools"] == TOOLS and options["echo"]["max_output_tokens"] == 99


def test_our_output_items_sent_back_as_input_round_trip_to_the_same_canonical_parts() -> None:
    client = sdk_client(_stream(response_events(_answer())), content_type=SSE)
    with client.responses.stream(model="wf", input="weather?") as stream:
        final = stream.get_final_response()
    history: list[Any] = [{"role": "user", "content": "weather?"},
                          *[item.model_dump(exclude_none=True) for item in final.output],
                          {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}]
    for item in history[1:-1]:  # what the SDK's own types would not accept as input
        item.pop("parsed_arguments", None)
        for part in item.get("content", []):
            part.pop("parsed", None)
    body = captured_body(lambda c: c.responses.create(model="wf", input=history))
    req, _ = openai_responses.parse_request(body)
    assert [m.role for m in req.messages] == ["user", "assistant", "tool"]
    assert req.messages[1].content == _answer().content  # thinking signature byte-exact, one assistant turn
    assert req.messages[2].content == [ToolResultPart("call_1", [TextPart("sunny")])]


def test_redacted_thinking_round_trips_through_encrypted_content() -> None:
    resp = Response(id="r", model="m", content=[ThinkingPart(redacted_data="opaque=="), TextPart("ok")])
    item = json.loads(openai_responses.render_response(resp, "wf", {}))["output"][0]
    assert item["encrypted_content"] == openai_responses.REDACTED_PREFIX + "opaque=="
    req, _ = _parse({"model": "wf", "input": [item]})
    assert req.messages[0].content == [ThinkingPart(redacted_data="opaque==")]


# ---- input mapping details --------------------------------------------------------------------


def test_consecutive_assistant_items_fold_into_one_turn_and_other_items_split_turns() -> None:
    req, _ = _parse({"model": "wf", "input": [
        {"type": "message", "role": "user", "content": "a"},
        {"type": "reasoning", "id": "rs", "summary": []},
        {"type": "message", "role": "assistant", "content": "b"},
        {"type": "web_search_call", "id": "ws", "status": "completed"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "function_call_output", "call_id": "c1", "output": "x"},
        {"type": "custom_tool_call_output", "call_id": "c2", "output": "patched"},
        {"type": "local_shell_call", "call_id": "c3", "status": "completed",
         "action": {"type": "exec", "command": ["ls"]}},
        {"role": "user", "content": "next"}]})
    assert [m.role for m in req.messages] == ["user", "assistant", "tool", "tool", "assistant", "user"]
    assert req.messages[1].content == [ThinkingPart(), TextPart("b"), ToolCallPart("c1", "f", "{}"),
                                       ToolCallPart("c2", "apply_patch", "*** Begin Patch")]
    assert req.messages[4].content == [ToolCallPart("c3", "local_shell", '{"type":"exec","command":["ls"]}')]


def test_unknown_tool_kinds_are_kept_with_their_definition() -> None:
    tools = [{"type": "mcp", "server_label": "x", "server_url": "https://mcp.test"},
             {"type": "file_search", "vector_store_ids": ["vs"]},
             {"type": "namespace", "name": "crm", "description": "d", "tools": []}]
    req, opts = _parse({"model": "wf", "input": "hi", "tools": tools,
                        "tool_choice": {"type": "allowed_tools", "mode": "required", "tools": []}})
    assert [(t.kind, t.name, t.raw) for t in req.tools] == [("mcp", "mcp", tools[0]),
                                                            ("file_search", "file_search", tools[1]),
                                                            ("namespace", "crm", tools[2])]
    assert req.tool_choice is not None and req.tool_choice.mode == "required"
    assert req.extra["tool_choice"]["type"] == "allowed_tools"
    assert opts["echo"]["tools"] == tools


def test_input_may_be_omitted_when_continuing_a_previous_response() -> None:
    req, opts = _parse({"model": "wf", "previous_response_id": "resp_1", "instructions": "sys"})
    assert [m.role for m in req.messages] == ["system"] and opts["previous_response_id"] == "resp_1"


def test_reasoning_effort_none_disables_reasoning_and_empty_reasoning_is_ignored() -> None:
    req, _ = _parse({"model": "wf", "input": "x", "reasoning": {"effort": "none"}})
    assert req.reasoning is not None and not req.reasoning.enabled
    req2, _ = _parse({"model": "wf", "input": "x", "reasoning": {}})
    assert req2.reasoning is None


# ---- sessions --------------------------------------------------------------------------------


def test_session_id_follows_headers_then_metadata_then_conversation_then_prompt_cache_key() -> None:
    req, opts = _parse({"model": "wf", "input": "x", "metadata": {"session_id": "meta"},
                        "conversation": "conv_1", "prompt_cache_key": "pck"})
    sid = openai_responses.session_id
    assert sid({"x-flowbase-session": "fb", "session-id": "s"}, req, opts) == "fb"
    assert sid({"session-id": "codex-new", "thread-id": "t"}, req, opts) == "codex-new"
    assert sid({"session_id": "codex-old", "conversation_id": "c"}, req, opts) == "codex-old"
    assert sid({}, req, opts) == "meta"
    req2, opts2 = _parse({"model": "wf", "input": "x", "conversation": {"id": "conv_2"}, "prompt_cache_key": "pck"})
    assert sid({}, req2, opts2) == "conv_2"
    req3, opts3 = _parse({"model": "wf", "input": "x", "prompt_cache_key": "pck"})
    assert sid({}, req3, opts3) == "pck"
    req4, opts4 = _parse({"model": "wf", "input": "x"})
    assert sid({}, req4, opts4) is None


# ---- malformed input ----------------------------------------------------------------------------


@pytest.mark.parametrize(("wire", "message", "param"), [
    ({"input": "x"}, "model: required field is missing", "model"),
    ({"model": "m"}, "input: required field is missing", "input"),
    ({"model": "m", "input": 5}, "input: expected a string or an array of input items, got a number", "input"),
    ({"model": "m", "input": ["hi"]}, "input[0]: expected an input item object, got a string", "input[0]"),
    ({"model": "m", "input": [{"role": "robot", "content": "x"}]},
     "input[0].role: expected one of user, assistant, system, developer, got 'robot'", "input[0].role"),
    ({"model": "m", "input": [{"type": "message", "content": "x"}]}, "input[0].role: required field is missing",
     "input[0].role"),
    ({"model": "m", "input": [{"role": "user"}]}, "input[0].content: required field is missing", "input[0].content"),
    ({"model": "m", "input": [{"role": "user", "content": {"text": "x"}}]},
     "input[0].content: expected a string or an array of content parts, got an object", "input[0].content"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]},
     "input[0].content[0].file_id: images by file_id are not supported", "input[0].content[0].file_id"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     "input[0].content[0]: content parts of type 'input_file' are not supported", "input[0].content[0]"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_video"}]}]},
     "input[0].content[0].type: unknown content part type 'input_video'", "input[0].content[0].type"),
    ({"model": "m", "input": [{"role": "assistant", "content": [{"type": "input_image", "image_url": "https://x"}]}]},
     "input[0].content[0]: content parts of type 'input_image' are not supported", "input[0].content[0]"),
    ({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
     "input[0].call_id: required field is missing", "input[0].call_id"),
    ({"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": 3}]},
     "input[0].arguments: expected a string of JSON, got a number", "input[0].arguments"),
    ({"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]},
     "input[0].output: required field is missing", "input[0].output"),
    ({"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": 7}]},
     "input[0].output: expected a string or an array of content parts, got a number", "input[0].output"),
    ({"model": "m", "input": [{"type": "reasoning", "summary": ["x"]}]},
     "input[0].summary[0]: expected a summary_text object, got a string", "input[0].summary[0]"),
    ({"model": "m", "input": [{"type": 3}]}, "input[0].type: expected a string, got a number", "input[0].type"),
    ({"model": "m", "input": "x", "tools": [{"name": "f"}]}, "tools[0].type: required field is missing",
     "tools[0].type"),
    ({"model": "m", "input": "x", "tools": [{"type": "function", "parameters": {}}]},
     "tools[0].name: required field is missing", "tools[0].name"),
    ({"model": "m", "input": "x", "tool_choice": "any"},
     "tool_choice: expected 'auto', 'none', 'required' or an object naming a tool, got 'any'", "tool_choice"),
    ({"model": "m", "input": "x", "tool_choice": {"type": "function"}}, "tool_choice.name: required field is missing",
     "tool_choice.name"),
    ({"model": "m", "input": "x", "max_output_tokens": "10"}, "max_output_tokens: expected an integer, got a string",
     "max_output_tokens"),
    ({"model": "m", "input": "x", "reasoning": {"effort": 2}}, "reasoning.effort: expected a string, got a number",
     "reasoning.effort"),
    ({"model": "m", "input": "x", "text": {"format": {"name": "x"}}}, "text.format.type: required field is missing",
     "text.format.type"),
    ({"model": "m", "input": "x", "include": ["a", 1]}, "include: expected an array of strings, got an array",
     "include"),
    ({"model": "m", "input": "x", "store": "no"}, "store: expected a boolean, got a string", "store"),
    ({"model": "m", "input": "x", "instructions": ["a"]}, "instructions: expected a string, got an array",
     "instructions"),
])
def test_malformed_request_is_rejected_with_a_precise_message_and_param(wire: dict[str, Any], message: str,
                                                                         param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        _parse(wire)
    assert info.value.message.startswith(message), info.value.message
    assert info.value.param == param


def test_body_that_is_not_json_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="request body is not valid JSON"):
        openai_responses.parse_request(b'{"model": "m", "input": ')


def test_canonical_request_survives_msgspec_round_trip() -> None:
    req, _ = _parse({"model": "wf", "input": [{"role": "user", "content": "hi"}], "tools": TOOLS})
    assert msgspec.json.decode(msgspec.json.encode(req), type=type(req)) == req
