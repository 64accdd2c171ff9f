"""The client-facing protocol routes: /v1/chat/completions, /v1/responses, /v1/messages (+ count_tokens)
and /v1/models.

These are plain Starlette routes, not FastAPI endpoints: they read the raw body and hand it to the
protocol adapter (msgspec), which skips FastAPI's dependency solving and pydantic on the hot path.
Every response carries ``x-flowbase-run-id``. Errors leave in the client protocol's own shape with
the right status; a streamed request whose workflow fails before its first event gets a plain
HTTP error (so the client's SDK retries a 429/5xx as usual), later failures an in-stream error.
"""

from __future__ import annotations

import logging
import time

import msgspec
from collections.abc import AsyncIterator, Mapping
from types import ModuleType
from typing import Any

from starlette.requests import Request as HttpRequest
from starlette.responses import Response as HttpResponse
from starlette.responses import StreamingResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from host.engine.registry import Registry
from host.engine.run import Engine, Protocol
from host.protocols import anthropic_messages, openai_chat, openai_responses
from host.redact import REDACTOR
from plugin_sdk.errors import FlowbaseError, NotFound
from plugin_sdk.types import StreamEvent

log = logging.getLogger("flowbase.v1")
JSON = "application/json"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class AuthError(FlowbaseError):
    kind = "authentication"
    status = 401


class V1:
    def __init__(self, registry: Registry, engine: Engine, api_keys: frozenset[str]) -> None:
        self.registry = registry
        self.engine = engine
        self.api_keys = api_keys

    def routes(self) -> list[BaseRoute]:
        def endpoint(proto: ModuleType, name: Protocol) -> Any:
            async def handle(request: HttpRequest) -> HttpResponse:
                return await self.handle(request, proto, name)
            return handle

        return [
            Route("/v1/chat/completions", endpoint(openai_chat, "chat"), methods=["POST"]),
            Route("/chat/completions", endpoint(openai_chat, "chat"), methods=["POST"]),
            Route("/v1/responses", endpoint(openai_responses, "responses"), methods=["POST"]),
            Route("/responses", endpoint(openai_responses, "responses"), methods=["POST"]),
            Route("/v1/messages", endpoint(anthropic_messages, "messages"), methods=["POST"]),
            Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/models/{model:path}", self.model, methods=["GET"]),
            WebSocketRoute("/v1/responses", self.refuse_websocket),
            WebSocketRoute("/responses", self.refuse_websocket),
        ]

    # ---- helpers -------------------------------------------------------------------------

    def _check_key(self, headers: Mapping[str, str]) -> None:
        if not self.api_keys:
            return
        auth = headers.get("authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else headers.get("x-api-key", "")
        if key not in self.api_keys:
            raise AuthError("invalid or missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
                            code="invalid_api_key")

    @staticmethod
    def _error(proto: ModuleType, err: FlowbaseError, run_id: str | None = None) -> HttpResponse:
        err.message = REDACTOR.redact(err.message)
        status, body, headers = proto.error_body(err)
        if run_id:
            headers = {**headers, "x-flowbase-run-id": run_id}
        return HttpResponse(body, status_code=status, media_type=JSON, headers=headers)

    @staticmethod
    def _internal(exc: BaseException, where: str) -> FlowbaseError:
        log.exception("unexpected error in %s", where)
        return FlowbaseError(f"internal error in flowbase ({type(exc).__name__}); the server log has the details")

    # ---- the three protocols -------------------------------------------------------------

    async def handle(self, request: HttpRequest, proto: ModuleType, name: Protocol) -> HttpResponse:
        run_id = None
        try:
            self._check_key(request.headers)
            body = await request.body()
            req, opts = proto.parse_request(body)
            wf = self.registry.get(req.model)
            if wf is None:
                raise NotFound(f"The model '{req.model}' does not exist or is not published on this flowbase "
                               f"(GET /v1/models lists the published models)", code="model_not_found", param="model")
            ex = self.engine.start(wf, req, protocol=name, session_id=proto.session_id(request.headers, req, opts))
            run_id = ex.id
            headers = {"x-flowbase-run-id": run_id}
            if not req.stream:
                resp = await ex.complete()
                return HttpResponse(proto.render_response(resp, req.model, opts), media_type=JSON, headers=headers)
            events = ex.stream()
            first = await anext(events)  # a failure before the first event is a plain HTTP error
            return StreamingResponse(self._sse(proto, req.model, opts, first, events), media_type="text/event-stream",
                                     headers={**headers, **SSE_HEADERS})
        except FlowbaseError as err:
            return self._error(proto, err, run_id)
        except Exception as exc:  # never a traceback to the client
            return self._error(proto, self._internal(exc, request.url.path), run_id)

    @staticmethod
    async def _sse(proto: ModuleType, model: str, opts: dict[str, Any], first: StreamEvent,
                   events: AsyncIterator[StreamEvent]) -> AsyncIterator[bytes]:
        enc = proto.StreamEncoder(model, opts)
        out: bytes = enc.event(first)
        if out:
            yield out
        try:
            async for ev in events:
                out = enc.event(ev)
                if out:
                    yield out
        except FlowbaseError as err:
            err.message = REDACTOR.redact(err.message)
            yield enc.error(err)
            return
        except Exception as exc:
            yield enc.error(V1._internal(exc, "stream"))
            return
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        yield enc.end()

    async def count_tokens(self, request: HttpRequest) -> HttpResponse:
        try:
            self._check_key(request.headers)
            req = anthropic_messages.parse_count_tokens(await request.body())
            return HttpResponse(anthropic_messages.count_tokens_body(req), media_type=JSON)
        except FlowbaseError as err:
            return self._error(anthropic_messages, err)
        except Exception as exc:
            return self._error(anthropic_messages, self._internal(exc, "count_tokens"))

    # ---- models --------------------------------------------------------------------------

    def _listing(self) -> list[tuple[str, int]]:
        return [(wf.model, int(time.time())) for wf in self.registry.models()]

    async def models(self, request: HttpRequest) -> HttpResponse:
        proto = anthropic_messages if "anthropic-version" in request.headers else openai_chat
        try:
            self._check_key(request.headers)
        except FlowbaseError as err:
            return self._error(proto, err)
        return HttpResponse(proto.render_models(self._listing()), media_type=JSON)

    async def model(self, request: HttpRequest) -> HttpResponse:
        proto = anthropic_messages if "anthropic-version" in request.headers else openai_chat
        name = request.path_params["model"]
        try:
            self._check_key(request.headers)
            found = [m for m in self._listing() if m[0] == name]
            if not found:
                raise NotFound(f"The model '{name}' does not exist", code="model_not_found", param="model")
        except FlowbaseError as err:
            return self._error(proto, err)
        # The single-model object is the list entry of the same protocol's listing.
        entry = msgspec.json.decode(proto.render_models(found))["data"][0]
        return HttpResponse(msgspec.json.encode(entry), media_type=JSON)

    async def refuse_websocket(self, ws: WebSocket) -> None:
        # Codex tries a WebSocket transport first; a prompt refusal makes it fall back to HTTP.
        await ws.close(code=1008, reason="flowbase serves /v1/responses over HTTP only")

