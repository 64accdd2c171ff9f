"""Anthropic Messages end to end: the real host and runner, the official ``anthropic`` SDK (and raw
httpx, as Claude Code sends some things) as the client, workflows on the fake Anthropic upstream
and — across protocols — on the fake OpenAI upstream. Each answer is checked against what the
upstream received and what the run's trace recorded."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import Message, ToolParam

from tests.fake_upstream import expected_reply, expected_tool_reply, redacted_data_for, signature_for, thinking_for
from tests.support_e2e import one_llm_workflow, serve_workflows, spans
from tests.support_host import Flowbase
from tests.support_upstream import FakeUpstream, header, sent_with, upstream_fixture

upstream = upstream_fixture()

SECRET = "sk-ant-upstream-e2e-7788"

ON_ANTHROPIC = one_llm_workflow("claude-proxy", "anthropic", "${ANTHROPIC_UPSTREAM}", "small")
THINKER = one_llm_workflow("claude-thinker", "anthropic", "${ANTHROPIC_UPSTREAM}", "thinking")
ON_OPENAI = one_llm_workflow("claude-on-openai", "openai", "${OPENAI_UPSTREAM}", "small")

# (client model, upstream wire format)
BOTH = [pytest.param("claude-proxy", "anthropic", id="anthropic-upstream"),
        pytest.param("claude-on-openai", "openai", id="openai-upstream")]

TOOLS: list[ToolParam] = [{"name": "get_weather", "description": "weather for a city",
                           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                            "required": ["city"]}}]


@pytest.fixture(scope="module")
def fb(tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream) -> Iterator[Flowbase]:
    env = {"ANTHROPIC_UPSTREAM": upstream.anthropic_base_url, "OPENAI_UPSTREAM": upstream.openai_base_url,
           "UPSTREAM_KEY": SECRET}
    with serve_workflows(tmp_path_factory, {"anthropic": ON_ANTHROPIC, "thinker": THINKER, "openai": ON_OPENAI},
                         env) as server:
        yield server


@pytest.fixture(scope="module")
def client(fb: Flowbase) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fb.url, api_key="sk-ant-client", max_retries=0)


def text_of(msg: Message) -> str:
    return "".join(b.text for b in msg.content if b.type == "text")


def sse_events(raw: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    """(event name, data) of every SSE event, exactly as sent."""
    out: list[tuple[str | None, dict[str, Any]]] = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        name = None
        data = ""
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
        out.append((name, json.loads(data)))
    return out


def user_texts(body: dict[str, Any]) -> list[str]:
    """Every text of the upstream request's user turns (either wire format)."""
    texts = []
    for m in body["messages"]:
        if m["role"] != "user":
            continue
        content = m["content"]
        if isinstance(content, str):
            texts.append(content)
        else:
            texts += [b["text"] for b in content if b.get("type") == "text"]
    return texts


def system_texts(body: dict[str, Any]) -> list[str]:
    """The texts of an Anthropic-wire request's top-level system prompt."""
    system = body.get("system")
    if system is None:
        return []
    return [system] if isinstance(system, str) else [b["text"] for b in system]


# ---- create / stream / count_tokens -------------------------------------------------------------


