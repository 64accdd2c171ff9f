"""Builders for runs and spans in the store, recorder and admin API tests."""

from __future__ import annotations

from typing import Any

from host.tracing.records import RunRow, SpanRow, Status
from plugin_sdk.types import Usage

T0 = 1_750_000_000.0  # a fixed instant (2025-06-15T15:06:40Z) so times in assertions are exact


def make_run(run_id: str, *, started: float = T0, duration_s: float | None = 1.0, model: str = "m-a",
             workflow: str = "wf-a", status: Status = "ok", session_id: str | None = None,
             usage: Usage | None = None, error: str | None = None, spans: list[SpanRow] | None = None,
             **kw: Any) -> RunRow:
    ended = None if duration_s is None else started + duration_s
    if spans is None:
        spans = [SpanRow(id=f"{run_id}.0", run_id=run_id, parent_id=None, kind="workflow", name=workflow,
                         status=status, started_at=started, ended_at=ended)]
    return RunRow(id=run_id, workflow=workflow, workflow_version=1, model=model, protocol="chat", status=status,
                  started_at=started, ended_at=ended, usage=usage or Usage(), error=error, session_id=session_id,
                  spans=spans, **kw)


def model_call(run_id: str, seq: int, parent: str, *, model: str | None, usage: Usage | None,
               price: dict[str, float] | None = None, started: float = T0) -> SpanRow:
    return SpanRow(id=f"{run_id}.{seq}", run_id=run_id, parent_id=parent, kind="model_call", name="chat",
                   status="ok", started_at=started, ended_at=started + 0.5, usage=usage, model=model, price=price)
