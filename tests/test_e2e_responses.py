"""The OpenAI Responses API end to end: the real host and runner, the official ``openai`` SDK as the
client, workflows on the fake OpenAI upstream and on the offline mock model; every answer checked
against what the upstream received and what the run's trace recorded."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.fake_upstream import expected_reply, expected_tool_reply, thinking_for
from tests.support_e2e import one_llm_workflow, serve_workflows, spans
from tests.support_host import Flowbase
from tests.support_upstream import FakeUpstream, sent_with, upstream_fixture

upstream = upstream_fixture()

PROXY = one_llm_workflow("resp-proxy", "openai", "${UPSTREAM_BASE_URL}", "small", api_key="sk-responses-e2e")
THINKER = one_llm_workflow("resp-thinker", "openai", "${UPSTREAM_BASE_URL}", "thinking", api_key="sk-responses-e2e")

MOCK = """
version: 1
name: resp-mock
model: resp-mock
providers:
  local: {type: mock}
nodes:
  - id: answer
    type: llm
    provider: local
    model: mock-resp
    config:
      script:
        - match: "weather in (?P<city>[A-Za-z]+)"
          when_tool: get_weather
          thinking: "They want the weather in {city}."
          tool_call: {arguments: {city: "{city}"}}
        - on_tool_result: true
          reply: "The weather report: {tool_result}"
        - match: "think about (?P<topic>[a-z ]+)"
          thinking: "Pondering {topic} carefully."
          reply: "I thought about {topic}."