@pytest.mark.parametrize(("model", "wire"), BOTH)
def test_messages_create_answers_from_the_upstream_and_the_trace_matches(
        fb: Flowbase, client: anthropic.Anthropic, upstream: FakeUpstream, model: str, wire: str) -> None:
    prompt = f"hello from the anthropic sdk {uuid.uuid4().hex[:6]}"
    raw = client.messages.with_raw_response.create(
        model=model, max_tokens=300, system="be brief", messages=[{"role": "user", "content": prompt}],
        extra_body={"temperature": 0.4})
    msg = raw.parse()
    assert text_of(msg) == expected_reply("small", prompt)
    assert msg.model == model and msg.role == "assistant" and msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0

    rec = sent_with(upstream, prompt)
    body = rec["body"]
    assert body["model"] == "small" and body["temperature"] == 0.4
    if wire == "anthropic":
        assert rec["path"] == "/v1/messages" and header(rec, "x-api-key") == SECRET
        assert header(rec, "anthropic-version")
        assert body["max_tokens"] == 300 and user_texts(body) == [prompt] and len(body["messages"]) == 1
        assert system_texts(body) == ["be brief"]
    else:
        assert header(rec, "authorization") == f"Bearer {SECRET}"
        assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": prompt}]
        assert (body.get("max_completion_tokens") or body.get("max_tokens")) == 300

    run = fb.run(raw.headers["x-flowbase-run-id"])
    assert run["status"] == "ok" and run["protocol"] == "messages" and run["model"] == model
    call, = spans(run, "model_call")
    assert call["usage"]["input_tokens"] == msg.usage.input_tokens
    assert call["usage"]["output_tokens"] == msg.usage.output_tokens
    assert SECRET not in json.dumps(run)


@pytest.mark.parametrize(("model", "wire"), BOTH)
def test_a_raw_stream_names_every_event_and_follows_the_messages_order(
        fb: Flowbase, upstream: FakeUpstream, model: str, wire: str) -> None:
    prompt = "stream a few words for me please"
    r = fb.post("/v1/messages", headers={"x-api-key": "sk-ant-client", "anthropic-version": "2023-06-01"},
                json={"model": model, "max_tokens": 200, "stream": True,
                      "messages": [{"role": "user", "content": prompt}]})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.content)
    assert all(name is not None and name == data["type"] for name, data in events), events
    names = [name for name, _ in events if name != "ping"]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 1
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == expected_reply("small", prompt)
    delta = next(d for n, d in events if n == "message_delta")
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"]["output_tokens"] > 0
    start = events[0][1]["message"]
    assert start["model"] == model and start["content"] == [] and start["role"] == "assistant"
    # An Anthropic upstream reports prompt usage at the start; an OpenAI one only at the end, so the
    # cumulative message_delta usage carries it.
    assert (start["usage"]["input_tokens"] > 0) == (wire == "anthropic")
    assert delta["usage"]["input_tokens"] == max(start["usage"]["input_tokens"], delta["usage"]["input_tokens"]) > 0
    run = fb.run(r.headers["x-flowbase-run-id"])
    assert run["stream"] is True and run["status"] == "ok"
    assert spans(run, "model_call")[0]["usage"]["output_tokens"] == delta["usage"]["output_tokens"]


@pytest.mark.parametrize(("model", "wire"), BOTH)
def test_the_sdk_stream_yields_typed_events_and_the_helper_builds_the_final_message(
        client: anthropic.Anthropic, model: str, wire: str) -> None:
    prompt = "sdk stream please"
    events = list(client.messages.create(model=model, max_tokens=200, stream=True,
                                         messages=[{"role": "user", "content": prompt}]))
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    streamed = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
    assert streamed == expected_reply("small", prompt)

    with client.messages.stream(model=model, max_tokens=200, messages=[{"role": "user", "content": "helper"}]) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    assert "".join(pieces) == text_of(final) == expected_reply("small", "helper")
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0 and final.usage.input_tokens > 0


