"""The management REST API under /api: runs, sessions, workflows, stats, health.

Contract (all JSON, encoded with msgspec; errors are ``{"error": {"message", "type", "code",
"param"?}}``):
- ``GET /api/runs?model&status&session_id&workflow&limit(1..500, default 50)&before`` →
  ``{"runs": [run without spans], "next": <cursor for the next page or null>}``, newest first;
  ``before`` is the ``next`` of the previous page (a run id).
- ``GET /api/runs/{id}`` → the run with its spans (shape in host/store/runs.py); 404
  ``run_not_found``.
- ``GET /api/sessions?limit`` → ``{"sessions": [...]}``; ``GET /api/sessions/{id}`` → the session
  with its runs (oldest first, each with spans); 404 ``session_not_found``.
- ``GET /api/workflows`` → ``{"workflows": [{name, model, current_version, created_at,
  updated_at}]}``; ``GET /api/workflows/{name}`` → with the current ``source_text`` and
  ``definition``; ``GET /api/workflows/{name}/versions`` → ``{"workflow", "versions": [...]}``;
  ``GET /api/workflows/{name}/versions/{n}`` → that version with its source; 404
  ``workflow_not_found`` / ``version_not_found``.
- ``GET /api/stats?since`` (ISO-8601 or Unix seconds) → totals and per model / per workflow.
- ``GET /api/health`` → ``{status, store: {ok, dialect, error}, recorder: {running, queued,
  written, dropped, failed}, runners: [{group, packages, pid, rss_mb, settled_mb, replaced,
  retiring}]}``; 503 when the store does not answer. ``runners`` (``RunnerPool.status``): each
  plugin runner's process and memory, and how many were replaced because their memory grew.
Bad query parameters → 400 ``invalid_request_error``. Reads of runs first wait (briefly) for the
recorder to flush, so a run that just finished is visible.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from fastapi import APIRouter
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from host.store.base import UnknownCursor
from host.store.db import Store
from host.tracing.recorder import Recorder

log = logging.getLogger("flowbase.api")

_ENCODER = msgspec.json.Encoder()
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
STATUSES = frozenset({"ok", "error", "skipped", "cancelled"})
# How long a read waits for the recorder to write pending runs before reading anyway (seconds):
# normally a few milliseconds; bounded so a struggling database cannot hang the UI.
FLUSH_WAIT_S = 5.0


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param


def json_response(body: Any, status: int = 200) -> Response:
    return Response(_ENCODER.encode(body), status_code=status, media_type="application/json")


def error_response(status: int, message: str, type_: str, code: str, param: str | None = None) -> Response:
    err: dict[str, Any] = {"message": message, "type": type_, "code": code}
    if param is not None:
        err["param"] = param
    return json_response({"error": err}, status)


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, message, "invalid_request_error", "invalid_parameter", param)


def _not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, f"{what} '{ident}' not found", "not_found_error", f"{what}_not_found")


def _str(q: QueryParams, name: str) -> str | None:
    value = q.get(name)
    return value if value else None


def _limit(q: QueryParams) -> int:
    raw = _str(q, "limit")
    if raw is None:
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise _bad("limit", f"limit must be an integer between 1 and {MAX_LIMIT}, got '{raw}'") from None
    if not 1 <= value <= MAX_LIMIT:
        raise _bad("limit", f"limit must be between 1 and {MAX_LIMIT}, got {value}")
    return value


def _since(q: QueryParams) -> float | None:
    raw = _str(q, "since")
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        raise _bad("since", f"since must be an ISO-8601 time or Unix seconds, got '{raw}'") from None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


Handler = Callable[..., Awaitable[Response]]


def _handled(fn: Handler) -> Handler:
    """Turns ApiError into its JSON error and a failing database into 503."""
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            return await fn(*args, **kwargs)
        except ApiError as exc:
            return error_response(exc.status, exc.message, exc.type, exc.code, exc.param)
        except (SQLAlchemyError, OSError) as exc:
            log.error("management API: store error: %s", type(exc).__name__)
            return error_response(503, "the store is unavailable", "api_error", "store_unavailable")
    return wrapper


def admin_router(store: Store, recorder: Recorder,
                 runners: Callable[[], list[dict[str, Any]]] | None = None) -> APIRouter:
    router = APIRouter(prefix="/api")

    async def one(what: str, ident: str, fetch: Callable[[str], Awaitable[Any]], *, recorded: bool) -> Response:
        """``fetch(ident)`` as JSON, or 404 ``{what}_not_found``; a ``recorded`` item (a run, a session)
        is read after pending trace writes are flushed."""
        if recorded:
            await recorder.flush(FLUSH_WAIT_S)
        found = await fetch(ident)
        if found is None:
            raise _not_found(what, ident)
        return json_response(found)

    @router.get("/runs")
    @_handled
    async def list_runs(request: Request) -> Response:
        """Runs, newest first, filtered and paged (``next`` → ``before``)."""
        q = request.query_params
        status = _str(q, "status")
        if status is not None and status not in STATUSES:
            raise _bad("status", f"status must be one of {', '.join(sorted(STATUSES))}, got '{status}'")
        limit = _limit(q)
        await recorder.flush(FLUSH_WAIT_S)
        try:
            runs = await store.list_runs(model=_str(q, "model"), status=status, session_id=_str(q, "session_id"),
                                         workflow=_str(q, "workflow"), limit=limit, before=_str(q, "before"))
        except UnknownCursor as exc:
            raise ApiError(400, str(exc), "invalid_request_error", "invalid_cursor", "before") from None
        return json_response({"runs": runs, "next": runs[-1]["id"] if len(runs) == limit else None})

    @router.get("/runs/{run_id}")
    @_handled
    async def get_run(run_id: str) -> Response:
        """One run with all its spans, in recorded order."""
        return await one("run", run_id, store.get_run, recorded=True)

    @router.get("/sessions")
    @_handled
    async def list_sessions(request: Request) -> Response:
        """Sessions (runs sharing a session id), most recently active first."""
        limit = _limit(request.query_params)
        await recorder.flush(FLUSH_WAIT_S)
        return json_response({"sessions": await store.list_sessions(limit)})

    @router.get("/sessions/{session_id}")
    @_handled
    async def get_session(session_id: str) -> Response:
        """A session's runs, oldest first, each with its spans (for replay)."""
        return await one("session", session_id, store.get_session, recorded=True)

    @router.get("/workflows")
    @_handled
    async def list_workflows() -> Response:
        """Every workflow the store knows, with its current version."""
        return json_response({"workflows": await store.list_workflows()})

    @router.get("/workflows/{name}")
    @_handled
    async def get_workflow(name: str) -> Response:
        """A workflow with its current version's source text and definition."""
        return await one("workflow", name, store.get_workflow, recorded=False)

    @router.get("/workflows/{name}/versions")
    @_handled
    async def list_versions(name: str) -> Response:
        """A workflow's versions, newest first."""
        versions = await store.list_versions(name)
        if not versions:
            raise _not_found("workflow", name)
        return json_response({"workflow": name, "versions": versions})

    @router.get("/workflows/{name}/versions/{version}")
    @_handled
    async def get_version(name: str, version: str) -> Response:
        """One version of a workflow with its source text and definition."""
        try:
            n = int(version)
        except ValueError:
            raise _bad("version", f"version must be an integer, got '{version}'") from None
        found = await store.get_version(name, n)
        if found is None:
            if await store.get_workflow(name) is None:
                raise _not_found("workflow", name)
            raise ApiError(404, f"workflow '{name}' has no version {n}", "not_found_error", "version_not_found")
        return json_response(found)

    @router.get("/stats")
    @_handled
    async def stats(request: Request) -> Response:
        """Runs, errors, tokens, cost and p50/p95 duration: in total, per model, per workflow."""
        since = _since(request.query_params)
        await recorder.flush(FLUSH_WAIT_S)
        return json_response(await store.stats(since))

    @router.get("/health")
    async def health() -> Response:
        """Whether the store answers, and the trace recorder's counters."""
        error = None
        try:
            await store.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means "not healthy", reported by type only
            error = type(exc).__name__
        body = {"status": "ok" if error is None and recorder.running else "degraded",
                "store": {"ok": error is None, "dialect": store.dialect, "error": error},
                "recorder": {"running": recorder.running, **recorder.counters()},
                "runners": runners() if runners is not None else []}
        return json_response(body, 200 if error is None else 503)

    return router
