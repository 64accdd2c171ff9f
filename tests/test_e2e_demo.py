"""`flowbase serve` with no workflow folder serves the offline demo model to curl-like clients and the SDK."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support_host import Flowbase


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flowbase]:
    with Flowbase(data_dir=tmp_path_factory.mktemp("demo")) as server:
        yield server


def test_plain_serve_publishes_the_demo_model(demo: Flowbase) -> None:
    models = demo.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["flowbase-demo"]


def test_the_demo_answers_a_plain_http_request_and_records_every_node(demo: Flowbase) -> None:
    r = httpx.post(demo.url + "/v1/chat/completions", timeout=30,
                   json={"model": "flowbase-demo", "messages": [{"role": "user", "content": "can you fix this python bug?"}]})
    assert r.status_code == 200, r.text
    text = r.json()["choices"][0]["message"]["content"]
    assert "can you fix this python bug?" in text
    run = demo.run(r.headers["x-flowbase-run-id"])
    nodes = {s["name"]: s for s in run["spans"] if s["kind"] == "node"}
    assert set(nodes) == {"classify", "draft", "check", "answer"}
    assert nodes["classify"]["output"]["route"] == "code" and nodes["check"]["output"]["passed"] is True
    assert all(s["status"] == "ok" for s in nodes.values())
    assert len([s for s in run["spans"] if s["kind"] == "model_call"]) == 2
    assert run["usage"]["input_tokens"] > 0 and run["cost_usd"] == 0


def test_health_lists_the_plugin_runner_with_its_process_and_memory(demo: Flowbase) -> None:
    body = demo.get("/api/health").json()
    assert body["status"] == "ok"
    [runner] = body["runners"]
    assert runner["group"] == "shared" and "openai_compat" in runner["packages"]
    assert isinstance(runner["pid"], int) and runner["rss_mb"] > 10
    assert runner["replaced"] == 0 and runner["retiring"] == []


def test_the_demo_streams_to_the_openai_sdk(demo: Flowbase) -> None:
    client = openai.OpenAI(base_url=demo.url + "/v1", api_key="none", max_retries=0)
    stream = client.chat.completions.create(model="flowbase-demo", stream=True,
                                            messages=[{"role": "user", "content": "hello streaming world"}])
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "hello streaming world" in "".join(pieces)
