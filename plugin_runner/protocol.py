"""Frames between host and plugin runner: a tagged union of msgspec Structs, msgpack-encoded.

host → runner:  Invoke (starts node run ``id``) · Cancel(id) · Ping(id) · Shutdown
runner → host:  Hello (once, after loading) · Chunk(id, event)* → Result(id) | Failure(id) · Pong(id) · Log

The spans a node recorded travel as ``WireSpan``: their input and output already JSON, so the host
stores them as they are instead of decoding them here and encoding them again for the trace.

Every frame that belongs to a node run carries its ``id`` (chosen by the host, unique per runner
connection). Every Invoke ends with exactly one ``Result`` or ``Failure`` (a cancelled one with a
Failure whose source is "cancelled"); after it the runner sends nothing more for that id.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from plugin_sdk.errors import ErrorKind
from plugin_sdk.node import SpanKind, SpanRecord
from plugin_sdk.types import Request, Response, StreamEvent, Usage


class Invoke(msgspec.Struct, tag="invoke", array_like=True):
    id: int
    node_type: str
    node_id: str
    config: dict[str, Any]
    inputs: dict[str, Any]
    request: Request | None
    stream: bool
    # Seconds the node may run before the runner cancels it (the host enforces it too).
    timeout_s: float


class Cancel(msgspec.Struct, tag="cancel", array_like=True):
    id: int


class Ping(msgspec.Struct, tag="ping", array_like=True):
    id: int


class Shutdown(msgspec.Struct, tag="shutdown", array_like=True):
    pass


class NodeTypeInfo(msgspec.Struct, array_like=True):
    name: str
    package: str


class Hello(msgspec.Struct, tag="hello", array_like=True):
    pid: int
    node_types: list[NodeTypeInfo]


class Chunk(msgspec.Struct, tag="chunk", array_like=True):
    id: int
    event: StreamEvent


class WireSpan(msgspec.Struct, omit_defaults=True, array_like=True):
    """A ``SpanRecord`` on its way to the host: ``input`` and ``output`` are JSON text (None: none).
    A node's model call carries the whole upstream request and answer, a conversation of thousands
    of values for an agent: decoding them into objects on the host's event loop only to encode them
    into the trace again was ~12% of the loop's time per request with 33 KB agent requests."""

    kind: SpanKind
    name: str
    started_at: float
    ended_at: float
    status: Literal["ok", "error"] = "ok"
    input: bytes | None = None
    output: bytes | None = None
    usage: Usage | None = None
    model: str | None = None
    provider: str | None = None
    error: str | None = None


def _fallback(obj: Any) -> Any:
    return str(obj)


# The one JSON encoder of traces, on both sides of the socket (the host's recorder and store use it too):
# anything JSON cannot carry is recorded as its ``str``, so a trace never fails for an odd object a node
# put in it. The bound method itself, for hot loops that encode many values (no wrapper call per value).
json_encode = msgspec.json.Encoder(enc_hook=_fallback).encode


def _payload(value: Any) -> bytes | None:
    if value is None:
        return None
    try:
        return json_encode(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:  # e.g. a list that contains itself
        return json_encode(f"<cannot be recorded as JSON: {type(exc).__name__}: {exc}>")


def wire_spans(spans: list[SpanRecord]) -> list[WireSpan]:
    return [WireSpan(s.kind, s.name, s.started_at, s.ended_at, s.status, _payload(s.input), _payload(s.output),
                     s.usage, s.model, s.provider, s.error) for s in spans]


class Result(msgspec.Struct, tag="result", array_like=True):
    id: int
    output: dict[str, Any]
    response: Response | None
    spans: list[WireSpan]


class Failure(msgspec.Struct, tag="failure", array_like=True):
    id: int
    kind: ErrorKind
    status: int
    message: str
    # "upstream" when a provider answered with an error (status/message are the provider's),
    # "node" for errors in the node itself, "timeout" when the runner cancelled it at its deadline,
    # "cancelled" when the host sent Cancel for it.
    source: str
    spans: list[WireSpan] = []
    retry_after: str | None = None
    # FlowbaseError.code / .param (e.g. an upstream's "context_length_exceeded"), kept for the client.
    code: str | None = None
    param: str | None = None


class Pong(msgspec.Struct, tag="pong", array_like=True):
    id: int


class Log(msgspec.Struct, tag="log", array_like=True):
    level: str
    message: str


ToRunner = Invoke | Cancel | Ping | Shutdown
ToHost = Hello | Chunk | Result | Failure | Pong | Log
