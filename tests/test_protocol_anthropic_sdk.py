"""The Anthropic Messages adapter as the official ``anthropic`` SDK sees it, offline: the SDK reads
our bytes (``messages.create``, ``create(stream=True)``, ``messages.stream(...)`` with
``get_final_message()``, ``count_tokens``, ``models.list``, error statuses) through an
``httpx2.MockTransport``, and the requests the SDK writes are parsed back into canonical form."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import MessageParam, RedactedThinkingBlock, TextBlock, ThinkingBlock, ToolUseBlock
from support_openai_protocol import parse_sse

from host.protocols import anthropic_messages as am
from plugin_sdk.errors import FlowbaseError, InvalidRequest, NodeError, NodeTimeout, NotFound, UpstreamError
from plugin_sdk.types import (
    BlockDelta,
    BlockStart,
    BlockStop,
    ImagePart,
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
SIGNATURE = "EqQBCkYIBxgCKkBzW+/aN3v5/x+y==\u00e9"  # base64 plus a non-ASCII byte: kept exactly
USER: list[MessageParam] = [{"role": "user", "content": "hi"}]


def sdk(body: bytes, *, status: int = 200, content_type: str = "application/json",
        headers: dict[str, str] | None = None, seen: list[httpx2.Request] | None = None) -> anthropic.Anthropic:
    """An official client whose every request is answered with ``body`` (our adapter's output)."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        if seen is not None:
            seen.append(request)
        return httpx2.Response(status, content=body, headers={"content-type": content_type, **(headers or {})})

    return anthropic.Anthropic(api_key="sk-ant-test", base_url="http://flowbase.test", max_retries=0,
                               http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))


def captured(call: Callable[[anthropic.Anthropic], Any]) -> bytes:
    """The body the SDK sends for ``call(client)`` (answered with a 400 the SDK raises)."""
    seen: list[httpx2.Request] = []
    status, body, _ = am.error_body(InvalidRequest("captured"))
    with pytest.raises(anthropic.BadRequestError):
        call(sdk(body, status=status, seen=seen))
    assert len(seen) == 1
    return seen[0].read()


def answer() -> Response:
    return Response(
        id="r1", model="upstream", stop_reason="tool_use",
        usage=Usage(input_tokens=1200, output_tokens=30, cache_read_tokens=1000, cache_write_tokens=150),
        content=[ThinkingPart("Need the weather.", signature=SIGNATURE), ThinkingPart(redacted_data="RED/+=="),
                 TextPart("Let me check."), ToolCallPart("toolu_1", "get_weather", '{"city":"Paris","days":[1,2]}'),
                 ToolCallPart("toolu_2", "get_time", "")],
    )


def stream_bytes(events: list[StreamEvent], *, finish: bool = True) -> bytes:
    enc = am.StreamEncoder("wf", {})
    return b"".join(enc.event(ev) for ev in events) + (enc.end() if finish else b"")


def check_answer(msg: anthropic.types.Message) -> None:
    assert msg.model == "wf" and msg.role == "assistant" and msg.id.startswith("msg_")
    assert msg.stop_reason == "tool_use" and msg.stop_sequence is None
    thinking, redacted, text, call, call2 = msg.content
    assert isinstance(thinking, ThinkingBlock) and thinking.thinking == "Need the weather."
    assert thinking.signature == SIGNATURE
    assert isinstance(redacted, RedactedThinkingBlock) and redacted.data == "RED/+=="
    assert isinstance(text, TextBlock) and text.text == "Let me check."
    assert isinstance(call, ToolUseBlock) and call.id == "toolu_1" and call.name == "get_weather"
    assert call.input == {"city": "Paris", "days": [1, 2]}
    assert isinstance(call2, ToolUseBlock) and call2.input == {}
    u = msg.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == (50, 30, 1000,
                                                                                                           150)


# ---- the SDK reads our answers ----------------------------------------------------------------


def test_sdk_parses_a_rendered_message_with_thinking_tools_and_cache_usage() -> None:
    body = am.render_response(answer(), "wf", {})
    check_answer(sdk(body).messages.create(model="wf", max_tokens=100, messages=USER))


def test_sdk_stream_helper_rebuilds_the_same_message_from_our_events() -> None:
    data = stream_bytes(response_events(answer()))
    with sdk(data, content_type=SSE).messages.stream(model="wf", max_tokens=100, messages=USER) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert texts == ["Let me check."]
    check_answer(final)