def test_count_tokens_counts_the_request_without_running_it(
        fb: Flowbase, client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    before = len(upstream.requests())
    short = client.messages.count_tokens(model="claude-proxy", messages=[{"role": "user", "content": "hi"}])
    long = client.messages.count_tokens(model="claude-proxy", system="you are a careful assistant",
                                        messages=[{"role": "user", "content": "hi " * 200}], tools=TOOLS)
    assert 0 < short.input_tokens < long.input_tokens
    assert len(upstream.requests()) == before


# ---- tools --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize(("model", "wire"), BOTH)
def test_a_tool_use_reaches_the_client_and_its_tool_result_reaches_the_upstream_translated(
        fb: Flowbase, client: anthropic.Anthropic, upstream: FakeUpstream, model: str, wire: str, stream: bool) -> None:
    prompt = f"weather in Lima [[tool-call]] {uuid.uuid4().hex[:6]}"
    messages: list[Any] = [{"role": "user", "content": prompt}]
    if stream:
        with client.messages.stream(model=model, max_tokens=300, messages=messages, tools=TOOLS) as s:
            first: Message = s.get_final_message()
    else:
        first = client.messages.create(model=model, max_tokens=300, messages=messages, tools=TOOLS)
    assert first.stop_reason == "tool_use"
    use, = [b for b in first.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"city": prompt}

    messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21C"}]}]
    raw = client.messages.with_raw_response.create(model=model, max_tokens=300, messages=messages, tools=TOOLS)
    second = raw.parse()
    assert text_of(second) == expected_tool_reply("small", "get_weather", "sunny, 21C")
    assert second.stop_reason == "end_turn"

    body = upstream.requests()[-1]["body"]
    if wire == "anthropic":
        result, = body["messages"][-1]["content"]
        assert result["type"] == "tool_result" and result["tool_use_id"] == use.id
        got = result["content"] if isinstance(result["content"], str) else "".join(b["text"] for b in result["content"])
        assert got == "sunny, 21C"
        sent_use, = [b for b in body["messages"][-2]["content"] if b["type"] == "tool_use"]
        assert sent_use == {"type": "tool_use", "id": use.id, "name": "get_weather", "input": {"city": prompt}}
        assert body["tools"][0]["input_schema"] == TOOLS[0]["input_schema"]
    else:
        assert body["messages"][-1] == {"role": "tool", "tool_call_id": use.id, "content": "sunny, 21C"}
        call, = body["messages"][-2]["tool_calls"]
        assert call["id"] == use.id and json.loads(call["function"]["arguments"]) == {"city": prompt}
        assert body["tools"][0]["function"]["parameters"] == TOOLS[0]["input_schema"]

    run = fb.run(raw.headers["x-flowbase-run-id"])
    tool_span, = spans(run, "tool_call")
    assert tool_span["name"] == "get_weather" and tool_span["output"] == "sunny, 21C"


# ---- thinking -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_thinking_blocks_and_their_signatures_come_back_byte_exact_across_turns(
        fb: Flowbase, client: anthropic.Anthropic, upstream: FakeUpstream, stream: bool) -> None:
    prompt = f"think then call [[tool-call]] [[redacted-thinking]] {stream}"
    messages: list[Any] = [{"role": "user", "content": prompt}]
    kwargs: dict[str, Any] = {"model": "claude-thinker", "max_tokens": 2048, "tools": TOOLS,
                              "thinking": {"type": "enabled", "budget_tokens": 1024}}
    if stream:
        with client.messages.stream(messages=messages, **kwargs) as s:
            first: Message = s.get_final_message()
    else:
        first = client.messages.create(messages=messages, **kwargs)
    kinds = [b.type for b in first.content]
    assert kinds == ["thinking", "redacted_thinking", "text", "tool_use"]
    thinking, redacted, _, use = first.content
    assert thinking.type == "thinking" and thinking.thinking == thinking_for(prompt)
    assert thinking.signature == signature_for(thinking_for(prompt))
    assert redacted.type == "redacted_thinking" and redacted.data == redacted_data_for(prompt)
    assert use.type == "tool_use"

    messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "42"}]}]
    # The fake upstream answers 400 to a signature or redacted data it did not issue, as the API does.
    second = client.messages.create(messages=messages, **kwargs)
    assert text_of(second) == expected_tool_reply("thinking", "get_weather", "42")
    sent = upstream.requests()[-1]["body"]["messages"][-2]["content"]
    assert sent[0] == {"type": "thinking", "thinking": thinking.thinking, "signature": thinking.signature}
    assert sent[1] == {"type": "redacted_thinking", "data": redacted.data}
    assert sent[0]["signature"].encode() == signature_for(thinking_for(prompt)).encode()


