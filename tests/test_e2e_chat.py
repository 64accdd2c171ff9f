"""The foundation, end to end: the real host and runner processes, a fake OpenAI upstream, and the
official ``openai`` SDK as the client."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fake_upstream import expected_reply, expected_tool_reply
from tests.support_e2e import assert_engine_order
from tests.support_host import ROOT, Flowbase
from tests.support_upstream import FakeUpstream, header, upstream  # noqa: F401  (fixture)

SECRET = "sk-upstream-secret-4242"

PROXY = """
version: 1
name: proxy
model: gpt-proxy
providers:
  upstream:
    type: openai
    base_url: ${UPSTREAM_BASE_URL}
    api_key: ${UPSTREAM_API_KEY}
nodes:
  - id: answer
    type: llm
    provider: upstream
    model: small
"""

ROUTED = """
version: 1
name: routed
model: routed
providers:
  upstream: {type: openai, base_url: "${UPSTREAM_BASE_URL}", api_key: "${UPSTREAM_API_KEY}"}
nodes:
  - id: classify
    type: router
    inputs: {text: "{{ request.input }}"}
    config: {routes: [{name: code, match: "(?i)python"}], default: chat}
  - id: summary
    type: llm
    provider: upstream
    model: summarizer
    prompt: "Summarize: {{ request.input }}"
  - id: strong
    type: llm
    provider: upstream
    model: strong
    when: classify.route == 'code'
  - id: plain
    type: template
    inputs: {text: "[{{ classify.route }}] {{ summary.text }}"}
output: [strong, plain]
"""

CASCADE = """
version: 1
name: cascade
model: cascade
providers:
  upstream: {type: openai, base_url: "${UPSTREAM_BASE_URL}", api_key: "${UPSTREAM_API_KEY}"}
nodes:
  - {id: small, type: llm, provider: upstream, model: small}
  - id: check
    type: verifier
    inputs: {text: "{{ small.text }}"}
    config: {not_contains: hard}
  - {id: strong, type: llm, provider: upstream, model: strong, when: not check.passed}
  - {id: primary, type: llm, provider: upstream, model: error-503, on_error: skip, when: "'fallback' in request.input"}
  - {id: backup, type: llm, provider: upstream, model: backup, when: primary.error}
output: [backup, strong, small]
"""

CRASHER = """
version: 1
name: crasher
model: crasher
nodes:
  - id: die
    type: fx.exit
    inputs: {code: 7}
"""

SLEEPER = """
version: 1
name: sleeper
model: sleeper
nodes:
  - id: nap
    type: fx.hang
    timeout_s: 1
