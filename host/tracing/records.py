"""What a finished run leaves behind: the run row and its spans, as the engine hands them to the
recorder and the store writes and reads them. Times are Unix seconds (float).

``json_encode`` is the one JSON encoder of traces and the store (anything msgspec cannot encode is
stored as its ``str``: a trace must never fail to store because a node put an odd object in its
output). ``seal(run)`` encodes every span's input and output to JSON up front (``msgspec.Raw``, which
the encoder writes out as is): a run waiting to be written then holds no containers, only bytes, so
the garbage collector has almost nothing of it to track (see ``Recorder.submit``).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from plugin_sdk.types import Usage


def _fallback(obj: Any) -> Any:
    return str(obj)


# The bound method itself, for hot loops that encode many values (no wrapper call per value).
json_encode = msgspec.json.Encoder(enc_hook=_fallback).encode

SpanKind = Literal["workflow", "node", "model_call", "tool_call"]
Status = Literal["ok", "error", "skipped", "cancelled"]


# gc=False: rows are never tracked by the garbage collector (none can be part of a reference cycle:
# nothing a row holds points back to it), which with ``seal`` leaves a queued run one tracked list.
class SpanRow(msgspec.Struct, omit_defaults=True, gc=False):
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


class RunRow(msgspec.Struct, omit_defaults=True, gc=False):
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


def seal(run: RunRow) -> None:
    """Replace each span's input and output with its JSON encoding (``msgspec.Raw``), in place."""
    raw, enc = msgspec.Raw, json_encode
    for s in run.spans:
        inp, out = s.input, s.output
        if inp is not None and type(inp) is not raw:
            s.input = raw(enc(inp))
        if out is not None and type(out) is not raw:
            s.output = raw(enc(out))
