"""Frames between host and plugin runner: a tagged union of msgspec Structs, msgpack-encoded.

host → runner:  Invoke (starts node run ``id``) · Cancel(id) · Ping(id) · Shutdown
runner → host:  Hello (once, after loading) · Chunk(id, event)* → Result(id) | Failure(id) · Pong(id) · Log

Every frame that belongs to a node run carries its ``id`` (chosen by the host, unique per runner
connection). Every Invoke ends with exactly one ``Result`` or ``Failure`` (a cancelled one with a
Failure whose source is "cancelled"); after it the runner sends nothing more for that id.
"""

from __future__ import annotations

from typing import Any

import msgspec

from plugin_sdk.errors import ErrorKind
from plugin_sdk.node import SpanRecord
from plugin_sdk.types import Request, Response, StreamEvent


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


class Result(msgspec.Struct, tag="result", array_like=True):
    id: int
    output: dict[str, Any]
    response: Response | None
    spans: list[SpanRecord]


class Failure(msgspec.Struct, tag="failure", array_like=True):
    id: int
    kind: ErrorKind
    status: int
    message: str
    # "upstream" when a provider answered with an error (status/message are the provider's),
    # "node" for errors in the node itself, "timeout" when the runner cancelled it at its deadline,
    # "cancelled" when the host sent Cancel for it.
    source: str
    spans: list[SpanRecord] = []
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
