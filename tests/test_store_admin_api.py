"""The management API (/api) over a real store and recorder, through an ASGI client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy.exc import OperationalError
from support_store import T0, make_run, model_call

from host.api.admin import admin_router
from host.store.db import Store
from host.tracing.recorder import Recorder
from plugin_sdk.types import Usage

pytest_plugins = ["support_store_fixtures"]


class Api:
    def __init__(self, client: httpx.AsyncClient, store: Store, recorder: Recorder) -> None:
        self.client, self.store, self.recorder = client, store, recorder

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        r = await self.client.get(path, params=params)
        assert r.headers["content-type"].startswith("application/json")
        return r.status_code, r.json()


@pytest_asyncio.fixture
async def api(store: Store) -> AsyncIterator[Api]:
    recorder = Recorder(store.write_runs)
    recorder.start()
    app = FastAPI()
    app.include_router(admin_router(store, recorder))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://flowbase.test") as client:
        yield Api(client, store, recorder)
    await recorder.close()


async def test_a_run_just_submitted_to_the_recorder_is_visible_right_away(api: Api) -> None:
    call = model_call("r1", 1, "r1.0", model="gpt-4o-mini", usage=Usage(input_tokens=1000, output_tokens=10))
    api.recorder.submit(make_run("r1", spans=[make_run("r1").spans[0], call], session_id="s1"))
    status, run = await api.get("/api/runs/r1")
    assert status == 200
    assert run["id"] == "r1" and [s["kind"] for s in run["spans"]] == ["workflow", "model_call"]
    assert run["cost_usd"] == pytest.approx((1000 * 0.15 + 10 * 0.60) / 1e6)
    assert run["started_at"] == "2025-06-15T15:06:40.000Z"


async def test_an_unknown_run_is_a_404_in_the_error_shape(api: Api) -> None:
    status, body = await api.get("/api/runs/x")
    assert status == 404
    assert body == {"error": {"message": "run 'x' not found", "type": "not_found_error", "code": "run_not_found"}}


async def test_runs_are_listed_and_paged_with_the_next_cursor(api: Api) -> None:
    await api.store.write_runs([make_run(f"r{i}", started=T0 + i, model="m-a" if i % 2 else "m-b")
                                for i in range(5)])
    status, page = await api.get("/api/runs", limit=2)
    assert status == 200 and [r["id"] for r in page["runs"]] == ["r4", "r3"] and page["next"] == "r3"
    _, page2 = await api.get("/api/runs", limit=2, before=page["next"])
    assert [r["id"] for r in page2["runs"]] == ["r2", "r1"]
    _, last = await api.get("/api/runs", limit=2, before=page2["next"])
    assert [r["id"] for r in last["runs"]] == ["r0"] and last["next"] is None
    _, filtered = await api.get("/api/runs", model="m-a")
    assert [r["id"] for r in filtered["runs"]] == ["r3", "r1"]
    assert all("spans" not in r for r in filtered["runs"])


@pytest.mark.parametrize(("params", "param"), [
    ({"limit": "0"}, "limit"),
    ({"limit": "501"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"status": "great"}, "status"),
    ({"before": "no-such-run"}, "before"),
])
async def test_bad_run_list_parameters_are_a_400_in_the_error_shape(api: Api, params: dict[str, str],
                                                                   param: str) -> None:
    status, body = await api.get("/api/runs", **params)
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == param
    assert params[param] in body["error"]["message"]


async def test_sessions_are_listed_and_replayed_with_their_spans(api: Api) -> None:
    await api.store.write_runs([make_run("a1", started=T0, session_id="s1"),
                                make_run("a2", started=T0 + 5, session_id="s1", status="error")])
    status, body = await api.get("/api/sessions")
    assert status == 200 and [(s["session_id"], s["runs"], s["errors"]) for s in body["sessions"]] == [("s1", 2, 1)]
    status, session = await api.get("/api/sessions/s1")
    assert status == 200 and [r["id"] for r in session["runs"]] == ["a1", "a2"]
    assert session["runs"][0]["spans"][0]["kind"] == "workflow"
    status, body = await api.get("/api/sessions/nope")
    assert status == 404 and body["error"]["code"] == "session_not_found"
    status, body = await api.get("/api/sessions", limit="-1")
    assert status == 400 and body["error"]["param"] == "limit"


async def test_workflows_show_their_current_source_and_version_history(api: Api) -> None:
    await api.store.save_workflow("wf", "m", "name: wf  # v1\n", {"name": "wf", "v": 1})
    await api.store.save_workflow("wf", "m", "name: wf  # v2\n", {"name": "wf", "v": 2})
    status, body = await api.get("/api/workflows")
    assert status == 200
    assert [(w["name"], w["model"], w["current_version"]) for w in body["workflows"]] == [("wf", "m", 2)]
    status, wf = await api.get("/api/workflows/wf")
    assert status == 200 and wf["source_text"] == "name: wf  # v2\n" and wf["definition"] == {"name": "wf", "v": 2}
    status, versions = await api.get("/api/workflows/wf/versions")
    assert status == 200 and [v["version"] for v in versions["versions"]] == [2, 1]
    status, v1 = await api.get("/api/workflows/wf/versions/1")
    assert status == 200 and v1["source_text"] == "name: wf  # v1\n"


@pytest.mark.parametrize(("path", "status_code", "code"), [
    ("/api/workflows/nope", 404, "workflow_not_found"),
    ("/api/workflows/nope/versions", 404, "workflow_not_found"),
    ("/api/workflows/nope/versions/1", 404, "workflow_not_found"),
    ("/api/workflows/wf/versions/9", 404, "version_not_found"),
    ("/api/workflows/wf/versions/first", 400, "invalid_parameter"),
])
async def test_missing_workflows_and_versions_are_errors_in_the_error_shape(api: Api, path: str, status_code: int,
                                                                            code: str) -> None:
    await api.store.save_workflow("wf", "m", "name: wf\n", {"name": "wf"})
    status, body = await api.get(path)
    assert status == status_code and body["error"]["code"] == code and body["error"]["message"]


async def test_stats_cover_runs_since_a_time_given_as_iso_or_unix_seconds(api: Api) -> None:
    await api.store.write_runs([make_run("old", started=T0), make_run("new", started=T0 + 3600, cost_usd=0.5)])
    status, all_time = await api.get("/api/stats")
    assert status == 200 and all_time["total"]["runs"] == 2
    for since in ("2025-06-15T15:30:00Z", "2025-06-15T15:30:00", str(T0 + 1800)):
        status, recent = await api.get("/api/stats", since=since)
        assert status == 200 and recent["total"]["runs"] == 1 and recent["total"]["cost_usd"] == 0.5
    status, body = await api.get("/api/stats", since="yesterday")
    assert status == 400 and body["error"]["param"] == "since"


async def test_health_reports_the_store_and_the_recorder_counters(api: Api) -> None:
    api.recorder.submit(make_run("r1"))
    await api.recorder.flush(5.0)
    status, body = await api.get("/api/health")
    assert status == 200
    assert body["status"] == "ok" and body["store"]["ok"] is True
    assert body["store"]["dialect"] in ("sqlite", "postgresql")
    assert body["recorder"] == {"running": True, "queued": 0, "written": 1, "dropped": 0, "failed": 0}
    assert body["runners"] == []  # this app has no plugin runners


async def test_health_is_503_when_the_store_does_not_answer(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    async def down() -> None:
        raise ConnectionRefusedError("no database")

    monkeypatch.setattr(api.store, "ping", down)
    status, body = await api.get("/api/health")
    assert status == 503
    assert body["status"] == "degraded" and body["store"] == {"ok": False, "dialect": api.store.dialect,
                                                              "error": "ConnectionRefusedError"}


async def test_a_failing_store_read_is_a_503_not_a_stack_trace(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*_a: Any, **_kw: Any) -> None:
        raise OperationalError("SELECT 1", {}, ConnectionResetError("server closed the connection"))

    monkeypatch.setattr(api.store, "list_runs", broken)
    status, body = await api.get("/api/runs")
    assert status == 503
    assert body == {"error": {"message": "the store is unavailable", "type": "api_error", "code": "store_unavailable"}}
