"""One node invocation on a plugin runner, as the caller holds it (``RunnerPool.call`` returns it;
runners.py has the processes it runs on).

The per-call path is a Future and a deque, no Queue or Task: the Invoke is written synchronously
when the runner is up; drain() is awaited only above ``HIGH_WATER_BYTES``. Errors carry ``.spans``
(``with_spans``): a runner's Failure frame becomes the FlowbaseError it means (``failure_error``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING

from plugin_runner.protocol import Cancel, Failure, Invoke, Result, WireSpan
from plugin_sdk.errors import FlowbaseError, InvalidRequest, NodeError, NodeTimeout, NotFound, UpstreamError
from plugin_sdk.types import StreamEvent

if TYPE_CHECKING:
    from host.runners import _Group, _Proc

# Seconds the host waits past a node's deadline before acting itself: the runner's own timer
# normally fires first and reports the timeout with the node's spans; the grace covers frame
# latency on a busy machine so the two do not race.
DEADLINE_GRACE_S = 0.5
# Bytes queued in the socket transport above which writers await drain().
HIGH_WATER_BYTES = 256 * 1024


def failure_error(f: Failure) -> FlowbaseError:
    """The error a runner's Failure frame means to the caller, carrying the node's spans."""
    exc: FlowbaseError
    if f.source == "upstream":
        exc = UpstreamError(f.message, status=f.status, kind=f.kind, retry_after=f.retry_after, code=f.code)
        exc.param = f.param
    elif f.kind == "timeout":
        exc = NodeTimeout(f.message, status=f.status, code=f.code, param=f.param)
    elif f.kind == "invalid_request":
        exc = InvalidRequest(f.message, status=f.status, code=f.code, param=f.param)
    elif f.kind == "not_found":
        exc = NotFound(f.message, status=f.status, code=f.code, param=f.param)
    else:
        exc = NodeError(f.message, status=f.status, kind=f.kind, code=f.code, param=f.param)
    return with_spans(exc, f.spans)


def with_spans(exc: FlowbaseError, spans: list[WireSpan]) -> FlowbaseError:
    """``exc`` carrying ``spans`` (what the node recorded before it failed) for the engine's trace."""
    exc.spans = spans  # type: ignore[attr-defined]
    return exc


class Call:
    """One node invocation. Iterate it for stream events (ends when the run ends), then await
    ``result()``; or just await ``result()``. ``cancel()`` gives up on it."""

    __slots__ = (
        "_events",
        "_exc",
        "_group",
        "_id",
        "_invoke",
        "_node_id",
        "_proc",
        "_result",
        "_timeout_s",
        "_timer",
        "_waiters",
    )

    def __init__(self, group: _Group | None, invoke: Invoke) -> None:
        self._group = group
        self._proc: _Proc | None = None
        self._id = 0
        self._invoke: Invoke | None = invoke
        self._timeout_s = invoke.timeout_s
        self._node_id = invoke.node_id
        self._events: deque[StreamEvent] = deque()
        self._result: Result | None = None
        self._exc: FlowbaseError | None = None
        # One future per waiting task (normally one), so a cancelled waiter never cancels another.
        self._waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None

    # ---- caller side ---------------------------------------------------------------------

    def __aiter__(self) -> Call:
        return self

    async def __anext__(self) -> StreamEvent:
        await self._ensure()
        while True:
            if self._events:
                return self._events.popleft()
            if self._done:
                raise StopAsyncIteration
            await self._wait()

    async def result(self) -> Result:
        await self._ensure()
        while not self._done:
            await self._wait()
        if self._exc is not None:
            raise self._exc
        assert self._result is not None
        return self._result

    async def cancel(self) -> None:
        if self._done:
            return
        self._send_cancel()
        self._finish(exc=with_spans(NodeError(f"node '{self._node_id}' was cancelled by the caller"), []))

    # ---- internals -----------------------------------------------------------------------

    @property
    def _done(self) -> bool:
        return self._result is not None or self._exc is not None

    async def _ensure(self) -> None:
        if self._invoke is not None and not self._done:
            assert self._group is not None
            try:
                ready = await self._group.acquire()
            except FlowbaseError as exc:
                self._finish(exc=with_spans(exc, []))
                return
            if self._invoke is not None and not self._done:
                self._send(ready)
        proc = self._proc
        if proc is not None and proc.alive and proc.transport.get_write_buffer_size() > HIGH_WATER_BYTES:
            await proc.fw.drain()

    def _send(self, proc: _Proc) -> None:
        inv = self._invoke
        assert inv is not None
        self._invoke = None
        self._proc = proc
        self._id = inv.id = proc.next_id()
        proc.pending[inv.id] = self
        proc.fw.write(inv)
        if self._timeout_s > 0:
            loop = proc.loop
            self._timer = loop.call_at(loop.time() + self._timeout_s + DEADLINE_GRACE_S, self._expire)

    async def _wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            raise

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def _finish(self, result: Result | None = None, exc: FlowbaseError | None = None) -> None:
        self._result, self._exc = result, exc
        self._invoke = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        proc = self._proc
        if proc is not None:
            pending = proc.pending
            pending.pop(self._id, None)
            if not pending:
                proc.idle()
        self._wake()

    def _send_cancel(self) -> None:
        proc = self._proc
        if proc is not None and proc.alive and self._id in proc.pending:
            proc.fw.write(Cancel(self._id))

    def _expire(self) -> None:
        self._timer = None
        if self._done:
            return
        self._send_cancel()
        self._finish(exc=with_spans(NodeTimeout(
            f"node '{self._node_id}' exceeded its {self._timeout_s:g} s deadline and was cancelled"), []))
        if self._proc is not None:
            self._proc.suspect(self._node_id)

    # ---- reader side ---------------------------------------------------------------------

    def _on_event(self, ev: StreamEvent) -> None:
        self._events.append(ev)
        if self._waiters:
            self._wake()