"""


@pytest.fixture(scope="module")
def fb(tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream) -> Iterator[Flowbase]:  # noqa: F811
    wf = tmp_path_factory.mktemp("workflows")
    for name, text in {"proxy": PROXY, "routed": ROUTED, "cascade": CASCADE, "crasher": CRASHER, "sleeper": SLEEPER}.items():
        (wf / f"{name}.yaml").write_text(text)
    env = {"UPSTREAM_BASE_URL": upstream.openai_base_url, "UPSTREAM_API_KEY": SECRET,
           "FLOWBASE_PLUGIN_DIRS": str(ROOT / "tests" / "fixture_plugins" / "manifests")}
    with Flowbase(data_dir=tmp_path_factory.mktemp("data"), workflows=wf, env=env) as server:
        yield server


@pytest.fixture()
def client(fb: Flowbase) -> openai.OpenAI:
    return openai.OpenAI(base_url=fb.url + "/v1", api_key="anything", max_retries=0)


def spans_by_kind(run: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [s for s in run["spans"] if s["kind"] == kind]


def test_the_published_workflow_is_listed_as_a_model(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"gpt-proxy", "routed"} <= ids


def test_a_non_streamed_completion_goes_through_the_proxy_and_is_traced_span_by_span(
        fb: Flowbase, client: openai.OpenAI, upstream: FakeUpstream) -> None:  # noqa: F811
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-proxy", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}],
        temperature=0.3)
    completion = raw.parse()
    assert completion.choices[0].message.content == expected_reply("small", "hello there")
    assert completion.model == "gpt-proxy" and completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.prompt_tokens > 0
    run_id = raw.headers["x-flowbase-run-id"]

    sent = [r for r in upstream.requests() if r["body"].get("messages", [{}])[-1].get("content") == "hello there"][-1]
    assert header(sent, "authorization") == f"Bearer {SECRET}"
    assert sent["body"]["model"] == "small" and sent["body"]["temperature"] == 0.3
    assert sent["body"]["messages"][0] == {"role": "system", "content": "be brief"}

    run = fb.run(run_id)
    assert run["status"] == "ok" and run["model"] == "gpt-proxy" and run["workflow"] == "proxy"
    assert run["workflow_version"] >= 1 and run["protocol"] == "chat"
    root, = spans_by_kind(run, "workflow")
    node, = spans_by_kind(run, "node")
    call, = spans_by_kind(run, "model_call")
    assert root["parent_id"] is None and node["parent_id"] == root["id"] and call["parent_id"] == node["id"]
    assert [s["id"] for s in run["spans"]] == [f"{run_id}.{n}" for n in range(3)]
    assert node["name"] == "answer" and node["output"]["text"] == completion.choices[0].message.content
    assert root["output"] == node["output"]
    # The answer is stored once for the workflow and its answer node (and once as the upstream's reply).
    with contextlib.closing(sqlite3.connect(fb.data_dir / "flowbase.db")) as db:
        stored = db.execute("SELECT spans FROM run_spans WHERE run_id = ?", (run_id,)).fetchone()[0]
    assert stored.decode().count(completion.choices[0].message.content) == 2
    # The workflow's input is kept as the client sent it and shown as the canonical request it parses to.
    stored_root = json.loads(stored)[0]
    assert stored_root["input_format"] == "chat" and stored_root["input"]["messages"][1] == {"role": "user",
                                                                                           "content": "hello there"}
    assert root["input"]["origin"] == "chat" and root["input"]["model"] == "gpt-proxy"
    assert root["input"]["messages"][1] == {"role": "user", "content": [{"type": "text", "text": "hello there"}]}
    assert "input_format" not in root
    assert call["usage"]["input_tokens"] == completion.usage.prompt_tokens
    assert call["usage"]["output_tokens"] == completion.usage.completion_tokens
    assert call["input"]["model"] == "small" and call["status"] == "ok"
    for span in run["spans"]:
        assert span["started_at"] and span["ended_at"] and span["error"] is None
    assert SECRET not in json.dumps(run)


def test_a_streamed_completion_arrives_in_chunks_with_usage_when_asked(fb: Flowbase, client: openai.OpenAI) -> None:
    with client.chat.completions.with_streaming_response.create(
            model="gpt-proxy", messages=[{"role": "user", "content": "stream me some words please"}],
            stream=True, stream_options={"include_usage": True}) as resp:
        run_id = resp.headers["x-flowbase-run-id"]
        chunks = list(resp.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected_reply("small", "stream me some words please")
    assert chunks[0].choices[0].delta.role == "assistant"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 2
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    run = fb.run(run_id)
    assert run["stream"] is True and run["status"] == "ok"
    assert spans_by_kind(run, "model_call")[0]["usage"]["output_tokens"] == chunks[-1].usage.completion_tokens


def test_the_sdk_stream_helper_assembles_the_final_completion(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(model="gpt-proxy", messages=[{"role": "user", "content": "final please"}]) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.content == expected_reply("small", "final please")


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "weather for a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_call_reaches_the_client_and_its_result_reaches_the_model(
        fb: Flowbase, client: openai.OpenAI, upstream: FakeUpstream, stream: bool) -> None:  # noqa: F811
    messages: list[Any] = [{"role": "user", "content": f"weather in Paris [[tool-call]] {stream}"}]
    if stream:
        with client.chat.completions.stream(model="gpt-proxy", messages=messages, tools=TOOLS) as s:  # type: ignore[arg-type]
            first = s.get_final_completion()
    else:
        first = client.chat.completions.create(model="gpt-proxy", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}]
    raw = client.chat.completions.with_raw_response.create(model="gpt-proxy", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
    second = raw.parse()
    assert second.choices[0].message.content == expected_tool_reply("small", "get_weather", "sunny, 21C")
    sent = upstream.requests()[-1]["body"]
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}
    assert sent["messages"][-2]["tool_calls"][0]["id"] == call.id
    run = fb.run(raw.headers["x-flowbase-run-id"])
    tool_span, = spans_by_kind(run, "tool_call")
    assert_engine_order(run)
    assert tool_span["name"] == "get_weather" and tool_span["output"] == "sunny, 21C"


def test_an_upstream_rate_limit_reaches_the_client_with_its_status_and_message(fb: Flowbase, client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-proxy", messages=[{"role": "user", "content": "hi [[error-429]]"}])
    assert info.value.status_code == 429 and "Rate limit" in info.value.message
    assert info.value.response.headers.get("retry-after") == "20"
    run = fb.run(info.value.response.headers["x-flowbase-run-id"])
    assert run["status"] == "error" and "Rate limit" in run["error"]
    with pytest.raises(openai.InternalServerError) as err500:
        client.chat.completions.create(model="gpt-proxy", messages=[{"role": "user", "content": "hi [[error-500]]"}],
                                       stream=True)
    assert err500.value.status_code == 500


def test_a_multi_node_workflow_runs_independent_nodes_in_parallel_and_picks_the_answer_by_condition(
        fb: Flowbase, client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="routed", messages=[{"role": "user", "content": "tell me about cats"}])
    text = raw.parse().choices[0].message.content
    assert text == "[chat] " + expected_reply("summarizer", "Summarize: tell me about cats")
    run = fb.run(raw.headers["x-flowbase-run-id"])
    nodes = {s["name"]: s for s in spans_by_kind(run, "node")}
    assert_engine_order(run)
    assert nodes["strong"]["status"] == "skipped" and nodes["plain"]["status"] == "ok"
    assert nodes["classify"]["output"] == {"route": "chat"}
    assert nodes["summary"]["input"]["request"]["messages"][0]["content"][0]["text"] == "Summarize: tell me about cats"
    # classify and summary depend on nothing: they overlap in time.
    assert nodes["classify"]["started_at"] <= nodes["summary"]["ended_at"]

    code = client.chat.completions.create(model="routed", messages=[{"role": "user", "content": "python help"}])
    assert code.choices[0].message.content == expected_reply("strong", "python help")


@pytest.mark.parametrize(("prompt", "answered_by"), [("an easy one", "small"), ("a hard one", "strong")])
def test_a_cascade_keeps_the_small_model_s_answer_when_it_passes_the_verifier(
        fb: Flowbase, client: openai.OpenAI, prompt: str, answered_by: str) -> None:
    stream = client.chat.completions.create(model="cascade", messages=[{"role": "user", "content": prompt}], stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == expected_reply(answered_by, prompt)


def test_a_failing_node_with_on_error_skip_falls_back_to_the_next_output_node(fb: Flowbase, client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="cascade", messages=[{"role": "user", "content": "use the fallback"}])
    assert raw.parse().choices[0].message.content == expected_reply("backup", "use the fallback")
    run = fb.run(raw.headers["x-flowbase-run-id"])
    nodes = {s["name"]: s for s in spans_by_kind(run, "node")}
    assert_engine_order(run)
    assert run["status"] == "ok"
    assert nodes["primary"]["status"] == "error" and nodes["primary"]["error"]
    assert nodes["backup"]["status"] == "ok"


def test_a_runner_that_dies_mid_request_fails_that_request_and_the_next_one_works(fb: Flowbase, client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="crasher", messages=[{"role": "user", "content": "go"}])
    assert info.value.status_code == 502 and "exited" in info.value.message
    again = client.chat.completions.create(model="gpt-proxy", messages=[{"role": "user", "content": "after the crash"}])
    assert again.choices[0].message.content == expected_reply("small", "after the crash")


def test_a_node_past_its_deadline_is_cancelled_with_a_timeout_error(fb: Flowbase, client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="sleeper", messages=[{"role": "user", "content": "zzz"}])
    assert info.value.status_code == 504 and "nap" in info.value.message
    assert client.chat.completions.create(model="gpt-proxy", messages=[{"role": "user", "content": "awake"}]).choices


@pytest.mark.parametrize(("body", "status", "fragment"), [
    (b"{not json", 400, "JSON"),
    (b'{"model": "gpt-proxy"}', 400, "messages"),
    (b'{"model": "gpt-proxy", "messages": "hi"}', 400, "messages"),
    (b'{"model": 5, "messages": []}', 400, "model"),
    (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, "nope"),
])
def test_bad_requests_get_a_clear_error_in_the_openai_shape(fb: Flowbase, body: bytes, status: int, fragment: str) -> None:
    r = fb.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    err = r.json()["error"]
    assert fragment in err["message"] and err["type"] and "Traceback" not in r.text
    if status == 404:
        assert err["code"] == "model_not_found"


def test_runs_are_listed_newest_first_and_filter_by_model_and_status(fb: Flowbase, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="gpt-proxy", messages=[{"role": "user", "content": "listing"}])
    time.sleep(0.01)
    runs = fb.get("/api/runs", params={"model": "gpt-proxy"}).json()
    items = runs["runs"] if isinstance(runs, dict) else runs
    assert items and all(r["model"] == "gpt-proxy" for r in items)
    starts = [r["started_at"] for r in items]
    assert starts == sorted(starts, reverse=True)
    errors = fb.get("/api/runs", params={"status": "error"}).json()
    items = errors["runs"] if isinstance(errors, dict) else errors
    assert items and all(r["status"] == "error" for r in items)


def test_a_changed_workflow_file_is_reloaded_as_a_new_version_and_a_broken_one_keeps_the_old(
        fb: Flowbase, client: openai.OpenAI) -> None:
    assert fb.workflows is not None
    path = fb.workflows / "proxy.yaml"
    before = {m["model"]: m["version"] for m in fb.get("/api/published").json()["models"]}["gpt-proxy"]
    path.write_text(PROXY.replace("model: small", "model: smaller"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = {m["model"]: m["version"] for m in fb.get("/api/published").json()["models"]}["gpt-proxy"]
        if now > before:
            break
        time.sleep(0.2)
    assert now == before + 1
    got = client.chat.completions.create(model="gpt-proxy", messages=[{"role": "user", "content": "v2"}])
    assert got.choices[0].message.content == expected_reply("smaller", "v2")

    path.write_text(PROXY.replace("${UPSTREAM_API_KEY}", "${NOT_SET_ANYWHERE}"))
    deadline = time.monotonic() + 20
    errors: list[dict[str, str]] = []
    while time.monotonic() < deadline and not errors:
        errors = fb.get("/api/published").json()["errors"]
        time.sleep(0.2)
    assert errors and "NOT_SET_ANYWHERE" in errors[0]["error"] and "proxy.yaml" in errors[0]["error"]
    still = client.chat.completions.create(model="gpt-proxy", messages=[{"role": "user", "content": "still"}])
    assert still.choices[0].message.content == expected_reply("smaller", "still")
    path.write_text(PROXY)
    versions = fb.get("/api/workflows/proxy/versions").json()
    assert len(versions if isinstance(versions, list) else versions["versions"]) >= 2
    assert SECRET not in fb.get("/api/workflows/proxy").text


def test_the_upstream_secret_never_appears_in_the_log(fb: Flowbase) -> None:
    assert SECRET not in fb.log()


def test_an_unreachable_upstream_is_a_clear_502_without_the_key(tmp_path: Path) -> None:
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "p.yaml").write_text(PROXY)
    env = {"UPSTREAM_BASE_URL": "http://127.0.0.1:9/v1", "UPSTREAM_API_KEY": SECRET}
    with Flowbase(data_dir=tmp_path / "d", workflows=wf, env=env) as server:
        r = httpx.post(server.url + "/v1/chat/completions", timeout=30,
                       json={"model": "gpt-proxy", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 502 and "127.0.0.1:9" in r.json()["error"]["message"]
        assert SECRET not in r.text and SECRET not in server.log()


def test_a_client_that_disconnects_mid_stream_stops_the_upstream_call_and_the_run_is_cancelled(
        fb: Flowbase, upstream: FakeUpstream) -> None:  # noqa: F811
    marker = f"hang up on me {time.time_ns()}"
    body = {"model": "gpt-proxy", "stream": True,
            "messages": [{"role": "user", "content": f"{marker} [[slow-200]] [[words-50]]"}]}
    with httpx.stream("POST", fb.url + "/v1/chat/completions", json=body, timeout=30) as r:
        run_id = r.headers["x-flowbase-run-id"]
        for line in r.iter_lines():
            if '"content"' in line:
                break  # the first token is here: hang up
    deadline = time.monotonic() + 20
    record: dict[str, Any] = {}
    while time.monotonic() < deadline:
        record = next(q for q in upstream.requests() if marker in json.dumps(q["body"]))
        if record["disconnected"]:
            break
        time.sleep(0.1)
    assert record["disconnected"], "the upstream kept streaming after the client left"
    while time.monotonic() < deadline and fb.get(f"/api/runs/{run_id}").status_code != 200:
        time.sleep(0.1)
    assert fb.run(run_id)["status"] == "cancelled"
