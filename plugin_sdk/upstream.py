"""Plumbing shared by model nodes that call an HTTP upstream, whatever HTTP client they use.

- ``UpstreamPool(new_client, is_closed, close_client)`` keeps one client per base URL and the
  ``Upstream`` records (URL, pre-built headers, host for messages, client) built on them, each bound
  to the event loop that created it: a client cannot be used from another loop (the runner has one
  loop; tests may run several). A node looks its ``Upstream`` up in ``pool.upstreams`` itself — the
  liveness check is two attribute reads, kept inline on the request path — and calls ``pool.add``
  on a miss. ``await pool.close()`` (the register ``close`` callback) closes this loop's clients.
- ``TimeoutCache(make, default_read_s)``: ``get(config)`` is the client's timeout object for the
  config's ``timeout_s`` (seconds of silence allowed on the socket), built once per distinct value;
  ``read_s(config)`` is those seconds.
- ``SSELines``: incremental splitter of a server-sent-event byte stream into ``data:`` payloads.
- ``require_request``, ``record_model_call``, ``record_cancelled``: the ``model_call`` span every
  model node records (input: the upstream body, never headers or keys; output: the canonical
  response, or the error's status and message).
- ``connect_timeout_error`` / ``read_timeout_error`` (504) and ``connect_error`` /
  ``connection_error`` (502): what a transport failure becomes, naming the upstream host and the
  provider, never a key. ``raw_error_message(body, status)``: an error body that is not JSON.

No host imports, no HTTP library: each plugin maps its own client's exceptions onto these.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import msgspec

from plugin_sdk.errors import NodeError, UpstreamError
from plugin_sdk.node import NodeContext
from plugin_sdk.types import Request, Response

C = TypeVar("C")
T = TypeVar("T")

_to_builtins = msgspec.to_builtins


def host_of(base_url: str) -> str:
    """The ``host[:port]`` of a base URL without any credentials in it (for error messages)."""
    return urlsplit(base_url).netloc.rpartition("@")[2] or base_url


class Upstream(Generic[C]):
    """One configured upstream: its URL, pre-built headers, host, and the shared client it goes through."""

    __slots__ = ("client", "headers", "host", "loop", "url")

    def __init__(self, url: str, host: str, headers: dict[str, str], client: C,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.url = url
        self.host = host
        self.headers = headers
        self.client = client
        self.loop = loop


class UpstreamPool(Generic[C]):
    __slots__ = ("_clients", "_close", "_is_closed", "_new", "upstreams")

    def __init__(self, new_client: Callable[[], C], is_closed: Callable[[C], bool],
                 close_client: Callable[[C], Awaitable[None]]) -> None:
        self._new = new_client
        self._is_closed = is_closed
        self._close = close_client
        self._clients: dict[str, tuple[asyncio.AbstractEventLoop, C]] = {}
        # Keyed by whatever identifies an upstream's settings (base URL, key, extra headers …).
        self.upstreams: dict[Hashable, Upstream[C]] = {}

    def client(self, base_url: str, loop: asyncio.AbstractEventLoop) -> C:
        """The open client for ``base_url`` in ``loop``, created on first use."""
        entry = self._clients.get(base_url)
        if entry is not None and entry[0] is loop and not self._is_closed(entry[1]):
            return entry[1]
        c = self._new()
        self._clients[base_url] = (loop, c)
        return c

    def add(self, ident: Hashable, base_url: str, url: str, headers: dict[str, str],
            loop: asyncio.AbstractEventLoop) -> Upstream[C]:
        """Build, cache under ``ident`` and return the ``Upstream`` for these settings."""
        up = Upstream(url, host_of(base_url), headers, self.client(base_url, loop), loop)
        self.upstreams[ident] = up
        return up

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        clients = list(self._clients.values())
        self._clients.clear()
        self.upstreams.clear()
        for owner, c in clients:
            if owner is loop:  # another loop's client cannot be closed from here; it died with its loop
                await self._close(c)


class TimeoutCache(Generic[T]):
    __slots__ = ("default_read_s", "get")

    def __init__(self, make: Callable[[float], T], default_read_s: float) -> None:
        self.default_read_s = default_read_s
        cache: dict[float, T] = {}

        # A closure, not a method: it is called on every request and reads its cache from a cell.
        def get(config: dict[str, Any]) -> T:
            read = float(config.get("timeout_s") or default_read_s)
            t = cache.get(read)
            if t is None:
                t = cache[read] = make(read)
            return t

        self.get = get

    def read_s(self, config: dict[str, Any]) -> float:
        """The seconds of silence ``config`` allows (its ``timeout_s``, else the default)."""
        return float(config.get("timeout_s") or self.default_read_s)


class SSELines:
    """Incremental SSE splitter: ``feed`` returns the ``data:`` payloads completed by ``chunk`` (a
    partial line is kept for the next read). ``event:`` and comment lines are dropped."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        lines = (self._buf + chunk).split(b"\n") if self._buf else chunk.split(b"\n")
        self._buf = lines.pop()
        out: list[bytes] = []
        for line in lines:  # a loop, not a comprehension: no function object per chunk on 3.11
            if line.startswith(b"data:"):
                out.append(line[5:].strip())
        return out


def require_request(ctx: NodeContext, node_type: str) -> Request:
    """``ctx.request``, or a ``NodeError`` saying that a model node needs one."""
    if ctx.request is None:
        raise NodeError(f"node '{ctx.node_id}' ({node_type}) needs a request; it is a model node")
    return ctx.request


def record_model_call(ctx: NodeContext, provider: str, model: str, started: float, body: Any, *,
                      resp: Response | None = None, error: UpstreamError | None = None) -> None:
    """Record the ``model_call`` span of one finished call: its answer ``resp`` or its ``error``."""
    if error is not None:
        ctx.record("model_call", f"{provider}/{model}", started_at=started, input=body, model=model,
                   provider=provider, output={"status": error.status, "message": error.message},
                   error=error.message)
    else:
        assert resp is not None
        ctx.record("model_call", f"{provider}/{model}", started_at=started, input=body, output=_to_builtins(resp),
                   usage=resp.usage, model=model, provider=provider)


def record_cancelled(ctx: NodeContext, provider: str, model: str, started: float, body: Any) -> None:
    """Record the ``model_call`` span of a call cancelled because its client went away."""
    ctx.record("model_call", f"{provider}/{model}", started_at=started, input=body, model=model, provider=provider,
               error="cancelled")


def connect_timeout_error(host: str, provider: str, seconds: float) -> UpstreamError:
    return UpstreamError(f"upstream {host} (provider {provider!r}) did not accept a connection within {seconds:g} s",
                         status=504)


def read_timeout_error(host: str, provider: str, seconds: float) -> UpstreamError:
    return UpstreamError(f"upstream {host} (provider {provider!r}) did not answer within {seconds:g} s", status=504)


def connect_error(host: str, provider: str, reason: object) -> UpstreamError:
    """A connection that could not be made (refused, unresolvable, TLS failure)."""
    return UpstreamError(f"cannot connect to upstream {host} (provider {provider!r}): {reason}", status=502)


def connection_error(host: str, provider: str, exc: BaseException) -> UpstreamError:
    """A connection that failed once made (dropped mid-answer, protocol error)."""
    return UpstreamError(f"connection to upstream {host} (provider {provider!r}) failed: {type(exc).__name__}: {exc}",
                         status=502)


def raw_error_message(body: bytes, status: int) -> str:
    """The message of an error body that is not the provider's JSON: its text, or the status."""
    text = body.decode("utf-8", "replace").strip()
    return text[:500] or f"upstream answered HTTP {status}"
