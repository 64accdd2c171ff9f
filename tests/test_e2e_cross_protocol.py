"""Across protocols, through the real host and runner: OpenAI-protocol clients (Chat Completions and
Responses) on a workflow whose upstream speaks Anthropic Messages, the same answer in every
protocol's error shape, and the gateway's own API keys as each client sends them. The host runs
with ``FLOWBASE_API_KEYS`` set, so every request here authenticates."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from tests.fake_upstream import expected_reply, expected_tool_reply, signature_for, thinking_for, tool_preamble
from tests.support_e2e import one_llm_workflow, serve_workflows, spans
from tests.support_host import Flowbase
from tests.support_upstream import FakeUpstream, header, sent_with, upstream_fixture

upstream = upstream_fixture()

KEY = "k1"
SECRET = "sk-ant-cross-upstream-1234"

ON_ANTHROPIC = one_llm_workflow("gpt-on-claude", "anthropic", "${ANTHROPIC_UPSTREAM}", "small", provider="claude")
THINKER = one_llm_workflow("gpt-on-claude-thinker", "anthropic", "${ANTHROPIC_UPSTREAM}", "thinking", provider="claude")
ON_OPENAI = one_llm_workflow("claude-on-gpt", "openai", "${OPENAI_UPSTREAM}", "small", provider="gpt")

CHAT_TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "description": "weather for a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "local time in a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}},
]
RESPONSES_TOOLS: list[Any] = [{"type": "function", **t["function"]} for t in CHAT_TOOLS]
# A 1x1 PNG.
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0000003010100c9fe92ef0000000049454e44ae426082")).decode()


@pytest.fixture(scope="module")
def fb(tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream) -> Iterator[Flowbase]:
    env = {"ANTHROPIC_UPSTREAM": upstream.anthropic_base_url, "OPENAI_UPSTREAM": upstream.openai_base_url,
           "UPSTREAM_KEY": SECRET, "FLOWBASE_API_KEYS": KEY}
    with serve_workflows(tmp_path_factory, {"anthropic": ON_ANTHROPIC, "thinker": THINKER, "openai": ON_OPENAI},
                         env) as server:
        yield server


@pytest.fixture(scope="module")
def chat(fb: Flowbase) -> openai.OpenAI:
    return openai.OpenAI(base_url=fb.url + "/v1", api_key=KEY, max_retries=0)


def blocks(content: Any) -> list[dict[str, Any]]:
    """An Anthropic-wire message content as a list of blocks."""
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def result_text(block: dict[str, Any]) -> str:
    content = block["content"]
    return content if isinstance(content, str) else "".join(b["text"] for b in content if b["type"] == "text")


# ---- Chat Completions client → Anthropic upstream -----------------------------------------------


def test_a_chat_completion_on_an_anthropic_upstream_is_translated_both_ways(
        fb: Flowbase, chat: openai.OpenAI, upstream: FakeUpstream) -> None:
    prompt = f"hello claude from chat {uuid.uuid4().hex[:6]}"
    raw = chat.chat.completions.with_raw_response.create(
        model="gpt-on-claude", max_tokens=120, temperature=0.5, stop=["NEVER-HAPPENS"],
        messages=[{"role": "system", "content": "be brief"}, {"role": "developer", "content": "and kind"},
                  {"role": "user", "content": prompt}])
    done = raw.parse()
    assert done.choices[0].message.content == expected_reply("small", prompt)
    assert done.choices[0].finish_reason == "stop" and done.model == "gpt-on-claude"
    assert done.usage is not None and done.usage.prompt_tokens > 0 and done.usage.completion_tokens > 0

    rec = sent_with(upstream, prompt)
    assert rec["path"] == "/v1/messages" and header(rec, "x-api-key") == SECRET and header(rec, "anthropic-version")
    body = rec["body"]
    assert body["model"] == "small" and body["max_tokens"] == 120 and body["temperature"] == 0.5
    assert body["stop_sequences"] == ["NEVER-HAPPENS"]
    assert [b["text"] for b in blocks(body["system"])] == ["be brief", "and kind"]
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": prompt}]}] \
        or body["messages"] == [{"role": "user", "content": prompt}]

    run = fb.run(raw.headers["x-flowbase-run-id"])
    assert run["protocol"] == "chat" and run["status"] == "ok"
    call, = spans(run, "model_call")
    assert call["usage"]["input_tokens"] == done.usage.prompt_tokens
    assert call["usage"]["output_tokens"] == done.usage.completion_tokens
    assert call["input"]["system"] == body["system"]
    assert SECRET not in json.dumps(run)


def test_a_streamed_chat_completion_on_an_anthropic_upstream_ends_with_the_usage_chunk(chat: openai.OpenAI) -> None:
    chunks = list(chat.chat.completions.create(model="gpt-on-claude", stream=True, stream_options={"include_usage": True},
                                               messages=[{"role": "user", "content": "stream from claude please"}]))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected_reply("small", "stream from claude please")
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.prompt_tokens > 0 and last.usage.completion_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_parallel_tool_calls_round_trip_between_a_chat_client_and_an_anthropic_upstream(
        fb: Flowbase, chat: openai.OpenAI, upstream: FakeUpstream, stream: bool) -> None:
    prompt = f"weather and time in Kyiv [[parallel-tools]] {uuid.uuid4().hex[:6]}"
    messages: list[Any] = [{"role": "user", "content": prompt}]
    first: ChatCompletion
    if stream:
        with chat.chat.completions.stream(model="gpt-on-claude", messages=messages, tools=CHAT_TOOLS) as s:
            first = s.get_final_completion()
    else:
        first = chat.chat.completions.create(model="gpt-on-claude", messages=messages, tools=CHAT_TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == tool_preamble("get_weather")
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert all(json.loads(c.function.arguments) == {"city": prompt} for c in calls)  # type: ignore[union-attr]

    messages.append(choice.message.model_dump(exclude_none=True))
    messages += [{"role": "tool", "tool_call_id": c.id, "content": f"result {n}"} for n, c in enumerate(calls)]
    raw = chat.chat.completions.with_raw_response.create(model="gpt-on-claude", messages=messages, tools=CHAT_TOOLS)
    assert raw.parse().choices[0].message.content == expected_tool_reply("small", "get_weather, get_time",
                                                                         "result 0\nresult 1")
    body = upstream.requests()[-1]["body"]
    assistant, results = body["messages"][-2:]
    assert assistant["role"] == "assistant"
    assert blocks(assistant["content"]) == [
        {"type": "text", "text": tool_preamble("get_weather")},
        *[{"type": "tool_use", "id": c.id, "name": c.function.name, "input": {"city": prompt}}  # type: ignore[union-attr]
          for c in calls]]
    # Both tool messages become tool_result blocks of one user message, in order.
    assert results["role"] == "user"
    assert [(b["type"], b["tool_use_id"], result_text(b)) for b in results["content"]] == [
        ("tool_result", c.id, f"result {n}") for n, c in enumerate(calls)]
    assert [t["name"] for t in body["tools"]] == ["get_weather", "get_time"]
    assert body["tools"][0]["input_schema"] == CHAT_TOOLS[0]["function"]["parameters"]

    run = fb.run(raw.headers["x-flowbase-run-id"])
    assert sorted(s["name"] for s in spans(run, "tool_call")) == ["get_time", "get_weather"]


def test_an_image_data_url_becomes_an_anthropic_base64_image_block(
        chat: openai.OpenAI, upstream: FakeUpstream) -> None:
    marker = f"what is in this picture {uuid.uuid4().hex[:6]}"
    done = chat.chat.completions.create(model="gpt-on-claude", messages=[{"role": "user", "content": [
        {"type": "text", "text": marker},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}])
    assert done.choices[0].message.content == expected_reply("small", marker, images=2)
    content = blocks(sent_with(upstream, marker)["body"]["messages"][-1]["content"])
    assert content == [
        {"type": "text", "text": marker},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]


def test_thinking_from_an_anthropic_upstream_reaches_a_chat_client_as_reasoning_content(
        chat: openai.OpenAI, upstream: FakeUpstream) -> None:
    prompt = f"think it over {uuid.uuid4().hex[:6]}"
    first = chat.chat.completions.create(model="gpt-on-claude-thinker", reasoning_effort="low",
                                         messages=[{"role": "user", "content": prompt}])
    message = first.choices[0].message
    assert message.content == expected_reply("thinking", prompt)
    assert getattr(message, "reasoning_content", None) == thinking_for(prompt)
    assert first.usage is not None and first.usage.completion_tokens > 0
    body = sent_with(upstream, prompt)["body"]
    assert body["thinking"]["type"] == "enabled" and body["thinking"]["budget_tokens"] >= 1024
    # A chat client sends the reasoning back without a signature; the upstream must not see an
    # unsigned thinking block (the real API rejects it), so the next turn still works.
    follow = chat.chat.completions.create(model="gpt-on-claude-thinker", messages=[
        {"role": "user", "content": prompt}, message.model_dump(exclude_none=True),  # type: ignore[list-item]
        {"role": "user", "content": "and again"}])
    assert follow.choices[0].message.content == expected_reply("thinking", "and again")


# ---- Responses client → Anthropic upstream ------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_a_responses_client_gets_signed_reasoning_from_an_anthropic_upstream_and_sends_it_back_intact(
        fb: Flowbase, chat: openai.OpenAI, upstream: FakeUpstream, stream: bool) -> None:
    prompt = f"reason then call [[tool-call]] {uuid.uuid4().hex[:6]}"
    first: Response
    if stream:
        with chat.responses.stream(model="gpt-on-claude-thinker", input=prompt, tools=RESPONSES_TOOLS,
                                   include=["reasoning.encrypted_content"]) as s:
            first = s.get_final_response()
    else:
        first = chat.responses.create(model="gpt-on-claude-thinker", input=prompt, tools=RESPONSES_TOOLS,
                                      include=["reasoning.encrypted_content"])
    assert [i.type for i in first.output] == ["reasoning", "message", "function_call"]
    reasoning, message, call = first.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == thinking_for(prompt)
    assert reasoning.encrypted_content == signature_for(thinking_for(prompt))
    assert message.type == "message" and first.output_text == tool_preamble("get_weather")
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": prompt}

    history: list[Any] = [{"role": "user", "content": prompt}, *[i.model_dump(exclude_none=True) for i in first.output],
                          {"type": "function_call_output", "call_id": call.call_id, "output": "cloudy"}]
    raw = chat.responses.with_raw_response.create(model="gpt-on-claude-thinker", input=history, tools=RESPONSES_TOOLS)
    assert raw.parse().output_text == expected_tool_reply("thinking", "get_weather", "cloudy")
    body = upstream.requests()[-1]["body"]
    assistant, result = body["messages"][-2:]
    assert blocks(assistant["content"]) == [
        {"type": "thinking", "thinking": thinking_for(prompt), "signature": signature_for(thinking_for(prompt))},
        {"type": "text", "text": tool_preamble("get_weather")},
        {"type": "tool_use", "id": call.call_id, "name": "get_weather", "input": {"city": prompt}}]
    assert [(b["type"], b["tool_use_id"], result_text(b)) for b in result["content"]] == [
        ("tool_result", call.call_id, "cloudy")]
    assert fb.run(raw.headers["x-flowbase-run-id"])["protocol"] == "responses"


def test_a_responses_input_image_reaches_an_anthropic_upstream(chat: openai.OpenAI, upstream: FakeUpstream) -> None:
    marker = f"describe {uuid.uuid4().hex[:6]}"
    resp = chat.responses.create(model="gpt-on-claude", input=[{"role": "user", "content": [
        {"type": "input_text", "text": marker},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "auto"}]}])
    assert resp.output_text == expected_reply("small", marker, images=1)
    image = blocks(sent_with(upstream, marker)["body"]["messages"][-1]["content"])[1]
    assert image == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}


@pytest.mark.parametrize("model", ["gpt-on-claude", "claude-on-gpt"])
def test_a_cut_answer_ends_as_length_for_chat_and_incomplete_for_responses(chat: openai.OpenAI, model: str) -> None:
    done = chat.chat.completions.create(model=model, max_tokens=3, messages=[{"role": "user", "content": "[[words-20]]"}])
    assert done.choices[0].finish_reason == "length" and done.choices[0].message.content == "[small] w1 w2 "
    resp = chat.responses.create(model=model, max_output_tokens=3, input="[[words-20]]")
    assert resp.status == "incomplete" and resp.incomplete_details is not None
    assert resp.incomplete_details.reason == "max_output_tokens" and resp.output_text == "[small] w1 w2 "
    events = list(chat.responses.create(model=model, max_output_tokens=3, input="[[words-20]] streamed", stream=True))
    assert events[-1].type == "response.incomplete" and events[-1].response.status == "incomplete"


def test_tool_choice_and_foreign_tool_kinds_from_a_responses_client_reach_an_anthropic_upstream_sanely(
        chat: openai.OpenAI, upstream: FakeUpstream) -> None:
    marker = uuid.uuid4().hex[:8]
    tools: list[Any] = [*RESPONSES_TOOLS, {"type": "web_search"},
                        {"type": "custom", "name": "apply_patch", "description": "edit files"}]
    resp = chat.responses.create(
        model="gpt-on-claude", tools=tools, tool_choice={"type": "function", "name": "get_time"},
        parallel_tool_calls=False, input=[{"role": "developer", "content": "you are an agent"},
                                          {"role": "user", "content": f"plan {marker}"}])
    assert resp.output_text == expected_reply("small", f"plan {marker}")
    body = sent_with(upstream, marker)["body"]
    assert [t["name"] for t in body["tools"]] == ["get_weather", "get_time"]
    assert body["tool_choice"] == {"type": "tool", "name": "get_time", "disable_parallel_tool_use": True}
    assert [b["text"] for b in blocks(body["system"])] == ["you are an agent"]


# ---- structured output (a JSON Schema for the answer) ------------------------------------------

CITY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"], "additionalProperties": False}


@pytest.mark.parametrize("client", ["chat", "responses", "messages"])
def test_a_json_schema_for_the_answer_reaches_an_anthropic_upstream_as_its_output_format(
        fb: Flowbase, chat: openai.OpenAI, upstream: FakeUpstream, client: str) -> None:
    marker = uuid.uuid4().hex[:8]
    prompt = f"which city {marker}"
    if client == "chat":
        done = chat.chat.completions.create(
            model="gpt-on-claude", messages=[{"role": "user", "content": prompt}],
            response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": CITY_SCHEMA,
                                                                    "strict": True}})
        assert done.choices[0].message.content == expected_reply("small", prompt)
    elif client == "responses":
        chat.responses.create(model="gpt-on-claude", input=prompt, text={"format": {
            "type": "json_schema", "name": "city", "schema": CITY_SCHEMA, "strict": True}})
    else:
        anthropic.Anthropic(base_url=fb.url, api_key=KEY, max_retries=0).messages.create(
            model="gpt-on-claude", max_tokens=200, messages=[{"role": "user", "content": prompt}],
            output_config={"format": {"type": "json_schema", "schema": CITY_SCHEMA}})
    body = sent_with(upstream, marker)["body"]
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": CITY_SCHEMA}}


def test_a_json_object_format_is_not_sent_to_an_anthropic_upstream_which_has_no_such_mode(
        chat: openai.OpenAI, upstream: FakeUpstream) -> None:
    marker = uuid.uuid4().hex[:8]
    chat.chat.completions.create(model="gpt-on-claude", response_format={"type": "json_object"},
                                 messages=[{"role": "user", "content": f"json please {marker}"}])
    assert "output_config" not in sent_with(upstream, marker)["body"]


def test_an_anthropic_clients_output_format_reaches_an_openai_upstream_as_a_json_schema_response_format(
        fb: Flowbase, upstream: FakeUpstream) -> None:
    marker = uuid.uuid4().hex[:8]
    anthropic.Anthropic(base_url=fb.url, api_key=KEY, max_retries=0).messages.create(
        model="claude-on-gpt", max_tokens=200, messages=[{"role": "user", "content": f"which city {marker}"}],
        output_config={"format": {"type": "json_schema", "schema": CITY_SCHEMA}})
    body = sent_with(upstream, marker)["body"]
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": CITY_SCHEMA,
                                                                             "strict": True}}


# ---- errors in each protocol's shape ------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_an_anthropic_upstream_s_rate_limit_reaches_an_openai_client_as_its_rate_limit_error(
        fb: Flowbase, chat: openai.OpenAI, stream: bool) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        chat.chat.completions.create(model="gpt-on-claude", stream=stream,
                                     messages=[{"role": "user", "content": "hi [[error-429]]"}])
    assert info.value.response.headers.get("retry-after") == "20"
    err = info.value.response.json()["error"]
    assert err["code"] == "rate_limit_exceeded" and "rate limit" in err["message"].lower()
    with pytest.raises(openai.RateLimitError) as again:
        chat.responses.create(model="gpt-on-claude", input="hi [[error-429]]", stream=stream)
    assert again.value.response.headers.get("retry-after") == "20"


def test_an_anthropic_upstream_that_is_overloaded_keeps_its_status_for_an_openai_client(chat: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        chat.chat.completions.create(model="gpt-on-claude", messages=[{"role": "user", "content": "hi [[error-529]]"}])
    assert info.value.status_code == 529 and info.value.response.json()["error"]["message"] == "Overloaded"


def test_an_openai_upstream_that_is_unavailable_is_an_overloaded_error_for_an_anthropic_client(fb: Flowbase) -> None:
    client = anthropic.Anthropic(base_url=fb.url, api_key=KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model="claude-on-gpt", max_tokens=50,
                               messages=[{"role": "user", "content": "hi [[error-503]]"}])
    assert info.value.status_code == 503
    assert info.value.response.json()["error"]["type"] == "overloaded_error"


@pytest.mark.parametrize("model", ["gpt-on-claude", "claude-on-gpt"])
def test_a_mid_stream_upstream_failure_is_an_error_chunk_for_a_chat_client(
        fb: Flowbase, chat: openai.OpenAI, model: str) -> None:
    received: list[str] = []
    with pytest.raises(openai.APIError) as info, chat.chat.completions.with_streaming_response.create(
            model=model, stream=True, messages=[{"role": "user", "content": "cut me off [[stream-error]]"}]) as raw:
        run_id = raw.headers["x-flowbase-run-id"]
        for chunk in raw.parse():
            received += [c.delta.content or "" for c in chunk.choices]
    assert "".join(received).startswith("[small] cut")
    assert info.value.message and isinstance(info.value.body, dict) and info.value.body.get("type")
    assert fb.run(run_id)["status"] == "error"


def test_a_mid_stream_overload_of_an_anthropic_upstream_fails_a_responses_stream_with_openai_s_code(
        fb: Flowbase, chat: openai.OpenAI) -> None:
    events = list(chat.responses.create(model="gpt-on-claude", input="cut me off [[stream-error]]", stream=True))
    error, failed = events[-2:]
    assert error.type == "error" and failed.type == "response.failed"
    # Codex backs off on server_is_overloaded; an Anthropic error type here would mean nothing to it.
    assert error.code == "server_is_overloaded" and error.message == "Overloaded"
    assert failed.response.error is not None and str(failed.response.error.code) == "server_is_overloaded"


# ---- the gateway's own API keys -----------------------------------------------------------------

PROTOCOLS = {
    "chat": ("/v1/chat/completions", {"model": "claude-on-gpt", "messages": [{"role": "user", "content": "auth"}]}),
    "responses": ("/v1/responses", {"model": "claude-on-gpt", "input": "auth"}),
    "messages": ("/v1/messages", {"model": "claude-on-gpt", "max_tokens": 20,
                                  "messages": [{"role": "user", "content": "auth"}]}),
}
AUTH_HEADERS = {"bearer": {"authorization": f"Bearer {KEY}"}, "x-api-key": {"x-api-key": KEY}}


@pytest.mark.parametrize("how", list(AUTH_HEADERS))
@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_the_api_key_is_accepted_as_a_bearer_token_or_an_x_api_key_on_every_protocol(
        fb: Flowbase, protocol: str, how: str) -> None:
    path, body = PROTOCOLS[protocol]
    r = fb.post(path, json=body, headers={**AUTH_HEADERS[how], "anthropic-version": "2023-06-01"})
    assert r.status_code == 200, r.text
    assert expected_reply("small", "auth") in r.text


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize("headers", [{"authorization": "Bearer wrong"}, {"x-api-key": "wrong"}, {}],
                         ids=["wrong-bearer", "wrong-x-api-key", "none"])
def test_a_wrong_or_missing_key_is_a_401_in_the_protocol_s_own_shape(
        fb: Flowbase, upstream: FakeUpstream, protocol: str, headers: dict[str, str]) -> None:
    path, body = PROTOCOLS[protocol]
    before = len(upstream.requests())
    r = fb.post(path, json=body, headers={**headers, "anthropic-version": "2023-06-01"})
    assert r.status_code == 401
    err = r.json()
    if protocol == "messages":
        assert err["type"] == "error" and err["error"]["type"] == "authentication_error"
    else:
        assert err["error"]["code"] == "invalid_api_key" and err["error"]["message"]
    assert "wrong" not in r.text and KEY not in r.text
    assert len(upstream.requests()) == before


def test_the_sdks_authenticate_with_their_own_headers_and_fail_cleanly_with_a_wrong_key(fb: Flowbase) -> None:
    oa = openai.OpenAI(base_url=fb.url + "/v1", api_key=KEY, max_retries=0)
    assert oa.responses.create(model="claude-on-gpt", input="sdk").output_text == expected_reply("small", "sdk")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=fb.url + "/v1", api_key="nope", max_retries=0).chat.completions.create(
            model="claude-on-gpt", messages=[{"role": "user", "content": "x"}])
    # x-api-key (api_key=) and Bearer (auth_token=), with an anthropic-version and betas from the future.
    future = {"anthropic-version": "2031-12-31", "anthropic-beta": "made-up-2031-01-01,another-beta-2031-02-02"}
    for client in (anthropic.Anthropic(base_url=fb.url, api_key=KEY, max_retries=0, default_headers=future),
                   anthropic.Anthropic(base_url=fb.url, auth_token=KEY, max_retries=0)):
        msg = client.messages.create(model="gpt-on-claude", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
        assert msg.content[0].type == "text" and msg.content[0].text == expected_reply("small", "hi")
        assert client.messages.count_tokens(model="gpt-on-claude",
                                            messages=[{"role": "user", "content": "hi"}]).input_tokens > 0
    with pytest.raises(anthropic.AuthenticationError) as info:
        anthropic.Anthropic(base_url=fb.url, api_key="nope", max_retries=0).messages.create(
            model="gpt-on-claude", max_tokens=50, messages=[{"role": "user", "content": "x"}])
    assert info.value.response.json()["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=fb.url, api_key="nope", max_retries=0).messages.count_tokens(
            model="gpt-on-claude", messages=[{"role": "user", "content": "x"}])


# ---- models -------------------------------------------------------------------------------------


def test_the_model_list_answers_in_the_openai_shape_and_in_the_anthropic_shape_when_asked(fb: Flowbase) -> None:
    published = {"gpt-on-claude", "gpt-on-claude-thinker", "claude-on-gpt"}
    oa = fb.get("/v1/models", headers={"authorization": f"Bearer {KEY}"}).json()
    assert oa["object"] == "list" and published <= {m["id"] for m in oa["data"]}
    assert all(m["object"] == "model" and isinstance(m["created"], int) and m["owned_by"] for m in oa["data"])
    an = fb.get("/v1/models", headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"}).json()
    assert "object" not in an and an["has_more"] is False
    assert published <= {m["id"] for m in an["data"]} and {an["first_id"], an["last_id"]} <= published
    assert all(m["type"] == "model" and m["display_name"] and m["created_at"].endswith("Z") for m in an["data"])
    sdk = anthropic.Anthropic(base_url=fb.url, api_key=KEY, max_retries=0)
    assert published <= {m.id for m in sdk.models.list()}
    assert openai.OpenAI(base_url=fb.url + "/v1", api_key=KEY).models.retrieve("claude-on-gpt").id == "claude-on-gpt"
    assert fb.get("/v1/models").status_code == 401
    r = fb.get("/v1/models", headers={"anthropic-version": "2023-06-01", "x-api-key": "nope"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_the_models_route_ignores_a_query_string(fb: Flowbase) -> None:
    r = httpx.get(fb.url + "/v1/models?limit=1000&beta=true", headers={"x-api-key": KEY,
                                                                      "anthropic-version": "2023-06-01"}, timeout=10)
    assert r.status_code == 200 and "gpt-on-claude" in {m["id"] for m in r.json()["data"]}
