"""Executes a workflow for one client request, streams the answer node, records the run.

Every node runs in the plugin runner (``RunnerPool.call``). Nodes whose inputs do not depend on
each other run concurrently; the answer node (the first of ``output:`` whose ``when:`` holds) is
driven inline by the caller so its stream reaches the client with no extra hop. When the run
ends, however it ends, one ``RunRow`` with all its spans goes to the recorder (never awaited).

The client sees the answer node's usage (what its conversation's model consumed); the run record
carries the sum over every model call.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import msgspec

from host.engine.context import RequestView, build_request
from host.engine.templates import render_value
from host.engine.workflow import Node, Workflow
from host.redact import REDACTOR
from host.runners import RunnerPool
from host.tracing.records import PendingRun, RunRow, SpanId, SpanRow, Status
from plugin_runner.protocol import Result, WireSpan
from plugin_sdk.errors import FlowbaseError, NodeError
from plugin_sdk.types import (
    Request,
    Response,
    StreamEnd,
    StreamEvent,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    Usage,
    response_events,
)

Protocol = Literal["chat", "responses", "messages"]
SKIPPED: dict[str, Any] = {"skipped": True}


async def _iterate(events: list[StreamEvent]) -> AsyncIterator[StreamEvent]:
    for ev in events:
        yield ev


def new_run_id() -> str:
    # Time-ordered (sorts like creation order in the store) and unique without coordination
    # between hosts sharing a store; the PRNG avoids a syscall per request.
    return f"run_{time.time_ns():x}{random.getrandbits(40):010x}"


class Engine:
    def __init__(self, pool: RunnerPool, submit: Callable[[RunRow | PendingRun], None] | None) -> None:
        self.pool = pool
        self.submit = submit  # None: tracing off

    def start(self, wf: Workflow, req: Request, *, protocol: Protocol, session_id: str | None,
              body: bytes | None = None) -> Execution:
        """``body``: the client's request body when ``req`` is exactly what it parses to (under ``protocol``):
        the trace then keeps those bytes as the run's input instead of encoding ``req`` again."""
        return Execution(self, wf, req, protocol, session_id, body)