def test_sdk_raw_stream_sees_every_event_in_anthropic_order() -> None:
    data = stream_bytes(response_events(answer()))
    events = list(sdk(data, content_type=SSE).messages.create(model="wf", max_tokens=100, messages=USER, stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    starts = [e for e in events if e.type == "content_block_start"]
    assert [e.index for e in starts] == [0, 1, 2, 3, 4]
    deltas = {e.delta.type for e in events if e.type == "content_block_delta"}
    assert deltas == {"thinking_delta", "signature_delta", "text_delta", "input_json_delta"}
    assert kinds.count("content_block_stop") == 5


def test_streamed_answer_from_an_openai_style_upstream_reports_usage_known_only_at_the_end() -> None:
    events: list[StreamEvent] = [
        StreamStart("chatcmpl-1", "gpt"), BlockStart(0, TextPart("")), BlockDelta(0, text="Hel"),
        BlockDelta(0, text="lo"), BlockStop(0),
        StreamEnd(usage=Usage(input_tokens=900, output_tokens=2, cache_read_tokens=800)),
    ]
    with sdk(stream_bytes(events), content_type=SSE).messages.stream(model="wf", max_tokens=9, messages=USER) as s:
        final = s.get_final_message()
    assert [b.text for b in final.content if isinstance(b, TextBlock)] == ["Hello"]
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens, final.usage.output_tokens) == (100, 800, 2)


def test_tool_arguments_streamed_in_fragments_reach_the_sdk_as_one_parsed_input() -> None:
    events: list[StreamEvent] = [
        StreamStart("r", "m"), BlockStart(0, ToolCallPart("toolu_9", "search", "")),
        *[BlockDelta(0, arguments=piece) for piece in ("\n ", '{"q": "caf', '\u00e9", "n"', ": 3}")],
        BlockStop(0), StreamEnd(stop_reason="tool_use"),
    ]
    with sdk(stream_bytes(events), content_type=SSE).messages.stream(model="wf", max_tokens=9, messages=USER) as s:
        final = s.get_final_message()
    (call,) = final.content
    assert isinstance(call, ToolUseBlock) and call.input == {"q": "caf\u00e9", "n": 3}


@pytest.mark.parametrize("pieces", [["not json"], ["[1, 2]"], ["", "  "], ["null"]])
def test_tool_arguments_that_are_not_a_json_object_stream_as_empty_input_instead_of_breaking_the_sdk(
        pieces: list[str]) -> None:
    events: list[StreamEvent] = [
        StreamStart("r", "m"), BlockStart(0, ToolCallPart("toolu_9", "noop")),
        *[BlockDelta(0, arguments=p) for p in pieces], BlockStop(0),
        BlockStart(1, TextPart("")), BlockDelta(1, text="after"), BlockStop(1), StreamEnd(stop_reason="tool_use"),
    ]
    with sdk(stream_bytes(events), content_type=SSE).messages.stream(model="wf", max_tokens=9, messages=USER) as s:
        final = s.get_final_message()
    call, text = final.content
    assert isinstance(call, ToolUseBlock) and call.input == {}
    assert isinstance(text, TextBlock) and text.text == "after"


def test_signature_sent_in_pieces_reaches_the_sdk_whole() -> None:
    events: list[StreamEvent] = [
        StreamStart("r", "m"), BlockStart(0, ThinkingPart()), BlockDelta(0, text="hmm"),
        BlockDelta(0, signature=SIGNATURE[:7]), BlockDelta(0, signature=SIGNATURE[7:]), BlockStop(0), StreamEnd(),
    ]
    with sdk(stream_bytes(events), content_type=SSE).messages.stream(model="wf", max_tokens=9, messages=USER) as s:
        final = s.get_final_message()
    (block,) = final.content
    assert isinstance(block, ThinkingBlock) and block.signature == SIGNATURE and block.thinking == "hmm"


def test_blocks_without_a_wire_form_do_not_leave_holes_in_the_streamed_indexes() -> None:
    events: list[StreamEvent] = [
        StreamStart("r", "m"), BlockStart(0, ImagePart(url="https://x.test/i.png")), BlockStop(0),
        BlockStart(1, TextPart("")), BlockDelta(1, text="caption"), BlockStop(1), StreamEnd(),
    ]
    with sdk(stream_bytes(events), content_type=SSE).messages.stream(model="wf", max_tokens=9, messages=USER) as s:
        final = s.get_final_message()
    assert [b.text for b in final.content if isinstance(b, TextBlock)] == ["caption"]


def test_a_stream_cut_short_without_stream_end_is_still_complete_for_the_sdk() -> None:
    events: list[StreamEvent] = [BlockStart(0, TextPart("")), BlockDelta(0, text="half")]
    data = stream_bytes(events)
    names = [m["event"] for m in parse_sse(data)]
    assert names == ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    with sdk(data, content_type=SSE).messages.stream(model="wf", max_tokens=9, messages=USER) as s:
        final = s.get_final_message()
    assert final.stop_reason == "end_turn" and final.content[0].type == "text"


def test_mid_stream_failure_raises_in_the_sdk_with_the_error_type_and_message() -> None:
    enc = am.StreamEncoder("wf", {})
    data = enc.event(StreamStart("r", "m")) + enc.event(BlockStart(0, TextPart(""))) \
        + enc.event(BlockDelta(0, text="Par")) + enc.error(UpstreamError("Overloaded", status=529))
    seen: list[str] = []
    client = sdk(data, content_type=SSE)
    with pytest.raises(anthropic.APIStatusError) as caught, client.messages.stream(model="wf", max_tokens=9,
                                                                                   messages=USER) as s:
        seen.extend(s.text_stream)
    assert seen == ["Par"]
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}


