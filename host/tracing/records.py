"""What a finished run leaves behind: the run row and its spans, as the engine hands them to the
recorder and the store writes and reads them. Times are Unix seconds (float)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from plugin_sdk.types import Usage

SpanKind = Literal["workflow", "node", "model_call", "tool_call"]
Status = Literal["ok", "error", "skipped", "cancelled"]


class SpanRow(msgspec.Struct, omit_defaults=True):
    id: str
    run_id: str
    parent_id: str | None
    kind: SpanKind
    name: str
    status: Status
    started_at: float
    ended_at: float | None = None
    input: Any = None
    output: Any = None
    usage: Usage | None = None
    cost_usd: float | None = None
    error: str | None = None
    model: str | None = None
    provider: str | None = None
    # Per-million-token prices the workflow declared for this call, if any (see pricing.py).
    price: dict[str, float] | None = None


class RunRow(msgspec.Struct, omit_defaults=True):
    id: str
    workflow: str
    workflow_version: int
    model: str
    protocol: Literal["chat", "responses", "messages"]
    status: Status
    started_at: float
    ended_at: float | None = None
    stream: bool = False
    usage: Usage = msgspec.field(default_factory=Usage)
    cost_usd: float | None = None
    error: str | None = None
    session_id: str | None = None
    spans: list[SpanRow] = []
