"""Parsing /v1/messages bodies: precise errors for malformed input, tolerance for what agent clients
(Claude Code) really send, session ids, and the stream encoder's edge cases."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support_openai_protocol import parse_sse

from host.protocols import anthropic_messages as am
from plugin_sdk.errors import InvalidRequest
from plugin_sdk.types import (
    BlockDelta,
    BlockStart,
    BlockStop,
    Request,
    StreamEnd,
    StreamStart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    Usage,
)


def parse(wire: dict[str, Any]) -> Request:
    return am.parse_request(json.dumps(wire).encode())[0]


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "wf", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **fields}


def user(*blocks: Any) -> dict[str, Any]:
    return body(messages=[{"role": "user", "content": list(blocks)}])


# ---- malformed input ----------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "param", "fragment"), [
    (b"", None, "empty"),
    (b"{not json", None, "not valid JSON"),
    (b"[1]", None, "expected a JSON object"),
    (json.dumps({"max_tokens": 5, "messages": []}).encode(), "model", "required field is missing"),
    (json.dumps({"model": "wf", "messages": []}).encode(), "max_tokens", "required field is missing"),
    (json.dumps(body(max_tokens=-1)).encode(), "max_tokens", "non-negative"),
    (json.dumps(body(max_tokens="10")).encode(), "max_tokens", "expected an integer, got a string"),
    (json.dumps(body(messages="hi")).encode(), "messages", "expected an array"),
    (json.dumps(body(messages=[])).encode(), "messages", "at least one message"),
    (json.dumps(body(messages=["hi"])).encode(), "messages[0]", "expected a message object"),
    (json.dumps(body(messages=[{"content": "x"}])).encode(), "messages[0].role", "required field is missing"),
    (json.dumps(body(messages=[{"role": "tool", "content": "x"}])).encode(), "messages[0].role", "'tool'"),
    (json.dumps(body(messages=[{"role": "user"}])).encode(), "messages[0].content", "required field is missing"),
    (json.dumps(body(messages=[{"role": "user", "content": 3}])).encode(), "messages[0].content", "got a number"),
    (json.dumps(user("hi")).encode(), "messages[0].content[0]", "expected a content block object"),
    (json.dumps(user({"text": "x"})).encode(), "messages[0].content[0].type", "required field is missing"),
    (json.dumps(user({"type": "text", "text": 5})).encode(), "messages[0].content[0].text", "got a number"),
    (json.dumps(user({"type": "image"})).encode(), "messages[0].content[0].source", "required field is missing"),
    (json.dumps(user({"type": "image", "source": {"type": "base64", "data": "AA"}})).encode(),
     "messages[0].content[0].source.media_type", "required field is missing"),
    (json.dumps(user({"type": "image", "source": {"type": "file", "file_id": "f1"}})).encode(),
     "messages[0].content[0].source", "Files API"),
    (json.dumps(user({"type": "image", "source": {"type": "ftp"}})).encode(),
     "messages[0].content[0].source.type", "'ftp'"),
    (json.dumps(user({"type": "tool_use", "name": "f", "input": {}})).encode(),
     "messages[0].content[0].id", "required field is missing"),
    (json.dumps(user({"type": "tool_use", "id": "t", "name": "f", "input": [1]})).encode(),
     "messages[0].content[0].input", "expected an object"),
    (json.dumps(user({"type": "tool_result", "content": "x"})).encode(),
     "messages[0].content[0].tool_use_id", "required field is missing"),
    (json.dumps(user({"type": "tool_result", "tool_use_id": "t", "content": 7})).encode(),
     "messages[0].content[0].content", "expected a string or an array"),
    (json.dumps(user({"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "tool_use", "id": "a", "name": "b", "input": {}}]})).encode(),
     "messages[0].content[0].content[0].type", "'tool_use'"),
    (json.dumps(user({"type": "thinking", "signature": "s"})).encode(),
     "messages[0].content[0].thinking", "required field is missing"),
    (json.dumps(user({"type": "redacted_thinking"})).encode(),
     "messages[0].content[0].data", "required field is missing"),
    (json.dumps(body(system=5)).encode(), "system", "expected a string or an array of text blocks"),
    (json.dumps(body(system=[{"type": "image"}])).encode(), "system[0].type", "must be of type 'text'"),
    (json.dumps(body(tools={"name": "f"})).encode(), "tools", "expected an array"),
    (json.dumps(body(tools=[{"name": "f"}])).encode(), "tools[0].input_schema", "required field is missing"),
    (json.dumps(body(tools=[{"input_schema": {}}])).encode(), "tools[0].name", "required field is missing"),
    (json.dumps(body(tool_choice="auto")).encode(), "tool_choice", "expected an object"),
    (json.dumps(body(tool_choice={"type": "required"})).encode(), "tool_choice.type", "'required'"),
    (json.dumps(body(tool_choice={"type": "tool"})).encode(), "tool_choice.name", "required field is missing"),
    (json.dumps(body(thinking={"budget_tokens": 5})).encode(), "thinking.type", "required field is missing"),
    (json.dumps(body(thinking={"type": "enabled", "budget_tokens": "lots"})).encode(), "thinking.budget_tokens",
     "expected an integer"),
    (json.dumps(body(stop_sequences="STOP")).encode(), "stop_sequences", "expected an array of strings"),
    (json.dumps(body(temperature="hot")).encode(), "temperature", "expected a number"),
    (json.dumps(body(top_k=1.5)).encode(), "top_k", "expected an integer"),
    (json.dumps(body(metadata={"user_id": 7})).encode(), "metadata.user_id", "expected a string"),
    (json.dumps(body(stream="yes")).encode(), "stream", "expected a boolean"),
])
def test_malformed_requests_fail_with_a_message_naming_the_exact_field(raw: bytes, param: str | None,
                                                                       fragment: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        am.parse_request(raw)
    err = caught.value
    assert err.param == param
    assert fragment in err.message
    assert err.status == 400
    if param:
        assert err.message.startswith(param)


# ---- what clients really send ---------------------------------------------------------------------

def test_tool_results_split_into_tool_messages_in_order_with_the_users_text_around_them() -> None:
    req = parse(user(
        {"type": "text", "text": "before"},
        {"type": "tool_result", "tool_use_id": "a", "content": "A"},
        {"type": "text", "text": "between"},
        {"type": "tool_result", "tool_use_id": "b", "content": [{"type": "text", "text": "B"}]},
        {"type": "tool_result", "tool_use_id": "c"},
    ))
    assert [(m.role, m.content) for m in req.messages] == [
        ("user", [TextPart("before")]),
        ("tool", [ToolResultPart("a", [TextPart("A")])]),
        ("user", [TextPart("between")]),
        ("tool", [ToolResultPart("b", [TextPart("B")])]),
        ("tool", [ToolResultPart("c", [])]),
    ]


def test_server_tool_blocks_and_unknown_block_types_are_dropped_and_a_message_left_empty_disappears() -> None:
    req = parse(body(messages=[
        {"role": "user", "content": "search"},
        {"role": "assistant", "content": [
            {"type": "server_tool_use", "id": "srv_1", "name": "web_search", "input": {"query": "x"}},
            {"type": "web_search_tool_result", "tool_use_id": "srv_1", "content": []},
            {"type": "container_upload", "file_id": "f"},
            {"type": "some_future_block", "payload": 1}]},
        {"role": "user", "content": [{"type": "mcp_tool_result", "tool_use_id": "m"}, {"type": "text", "text": "ok"}]},
    ]))
    assert [(m.role, m.content) for m in req.messages] == [("user", [TextPart("search")]), ("user", [TextPart("ok")])]


def test_an_explicitly_empty_content_array_is_kept_for_the_provider_to_judge() -> None:
    req = parse(body(messages=[{"role": "user", "content": []}]))
    assert [(m.role, m.content) for m in req.messages] == [("user", [])]


def test_tool_result_documents_become_placeholders_so_an_agent_reading_a_pdf_keeps_going() -> None:
    req = parse(user({"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}},
        {"type": "tool_reference", "tool_name": "grep"}]}))
    (result,) = req.messages[0].content
    assert isinstance(result, ToolResultPart)
    (text,) = result.content
    assert isinstance(text, TextPart) and "application/pdf" in text.text and "not included" in text.text


def test_a_compaction_block_keeps_its_summary_as_text() -> None:
    req = parse(body(messages=[{"role": "user", "content": [{"type": "compaction", "content": "Earlier: we fixed X."},
                                                            {"type": "compaction", "content": None}]}]))
    assert req.messages[0].content == [TextPart("Earlier: we fixed X.")]


def test_tool_use_input_becomes_compact_json_arguments_and_thinking_stays_byte_exact() -> None:
    sig = "Ev8BCkYIBhgCKkB/+=\\u00e9"
    req = parse(body(messages=[{"role": "assistant", "content": [
        {"type": "thinking", "thinking": "plan", "signature": sig},
        {"type": "tool_use", "id": "t1", "name": "f", "input": {"b": 1, "a": [True, None], "s": "é"}},
        {"type": "tool_use", "id": "t2", "name": "g", "input": "{\"raw\": 1}"}]}]))
    assert req.messages[0].content == [ThinkingPart("plan", sig), ToolCallPart("t1", "f", '{"b":1,"a":[true,null],"s":"é"}'),
                                       ToolCallPart("t2", "g", '{"raw": 1}')]


def test_thinking_modes_and_output_config_map_onto_reasoning() -> None:
    off = parse(body(thinking={"type": "disabled"}))
    assert off.reasoning is not None and off.reasoning.enabled is False and "thinking" not in off.extra
    adaptive = parse(body(thinking={"type": "adaptive", "display": "omitted"}, output_config={"effort": "low"}))
    assert adaptive.reasoning is not None and adaptive.reasoning.enabled and adaptive.reasoning.effort == "low"
    assert adaptive.extra == {"thinking": {"type": "adaptive", "display": "omitted"}}
    effort_only = parse(body(output_config={"effort": "max", "task_budget": 5}))
    assert effort_only.reasoning is not None and effort_only.reasoning.effort == "max"
    assert effort_only.extra == {"output_config": {"effort": "max", "task_budget": 5}}
    legacy = parse(body(output_format={"type": "json_schema", "schema": {"type": "object"}}))
    assert legacy.response_format == {"type": "json_schema",
                                      "json_schema": {"name": "output", "schema": {"type": "object"}, "strict": True}}


def test_tool_choice_modes_map_and_none_never_forbids_parallel_calls() -> None:
    cases = {"auto": "auto", "any": "required", "none": "none"}
    for wire, mode in cases.items():
        req = parse(body(tool_choice={"type": wire}))
        assert req.tool_choice is not None and req.tool_choice.mode == mode and req.parallel_tool_calls is None
    forced = parse(body(tool_choice={"type": "tool", "name": "f", "disable_parallel_tool_use": True}))
    assert forced.tool_choice is not None and (forced.tool_choice.mode, forced.tool_choice.name) == ("tool", "f")
    assert forced.parallel_tool_calls is False


def test_a_custom_tool_keeps_raw_only_when_it_carries_more_than_name_description_and_schema() -> None:
    req = parse(body(tools=[
        {"name": "plain", "input_schema": {"type": "object"}, "strict": True},
        {"type": "custom", "name": "cached", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"},
         "defer_loading": True},
        {"type": "mcp_toolset", "mcp_server_name": "files"},
    ]))
    plain, cached, toolset = req.tools
    assert (plain.kind, plain.raw, plain.strict) == ("function", None, True)
    assert cached.kind == "function" and cached.raw is not None and cached.raw["cache_control"] == {"type": "ephemeral"}
    assert (toolset.name, toolset.kind) == ("mcp_toolset", "mcp_toolset")


def test_unknown_top_level_fields_are_kept_in_extra_as_sent() -> None:
    req = parse(body(service_tier="auto", container="c1", mcp_servers=[{"name": "m"}], betas=["x"], speed="fast"))
    assert req.extra == {"service_tier": "auto", "container": "c1", "mcp_servers": [{"name": "m"}], "betas": ["x"],
                         "speed": "fast"}


def test_the_billing_header_system_block_is_dropped_and_an_empty_system_adds_no_message() -> None:
    req = parse(body(system=[{"type": "text", "text": "x-anthropic-billing-header: cc_version=2; cch=1;"}]))
    assert [m.role for m in req.messages] == ["user"]
    assert [m.role for m in parse(body(system="")).messages] == ["user"]


def test_count_tokens_body_parses_without_max_tokens_and_ignores_stream() -> None:
    req = am.parse_count_tokens(json.dumps({"model": "wf", "stream": True, "messages": [
        {"role": "user", "content": "hello there"}]}).encode())
    assert req.max_tokens is None and req.stream is False
    assert json.loads(am.count_tokens_body(req))["input_tokens"] > 0
    with pytest.raises(InvalidRequest) as caught:
        am.parse_count_tokens(b'{"model": "wf"}')
    assert caught.value.param == "messages"


# ---- sessions -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("headers", "user_id", "expected"), [
    ({"x-flowbase-session": "mine", "x-claude-code-session-id": "cc"}, None, "mine"),
    ({"x-claude-code-session-id": "cc-uuid"}, '{"session_id": "from-body"}', "cc-uuid"),
    ({}, '{"device_id": "d", "account_uuid": "", "session_id": "54c1eb09"}', "54c1eb09"),
    ({}, "user_0a1b_account__session_57a121ec-f78c", "57a121ec-f78c"),
    ({}, "user_0a1b_account_acc_session_", "user_0a1b_account_acc_session_"),
    ({}, '{"device_id": "d"}', '{"device_id": "d"}'),
    ({}, "{broken", "{broken"),
    ({}, "alice", "alice"),
    ({}, None, None),
])
def test_session_id_prefers_explicit_headers_then_the_session_inside_claude_codes_user_id(
        headers: dict[str, str], user_id: str | None, expected: str | None) -> None:
    metadata = {"user_id": user_id} if user_id is not None else {}
    req = parse(body(metadata=metadata))
    assert am.session_id(headers, req, {}) == expected


# ---- stream encoder edge cases --------------------------------------------------------------------

def test_an_empty_stream_still_has_message_start_delta_and_stop() -> None:
    enc = am.StreamEncoder("wf", {})
    msgs = parse_sse(enc.end())
    assert [m["event"] for m in msgs] == ["message_start", "message_delta", "message_stop"]
    assert all(m["data"]["type"] == m["event"] for m in msgs)
    assert msgs[1]["data"]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}


def test_message_start_carries_prompt_usage_known_up_front_without_cache_counts_in_input() -> None:
    enc = am.StreamEncoder("wf", {})
    out = enc.event(StreamStart("r", "m", Usage(input_tokens=500, cache_read_tokens=400, cache_write_tokens=50)))
    (start,) = parse_sse(out)
    assert start["data"]["message"]["usage"] == {"input_tokens": 50, "cache_creation_input_tokens": 50,
                                                 "cache_read_input_tokens": 400, "output_tokens": 0}
    assert enc.event(StreamStart("r", "m")) == b""  # a second start changes nothing


def test_repeated_block_start_and_unknown_block_deltas_and_stops_are_ignored() -> None:
    enc = am.StreamEncoder("wf", {})
    enc.event(StreamStart("r", "m"))
    assert enc.event(BlockStart(0, TextPart(""))) != b""
    assert enc.event(BlockStart(0, TextPart(""))) == b""
    assert enc.event(BlockDelta(7, text="x")) == b""
    assert enc.event(BlockStop(7)) == b""
    assert enc.event(BlockDelta(0, arguments="{}")) == b""  # arguments on a text block mean nothing
    out = parse_sse(enc.event(BlockStop(0)) + enc.event(StreamEnd()) + enc.event(StreamEnd()))
    assert [m["event"] for m in out] == ["content_block_stop", "message_delta"]


def test_initial_text_and_arguments_in_a_block_start_are_streamed_as_deltas() -> None:
    enc = am.StreamEncoder("wf", {})
    out = enc.event(BlockStart(0, ThinkingPart("first", signature="S1"))) + enc.event(BlockStop(0))
    out += enc.event(BlockStart(1, ToolCallPart("t", "f", '{"a":1}'))) + enc.event(BlockStop(1))
    msgs = parse_sse(out)
    assert msgs[0]["event"] == "message_start"
    deltas = [m["data"]["delta"] for m in msgs if m["event"] == "content_block_delta"]
    assert deltas == [{"type": "thinking_delta", "thinking": "first"}, {"type": "signature_delta", "signature": "S1"},
                      {"type": "input_json_delta", "partial_json": '{"a":1}'}]


def test_redacted_thinking_streams_its_data_in_the_block_start_only() -> None:
    enc = am.StreamEncoder("wf", {})
    out = enc.event(BlockStart(0, ThinkingPart(redacted_data="OPAQUE"))) + enc.event(BlockDelta(0, text="ignored"))
    msgs = parse_sse(out + enc.event(BlockStop(0)))
    assert [m["event"] for m in msgs] == ["message_start", "content_block_start", "content_block_stop"]
    assert msgs[1]["data"]["content_block"] == {"type": "redacted_thinking", "data": "OPAQUE"}


def test_render_models_of_an_empty_list_has_null_first_and_last_ids() -> None:
    assert json.loads(am.render_models([])) == {"data": [], "has_more": False, "first_id": None, "last_id": None}
