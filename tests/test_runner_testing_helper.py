"""plugin_sdk.testing.run_node: a node runs in-process with the runner's checks, no host needed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from plugin_runner.manifest import NodeTypeSpec
from plugin_sdk.errors import NodeError, NodeTimeout, UpstreamError
from plugin_sdk.node import NodeContext
from plugin_sdk.testing import run_node
from plugin_sdk.types import Request, Response, TextPart, Usage, last_user_text, response_events, text_message

SPEC = NodeTypeSpec(
    input_schema={"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
    output_schema={"type": "object", "required": ["double"], "properties": {"double": {"type": "integer"}}},
)


async def double(ctx: NodeContext) -> dict[str, Any]:
    return {"double": ctx.inputs["n"] * 2}


async def parrot(ctx: NodeContext) -> Response:
    assert ctx.request is not None
    resp = Response(id="r1", model=ctx.config["model"], content=[TextPart(last_user_text(ctx.request))],
                    usage=Usage(input_tokens=2, output_tokens=1))
    for ev in response_events(resp):
        await ctx.emit(ev)
    ctx.record("model_call", ctx.config["model"], started_at=0.0, ended_at=1.0, usage=resp.usage)
    return resp


async def test_run_node_returns_output_events_response_and_spans_of_a_streaming_model_node() -> None:
    req = Request(model="m", messages=[text_message("user", "polly")])
    res = await run_node(parrot, config={"model": "fx"}, request=req, stream=True)
    assert res.output["text"] == "polly"
    assert res.response is not None and res.response.model == "fx"
    assert res.events == response_events(res.response)
    assert [s.name for s in res.spans] == ["fx"]


async def test_run_node_emits_nothing_when_not_streaming() -> None:
    req = Request(model="m", messages=[text_message("user", "quiet")])
    res = await run_node(parrot, config={"model": "fx"}, request=req)
    assert res.events == []
    assert res.output["text"] == "quiet"


async def test_run_node_checks_inputs_and_output_against_the_manifest_schemas() -> None:
    assert (await run_node(double, inputs={"n": 2}, validate_with=SPEC)).output == {"double": 4}
    with pytest.raises(NodeError, match=r"node 'test' \(test\) got inputs that do not match .* at \$\.n"):
        await run_node(double, inputs={"n": "2"}, validate_with=SPEC)

    async def wrong(ctx: NodeContext) -> dict[str, Any]:
        return {"double": "four"}

    with pytest.raises(NodeError, match=r"node 'w' \(t\) returned output .* at \$\.double: 'four' is not of type"):
        await run_node(wrong, inputs={"n": 2}, validate_with=SPEC, node_id="w", node_type="t")


async def test_run_node_refuses_output_the_runner_could_not_send() -> None:
    async def unsendable(ctx: NodeContext) -> dict[str, Any]:
        return {"value": object()}

    with pytest.raises(NodeError, match="cannot be sent to the host"):
        await run_node(unsendable)


async def test_run_node_refuses_a_return_value_that_is_neither_dict_nor_response() -> None:
    async def listy(ctx: NodeContext) -> Any:
        return [1, 2]

    with pytest.raises(NodeError, match="returned list; run\\(\\) must return a dict or a Response"):
        await run_node(listy)


async def test_run_node_enforces_a_deadline_like_the_runner() -> None:
    async def slow(ctx: NodeContext) -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {}

    with pytest.raises(NodeTimeout, match="node 'test' exceeded its 0.05 s deadline and was cancelled"):
        await run_node(slow, timeout_s=0.05)


async def test_run_node_passes_flowbase_errors_through_with_their_spans() -> None:
    async def limited(ctx: NodeContext) -> dict[str, Any]:
        ctx.record("model_call", "up", started_at=0.0, ended_at=1.0, error="429")
        raise UpstreamError("slow down", status=429, retry_after="3")

    with pytest.raises(UpstreamError) as info:
        await run_node(limited)
    assert (info.value.status, info.value.retry_after) == (429, "3")
    assert [s.name for s in info.value.spans] == ["up"]  # type: ignore[attr-defined]
