"""Serves node invocations over the runner's socket (see protocol.py for the frames).

- First frame out: ``Hello(pid, node_types)``. Then each ``Invoke`` becomes a task that runs the
  node: inputs checked against the input schema, ``run(ctx)`` under a runner-side deadline
  (``asyncio.timeout(timeout_s)``; ``timeout_s <= 0`` means none), the output (a ``Response``
  becomes ``response_output(resp)`` and rides along as ``Result.response``) checked against the
  output schema. Events the node emits go out as ``Chunk`` frames as they come.
- Every Invoke ends with exactly one ``Result`` or ``Failure``, both carrying ``ctx.spans`` (as ``WireSpan``):
    deadline passed        → Failure(kind "timeout", 504, source "timeout")
    host sent ``Cancel``   → Failure(kind "api_error", 500, source "cancelled") (the host ignores it)
    ``UpstreamError``      → its kind/status/message/retry_after/code, source "upstream"
    other ``FlowbaseError``→ its kind/status/message, source "node"
    any other exception    → api_error 500 "node '<id>' (<type>) failed: <Type>: <msg>", source
                             "node"; the traceback goes to stderr only.
- ``Ping(id)`` → ``Pong(id)`` at once (the host uses it to tell a busy runner from a blocked one).
- ``Shutdown``: stop reading, give running nodes ``SHUTDOWN_GRACE_S``, cancel the rest, await the
  packages' ``close`` callbacks, return 0. EOF on the socket (host gone): cancel everything, close
  the packages, return 0.
- Python ``logging`` records at or above the runner's level travel as ``Log`` frames.

One ``FrameWriter`` for the connection; ``drain()`` is awaited only when the transport holds more
than ``HIGH_WATER_BYTES`` (a slow host then slows a streaming node instead of growing memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import traceback

import msgspec

from plugin_runner.framing import FrameError, FrameWriter, runner_reader
from plugin_runner.loader import Loaded
from plugin_runner.protocol import (
    Cancel,
    Chunk,
    Failure,
    Hello,
    Invoke,
    Log,
    NodeTypeInfo,
    Ping,
    Pong,
    Result,
    Shutdown,
    wire_spans,
)
from plugin_sdk.errors import FlowbaseError, NodeError, UpstreamError
from plugin_sdk.node import Emit, NodeContext
from plugin_sdk.schemas import node_output, require_inputs
from plugin_sdk.types import StreamEvent

# Bytes queued in the socket transport above which a writer awaits drain(); below it frames are
# written without yielding (one chunk is usually a few dozen bytes).
HIGH_WATER_BYTES = 256 * 1024
# Seconds running nodes get to finish after Shutdown before they are cancelled; shorter than the
# host's wait for a clean exit (host/runners.py) so the close callbacks still get to run.
SHUTDOWN_GRACE_S = 2.0
# Seconds each package's close callback may take; a hung close must not keep the runner alive.
CLOSE_TIMEOUT_S = 1.0


class FrameLogHandler(logging.Handler):
    """Sends log records to the host as ``Log`` frames (from any thread)."""

    def __init__(self, server: Server, level: int) -> None:
        super().__init__(level)
        self.server = server
        self.loop_thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = f"{record.name}: {record.getMessage()}"
            if record.exc_info:
                msg += "\n" + "".join(traceback.format_exception(*record.exc_info))
            frame = Log(level=record.levelname.lower(), message=msg)
            if threading.get_ident() == self.loop_thread:
                self.server.send(frame)
            else:
                self.server.loop.call_soon_threadsafe(self.server.send, frame)
        except Exception:  # noqa: BLE001 - logging must never raise into the code that logged
            self.handleError(record)


class Server:
    def __init__(self, loaded: Loaded, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.loaded = loaded
        self.types = loaded.node_types
        self.reader = runner_reader(reader)
        self.writer = writer
        self.transport = writer.transport
        self.fw = FrameWriter(writer)
        self.loop = asyncio.get_running_loop()
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.closed = False  # the host is gone: write nothing more

    # ---- output ------------------------------------------------------------------------

    def send(self, frame: msgspec.Struct) -> None:
        if not self.closed:
            self.fw.write(frame)

    async def _flow(self) -> None:
        if not self.closed and self.transport.get_write_buffer_size() > HIGH_WATER_BYTES:
            await self.fw.drain()

    def _finish(self, frame: Result | Failure) -> None:
        """Send the terminal frame; an output that cannot be encoded becomes a Failure."""
        try:
            self.send(frame)
            return
        except (TypeError, ValueError, OverflowError) as exc:
            what = "output" if isinstance(frame, Result) else "error report"
            fail = Failure(frame.id, "api_error", 500, f"node {what} cannot be sent to the host: {exc}", "node",
                           frame.spans)
        try:
            self.send(fail)
        except (TypeError, ValueError, OverflowError):
            # A span's fields outside its JSON payloads (its usage, say) hold something msgpack cannot
            # carry; the error itself still gets through.
            self.send(msgspec.structs.replace(fail, spans=[]))

    # ---- one invocation ----------------------------------------------------------------

    def _emitter(self, call_id: int) -> Emit:
        async def emit(ev: StreamEvent) -> None:
            self.send(Chunk(call_id, ev))
            await self._flow()

        return emit

    async def _run(self, inv: Invoke) -> None:
        ctx = NodeContext(node_id=inv.node_id, node_type=inv.node_type, config=inv.config, inputs=inv.inputs,
                          request=inv.request, stream=inv.stream, emit=self._emitter(inv.id) if inv.stream else None)
        deadline = asyncio.timeout(inv.timeout_s if inv.timeout_s > 0 else None)
        frame: Result | Failure
        try:
            nt = self.types.get(inv.node_type)
            if nt is None:
                raise NodeError(f"node '{inv.node_id}': this plugin runner has no node type '{inv.node_type}'")
            require_inputs(nt.schemas, inv.inputs, node_id=inv.node_id, node_type=inv.node_type)
            async with deadline:
                out = await nt.run(ctx)
            output, resp = node_output(out, nt.schemas, node_id=inv.node_id, node_type=inv.node_type)
            frame = Result(inv.id, output, resp, [])
        except asyncio.CancelledError:
            # Ours to swallow: the only consumer of this task is the frame below.
            frame = Failure(inv.id, "api_error", 500, f"node '{inv.node_id}' ({inv.node_type}) was cancelled",
                            "cancelled")
        except UpstreamError as exc:
            frame = Failure(inv.id, exc.kind, exc.status, exc.message, "upstream",
                            retry_after=exc.retry_after, code=exc.code, param=exc.param)
        except FlowbaseError as exc:
            frame = Failure(inv.id, exc.kind, exc.status, exc.message, "node", code=exc.code,
                            param=exc.param)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - any plugin failure becomes a Failure frame
            if isinstance(exc, TimeoutError) and deadline.expired():
                frame = Failure(inv.id, "timeout", 504, f"node '{inv.node_id}' exceeded its {inv.timeout_s:g} s "
                                "deadline and was cancelled", "timeout")
            else:
                print(f"flowbase runner: node '{inv.node_id}' ({inv.node_type}) failed:", file=sys.stderr)
                traceback.print_exception(exc, file=sys.stderr)
                frame = Failure(inv.id, "api_error", 500, f"node '{inv.node_id}' ({inv.node_type}) failed: "
                                f"{type(exc).__name__}: {exc}", "node")
        finally:
            self.tasks.pop(inv.id, None)
        frame.spans = wire_spans(ctx.spans)
        self._finish(frame)
        await self._flow()

    # ---- the connection ----------------------------------------------------------------

    def hello(self) -> None:
        infos = [NodeTypeInfo(name=n, package=t.package) for n, t in self.types.items()]
        self.send(Hello(pid=os.getpid(), node_types=infos))

    async def serve(self) -> int:
        """Serve until Shutdown or EOF; returns the process exit code."""
        self.hello()
        code = 0
        shutdown = False
        while True:
            try:
                frame = await self.reader.read()
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            except FrameError as exc:
                print(f"flowbase runner: protocol error, exiting: {exc}", file=sys.stderr)
                code = 3
                break
            match frame:
                case Invoke():
                    self.tasks[frame.id] = self.loop.create_task(self._run(frame))
                case Cancel(id=call_id):
                    task = self.tasks.get(call_id)
                    if task is not None:
                        task.cancel()
                case Ping(id=ping_id):
                    self.send(Pong(ping_id))
                case Shutdown():
                    shutdown = True
                    break
        if shutdown:
            await self._settle()
        else:
            self.closed = True
            await self._cancel_all()
        await self._close_packages()
        self.closed = True
        with contextlib.suppress(Exception):
            self.fw.close()
        return code

    async def _settle(self) -> None:
        running = list(self.tasks.values())
        if running:
            await asyncio.wait(running, timeout=SHUTDOWN_GRACE_S)
        await self._cancel_all()
        with contextlib.suppress(Exception):
            await self.fw.drain()

    async def _cancel_all(self) -> None:
        running = list(self.tasks.values())
        for t in running:
            t.cancel()
        if running:
            await asyncio.wait(running, timeout=CLOSE_TIMEOUT_S)

    async def _close_packages(self) -> None:
        for package, close in self.loaded.closers:
            try:
                await asyncio.wait_for(close(), CLOSE_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - one package's broken close must not skip the others
                print(f"flowbase runner: close callback of package {package!r} failed: "
                      f"{type(exc).__name__}: {exc}", file=sys.stderr)

