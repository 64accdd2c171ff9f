"""The ``anthropic.messages`` node: one canonical request → one Anthropic Messages API call.

``run(ctx)`` sends ``ctx.request`` to ``{base_url}/v1/messages`` as ``config.model`` with
``x-api-key``, ``anthropic-version`` (config ``version``, default 2023-06-01) and ``anthropic-beta``
(config ``beta``: a string or list) plus the config's ``headers``. When ``ctx.stream`` it asks the
upstream to stream and emits canonical events as each SSE event arrives; it always returns the whole
canonical ``Response`` and records one ``model_call`` span (input: the upstream body, never headers or
the key; output: the canonical response or the error).

Errors: an HTTP error → ``UpstreamError`` with the upstream's status, message and ``retry-after``
(its kind follows from the status; the Anthropic error type is not kept as ``code``, which clients
of the OpenAI protocols read as an OpenAI code); an ``error`` event mid-stream → ``UpstreamError``
with the status its type stands for; a refused connection or dropped stream → 502, a timeout → 504, naming the upstream
host (never the key). Cancelling the node closes the upstream response, so the upstream stops.

Connections: one pooled keep-alive ``httpx.AsyncClient`` per ``base_url``, created lazily in the
runner's loop; ``close()`` (the register ``close`` callback) closes them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from plugin_sdk.errors import NodeError, UpstreamError
from plugin_sdk.node import NodeContext
from plugin_sdk.types import Response, response_events
from plugins.anthropic_api.stream import EventFolder, SSELines, decode_event
from plugins.anthropic_api.wire import build_body, error_message, parse_message

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
# Seconds to establish a TCP/TLS connection: a provider that cannot accept one in 10 s is down, and
# failing fast lets a workflow's fallback run while the client still waits.
CONNECT_TIMEOUT_S = 10.0
# Seconds of silence on an open upstream socket before giving up, when the config sets no
# timeout_s: long enough for extended thinking before the first event.
DEFAULT_READ_TIMEOUT_S = 600.0
# Connections per base_url; agent clients keep many long streams open at once.
POOL_LIMIT = 512
# Seconds an idle keep-alive connection stays pooled.
KEEPALIVE_S = 30.0

_encode = msgspec.json.Encoder().encode
_to_builtins = msgspec.to_builtins


class Upstream:
    __slots__ = ("client", "headers", "host", "loop", "url")

    def __init__(self, url: str, host: str, headers: dict[str, str], client: httpx.AsyncClient,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.url = url
        self.host = host
        self.headers = headers
        self.client = client
        self.loop = loop


# Clients belong to the event loop that created them; the runner has one loop, tests may have several.
_clients: dict[str, tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]] = {}
_upstreams: dict[tuple[Any, ...], Upstream] = {}
_timeouts: dict[float, httpx.Timeout] = {}


def _client(base_url: str, loop: asyncio.AbstractEventLoop) -> httpx.AsyncClient:
    entry = _clients.get(base_url)
    if entry is not None and entry[0] is loop and not entry[1].is_closed:
        return entry[1]
    limits = httpx.Limits(max_connections=POOL_LIMIT, max_keepalive_connections=POOL_LIMIT,
                          keepalive_expiry=KEEPALIVE_S)
    c = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(DEFAULT_READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))
    _clients[base_url] = (loop, c)
    return c


def _url(base: str) -> str:
    if base.endswith("/v1/messages"):
        return base
    if base.endswith("/v1"):
        return base + "/messages"
    return base + "/v1/messages"


def _upstream(config: dict[str, Any]) -> Upstream:
    base = (config.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
    key = config.get("api_key")
    extra = config.get("headers")
    beta = config.get("beta")
    version = config.get("version") or DEFAULT_VERSION
    ident = (base, key, tuple(extra.items()) if extra else (), tuple(beta) if isinstance(beta, list) else beta, version)
    up = _upstreams.get(ident)
    loop = asyncio.get_running_loop()
    if up is not None and up.loop is loop and not up.client.is_closed:
        return up
    headers = {"content-type": "application/json", "anthropic-version": version}
    if key:
        headers["x-api-key"] = key
    if beta:
        headers["anthropic-beta"] = ",".join(beta) if isinstance(beta, list) else str(beta)
    if extra:
        headers.update(extra)
    host = urlsplit(base).netloc.rpartition("@")[2] or base
    up = Upstream(_url(base), host, headers, _client(base, loop), loop)
    _upstreams[ident] = up
    return up


def _timeout(config: dict[str, Any]) -> httpx.Timeout:
    read = float(config.get("timeout_s") or DEFAULT_READ_TIMEOUT_S)
    t = _timeouts.get(read)
    if t is None:
        t = _timeouts[read] = httpx.Timeout(read, connect=CONNECT_TIMEOUT_S)
    return t


async def close() -> None:
    loop = asyncio.get_running_loop()
    clients = list(_clients.values())
    _clients.clear()
    _upstreams.clear()
    for owner, c in clients:
        if owner is loop:  # another loop's client cannot be closed from here; it died with its loop
            await c.aclose()


async def run(ctx: NodeContext) -> Response:
    req = ctx.request
    if req is None:
        raise NodeError(f"node '{ctx.node_id}' (anthropic.messages) needs a request; it is a model node")
    config = ctx.config
    model: str = config["model"]
    provider: str = config.get("provider") or "anthropic"
    up = _upstream(config)
    body = build_body(req, config, ctx.stream)
    timeout = _timeout(config)
    started = time.time()
    try:
        request = up.client.build_request("POST", up.url, content=_encode(body), headers=up.headers, timeout=timeout)
        resp = await up.client.send(request, stream=True)
        try:
            if resp.status_code >= 400:
                raw = await resp.aread()
                # The Anthropic error type is not passed on as ``code``: the canonical code is what
                # OpenAI-protocol clients read (Codex acts on rate_limit_exceeded); the status says the rest.
                message, _ = error_message(raw, resp.status_code)
                raise UpstreamError(message, status=resp.status_code, retry_after=resp.headers.get("retry-after"))
            if ctx.stream and not resp.headers.get("content-type", "").startswith("application/json"):
                result = await _read_stream(ctx, resp, model)
            else:  # also a server that answers a stream request with one JSON body
                result = parse_message(await resp.aread(), model)
                if ctx.stream:
                    for ev in response_events(result):
                        await ctx.emit(ev)
        finally:
            await resp.aclose()  # on cancel this drops the connection, so the upstream stops
    except UpstreamError as exc:
        _record(ctx, provider, model, started, body, error=exc)
        raise
    except asyncio.CancelledError:
        ctx.record("model_call", f"{provider}/{model}", started_at=started, input=body, model=model,
                   provider=provider, error="cancelled")
        raise
    except httpx.ConnectTimeout as exc:
        err = UpstreamError(f"upstream {up.host} (provider {provider!r}) did not accept a connection within "
                            f"{CONNECT_TIMEOUT_S:g} s", status=504)
        _record(ctx, provider, model, started, body, error=err)
        raise err from exc
    except httpx.TimeoutException as exc:
        err = UpstreamError(f"upstream {up.host} (provider {provider!r}) did not answer within "
                            f"{timeout.read:g} s", status=504)
        _record(ctx, provider, model, started, body, error=err)
        raise err from exc
    except httpx.ConnectError as exc:
        err = UpstreamError(f"cannot connect to upstream {up.host} (provider {provider!r}): {exc}", status=502)
        _record(ctx, provider, model, started, body, error=err)
        raise err from exc
    except httpx.HTTPError as exc:
        err = UpstreamError(f"connection to upstream {up.host} (provider {provider!r}) failed: "
                            f"{type(exc).__name__}: {exc}", status=502)
        _record(ctx, provider, model, started, body, error=err)
        raise err from exc
    _record(ctx, provider, model, started, body, resp=result)
    return result


async def _read_stream(ctx: NodeContext, resp: httpx.Response, model: str) -> Response:
    folder = EventFolder(model)
    lines = SSELines()
    async for chunk in resp.aiter_bytes():
        for payload in lines.feed(chunk):
            try:
                ev = decode_event(payload)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise UpstreamError(f"upstream sent an unreadable stream event: {exc}", status=502) from exc
            for out in folder.feed(ev):
                await ctx.emit(out)
    if not folder.done:
        raise UpstreamError("upstream closed the stream before message_stop", status=502)
    return folder.response()


def _record(ctx: NodeContext, provider: str, model: str, started: float, body: dict[str, Any], *,
            resp: Response | None = None, error: UpstreamError | None = None) -> None:
    if error is not None:
        ctx.record("model_call", f"{provider}/{model}", started_at=started, input=body, model=model,
                   provider=provider, output={"status": error.status, "message": error.message},
                   error=error.message)
    else:
        assert resp is not None
        ctx.record("model_call", f"{provider}/{model}", started_at=started, input=body, output=_to_builtins(resp),
                   usage=resp.usage, model=model, provider=provider)
