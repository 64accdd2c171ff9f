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
from urllib.parse import urlsplit

import aiohttp
import msgspec

from plugin_sdk.errors import NodeError, UpstreamError
from plugin_sdk.node import NodeContext
from plugin_sdk.types import Response, response_events
from plugins.openai_compat.stream import DONE, ChunkFolder, SSELines
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
_to_builtins = msgspec.to_builtins


class Upstream:
    """One configured upstream: its URL, pre-built headers and the shared session for its base_url."""

    __slots__ = ("headers", "host", "loop", "session", "url")

    def __init__(self, url: str, host: str, headers: dict[str, str], session: aiohttp.ClientSession,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.url = url
        self.host = host
        self.headers = headers
        self.session = session
        self.loop = loop


# Sessions belong to the event loop that created them; the runner has one loop, tests may have several.
_sessions: dict[str, tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession]] = {}
_upstreams: dict[tuple[Any, ...], Upstream] = {}
_timeouts: dict[float, aiohttp.ClientTimeout] = {}


def _session(base_url: str, loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
    entry = _sessions.get(base_url)
    if entry is not None and entry[0] is loop and not entry[1].closed:
        return entry[1]
    connector = aiohttp.TCPConnector(limit=POOL_LIMIT, limit_per_host=POOL_LIMIT, keepalive_timeout=KEEPALIVE_S,
                                     ttl_dns_cache=DNS_CACHE_S)
    s = aiohttp.ClientSession(connector=connector)
    _sessions[base_url] = (loop, s)
    return s


def _upstream(config: dict[str, Any]) -> Upstream:
    base = (config.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
    key = config.get("api_key")
    extra = config.get("headers")
    ident = (base, key, tuple(extra.items()) if extra else ())
    up = _upstreams.get(ident)
    loop = asyncio.get_running_loop()
    if up is not None and up.loop is loop and not up.session.closed:
        return up
    url = base if base.endswith("/chat/completions") else base + "/chat/completions"
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if extra:
        headers.update(extra)
    host = urlsplit(base).netloc.rpartition("@")[2] or base
    up = Upstream(url, host, headers, _session(base, loop), loop)
    _upstreams[ident] = up
    return up


def _timeout(config: dict[str, Any]) -> aiohttp.ClientTimeout:
    read = float(config.get("timeout_s") or DEFAULT_READ_TIMEOUT_S)
    t = _timeouts.get(read)
    if t is None:
        t = _timeouts[read] = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=read)
    return t


async def close() -> None:
    loop = asyncio.get_running_loop()
    sessions = list(_sessions.values())
    _sessions.clear()
    _upstreams.clear()
    for owner, s in sessions:
        if owner is loop:  # another loop's session cannot be closed from here; it died with its loop
            await s.close()


async def run(ctx: NodeContext) -> Response:
    req = ctx.request
    if req is None:
        raise NodeError(f"node '{ctx.node_id}' (openai.chat) needs a request; it is a model node")
    config = ctx.config
    model: str = config["model"]
    provider: str = config.get("provider") or "openai"
    up = _upstream(config)
    body = build_body(req, config, ctx.stream)
    started = time.time()
    try:
        async with up.session.post(up.url, data=_encode(body), headers=up.headers, timeout=_timeout(config)) as resp:
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
        _record(ctx, provider, model, started, body, error=exc)
        raise
    except asyncio.CancelledError:
        ctx.record("model_call", f"{provider}/{model}", started_at=started, input=body, model=model,
                   provider=provider, error="cancelled")
        raise
    except aiohttp.ConnectionTimeoutError as exc:
        err = UpstreamError(f"upstream {up.host} (provider {provider!r}) did not accept a connection within "
                            f"{CONNECT_TIMEOUT_S:g} s", status=504)
        _record(ctx, provider, model, started, body, error=err)
        raise err from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        err = UpstreamError(f"upstream {up.host} (provider {provider!r}) did not answer within "
                            f"{_timeout(config).sock_read:g} s", status=504)
        _record(ctx, provider, model, started, body, error=err)
        raise err from exc
    except aiohttp.ClientConnectorError as exc:
        err = UpstreamError(f"cannot connect to upstream {up.host} (provider {provider!r}): "
                            f"{exc.strerror or exc.os_error}", status=502)
        _record(ctx, provider, model, started, body, error=err)
        raise err from exc
    except aiohttp.ClientError as exc:
        err = UpstreamError(f"connection to upstream {up.host} (provider {provider!r}) failed: "
                            f"{type(exc).__name__}: {exc}", status=502)
        _record(ctx, provider, model, started, body, error=err)
        raise err from exc
    _record(ctx, provider, model, started, body, resp=result)
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
