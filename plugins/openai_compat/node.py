"""The ``openai.chat`` node: one canonical request → one OpenAI-compatible Chat Completions call.

``run(ctx)`` sends ``ctx.request`` to ``{base_url}/chat/completions`` as ``config.model``, streams
canonical events through ``ctx.emit`` as the upstream's SSE chunks arrive when ``ctx.stream`` (the
upstream is then asked to stream too), and returns the whole canonical ``Response``. It records one
``model_call`` span (input: the upstream body, never headers or the key; output: the canonical
response or the error).

Errors: an HTTP error becomes ``UpstreamError`` with the upstream's status, own message and
``Retry-After``; a refused connection or dropped stream is a 502 and a timeout a 504, both naming the
upstream host (never the key). If the node task is cancelled (the client went away) the upstream
connection is closed at once, so the upstream stops generating.

Connections: one ``aiohttp.ClientSession`` per ``base_url``, created lazily on first use in the
runner's loop, with a large keep-alive pool and a DNS cache; headers are built once per
(base_url, key, extra headers). ``close()`` (the register ``close`` callback) closes them all.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
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
from plugins.openai_compat.stream import DONE, ChunkFolder
from plugins.openai_compat.wire import build_body, decode_completion, error_message, parse_completion

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Seconds to establish a TCP/TLS connection: a provider that cannot accept one in 10 s is down, and
# failing fast lets a workflow's fallback run while the client still waits.
CONNECT_TIMEOUT_S = 10.0
# Seconds of silence on an open upstream socket before giving up, when the config sets no
# timeout_s: long enough for a reasoning model thinking before its first token.
DEFAULT_READ_TIMEOUT_S = 600.0
# Connections kept per base_url; the benchmark drives hundreds of concurrent streams through one.
POOL_LIMIT = 512
# Seconds an idle keep-alive connection stays pooled (most providers close theirs after ~60 s).
KEEPALIVE_S = 30.0
# Seconds a resolved upstream address is cached.
DNS_CACHE_S = 300

_encode = msgspec.json.Encoder().encode


def _new_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=POOL_LIMIT, limit_per_host=POOL_LIMIT, keepalive_timeout=KEEPALIVE_S,
                                     ttl_dns_cache=DNS_CACHE_S)
    return aiohttp.ClientSession(connector=connector)


async def _close_session(s: aiohttp.ClientSession) -> None:
    await s.close()


_pool: UpstreamPool[aiohttp.ClientSession] = UpstreamPool(_new_session, lambda s: s.closed, _close_session)
_upstreams = _pool.upstreams
_timeouts = TimeoutCache(lambda read: aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S,
                                                            sock_read=read), DEFAULT_READ_TIMEOUT_S)
_timeout = _timeouts.get
close = _pool.close


def _upstream(config: dict[str, Any]) -> Upstream[aiohttp.ClientSession]:
    base = (config.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
    key = config.get("api_key")
    extra = config.get("headers")
    ident = (base, key, tuple(extra.items()) if extra else ())
    up = _upstreams.get(ident)
    loop = asyncio.get_running_loop()
    if up is not None and up.loop is loop and not up.client.closed:
        return up
    url = base if base.endswith("/chat/completions") else base + "/chat/completions"
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if extra:
        headers.update(extra)
    return _pool.add(ident, base, url, headers, loop)


def _transport_error(exc: aiohttp.ClientError | TimeoutError, host: str, provider: str,
                     config: dict[str, Any]) -> UpstreamError:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return connect_timeout_error(host, provider, CONNECT_TIMEOUT_S)
    if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
        return read_timeout_error(host, provider, _timeouts.read_s(config))
    if isinstance(exc, aiohttp.ClientConnectorError):
        return connect_error(host, provider, exc.strerror or exc.os_error)
    return connection_error(host, provider, exc)


async def run(ctx: NodeContext) -> Response:
    req = require_request(ctx, "openai.chat")
    config = ctx.config
    model: str = config["model"]
    provider: str = config.get("provider") or "openai"
    up = _upstream(config)
    # The bytes sent are also the model_call span's input (as msgspec.Raw): the trace keeps them as they are
    # instead of encoding the conversation a second time.
    sent = _encode(build_body(req, config, ctx.stream))
    started = time.time()
    try:
        async with up.client.post(up.url, data=sent, headers=up.headers, timeout=_timeout(config)) as resp:
            try:
                if resp.status >= 400:
                    raw = await resp.read()
                    message, code = error_message(raw, resp.status)
                    raise UpstreamError(message, status=resp.status, retry_after=resp.headers.get("retry-after"),
                                        code=code)
                if ctx.stream and resp.content_type != "application/json":
                    result = await _read_stream(ctx, resp, model)
                else:  # also a server that answers a stream request with one JSON body
                    result = parse_completion(await resp.read(), model)
                    if ctx.stream:
                        for ev in response_events(result):
                            await ctx.emit(ev)
            except BaseException:
                resp.close()  # drop the connection: the upstream must stop generating for a gone client
                raise
    except UpstreamError as exc:
        record_model_call(ctx, provider, model, started, msgspec.Raw(sent), error=exc)
        raise
    except asyncio.CancelledError:
        record_cancelled(ctx, provider, model, started, msgspec.Raw(sent))
        raise
    except (TimeoutError, aiohttp.ClientError) as exc:
        err = _transport_error(exc, up.host, provider, config)
        record_model_call(ctx, provider, model, started, msgspec.Raw(sent), error=err)
        raise err from exc
    record_model_call(ctx, provider, model, started, msgspec.Raw(sent), resp=result)
    return result


async def _read_stream(ctx: NodeContext, resp: aiohttp.ClientResponse, model: str) -> Response:
    folder = ChunkFolder(model)
    lines = SSELines()
    done = False
    async for chunk in resp.content.iter_any():
        if done:
            continue  # drain to EOF so the connection goes back to the pool
        for payload in lines.feed(chunk):
            if payload == DONE:
                done = True
                break
            try:
                c = decode_completion(payload)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise UpstreamError(f"upstream sent an unreadable stream chunk: {exc}", status=502) from exc
            for ev in folder.feed(c):
                await ctx.emit(ev)
    if not done and not folder.seen_finish:
        raise UpstreamError("upstream closed the stream before it finished", status=502)
    for ev in folder.finish_events():
        await ctx.emit(ev)
    return folder.response()