@pytest.mark.parametrize(("err", "cls", "kind"), [
    (InvalidRequest("bad field", param="x"), anthropic.BadRequestError, "invalid_request_error"),
    (FlowbaseError("no key", kind="authentication", status=401), anthropic.AuthenticationError,
     "authentication_error"),
    (UpstreamError("denied", status=403), anthropic.PermissionDeniedError, "permission_error"),
    (NotFound("no such model"), anthropic.NotFoundError, "not_found_error"),
    (UpstreamError("too big", status=413), anthropic.ContentTooLargeError, "request_too_large"),
    (UpstreamError("slow down", status=429, retry_after="3"), anthropic.RateLimitError, "rate_limit_error"),
    (NodeError("node failed"), anthropic.InternalServerError, "api_error"),
    (UpstreamError("Overloaded", status=529), anthropic.OverloadedError, "overloaded_error"),
    (UpstreamError("unavailable", status=503), anthropic.ServiceUnavailableError, "overloaded_error"),
    (NodeTimeout("took too long"), anthropic.GatewayTimeoutError, "timeout_error"),
])
def test_errors_reach_the_sdk_as_its_matching_exception(err: FlowbaseError, cls: type[Exception], kind: str) -> None:
    status, body, headers = am.error_body(err)
    with pytest.raises(cls) as caught:
        sdk(body, status=status, headers=headers).messages.create(model="wf", max_tokens=9, messages=USER)
    exc = caught.value
    assert isinstance(exc, anthropic.APIStatusError)
    assert exc.body == {"type": "error", "error": {"type": kind, "message": err.message}}
    assert exc.response.headers.get("retry-after") == getattr(err, "retry_after", None)


def test_sdk_reads_count_tokens_and_the_model_list() -> None:
    req = am.parse_count_tokens(json.dumps({"model": "wf", "messages": USER}).encode())
    count = sdk(am.count_tokens_body(req)).messages.count_tokens(model="wf", messages=USER)
    assert count.input_tokens > 0
    page = sdk(am.render_models([("wf", 1_700_000_000), ("agent", 1_700_000_060)])).models.list()
    assert [(m.id, m.display_name, m.type) for m in page.data] == [("wf", "wf", "model"), ("agent", "agent", "model")]
    assert page.data[1].created_at.isoformat() == "2023-11-14T22:14:20+00:00"
    assert page.first_id == "wf" and page.last_id == "agent" and page.has_more is False


# ---- the SDK's requests parse into canonical form ---------------------------------------------


def test_a_full_sdk_request_parses_into_the_canonical_request() -> None:
    body = captured(lambda c: c.messages.create(
        model="wf", max_tokens=2048, stop_sequences=["STOP"],
        # This SDK release no longer types the sampling fields; clients still send them.
        extra_body={"temperature": 0.5, "top_k": 5},
        system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        metadata={"user_id": "user_abc_account__session_5f0c"},
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}},
               {"type": "web_search_20250305", "name": "web_search"}],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "call it", "signature": SIGNATURE},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "cold", "is_error": False},
                {"type": "text", "text": "Thanks"}]},
        ],
    ))
    req, options = am.parse_request(body)
    assert options == {}
    assert (req.model, req.max_tokens, req.temperature, req.stop, req.extra) == ("wf", 2048, 0.5, ["STOP"],
                                                                               {"top_k": 5})
    assert req.reasoning is not None and req.reasoning.enabled and req.reasoning.budget_tokens == 1024
    assert [t.kind for t in req.tools] == ["function", "web_search_20250305"]
    assert req.tool_choice is not None and req.tool_choice.mode == "auto" and req.parallel_tool_calls is False
    assert req.user == "user_abc_account__session_5f0c"
    assert am.session_id({}, req, options) == "5f0c"
    roles = [m.role for m in req.messages]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    assert req.messages[0].content == [TextPart("You are terse.", {"type": "ephemeral"})]
    assert req.messages[2].content == [ThinkingPart("call it", SIGNATURE), ToolCallPart("toolu_1", "get_weather",
                                                                                       '{"city":"Oslo"}')]
    assert req.messages[3].content == [ToolResultPart("toolu_1", [TextPart("cold")])]


def test_sdk_count_tokens_request_parses_without_max_tokens_and_counts_more_for_more_text() -> None:
    short = captured(lambda c: c.messages.count_tokens(model="wf", messages=USER))
    long = captured(lambda c: c.messages.count_tokens(
        model="wf", messages=[{"role": "user", "content": "hi " * 400}]))
    n_short = json.loads(am.count_tokens_body(am.parse_count_tokens(short)))["input_tokens"]
    n_long = json.loads(am.count_tokens_body(am.parse_count_tokens(long)))["input_tokens"]
    assert 0 < n_short < n_long