"""

TOOLS: list[Any] = [{"type": "function", "name": "get_weather", "description": "weather for a city",
                     "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                    "required": ["city"]}}]


@pytest.fixture(scope="module")
def fb(tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream) -> Iterator[Flowbase]:
    with serve_workflows(tmp_path_factory, {"proxy": PROXY, "thinker": THINKER, "mock": MOCK},
                         {"UPSTREAM_BASE_URL": upstream.openai_base_url}) as server:
        yield server


@pytest.fixture(scope="module")
def client(fb: Flowbase) -> openai.OpenAI:
    return openai.OpenAI(base_url=fb.url + "/v1", api_key="anything", max_retries=0)


def mock_signature(model: str, thinking: str) -> str:
    return base64.b64encode(hashlib.sha256(f"mock:{model}:{thinking}".encode()).digest()).decode()


# ---- non-streamed -----------------------------------------------------------------------------


def test_a_text_response_comes_from_the_upstream_and_its_usage_matches_the_trace(
        fb: Flowbase, client: openai.OpenAI, upstream: FakeUpstream) -> None:
    raw = client.responses.with_raw_response.create(model="resp-proxy", input="hello responses")
    resp = raw.parse()
    assert resp.output_text == expected_reply("small", "hello responses")
    assert resp.status == "completed" and resp.model == "resp-proxy" and resp.object == "response"
    assert [item.type for item in resp.output] == ["message"]
    assert resp.usage is not None and resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
    sent = sent_with(upstream, "hello responses")["body"]
    assert sent["messages"] == [{"role": "user", "content": "hello responses"}]

    run = fb.run(raw.headers["x-flowbase-run-id"])
    assert run["status"] == "ok" and run["protocol"] == "responses" and run["model"] == "resp-proxy"
    call, = spans(run, "model_call")
    assert call["usage"]["input_tokens"] == resp.usage.input_tokens
    assert call["usage"]["output_tokens"] == resp.usage.output_tokens
    node, = spans(run, "node")
    assert node["output"]["text"] == resp.output_text


def test_instructions_reach_the_upstream_as_the_system_message_and_are_echoed_back(
        client: openai.OpenAI, upstream: FakeUpstream) -> None:
    resp = client.responses.create(model="resp-proxy", input="instructed question", instructions="answer in French",
                                   max_output_tokens=50, temperature=0.2)
    assert resp.output_text == expected_reply("small", "instructed question")
    assert resp.instructions == "answer in French" and resp.max_output_tokens == 50
    body = sent_with(upstream, "instructed question")["body"]
    assert body["messages"][0] == {"role": "system", "content": "answer in French"}
    assert body["messages"][1] == {"role": "user", "content": "instructed question"}
    assert body["temperature"] == 0.2
    assert (body.get("max_completion_tokens") or body.get("max_tokens")) == 50


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream-helper"])
def test_a_function_call_item_reaches_the_client_and_its_output_continues_the_conversation(
        fb: Flowbase, client: openai.OpenAI, upstream: FakeUpstream, stream: bool) -> None:
    prompt = f"weather in Paris [[tool-call]] {uuid.uuid4().hex[:8]}"
    if stream:
        with client.responses.stream(model="resp-proxy", input=prompt, tools=TOOLS) as s:
            first: Response = s.get_final_response()
    else:
        first = client.responses.create(model="resp-proxy", input=prompt, tools=TOOLS)
    call, = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.status == "completed"
    assert json.loads(call.arguments) == {"city": prompt}
    assert call.call_id.startswith("call_fake")

    follow_up: list[Any] = [{"role": "user", "content": prompt}, *[i.model_dump(exclude_none=True) for i in first.output],
                            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}]
    raw = client.responses.with_raw_response.create(model="resp-proxy", input=follow_up, tools=TOOLS)
    second = raw.parse()
    assert second.output_text == expected_tool_reply("small", "get_weather", "sunny, 21C")

    sent = upstream.requests()[-1]["body"]
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny, 21C"}
    assistant = sent["messages"][-2]
    assert assistant["role"] == "assistant"
    assert assistant["tool_calls"] == [{"id": call.call_id, "type": "function",
                                        "function": {"name": "get_weather", "arguments": call.arguments}}]
    assert sent["tools"][0]["function"]["name"] == "get_weather"

    run = fb.run(raw.headers["x-flowbase-run-id"])
    tool_span, = spans(run, "tool_call")
    assert tool_span["name"] == "get_weather" and tool_span["output"] == "sunny, 21C"


# ---- streamed ---------------------------------------------------------------------------------


def test_a_streamed_response_follows_the_event_order_the_sdk_expects(
        fb: Flowbase, client: openai.OpenAI) -> None:
    with client.responses.with_streaming_response.create(
            model="resp-proxy", input="stream these words to me please", stream=True) as raw:
        run_id = raw.headers["x-flowbase-run-id"]
        events = list(raw.parse())
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[1] == "response.in_progress"
    assert types[-1] == "response.completed"
    seqs = [e.sequence_number for e in events]
    assert seqs[0] == 0 and all(b > a for a, b in itertools.pairwise(seqs))

    added_at: dict[str, int] = {}
    for i, e in enumerate(events):
        if e.type == "response.output_item.added":
            added_at[str(e.item.id)] = i
        item_id = getattr(e, "item_id", None)
        if item_id is not None:
            assert item_id in added_at, f"{e.type} for {item_id} came before its output_item.added"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 2
    text = "".join(deltas)
    assert text == expected_reply("small", "stream these words to me please")
    done = events[-1].response  # type: ignore[union-attr]
    assert done.status == "completed" and done.output_text == text
    assert done.usage is not None and done.usage.output_tokens > 0 and done.usage.input_tokens > 0
    assert done.id == events[0].response.id  # type: ignore[union-attr]

    run = fb.run(run_id)
    assert run["stream"] is True and run["status"] == "ok" and run["protocol"] == "responses"
    assert spans(run, "model_call")[0]["usage"]["output_tokens"] == done.usage.output_tokens


def test_the_sdk_stream_helper_assembles_the_final_response(client: openai.OpenAI) -> None:
    with client.responses.stream(model="resp-proxy", input="final answer please",
                                 instructions="be exact") as s:
        texts = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert final.output_text == "".join(texts) == expected_reply("small", "final answer please")
    assert final.status == "completed" and final.instructions == "be exact"


def test_a_streamed_function_call_streams_its_arguments_and_is_done_before_completed(client: openai.OpenAI) -> None:
    prompt = "weather in Rome [[tool-call]]"
    events = list(client.responses.create(model="resp-proxy", input=prompt, tools=TOOLS, stream=True))
    types = [e.type for e in events]
    arg_deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    done, = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(arg_deltas) > 1 and "".join(arg_deltas) == done.arguments
    assert json.loads(done.arguments) == {"city": prompt}
    added, = [e for e in events if e.type == "response.output_item.added"]
    assert added.item.type == "function_call" and added.item.name == "get_weather"
    assert types.index("response.output_item.added") < types.index("response.function_call_arguments.delta")
    assert types.index("response.output_item.done") < types.index("response.completed") == len(types) - 1


# ---- reasoning --------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_upstream_reasoning_content_becomes_a_reasoning_item_before_the_message(
        fb: Flowbase, client: openai.OpenAI, stream: bool) -> None:
    prompt = f"why is the sky blue? {stream}"
    if stream:
        with client.responses.stream(model="resp-thinker", input=prompt) as s:
            events = list(s)
            resp: Response = s.get_final_response()
        summary = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
        assert summary == thinking_for(prompt)
    else:
        resp = client.responses.create(model="resp-thinker", input=prompt)
    assert [i.type for i in resp.output] == ["reasoning", "message"]
    reasoning = resp.output[0]
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == thinking_for(prompt)
    assert resp.output_text == expected_reply("thinking", prompt)
    assert resp.usage is not None and resp.usage.output_tokens_details.reasoning_tokens > 0


# ---- the offline mock model -------------------------------------------------------------------


def test_the_mock_model_echoes_through_the_responses_api(client: openai.OpenAI) -> None:
    resp = client.responses.create(model="resp-mock", input="plain words for the mock")
    assert resp.output_text == "Echo: plain words for the mock"
    streamed = "".join(e.delta for e in client.responses.create(model="resp-mock", input="streamed mock words",
                                                                 stream=True)
                       if e.type == "response.output_text.delta")
    assert streamed == "Echo: streamed mock words"


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_mock_thinking_is_a_reasoning_item_whose_encrypted_content_is_its_signature(
        fb: Flowbase, client: openai.OpenAI, stream: bool) -> None:
    if stream:
        with client.responses.stream(model="resp-mock", input="think about deep space") as s:
            resp: Response = s.get_final_response()
    else:
        resp = client.responses.create(model="resp-mock", input="think about deep space")
    reasoning, message = resp.output
    assert reasoning.type == "reasoning" and message.type == "message"
    assert reasoning.summary[0].text == "Pondering deep space carefully."
    assert reasoning.encrypted_content == mock_signature("mock-resp", "Pondering deep space carefully.")
    assert resp.output_text == "I thought about deep space."


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_a_mock_tool_turn_round_trips_with_its_reasoning_sent_back(
        fb: Flowbase, client: openai.OpenAI, stream: bool) -> None:
    prompt = "what is the weather in Oslo"
    if stream:
        with client.responses.stream(model="resp-mock", input=prompt, tools=TOOLS) as s:
            first: Response = s.get_final_response()
    else:
        first = client.responses.create(model="resp-mock", input=prompt, tools=TOOLS)
    reasoning, call = first.output
    assert reasoning.type == "reasoning" and call.type == "function_call"
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Oslo"}
    history: list[Any] = [{"role": "user", "content": prompt}, *[i.model_dump(exclude_none=True) for i in first.output],
                          {"type": "function_call_output", "call_id": call.call_id, "output": "snow, -3C"}]
    raw = client.responses.with_raw_response.create(model="resp-mock", input=history, tools=TOOLS)
    assert raw.parse().output_text == "The weather report: snow, -3C"
    run = fb.run(raw.headers["x-flowbase-run-id"])
    msgs = spans(run, "model_call")[0]["input"]["messages"]
    assistant = [m for m in msgs if m["role"] == "assistant"][-1]
    kinds = [p["type"] for p in assistant["content"]]
    assert kinds[0] == "thinking" and "tool_call" in kinds
    assert assistant["content"][0]["signature"] == reasoning.encrypted_content


# ---- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_an_upstream_rate_limit_is_a_429_rate_limit_error_with_retry_after(
        fb: Flowbase, client: openai.OpenAI, stream: bool) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        client.responses.create(model="resp-proxy", input="hi [[error-429]]", stream=stream)
    err = info.value
    assert err.status_code == 429 and "Rate limit" in err.message
    assert err.response.headers.get("retry-after") == "20"
    body = err.response.json()["error"]
    assert body["type"] and "Rate limit" in body["message"]
    run = fb.run(err.response.headers["x-flowbase-run-id"])
    assert run["status"] == "error" and run["protocol"] == "responses"


def test_an_unknown_model_is_a_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="no-such-model", input="hi")
    err = info.value.response.json()["error"]
    assert err["code"] == "model_not_found" and "no-such-model" in err["message"] and err["param"] == "model"


@pytest.mark.parametrize(("body", "fragment"), [
    (b"{oops", "JSON"),
    (b'{"model": "resp-proxy"}', "input"),
    (b'{"model": "resp-proxy", "input": 7}', "input"),
    (b'{"model": "resp-proxy", "input": [{"type": "message", "content": "x"}]}', "role"),
])
def test_a_malformed_body_is_a_400_invalid_request_error(fb: Flowbase, body: bytes, fragment: str) -> None:
    r = fb.post("/v1/responses", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and fragment in err["message"] and "Traceback" not in r.text


def test_a_mid_stream_upstream_failure_ends_the_stream_with_response_failed(
        fb: Flowbase, client: openai.OpenAI) -> None:
    with client.responses.with_streaming_response.create(
            model="resp-proxy", input="fail midway please [[stream-error]]", stream=True) as raw:
        run_id = raw.headers["x-flowbase-run-id"]
        events = list(raw.parse())
    types = [e.type for e in events]
    assert types[0] == "response.created" and "response.output_text.delta" in types
    assert types[-2:] == ["error", "response.failed"]
    failed = events[-1].response  # type: ignore[union-attr]
    assert failed.status == "failed" and failed.error is not None and failed.error.message
    seqs = [e.sequence_number for e in events]
    assert seqs == sorted(set(seqs)) and seqs[0] == 0
    assert fb.run(run_id)["status"] == "error"


# ---- transport and sessions -------------------------------------------------------------------


def test_a_websocket_upgrade_on_responses_is_refused_promptly_with_a_4xx(fb: Flowbase) -> None:
    # Seconds the client waits for the handshake: a refusal must come, or Codex would hang instead
    # of falling back to HTTP.
    with pytest.raises(InvalidStatus) as info:
        connect(f"ws://127.0.0.1:{fb.port}/v1/responses", open_timeout=10,
                additional_headers={"Authorization": "Bearer anything"})
    assert 400 <= info.value.response.status_code < 500


def test_runs_carrying_a_codex_session_id_share_that_session_in_order(
        fb: Flowbase, client: openai.OpenAI) -> None:
    sid = f"codex-{uuid.uuid4()}"
    run_ids = []
    for n, stream in enumerate([False, True, False]):
        with client.responses.with_streaming_response.create(
                model="resp-mock", input=f"turn {n}", stream=stream, extra_headers={"session_id": sid}) as raw:
            run_ids.append(raw.headers["x-flowbase-run-id"])
            raw.read()
    for run_id in run_ids:
        assert fb.run(run_id)["session_id"] == sid
    session = fb.get(f"/api/sessions/{sid}").json()
    assert session["session_id"] == sid
    assert [r["id"] for r in session["runs"]] == run_ids
    assert fb.get("/api/sessions/codex-unknown-session").status_code == 404


def test_the_sdk_reads_a_model_listing_that_names_the_published_workflows(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"resp-proxy", "resp-thinker", "resp-mock"} <= ids
    r = httpx.get(str(client.base_url) + "models", timeout=10)
    assert r.json()["object"] == "list"
