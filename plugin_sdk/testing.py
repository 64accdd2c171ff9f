"""Run a node function in-process, without the host or a runner — for plugin unit tests.

    res = await run_node(my_plugin.run_chat, config={...}, request=req, stream=True)
    res.output, res.response, res.events, res.spans

``res.spans`` are the spans the node recorded, their ``input`` and ``output`` as the trace stores them:
JSON values (a ``msgspec.Raw`` of JSON the node recorded reads as the values it holds; anything JSON
cannot carry as its ``str``).

It goes through the same steps as the plugin runner: inputs checked against the input schema and
the output against the output schema when ``validate_with`` is given (a manifest ``NodeTypeSpec``
or anything with ``input_schema``/``output_schema``; the checks are plugin_sdk/schemas.py, shared
with the runner), a returned ``Response`` turned into its output dict, the output checked to be
msgpack-encodable (what the runner must send), and ``timeout_s`` enforced like the runner does
(``NodeTimeout`` when it passes).
A ``FlowbaseError`` the node raises propagates with ``.spans`` set (as the host would raise it, as above);
any other exception propagates unchanged so the test shows its traceback.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from plugin_sdk.errors import FlowbaseError, NodeError, NodeTimeout
from plugin_sdk.node import NodeContext, NodeFn, SpanRecord
from plugin_sdk.schemas import HasSchemas, NodeSchemas, node_output, require_inputs
from plugin_sdk.types import Request, Response, StreamEvent

_encode = msgspec.msgpack.Encoder().encode
# The trace's JSON: what cannot be JSON is recorded as its str (as plugin_runner/protocol.py encodes spans).
_json = msgspec.json.Encoder(enc_hook=str).encode


class NodeRun(msgspec.Struct):
    output: dict[str, Any]
    response: Response | None
    events: list[StreamEvent]
    spans: list[SpanRecord]


async def run_node(run: NodeFn, *, config: dict[str, Any] | None = None, inputs: dict[str, Any] | None = None,
                   request: Request | None = None, stream: bool = False, node_id: str = "test",
                   node_type: str = "test", validate_with: HasSchemas | None = None,
                   timeout_s: float | None = None) -> NodeRun:
    events: list[StreamEvent] = []

    async def emit(ev: StreamEvent) -> None:
        events.append(ev)

    inputs = inputs if inputs is not None else {}
    ctx = NodeContext(node_id=node_id, node_type=node_type, config=config if config is not None else {},
                      inputs=inputs, request=request, stream=stream, emit=emit if stream else None)
    schemas = NodeSchemas.compile(validate_with, where=f"node type {node_type!r}") if validate_with else None
    deadline = asyncio.timeout(timeout_s)
    try:
        require_inputs(schemas, inputs, node_id=node_id, node_type=node_type)
        try:
            async with deadline:
                out = await run(ctx)
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            raise NodeTimeout(f"node '{node_id}' exceeded its {timeout_s:g} s deadline and was cancelled") from exc
        output, resp = node_output(out, schemas, node_id=node_id, node_type=node_type)
        try:
            _encode(output)
        except (TypeError, ValueError, OverflowError) as exc:
            raise NodeError(f"node '{node_id}' ({node_type}) output cannot be sent to the host: {exc}") from exc
    except FlowbaseError as exc:
        exc.spans = [_stored(s) for s in ctx.spans]  # type: ignore[attr-defined]
        raise
    return NodeRun(output=output, response=resp, events=events, spans=[_stored(s) for s in ctx.spans])


def _as_json(value: Any) -> Any:
    try:
        return msgspec.json.decode(_json(value))
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        return f"<cannot be recorded as JSON: {type(exc).__name__}: {exc}>"


def _stored(span: SpanRecord) -> SpanRecord:
    """``span`` with its input and output as the trace keeps them (what the host shows)."""
    return msgspec.structs.replace(span, input=_as_json(span.input), output=_as_json(span.output))
