"""plugin_sdk.upstream: the plumbing the model nodes share (their HTTP behaviour is tested through the
nodes themselves in test_plugin_openai.py / test_plugin_anthropic.py)."""

from __future__ import annotations

import asyncio

import pytest

from plugin_sdk.errors import NodeError
from plugin_sdk.node import NodeContext
from plugin_sdk.upstream import SSELines, TimeoutCache, UpstreamPool, host_of, raw_error_message, require_request


class Client:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


def new_pool() -> UpstreamPool[Client]:
    return UpstreamPool(Client, lambda c: c.closed, Client.close)


def test_sse_payloads_split_across_reads_come_out_whole_and_other_lines_are_dropped() -> None:
    lines = SSELines()
    assert lines.feed(b"event: message_start\ndata: {\"a\"") == []
    assert lines.feed(b": 1}\n\n: keep-alive\ndata:[DONE]\n") == [b'{"a": 1}', b"[DONE]"]
    assert lines.feed(b"data: x\r\n") == [b"x"]


async def test_a_pool_reuses_its_client_per_base_url_and_replaces_a_closed_one() -> None:
    pool = new_pool()
    loop = asyncio.get_running_loop()
    a = pool.add("k1", "http://user:pw@h:1/v1", "http://h:1/v1/chat", {"x": "1"}, loop)
    b = pool.add("k2", "http://user:pw@h:1/v1", "http://h:1/v1/chat", {"x": "2"}, loop)
    assert a.client is b.client and a.host == "h:1" and pool.upstreams["k2"] is b
    await a.client.close()
    assert pool.client("http://user:pw@h:1/v1", loop) is not a.client


async def test_closing_a_pool_closes_only_the_clients_of_the_running_loop() -> None:
    pool = new_pool()
    other = asyncio.new_event_loop()
    try:
        foreign = pool.client("http://a", other)
        mine = pool.add("k", "http://b", "http://b/x", {}, asyncio.get_running_loop()).client
        await pool.close()
    finally:
        other.close()
    assert mine.closed and not foreign.closed and pool.upstreams == {}


def test_timeouts_are_built_once_per_value_and_default_when_unset() -> None:
    built: list[float] = []

    def make(seconds: float) -> float:
        built.append(seconds)
        return seconds

    cache = TimeoutCache(make, 600.0)
    assert cache.get({}) == 600.0 and cache.get({"timeout_s": 2}) == 2.0 and cache.get({"timeout_s": 2.0}) == 2.0
    assert built == [600.0, 2.0] and cache.read_s({"timeout_s": None}) == 600.0


def test_a_model_node_without_a_request_is_a_node_error_naming_it() -> None:
    ctx = NodeContext(node_id="n1", node_type="t", config={}, inputs={}, request=None, stream=False)
    with pytest.raises(NodeError, match=r"node 'n1' \(openai.chat\) needs a request"):
        require_request(ctx, "openai.chat")


def test_an_error_body_that_is_not_json_reads_as_its_text_or_the_status() -> None:
    assert raw_error_message(b"  Bad Gateway \n", 502) == "Bad Gateway"
    assert raw_error_message(b"", 503) == "upstream answered HTTP 503"
    assert host_of("https://k@api.example.com:8443/v1") == "api.example.com:8443"
