"""What a finished run leaves behind: the run row and its spans, as the engine hands them to the
recorder and the store writes and reads them. Times are Unix seconds (float). Traces and the store
encode JSON with ``plugin_runner.protocol.json_encode``, as the plugin runner encodes spans' payloads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec

from plugin_sdk.types import Usage

SpanKind = Literal["workflow", "node", "model_call", "tool_call"]
# A span's id within its run: the engine numbers its spans (an int, stored as it is; the store reads it
# back as "<run id>.<n>"), anything else that records a run may use strings.
SpanId = str | int
Status = Literal["ok", "error", "skipped", "cancelled"]


# gc=False: rows are never tracked by the garbage collector (none can be part of a reference cycle:
# nothing a row holds points back to it), which with ``seal`` leaves a queued run one tracked list.
class SpanRow(msgspec.Struct, omit_defaults=True, gc=False, kw_only=True):
    id: SpanId
    # The span's run; the engine leaves it out (a span belongs to the RunRow that holds it), and the
    # store neither needs nor reads it.
    run_id: str = ""
    parent_id: SpanId | None
    kind: SpanKind
    name: str
    status: Status
    started_at: float
    ended_at: float | None = None
    input: Any = None
    # The protocol ("chat", "responses", "messages") whose client request body ``input`` is: the workflow
    # span keeps the body the client sent, as it came (no encoding of the conversation per request); the
    # store shows it as the canonical request it parses to (host/protocols: ``stored_request``).
    input_format: str | None = None
    output: Any = None
    # The id of the span of this run whose output is this span's too (a workflow's answer is its answer
    # node's output): stored once, there, and read back in both places. ``output`` is then None.
    output_of: SpanId | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    error: str | None = None
    model: str | None = None
    provider: str | None = None
    # Per-million-token prices the workflow declared for this call, if any (see pricing.py): an input
    # of pricing, which clears it (it is not trace data).
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
    # The spans as the store keeps them (one JSON array), once the recorder has sealed the run: then
    # ``spans`` is empty and the run holds nothing the garbage collector tracks (see recorder.seal).
    spans_json: bytes | None = None
    # Set by the engine, which records spans in pre-order (a span after its parent and after the whole
    # subtree of each earlier sibling) with unique ids and only parents among them: pricing and sealing
    # then skip checking that (``recorder.seal``). Not stored.
    engine_order: bool = False


# A run the recorder builds when it seals it (``Recorder.submit``).
PendingRun = Callable[[], RunRow]


def unique_spans(spans: list[SpanRow]) -> list[SpanRow]:
    """``spans`` without any span whose id an earlier one has (ids are unique within a run as the engine
    records them; what else hands the store a run must not make a span ambiguous)."""
    if len({s.id for s in spans}) == len(spans):
        return spans
    seen: set[SpanId] = set()
    out = []
    for s in spans:
        if s.id not in seen:
            seen.add(s.id)
            out.append(s)
    return out
