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

import httpx
import msgspec

from plugin_sdk.errors import UpstreamError
from plugin_sdk.node import NodeContext
from plugin_sdk.types import Response, response_events
from plugin_sdk.upstream import (
    SSELines,
    TimeoutCache,
    Upstream,
    UpstreamPool,
    connect_error,
    connect_timeout_error,
    connection_error,
    read_timeout_error,
    record_cancelled,
    record_model_call,
    require_request,
)
from plugins.anthropic_api.stream import EventFolder, decode_event
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


def _new_client() -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=POOL_LIMIT, max_keepalive_connections=POOL_LIMIT,
                          keepalive_expiry=KEEPALIVE_S)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(DEFAULT_READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))


async def _close_client(c: httpx.AsyncClient) -> None:
    await c.aclose()


_pool: UpstreamPool[httpx.AsyncClient] = UpstreamPool(_new_client, lambda c: c.is_closed, _close_client)
_upstreams = _pool.upstreams
_timeouts = TimeoutCache(lambda read: httpx.Timeout(read, connect=CONNECT_TIMEOUT_S), DEFAULT_READ_TIMEOUT_S)
_timeout = _timeouts.get
close = _pool.close


def _url(base: str) -> str:
    if base.endswith("/v1/messages"):
        return base
    if base.endswith("/v1"):
        return base + "/messages"
    return base + "/v1/messages"


def _upstream(config: dict[str, Any]) -> Upstream[httpx.AsyncClient]:
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
    return _pool.add(ident, base, _url(base), headers, loop)


def _transport_error(exc: httpx.HTTPError, host: str, provider: str, config: dict[str, Any]) -> UpstreamError:
    if isinstance(exc, httpx.ConnectTimeout):
        return connect_timeout_error(host, provider, CONNECT_TIMEOUT_S)
    if isinstance(exc, httpx.TimeoutException):
        return read_timeout_error(host, provider, _timeouts.read_s(config))
    if isinstance(exc, httpx.ConnectError):
        return connect_error(host, provider, exc)
    return connection_error(host, provider, exc)


async def run(ctx: NodeContext) -> Response:
    req = require_request(ctx, "anthropic.messages")
    config = ctx.config
    model: str = config["model"]
    provider: str = config.get("provider") or "anthropic"
    up = _upstream(config)
    # The bytes sent are also the model_call span's input (as msgspec.Raw): the trace keeps them as they are
    # instead of encoding the conversation a second time.
    sent = _encode(build_body(req, config, ctx.stream))
    timeout = _timeout(config)
    started = time.time()
    try:
        request = up.client.build_request("POST", up.url, content=sent, headers=up.headers, timeout=timeout)
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
        record_model_call(ctx, provider, model, started, msgspec.Raw(sent), error=exc)
        raise
    except asyncio.CancelledError:
        record_cancelled(ctx, provider, model, started, msgspec.Raw(sent))
        raise
    except httpx.HTTPError as exc:
        err = _transport_error(exc, up.host, provider, config)
        record_model_call(ctx, provider, model, started, msgspec.Raw(sent), error=err)
        raise err from exc
    record_model_call(ctx, provider, model, started, msgspec.Raw(sent), resp=result)
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

