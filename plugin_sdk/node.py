"""The node API: what a node's ``run`` function receives and may return.

A node is ``async def run(ctx: NodeContext) -> dict | Response``.
- ``ctx.config``: the node's config from the workflow file (validated against the manifest schema,
  secrets already resolved — never log it).
- ``ctx.inputs``: the node's rendered inputs (validated against the manifest's input schema).
- ``ctx.request``: the canonical request for model nodes (the client's, or one the workflow built).
- ``ctx.stream``: True when the caller wants events; a model node then calls ``await ctx.emit(ev)``
  for each ``StreamEvent`` as it arrives upstream and still returns the whole ``Response``.
- ``ctx.record(...)``: adds a child span (a model call, a tool call) to the node's trace.
Returning a ``Response`` makes the node's output ``{"text", "tool_calls", "stop_reason", "usage"}``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

import msgspec

from plugin_sdk.types import Request, Response, StreamEvent, Usage

SpanKind = Literal["workflow", "node", "model_call", "tool_call"]


class SpanRecord(msgspec.Struct, omit_defaults=True):
    """A child span a node reports (times are Unix seconds)."""

    kind: SpanKind
    name: str
    started_at: float
    ended_at: float
    status: Literal["ok", "error"] = "ok"
    input: Any = None
    output: Any = None
    usage: Usage | None = None
    model: str | None = None
    provider: str | None = None
    error: str | None = None


Emit = Callable[[StreamEvent], Awaitable[None]]
NodeOutput = dict[str, Any] | Response


class NodeContext:
    __slots__ = ("_emit", "config", "inputs", "node_id", "node_type", "request", "spans", "stream")

    def __init__(self, *, node_id: str, node_type: str, config: dict[str, Any], inputs: dict[str, Any],
                 request: Request | None, stream: bool, emit: Emit | None = None) -> None:
        self.node_id = node_id
        self.node_type = node_type
        self.config = config
        self.inputs = inputs
        self.request = request
        self.stream = stream
        self.spans: list[SpanRecord] = []
        self._emit = emit

    async def emit(self, ev: StreamEvent) -> None:
        if self._emit is not None:
            await self._emit(ev)

    def record(self, kind: SpanKind, name: str, *, started_at: float, ended_at: float | None = None,
               input: Any = None, output: Any = None, usage: Usage | None = None, model: str | None = None,
               provider: str | None = None, error: str | None = None) -> SpanRecord:
        span = SpanRecord(kind=kind, name=name, started_at=started_at, ended_at=ended_at or time.time(),
                          status="error" if error else "ok", input=input, output=output, usage=usage,
                          model=model, provider=provider, error=error)
        self.spans.append(span)
        return span


NodeFn = Callable[[NodeContext], Awaitable[NodeOutput]]


class Register(Protocol):
    def __call__(self, name: str, run: NodeFn, *, close: Callable[[], Awaitable[None]] | None = None) -> None: ...


def response_output(resp: Response) -> dict[str, Any]:
    """The output dict of a model node (what templates see as ``{{ node.text }}`` etc.)."""
    return {
        "text": resp.text(),
        "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in resp.tool_calls()],
        "stop_reason": resp.stop_reason,
        "usage": msgspec.to_builtins(resp.usage),
    }