# ---- usage conventions --------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_cache_reads_and_writes_are_reported_in_each_protocol_s_own_convention(
        fb: Flowbase, client: anthropic.Anthropic, stream: bool) -> None:
    prompt = f"a cached prompt [[cached]] {stream}"
    if stream:
        with client.messages.stream(model="claude-proxy", max_tokens=100,
                                    messages=[{"role": "user", "content": prompt}]) as s:
            msg: Message = s.get_final_message()
    else:
        msg = client.messages.create(model="claude-proxy", max_tokens=100, messages=[{"role": "user", "content": prompt}])
    u = msg.usage
    read, write = u.cache_read_input_tokens or 0, u.cache_creation_input_tokens or 0
    total = u.input_tokens + read + write
    # Anthropic's convention: input_tokens excludes cache reads and writes (the fake reads half, writes a quarter).
    assert read == total // 2 > 0 and write == total // 4 > 0 and u.input_tokens == total - read - write

    oa = openai.OpenAI(base_url=fb.url + "/v1", api_key="x", max_retries=0)
    raw = oa.chat.completions.with_raw_response.create(model="claude-proxy",
                                                       messages=[{"role": "user", "content": prompt}])
    chat = raw.parse()
    assert chat.usage is not None and chat.usage.prompt_tokens_details is not None
    # OpenAI's convention: prompt_tokens include the cached tokens.
    assert chat.usage.prompt_tokens == total and chat.usage.prompt_tokens_details.cached_tokens == read
    resp = oa.responses.create(model="claude-proxy", input=prompt)
    assert resp.usage is not None
    assert resp.usage.input_tokens == total and resp.usage.input_tokens_details.cached_tokens == read
    if stream:
        last = list(oa.chat.completions.create(model="claude-proxy", messages=[{"role": "user", "content": prompt}],
                                               stream=True, stream_options={"include_usage": True}))[-1]
        assert last.usage is not None and last.usage.prompt_tokens_details is not None
        assert last.usage.prompt_tokens == total and last.usage.prompt_tokens_details.cached_tokens == read
        done = list(oa.responses.create(model="claude-proxy", input=prompt, stream=True))[-1]
        assert done.type == "response.completed" and done.response.usage is not None
        assert done.response.usage.input_tokens == total
        assert done.response.usage.input_tokens_details.cached_tokens == read

    call, = spans(fb.run(raw.headers["x-flowbase-run-id"]), "model_call")
    assert call["usage"]["input_tokens"] == total
    assert call["usage"]["cache_read_tokens"] == read and call["usage"]["cache_write_tokens"] == write


def test_cached_tokens_of_an_openai_upstream_are_split_out_for_an_anthropic_client(
        client: anthropic.Anthropic) -> None:
    msg = client.messages.create(model="claude-on-openai", max_tokens=100,
                                 messages=[{"role": "user", "content": "cached openai prompt [[cached]]"}])
    read = msg.usage.cache_read_input_tokens or 0
    prompt_tokens = msg.usage.input_tokens + read
    assert read == prompt_tokens // 2 > 0 and not msg.usage.cache_creation_input_tokens


# ---- what Claude Code sends ---------------------------------------------------------------------


@pytest.mark.parametrize(("model", "wire"), BOTH)
def test_a_system_role_entry_inside_messages_reaches_the_upstream_as_a_system_prompt(
        fb: Flowbase, upstream: FakeUpstream, model: str, wire: str) -> None:
    marker = uuid.uuid4().hex[:8]
    r = fb.post("/v1/messages", headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}, json={
        "model": model, "max_tokens": 100, "system": [{"type": "text", "text": "top system"}],
        "messages": [{"role": "user", "content": f"first {marker}"}, {"role": "assistant", "content": "ok"},
                     {"role": "system", "content": "mid-conversation reminder"},
                     {"role": "user", "content": f"second {marker}"}]})
    assert r.status_code == 200, r.text
    assert r.json()["content"][0]["text"] == expected_reply("small", f"second {marker}")
    body = sent_with(upstream, marker)["body"]
    if wire == "anthropic":
        assert system_texts(body) == ["top system", "mid-conversation reminder"]
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    else:
        roles = [(m["role"], m["content"]) for m in body["messages"] if m["role"] == "system"]
        assert [c for _, c in roles] == ["top system", "mid-conversation reminder"]
        assert [m["role"] for m in body["messages"] if m["role"] != "system"] == ["user", "assistant", "user"]
    assert user_texts(body)[-1] == f"second {marker}"