class Execution:
    """One run. Use ``await complete()`` or ``async for ev in stream()`` exactly once."""

    def __init__(self, engine: Engine, wf: Workflow, req: Request, protocol: Protocol, session_id: str | None,
                 body: bytes | None = None) -> None:
        self.engine = engine
        self.wf = wf
        self.req = req
        self.body = body
        self.protocol = protocol
        self.session_id = session_id
        self.id = new_run_id()
        self.started = time.time()
        # Span ids are numbers within the run (the root is 0): the store keeps them as they are and
        # reads them back as "<run id>.<n>" (host/store/runs.py), so no id string is built per span.
        self.root = 0
        self.spans: list[SpanRow] = []
        self.outputs: dict[str, Any] = {}
        self.futures: dict[str, asyncio.Future[Any]] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.results: dict[str, Result] = {}
        self.usage = Usage()
        self._ctx: dict[str, Any] | None = None
        self._seq = 0
        # Node failures that fail the run (an on_error: skip failure is recorded but tolerated).
        self._failed = 0

    # ---- public --------------------------------------------------------------------------

    async def complete(self) -> Response:
        status: Status = "error"
        err: BaseException | None = None
        try:
            node, done = await self._begin()
            resp = self._as_response(node, done) if done is not None else await self._answer(node)
            await self._finish_background()
            status = "error" if self._failed else "ok"
            return resp
        except BaseException as exc:
            err = exc
            status = "cancelled" if isinstance(exc, asyncio.CancelledError) else "error"
            raise
        finally:
            self._record(status, err, stream=False)

    async def stream(self) -> AsyncIterator[StreamEvent]:
        status: Status = "error"
        completed = False
        err: BaseException | None = None
        try:
            node, done = await self._begin()
            events = response_events(self._as_response(node, done)) if done is not None else None
            async for ev in _iterate(events) if events is not None else self._answer_stream(node):
                if isinstance(ev, StreamEnd):
                    # The run is complete before its last event leaves: a client that hangs up
                    # as soon as it has the answer (Codex does) has not cancelled anything.
                    await self._finish_background()
                    completed = True
                    status = "error" if self._failed else "ok"
                yield ev
        except BaseException as exc:
            if not completed:
                err = exc
                status = "cancelled" if isinstance(exc, (asyncio.CancelledError, GeneratorExit)) else "error"
            raise
        finally:
            for t in self.tasks:
                t.cancel()
            self._record(status, err, stream=True)

    # ---- scheduling ----------------------------------------------------------------------

    async def _begin(self) -> tuple[Node, Result | None]:
        """Start every node that is not driven inline as a task; return the answer node once it
        is decided, with its result if it already ran (an output node that other nodes depend on
        runs as a task like any other; one that nothing depends on is driven by the caller)."""
        wf = self.wf
        if len(wf.order) == 1:  # the common proxy case: nothing to schedule
            node = wf.nodes[wf.order[0]]
            if node.when is None or node.when.holds(self._context()):
                return node, None
            raise NodeError(f"workflow '{wf.name}': its only node '{node.id}' was skipped (its `when:` is false)")
        loop = asyncio.get_running_loop()
        for nid in wf.order:
            self.futures[nid] = loop.create_future()
        inline = {o for o in wf.outputs if o not in wf.depended_on}
        for nid in wf.order:
            if nid not in inline:
                self.tasks.append(asyncio.create_task(self._background(wf.nodes[nid])))
        for i, cand in enumerate(wf.outputs):
            node = wf.nodes[cand]
            if cand not in inline:
                if (await self.futures[cand]).get("skipped"):
                    continue
                done: Result | None = self.results[cand]
            else:
                await self._await_deps(node)
                if node.when is not None and not node.when.holds(self._context()):
                    self._skip(node, "its `when:` is false")
                    continue
                done = None
            for other in wf.outputs[i + 1:]:
                if other in inline:
                    self._skip(wf.nodes[other], "an earlier output node answered")
            return node, done
        raise NodeError(f"workflow '{wf.name}': no output node ran (every `when:` of {', '.join(wf.outputs)} was false)")

    async def _await_deps(self, node: Node) -> None:
        for dep in node.deps:
            out = await self.futures[dep]
            self.outputs[dep] = out

    async def _background(self, node: Node) -> None:
        fut = self.futures[node.id]
        try:
            await self._await_deps(node)
            if node.when is not None and not node.when.holds(self._context()):
                self._skip(node, "its `when:` is false")
                return
            try:
                res = await self._invoke(node)
            except FlowbaseError as exc:
                if node.on_error != "skip":
                    raise
                # on_error: skip — later nodes see {skipped, error} and can take over (a fallback).
                self._failed -= 1
                self.outputs[node.id] = {"skipped": True, "error": exc.message}
                fut.set_result(self.outputs[node.id])
                return
            self.results[node.id] = res
            fut.set_result(res.output)
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: dependents re-raise it, others need not look
            if not isinstance(exc, Exception):
                raise

    def _skip(self, node: Node, why: str) -> None:
        now = time.time()
        self.spans.append(self._span("node", node.id, "skipped", now, now, output={"reason": why}))
        fut = self.futures.get(node.id)
        if fut is not None and not fut.done():
            fut.set_result(SKIPPED)
        self.outputs[node.id] = SKIPPED

    async def _finish_background(self) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    # ---- the answer ----------------------------------------------------------------------

    async def _answer(self, node: Node) -> Response:
        res = await self._invoke(node)
        self._answered(node, res.output)
        return self._as_response(node, res)

    async def _answer_stream(self, node: Node) -> AsyncIterator[StreamEvent]:
        if not node.is_model:
            res = await self._invoke(node)
            self._answered(node, res.output)
            for ev in response_events(self._as_response(node, res)):
                yield ev
            return
        done: list[Result] = []
        async for ev in self._node_events(node, True, done):
            if isinstance(ev, StreamEnd):
                self._answered(node, done[0].output)
            yield ev

    async def _node_events(self, node: Node, stream: bool, done: list[Result]) -> AsyncIterator[StreamEvent]:
        """Runs one node in the runner, yielding its stream events (when ``stream``) and putting
        its result in ``done``. A streamed node's StreamEnd is held back until its result is in,
        so the run is complete before the client sees the end (see ``stream()``)."""
        started = time.time()
        request = self._request_for(node)
        inputs = self._inputs_for(node)
        call = self.engine.pool.call(node.type, node_id=node.id, config=node.config, inputs=inputs,
                                     request=request, stream=stream, timeout_s=node.timeout_s)
        end: StreamEnd | None = None
        try:
            async for ev in call:
                if isinstance(ev, StreamEnd):
                    end = ev
                    continue
                yield ev
            res = await call.result()
        except FlowbaseError as exc:
            self._node_failed(node, started, inputs, request, exc)
            raise
        except BaseException:
            await call.cancel()
            raise
        self._node_done(node, started, inputs, request, res)
        done.append(res)
        if stream:
            if end is None and res.response is not None:
                end = StreamEnd(stop_reason=res.response.stop_reason, stop_sequence=res.response.stop_sequence,
                                usage=res.response.usage)
            if end is None:
                end = StreamEnd()
            yield end

    def _answered(self, node: Node, output: dict[str, Any]) -> None:
        fut = self.futures.get(node.id)
        if fut is not None and not fut.done():
            fut.set_result(output)

    def _as_response(self, node: Node, res: Result) -> Response:
        if res.response is not None:
            return res.response
        text = res.output.get("text")
        if not isinstance(text, str):
            text = msgspec.json.encode(res.output).decode()
        return Response(id=f"resp_{self.id[4:]}", model=self.wf.model, content=[TextPart(text)])

    # ---- one node ------------------------------------------------------------------------

    def _context(self) -> dict[str, Any]:
        if self._ctx is None:
            self._ctx = {"request": RequestView(self.req)}
        ctx = self._ctx
        ctx.update(self.outputs)
        return ctx

    def _inputs_for(self, node: Node) -> dict[str, Any]:
        if not node.inputs:
            return {}
        out = render_value(node.inputs, self._context())
        return out if isinstance(out, dict) else {}

    def _request_for(self, node: Node) -> Request | None:
        if not node.is_model:
            return None
        if node.passthrough and node.inherit_tools:
            return self.req
        return build_request(node, self.req, self._context())

    async def _invoke(self, node: Node) -> Result:
        done: list[Result] = []
        async for _ in self._node_events(node, False, done):
            pass  # a node called without stream yields nothing
        return done[0]

    def _node_input(self, node: Node, inputs: dict[str, Any], request: Request | None) -> Any:
        if request is None or request is self.req:
            return inputs or None
        return {"inputs": inputs, "request": request} if inputs else {"request": request}

    def _node_done(self, node: Node, started: float, inputs: dict[str, Any], request: Request | None, res: Result) -> None:
        usage = res.response.usage if res.response is not None else None
        span = self._span("node", node.id, "ok", started, time.time(), input=self._node_input(node, inputs, request),
                          output=res.output, usage=usage, model=node.model, provider=node.provider)
        self.spans.append(span)
        self._children(span.id, node, res.spans)
        self.outputs[node.id] = res.output

    def _node_failed(self, node: Node, started: float, inputs: dict[str, Any], request: Request | None,
                     exc: FlowbaseError) -> None:
        self._failed += 1
        exc.message = REDACTOR.redact(exc.message)
        span = self._span("node", node.id, "error", started, time.time(), input=self._node_input(node, inputs, request),
                          error=exc.message, model=node.model, provider=node.provider)
        self.spans.append(span)
        self._children(span.id, node, getattr(exc, "spans", None) or [])

    def _children(self, parent: SpanId, node: Node, records: list[WireSpan]) -> None:
        for r in records:
            if r.usage is not None and r.kind == "model_call":
                self.usage.add(r.usage)
            # Input and output arrive as JSON text and go into the trace as they are (see WireSpan).
            inp, out = r.input, r.output
            self.spans.append(self._span(
                r.kind, r.name, r.status, r.started_at, r.ended_at, parent=parent,
                input=None if inp is None else msgspec.Raw(inp), output=None if out is None else msgspec.Raw(out),
                usage=r.usage, model=r.model, provider=r.provider,
                error=REDACTOR.redact(r.error) if r.error else None, price=node.price))

    def _span(self, kind: Any, name: str, status: Status, started: float, ended: float | None, *,
              parent: SpanId | None = None, **kw: Any) -> SpanRow:
        self._seq += 1
        return SpanRow(id=self._seq, parent_id=self.root if parent is None else parent, kind=kind,
                       name=name, status=status, started_at=started, ended_at=ended, **kw)

    # ---- the record ----------------------------------------------------------------------

    def _tool_spans(self, answer: Response | None, ended: float) -> list[SpanRow]:
        """Client-side tool callbacks: results the client sent back in this request, and calls
        the answer handed to the client."""
        out: list[SpanRow] = []
        msgs = self.req.messages
        names: dict[str, str] = {}
        if msgs and msgs[-1].role == "tool":  # else no result is new in this request: skip the scan
            for msg in msgs:
                for part in msg.content:
                    if isinstance(part, ToolCallPart):
                        names[part.id] = part.name
        # Only the results that arrived since the model's last turn are new in this request.
        for msg in reversed(msgs):
            if msg.role != "tool":
                break
            for part in msg.content:
                if isinstance(part, ToolResultPart):
                    text = "".join(p.text for p in part.content if isinstance(p, TextPart))
                    out.append(self._span("tool_call", names.get(part.tool_call_id, part.tool_call_id),
                                          "error" if part.is_error else "ok", self.started, self.started,
                                          input={"tool_call_id": part.tool_call_id, "direction": "result_from_client"},
                                          output=text))
        if answer is not None:
            for call in answer.tool_calls():
                out.append(self._span("tool_call", call.name, "ok", self.started, ended,
                                      input={"tool_call_id": call.id, "arguments": call.arguments,
                                             "direction": "call_to_client"}))
        return out

    def _record(self, status: Status, err: BaseException | None, *, stream: bool) -> None:
        submit = self.engine.submit
        if submit is None:
            return
        ended = time.time()
        error = None
        if err is not None:
            error = err.message if isinstance(err, FlowbaseError) else (
                "client disconnected" if status == "cancelled" else f"{type(err).__name__}: {err}")
        # The record is built when the recorder seals it, after the answer has left; the spans are
        # taken now (a node cancelled with the run may still record itself: that is not part of it).
        spans = self.spans[:]
        submit(lambda: self._run_row(status, error, ended, stream, spans))

    def _run_row(self, status: Status, error: str | None, ended: float, stream: bool, spans: list[SpanRow]) -> RunRow:
        answer_out = None
        for nid in self.wf.outputs:
            out = self.outputs.get(nid)
            if out is not None and not out.get("skipped"):
                answer_out = out
        answer = None
        if answer_out is not None and answer_out.get("tool_calls"):
            answer = Response(id="", model="", content=[ToolCallPart(id=c["id"], name=c["name"], arguments=c["arguments"])
                                                        for c in answer_out["tool_calls"]])
        # The answer is the output of a node span of this run: stored once, there (``output_of``).
        output_of = None
        if answer_out is not None:
            output_of = next((s.id for s in spans if s.output is answer_out and s.kind == "node"), None)
        # The client's body as it came, when there is one (host/protocols/stored.py says why).
        body = self.body
        root = SpanRow(id=self.root, parent_id=None, kind="workflow", name=self.wf.name, status=status,
                       started_at=self.started, ended_at=ended,
                       input=self.req if body is None else msgspec.Raw(body),
                       input_format=None if body is None else self.protocol,
                       output=answer_out if output_of is None else None, output_of=output_of,
                       usage=self.usage, error=error)
        spans = [root, *spans, *self._tool_spans(answer, ended)]
        return RunRow(id=self.id, workflow=self.wf.name, workflow_version=self.wf.version, model=self.wf.model,
                      protocol=self.protocol, status=status, started_at=self.started, ended_at=ended, stream=stream,
                      usage=self.usage, error=error, session_id=self.session_id, spans=spans, engine_order=True)
