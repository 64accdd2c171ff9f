"""The flowbase application: wires store, recorder, runner pool, workflow registry and routes.

Start-up order matters and is bounded: the store opens (schema created), the plugin runners start
and report their node types, then workflows load against those types. Shutdown reverses it: stop
watching files, close runners (bounded), flush the recorder, close the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
from fastapi import FastAPI
from starlette.requests import Request as HttpRequest
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

from host.api.admin import admin_router
from host.api.v1 import ROUTES, V1, Receive, Scope, Send
from host.config import Settings
from host.engine.history import History
from host.engine.registry import Registry
from host.engine.run import Engine
from host.engine.workflow import Workflow
from host.runners import RunnerPool
from host.store.db import Store
from host.tracing.recorder import Recorder
from plugin_runner import heap
from plugin_runner.manifest import default_dir, load_manifests

log = logging.getLogger("flowbase")
BUILTIN_WORKFLOWS = Path(__file__).resolve().parent / "builtin_workflows"
WEB_DIR = Path(__file__).resolve().parent.parent / "web"


class Gateway:
    """The ASGI app uvicorn runs: the three protocol POST routes go straight to ``V1.serve``
    (no middleware, see host/api/v1.py); everything else — /api, /v1/models, the UI, lifespan —
    goes to the FastAPI app."""

    def __init__(self, api: FastAPI) -> None:
        self.api = api
        self.v1: V1 | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.v1 is not None and scope["method"] == "POST":
            route = ROUTES.get(scope["path"])
            if route is not None:
                await self.v1.serve(route[0], route[1], scope, receive, send)
                return
        await self.api(scope, receive, send)


def create_app(settings: Settings) -> Gateway:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = await Store.open(settings.db_url())
        recorder = Recorder(store.write_runs, interval_s=settings.trace_batch_s)
        recorder.start()
        manifests = load_manifests([default_dir(), *settings.plugin_dirs])
        pool = RunnerPool(manifests, recycle_mb=settings.runner_recycle_mb)
        stop = asyncio.Event()
        watcher: asyncio.Task[None] | None = None
        trimmer = asyncio.create_task(heap.give_back())
        try:
            await pool.start()
            available = pool.node_types()
            node_types = {n: spec for m in manifests for n, spec in m.node_types.items() if n in available}

            async def save(wf: Workflow) -> int:
                return await store.save_workflow(wf.name, wf.model, wf.source, wf.definition)

            registry = Registry(node_types, save)
            folder = settings.workflows or BUILTIN_WORKFLOWS
            await registry.load_dir(folder)
            if settings.workflows is not None and settings.watch:
                watcher = asyncio.create_task(registry.watch(folder.resolve(), stop))
            engine = Engine(pool, recorder.submit if settings.tracing else None)
            v1 = V1(registry, engine, settings.api_keys, History(store, recorder if settings.tracing else None))
            gateway.v1 = v1
            app.router.routes[0:0] = v1.routes()
            app.include_router(admin_router(store, recorder, pool.status))
            app.add_api_route("/api/published", _published(registry), methods=["GET"], include_in_schema=True)
            _mount_web(app)
            app.state.registry, app.state.pool, app.state.store, app.state.recorder = registry, pool, store, recorder
            log.info("flowbase serving %d model(s): %s", len(registry.by_model), ", ".join(registry.by_model) or "none")
            heap.settle()  # startup is done: freeze what it built, collect young objects less often
            yield
        finally:
            stop.set()
            for task in (watcher, trimmer):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await pool.close()
            await recorder.close()
            await store.close()

    api = FastAPI(title="flowbase", version="0.1.0", lifespan=lifespan, docs_url="/api/docs",
                  openapi_url="/api/openapi.json", redoc_url=None)
    gateway = Gateway(api)
    return gateway


def _published(registry: Registry) -> Callable[[], Awaitable[Response]]:
    async def published() -> Response:
        """The models this process serves right now, and the workflow files that failed to load."""
        body = {
            "models": [{"model": wf.model, "workflow": wf.name, "version": wf.version, "path": wf.path,
                        "description": wf.description, "nodes": [
                            {"id": n.id, "type": n.type, "deps": n.deps, "provider": n.provider, "model": n.model}
                            for n in (wf.nodes[i] for i in wf.order)], "output": wf.outputs}
                       for wf in registry.models()],
            "errors": [{"path": p, "error": e} for p, e in sorted(registry.errors.items())],
        }
        return Response(msgspec.json.encode(body), media_type="application/json")
    return published


def _mount_web(app: FastAPI) -> None:
    """The web UI (plain files in web/, no build step) at /; the API stays under /api and /v1."""
    async def index(_: HttpRequest) -> FileResponse:
        return FileResponse(WEB_DIR / "index.html")
    app.add_route("/", index, methods=["GET"])
    app.mount("/ui", StaticFiles(directory=WEB_DIR, check_dir=False), name="ui")
