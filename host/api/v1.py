"""The client-facing protocol routes: /v1/chat/completions, /v1/responses, /v1/messages (+ count_tokens)
and /v1/models.

The three POST routes are served as raw ASGI by ``V1.serve`` (``host/app.py`` dispatches to it
before FastAPI): the profile showed FastAPI's middleware stack and Starlette's request/response
objects costing as much as the whole gateway logic. The protocol adapter reads the raw body
(msgspec). Every response carries ``x-flowbase-run-id``. Errors leave in the client protocol's
own shape with the right status; a streamed request whose workflow fails before its first event
gets a plain HTTP error (so the client's SDK retries a 429/5xx as usual), later failures an
in-stream error. A client that disconnects mid-stream cancels the run, and so the upstream call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from types import ModuleType
from typing import Any

import msgspec
from starlette.requests import Request as HttpRequest
from starlette.responses import Response as HttpResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from host.engine.history import History, response_id_for
from host.engine.registry import Registry
from host.engine.run import Engine, Protocol
from host.protocols import anthropic_messages, openai_chat, openai_responses
from host.redact import REDACTOR
from plugin_sdk.errors import FlowbaseError, NotFound
from plugin_sdk.types import StreamEvent

log = logging.getLogger("flowbase.v1")
JSON = "application/json"
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# The POST routes served on the fast path: path → (adapter, protocol name).
ROUTES: dict[str, tuple[ModuleType, Protocol]] = {
    "/v1/chat/completions": (openai_chat, "chat"),
    "/chat/completions": (openai_chat, "chat"),
    "/v1/responses": (openai_responses, "responses"),
    "/responses": (openai_responses, "responses"),
    "/v1/messages": (anthropic_messages, "messages"),
}
_SSE_HEAD = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
             (b"x-accel-buffering", b"no")]


class AuthError(FlowbaseError):
    kind = "authentication"
    status = 401


class Headers(dict[str, str]):
    """ASGI headers as a dict with lower-case keys; lookups ignore case as HTTP requires."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)