def test_the_beta_query_string_claude_code_adds_is_ignored(fb: Flowbase) -> None:
    r = fb.post("/v1/messages?beta=true", headers={"x-api-key": "k", "anthropic-version": "2023-06-01",
                                                   "anthropic-beta": "claude-code-20250219,oauth-2025-04-20"},
                json={"model": "claude-proxy", "max_tokens": 50, "messages": [{"role": "user", "content": "beta"}]})
    assert r.status_code == 200 and r.json()["content"][0]["text"] == expected_reply("small", "beta")


def test_runs_carrying_a_claude_code_session_id_share_it_and_the_session_lists_them_in_order(
        fb: Flowbase, client: anthropic.Anthropic) -> None:
    sid = str(uuid.uuid4())
    run_ids = []
    for n in range(3):
        with client.messages.with_streaming_response.create(
                model="claude-proxy", max_tokens=50, messages=[{"role": "user", "content": f"turn {n}"}],
                stream=n == 1, extra_headers={"X-Claude-Code-Session-Id": sid}) as raw:
            run_ids.append(raw.headers["x-flowbase-run-id"])
            raw.read()
    assert all(fb.run(r)["session_id"] == sid for r in run_ids)
    session = fb.get(f"/api/sessions/{sid}").json()
    assert [r["id"] for r in session["runs"]] == run_ids
    assert [r["status"] for r in session["runs"]] == ["ok"] * 3


def test_the_sdk_lists_the_published_models_in_the_anthropic_shape(client: anthropic.Anthropic) -> None:
    models = list(client.models.list())
    ids = {m.id for m in models}
    assert {"claude-proxy", "claude-thinker", "claude-on-openai"} <= ids
    assert all(m.type == "model" and m.display_name for m in models)
    one = client.models.retrieve("claude-proxy")
    assert one.id == "claude-proxy" and one.type == "model"


# ---- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize(("model", "wire"), BOTH)
def test_an_upstream_rate_limit_is_an_anthropic_rate_limit_error_with_retry_after(
        fb: Flowbase, client: anthropic.Anthropic, model: str, wire: str, stream: bool) -> None:
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model=model, max_tokens=50, stream=stream,
                               messages=[{"role": "user", "content": "hi [[error-429]]"}])
    err = info.value
    assert err.status_code == 429 and err.response.headers.get("retry-after") == "20"
    body = err.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert "rate limit" in body["error"]["message"].lower()
    run = fb.run(err.response.headers["x-flowbase-run-id"])
    assert run["status"] == "error" and run["protocol"] == "messages"


def test_an_overloaded_upstream_is_a_529_overloaded_error(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model="claude-proxy", max_tokens=50,
                               messages=[{"role": "user", "content": "hi [[error-529]]"}])
    assert info.value.status_code == 529
    assert info.value.response.json()["error"] == {"type": "overloaded_error", "message": "Overloaded"}


def test_an_unknown_model_is_a_404_not_found_error(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="claude-nope", max_tokens=50, messages=[{"role": "user", "content": "x"}])
    body = info.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    assert "claude-nope" in body["error"]["message"]


@pytest.mark.parametrize(("body", "fragment"), [
    (b"{nope", "JSON"),
    (b'{"model": "claude-proxy", "messages": [{"role": "user", "content": "x"}]}', "max_tokens"),
    (b'{"model": "claude-proxy", "max_tokens": 5}', "messages"),
    (b'{"model": "claude-proxy", "max_tokens": 5, "messages": [{"role": "robot", "content": "x"}]}', "role"),
    (b'{"model": "claude-proxy", "max_tokens": 5, "messages": [{"role": "user", "content": [{"text": "x"}]}]}',
     "type"),
])
def test_a_malformed_body_is_a_400_invalid_request_error(fb: Flowbase, body: bytes, fragment: str) -> None:
    r = fb.post("/v1/messages", content=body, headers={"content-type": "application/json",
                                                       "anthropic-version": "2023-06-01"})
    assert r.status_code == 400
    err = r.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert fragment in err["error"]["message"] and "Traceback" not in r.text


@pytest.mark.parametrize(("model", "wire", "kind"), [
    pytest.param("claude-proxy", "anthropic", "overloaded_error", id="anthropic-upstream"),
    pytest.param("claude-on-openai", "openai", "api_error", id="openai-upstream")])
def test_a_mid_stream_upstream_failure_is_an_error_event(
        fb: Flowbase, client: anthropic.Anthropic, model: str, wire: str, kind: str) -> None:
    body: dict[str, Any] = {"model": model, "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": "break midway please [[stream-error]]"}]}
    r = fb.post("/v1/messages", headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}, json=body)
    assert r.status_code == 200
    events = sse_events(r.content)
    assert all(name == data["type"] for name, data in events)
    names = [n for n, _ in events]
    assert names[0] == "message_start" and "content_block_delta" in names and names[-1] == "error"
    assert events[-1][1]["error"]["type"] == kind
    assert fb.run(r.headers["x-flowbase-run-id"])["status"] == "error"

    with pytest.raises(anthropic.APIStatusError) as info, \
            client.messages.stream(model=model, max_tokens=100, messages=body["messages"]) as s:
        s.get_final_message()
    assert isinstance(info.value.body, dict) and info.value.body["error"]["type"] == kind


# ---- more translation across the two upstreams --------------------------------------------------


@pytest.mark.parametrize(("model", "wire"), BOTH)
def test_parallel_tool_uses_come_back_as_tool_results_in_one_user_message(
        client: anthropic.Anthropic, upstream: FakeUpstream, model: str, wire: str) -> None:
    tools: list[ToolParam] = [*TOOLS, {"name": "get_time", "description": "time in a city",
                                       "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    prompt = f"both please [[parallel-tools]] {uuid.uuid4().hex[:6]}"
    first = client.messages.create(model=model, max_tokens=300, tools=tools,
                                   messages=[{"role": "user", "content": prompt}])
    uses = [b for b in first.content if b.type == "tool_use"]
    assert [u.name for u in uses] == ["get_weather", "get_time"] and first.stop_reason == "tool_use"
    second = client.messages.create(model=model, max_tokens=300, tools=tools, messages=[
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},  # type: ignore[misc, list-item]
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": uses[0].id, "content": [{"type": "text", "text": "rain"}]},
            {"type": "tool_result", "tool_use_id": uses[1].id, "content": "noon", "is_error": False}]}])
    assert text_of(second) == expected_tool_reply("small", "get_weather, get_time", "rain\nnoon")
    body = upstream.requests()[-1]["body"]
    if wire == "openai":
        assert body["messages"][-2:] == [{"role": "tool", "tool_call_id": uses[0].id, "content": "rain"},
                                         {"role": "tool", "tool_call_id": uses[1].id, "content": "noon"}]
    else:
        assert [b["tool_use_id"] for b in body["messages"][-1]["content"]] == [u.id for u in uses]