def _headers(scope: Scope) -> Headers:
    return Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client went away first."""
    msg = await receive()
    if msg["type"] != "http.request":
        return None
    body: bytes = msg.get("body", b"")
    while msg.get("more_body"):
        msg = await receive()
        if msg["type"] != "http.request":
            return None
        body += msg.get("body", b"")
    return body


async def _send_bytes(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)), *headers]})
    await send({"type": "http.response.body", "body": body})


def _internal(exc: BaseException, where: str) -> FlowbaseError:
    log.error("unexpected error in %s", where, exc_info=exc)
    return FlowbaseError(f"internal error in flowbase ({type(exc).__name__}); the server log has the details")


def check_key(api_keys: frozenset[str], headers: Mapping[str, str]) -> None:
    """Both `Authorization: Bearer` and `x-api-key` are accepted on every protocol."""
    if not api_keys:
        return
    auth = headers.get("authorization") or ""
    key = auth[7:].strip() if auth[:7].lower() == "bearer " else (headers.get("x-api-key") or "")
    if key not in api_keys:
        raise AuthError("invalid or missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
                        code="invalid_api_key")


def error_parts(proto: ModuleType, err: FlowbaseError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    err.message = REDACTOR.redact(err.message)
    status, body, headers = proto.error_body(err)
    return status, body, [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


class V1:
    def __init__(self, registry: Registry, engine: Engine, api_keys: frozenset[str], history: History) -> None:
        self.registry = registry
        self.engine = engine
        self.api_keys = api_keys
        self.history = history

    # ---- the three protocols (raw ASGI) --------------------------------------------------

    async def serve(self, proto: ModuleType, name: Protocol, scope: Scope, receive: Receive, send: Send) -> None:
        run_id: bytes | None = None
        try:
            headers = _headers(scope)
            check_key(self.api_keys, headers)
            body = await _read_body(receive)
            if body is None:
                return
            req, opts = proto.parse_request(body)
            req.origin = name
            wf = self.registry.get(req.model)
            if wf is None:
                raise NotFound(f"The model '{req.model}' does not exist or is not published on this flowbase "
                               f"(GET /v1/models lists the published models)", code="model_not_found", param="model")
            as_sent: bytes | None = body  # the trace keeps the body itself while ``req`` is what it parses to
            if name == "responses" and opts.get("previous_response_id"):
                earlier = await self.history.conversation(opts["previous_response_id"])
                system = [m for m in req.messages if m.role in ("system", "developer")]
                req.messages = system + earlier + [m for m in req.messages if m.role not in ("system", "developer")]
                as_sent = None
            ex = self.engine.start(wf, req, protocol=name, session_id=proto.session_id(headers, req, opts), body=as_sent)
            run_id = ex.id.encode()
            if name == "responses":
                opts["response_id"] = response_id_for(ex.id)
            if not req.stream:
                resp = await ex.complete()
                await _send_bytes(send, 200, proto.render_response(resp, req.model, opts), [(b"x-flowbase-run-id", run_id)])
                return
            events = ex.stream()
            first = await anext(events)  # a failure before the first event is a plain HTTP error
        except FlowbaseError as err:
            await self._send_error(send, proto, err, run_id)
            return
        except Exception as exc:  # noqa: BLE001 - whatever broke, the client gets its protocol's error, not a traceback
            await self._send_error(send, proto, _internal(exc, scope["path"]), run_id)
            return
        await send({"type": "http.response.start", "status": 200, "headers": [*_SSE_HEAD, (b"x-flowbase-run-id", run_id)]})
        pump = asyncio.ensure_future(self._pump(send, _sse(proto, req.model, opts, first, events)))
        gone = asyncio.ensure_future(receive())  # resolves with http.disconnect if the client leaves
        await asyncio.wait((pump, gone), return_when=asyncio.FIRST_COMPLETED)
        if not pump.done():  # the client went away: cancelling the pump cancels the run and the upstream call
            pump.cancel()
        else:
            gone.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump

    @staticmethod
    async def _pump(send: Send, chunks: AsyncIterator[bytes]) -> None:
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    async def _send_error(send: Send, proto: ModuleType, err: FlowbaseError, run_id: bytes | None) -> None:
        status, body, headers = error_parts(proto, err)
        if run_id:
            headers.append((b"x-flowbase-run-id", run_id))
        await _send_bytes(send, status, body, headers)

    # ---- the rest (Starlette routes; not on the hot path) --------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/models/{model:path}", self.model, methods=["GET"]),
            WebSocketRoute("/v1/responses", self.refuse_websocket),
            WebSocketRoute("/responses", self.refuse_websocket),
        ]

    def _error(self, proto: ModuleType, err: FlowbaseError) -> HttpResponse:
        status, body, headers = error_parts(proto, err)
        return HttpResponse(body, status_code=status, media_type=JSON,
                            headers={k.decode(): v.decode() for k, v in headers})

    async def count_tokens(self, request: HttpRequest) -> HttpResponse:
        try:
            check_key(self.api_keys, request.headers)
            req = anthropic_messages.parse_count_tokens(await request.body())
            return HttpResponse(anthropic_messages.count_tokens_body(req), media_type=JSON)
        except FlowbaseError as err:
            return self._error(anthropic_messages, err)
        except Exception as exc:  # noqa: BLE001 - the client gets an error body, never a traceback
            return self._error(anthropic_messages, _internal(exc, "count_tokens"))

    def _listing(self) -> list[tuple[str, int]]:
        return [(wf.model, int(time.time())) for wf in self.registry.models()]

    async def models(self, request: HttpRequest) -> HttpResponse:
        proto = anthropic_messages if "anthropic-version" in request.headers else openai_chat
        try:
            check_key(self.api_keys, request.headers)
        except FlowbaseError as err:
            return self._error(proto, err)
        return HttpResponse(proto.render_models(self._listing()), media_type=JSON)

    async def model(self, request: HttpRequest) -> HttpResponse:
        proto = anthropic_messages if "anthropic-version" in request.headers else openai_chat
        name = request.path_params["model"]
        try:
            check_key(self.api_keys, request.headers)
            found = [m for m in self._listing() if m[0] == name]
            if not found:
                raise NotFound(f"The model '{name}' does not exist", code="model_not_found", param="model")
        except FlowbaseError as err:
            return self._error(proto, err)
        # The single-model object is the list entry of the same protocol's listing.
        entry = msgspec.json.decode(proto.render_models(found))["data"][0]
        return HttpResponse(msgspec.json.encode(entry), media_type=JSON)

    async def refuse_websocket(self, ws: WebSocket) -> None:
        # Codex may try a WebSocket transport first. 426 makes it fall back to HTTP at once and
        # silently (403 works too but it retries and warns; 400 makes it give up). Servers without
        # the ASGI denial-response extension can only refuse with a plain 403.
        if "websocket.http.response" in ws.scope.get("extensions", {}):
            await ws.send_denial_response(HttpResponse("flowbase serves /v1/responses over HTTP only\n",
                                                       status_code=426, media_type="text/plain"))
        else:
            await ws.close(code=1008, reason="flowbase serves /v1/responses over HTTP only")


async def _sse(proto: ModuleType, model: str, opts: dict[str, Any], first: StreamEvent,
               events: AsyncIterator[StreamEvent]) -> AsyncIterator[bytes]:
    enc = proto.StreamEncoder(model, opts)
    try:
        out: bytes = enc.event(first)
        if out:
            yield out
        async for ev in events:
            out = enc.event(ev)
            if out:
                yield out
    except FlowbaseError as err:
        err.message = REDACTOR.redact(err.message)
        yield enc.error(err)
        return
    except Exception as exc:  # noqa: BLE001 - reported in-stream in the protocol's shape
        yield enc.error(_internal(exc, "stream"))
        return
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    yield enc.end()