@pytest.mark.parametrize(("choice", "openai_choice", "anthropic_choice"), [
    ({"type": "any"}, "required", {"type": "any"}),
    ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}},
     {"type": "tool", "name": "get_weather"}),
    ({"type": "auto", "disable_parallel_tool_use": True}, "auto", {"type": "auto", "disable_parallel_tool_use": True}),
])
@pytest.mark.parametrize(("model", "wire"), BOTH)
def test_tool_choice_is_translated_for_each_upstream(
        client: anthropic.Anthropic, upstream: FakeUpstream, model: str, wire: str, choice: dict[str, Any],
        openai_choice: Any, anthropic_choice: dict[str, Any]) -> None:
    marker = uuid.uuid4().hex[:8]
    client.messages.create(model=model, max_tokens=50, tools=TOOLS, tool_choice=choice,  # type: ignore[call-overload]
                           messages=[{"role": "user", "content": f"choose {marker}"}])
    body = sent_with(upstream, marker)["body"]
    if wire == "openai":
        assert body["tool_choice"] == openai_choice
        assert body.get("parallel_tool_calls") is (False if choice.get("disable_parallel_tool_use") else None)
    else:
        assert body["tool_choice"] == anthropic_choice


@pytest.mark.parametrize(("model", "wire"), BOTH)
def test_max_tokens_and_stop_sequences_end_the_answer_with_the_matching_stop_reason(
        client: anthropic.Anthropic, model: str, wire: str) -> None:
    cut = client.messages.create(model=model, max_tokens=3, messages=[{"role": "user", "content": "[[words-20]]"}])
    assert cut.stop_reason == "max_tokens" and text_of(cut) == "[small] w1 w2 "
    with client.messages.stream(model=model, max_tokens=3,
                                messages=[{"role": "user", "content": "[[words-20]] streamed"}]) as s:
        assert s.get_final_message().stop_reason == "max_tokens"
    stopped = client.messages.create(model=model, max_tokens=100, stop_sequences=["w3"],
                                     messages=[{"role": "user", "content": "[[words-9]]"}])
    assert text_of(stopped) == "[small] w1 w2 "
    if wire == "anthropic":
        assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "w3"
    else:  # Chat Completions reports a stop sequence as a plain stop
        assert stopped.stop_reason in ("end_turn", "stop_sequence")


def test_an_image_block_reaches_an_openai_upstream_as_a_data_url(
        client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNg+M/AAAADAQEAyf6S7wAAAABJRU5ErkJggg=="
    marker = f"look {uuid.uuid4().hex[:6]}"
    msg = client.messages.create(model="claude-on-openai", max_tokens=100, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
        {"type": "text", "text": marker}]}])
    assert text_of(msg) == expected_reply("small", marker, images=1)
    content = sent_with(upstream, marker)["body"]["messages"][-1]["content"]
    image, = [p for p in content if p["type"] == "image_url"]
    assert image["image_url"]["url"] == f"data:image/png;base64,{png}"


def test_reasoning_from_an_openai_upstream_is_a_thinking_block_that_can_be_sent_back(
        client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    prompt = f"reason about it [[thinking]] {uuid.uuid4().hex[:6]}"
    first = client.messages.create(model="claude-on-openai", max_tokens=5000,
                                   thinking={"type": "enabled", "budget_tokens": 2048},
                                   messages=[{"role": "user", "content": prompt}])
    assert sent_with(upstream, prompt)["body"]["reasoning_effort"] == "low"
    assert [b.type for b in first.content] == ["thinking", "text"]
    assert first.content[0].type == "thinking" and first.content[0].thinking == thinking_for(prompt)
    with client.messages.stream(model="claude-on-openai", max_tokens=500,
                                messages=[{"role": "user", "content": prompt}]) as s:
        streamed = s.get_final_message()
    assert streamed.content[0].type == "thinking" and streamed.content[0].thinking == thinking_for(prompt)
    second = client.messages.create(model="claude-on-openai", max_tokens=500, messages=[
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},  # type: ignore[misc, list-item]
        {"role": "user", "content": "next"}])
    assert text_of(second) == expected_reply("small", "next")
    assistant = upstream.requests()[-1]["body"]["messages"][1]
    assert assistant["role"] == "assistant" and assistant["content"] == text_of(first)
