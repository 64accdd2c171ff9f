"""RunnerPool: the host's side of the plugin runner processes.

    pool = RunnerPool(manifests)          # manifests from plugin_runner.manifest.load_manifests
    await pool.start()                    # spawns the runners, waits for each Hello (RunnerStartError)
    call = pool.call("mock.chat", node_id="answer", config={}, inputs={}, request=req,
                     stream=True, timeout_s=30.0)
    async for ev in call: ...             # StreamEvents as the runner's Chunk frames arrive
    res = await call.result()             # protocol.Result, or raises a FlowbaseError with .spans
    await pool.close()                    # bounded: Shutdown → wait → SIGTERM group → SIGKILL

Processes: packages are grouped by their manifest's ``runner`` value (default "shared": one process
for everything, which keeps memory small). Each runner is ``python -m plugin_runner --fd N`` on one
end of a socketpair, in its own session (so its process group can be killed whole), stdin from
/dev/null, stderr relayed verbatim to the host's stderr (the last ``STDERR_TAIL_BYTES`` are kept
for start-up error messages). One reader task per runner dispatches frames to calls by id.

Failures, as the caller sees them (every raised error has ``.spans: list[SpanRecord]``):
- runner Failure → UpstreamError (source "upstream": status, message, retry_after, code kept),
  NodeTimeout (kind "timeout"), InvalidRequest / NotFound by kind, else NodeError(status, kind).
- runner death (EOF / exit) → every pending call gets RunnerCrashed("plugin runner (packages …)
  exited with code N while running node '…'"); the runner is respawned at once. At most
  ``restart_budget`` restarts per ``restart_window_s``; past that, calls for its packages fail
  fast with RunnerCrashed saying so until the window has passed, then the next call respawns it.
- host deadline: ``timeout_s + DEADLINE_GRACE_S`` after the Invoke went out, the call raises
  NodeTimeout("node '…' exceeded its 2 s deadline and was cancelled") and a Cancel goes out; then
  the runner is pinged and, without a Pong within ``PONG_TIMEOUT_S`` (a sync plugin is blocking
  its loop), its process group is killed and it is respawned. ``timeout_s <= 0``: no deadline.
- ``call.cancel()``: courtesy Cancel to the runner (the client went away); the call is finished.
Log frames go to the ``flowbase.runner`` logger. A call itself (its events, result, deadline) is
``runner_call.Call``.

Memory (``recycle_mb`` > 0, runner_memory.py): a runner whose resident memory grew more than
``recycle_mb`` over its settled size is replaced when it next has no call in flight: a fresh one
starts, new calls go to it once it is ready, the old one finishes whatever it was given meanwhile
(up to ``RETIRE_DRAIN_S``) and is shut down. Not a crash: it takes nothing from the restart budget.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

import msgspec

from host.runner_call import Call, failure_error, with_spans
from host.runner_memory import Growth, resident_mb
from plugin_runner.framing import MAX_FRAME, FrameError, FrameWriter
from plugin_runner.manifest import Manifest
from plugin_runner.protocol import (
    Chunk,
    Failure,
    Hello,
    Invoke,
    Log,
    Ping,
    Pong,
    Result,
    Shutdown,
    ToHost,
)
from plugin_sdk.errors import (
    NodeError,
    RunnerCrashed,
)
from plugin_sdk.types import Request

log = logging.getLogger("flowbase.runner")

# Seconds from spawn to Hello: the runner imports every plugin (provider SDKs take a while) and on
# a loaded 2-core machine that can take several seconds; past this something is wrong.
START_TIMEOUT_S = 30.0
# Seconds a runner may take to answer a Ping after a missed deadline: a live event loop answers
# in microseconds, so this much silence means a plugin is blocking the loop.
PONG_TIMEOUT_S = 2.0
# Seconds for a clean exit after Shutdown: the runner gives running nodes 2 s, then closes its
# packages (1 s each at most).
SHUTDOWN_WAIT_S = 5.0
# Seconds between SIGTERM and SIGKILL of a runner's process group on close.
TERM_WAIT_S = 2.0
# Seconds to reap a runner whose socket closed, to report its exit code (normally immediate).
EXIT_WAIT_S = 2.0
# Seconds to let the stderr relay reach EOF so a start-up error message includes the last lines.
STDERR_FLUSH_S = 1.0
# Replacing a runner whose memory grew (runner_memory.py): calls before its size counts as settled,
# seconds between readings of its memory, seconds between two replacements of one group's runner
# (a plugin that really needs more memory is not restarted over and over), and seconds a replaced
# runner may take to finish its calls in flight before it is shut down anyway.
RECYCLE_SETTLE_CALLS = 100
RECYCLE_CHECK_S = 1.0
RECYCLE_INTERVAL_S = 300.0
RETIRE_DRAIN_S = 900.0
STDERR_TAIL_BYTES = 8192

_decode = msgspec.msgpack.Decoder(ToHost).decode
_decode_any = msgspec.msgpack.Decoder().decode
_CALL_TAGS = ("chunk", "result", "failure")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
           "critical": logging.CRITICAL}


class RunnerStartError(Exception):
    """A runner did not start (a plugin failed to load, or it never said hello); the message
    includes the runner's last stderr lines, which name the broken package and manifest."""


def _exit_text(code: int | None) -> str:
    if code is None:
        return "stopped"
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class _Proc:
    """One runner process, its connection and the calls in flight on it."""

    def __init__(self, group: _Group, process: asyncio.subprocess.Process, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.group = group
        self.process = process
        self.pid = process.pid
        self.loop = asyncio.get_running_loop()
        self.writer = writer
        self.transport = writer.transport
        self.fw = FrameWriter(writer)
        self.stream = reader
        self.pending: dict[int, Call] = {}
        self.pings: dict[int, asyncio.Future[None]] = {}
        self.hello: asyncio.Future[Hello] = self.loop.create_future()
        self.alive = True
        self.ready = False
        self.closing = False
        # Replaced by a fresh runner (its memory grew): finishes its calls, takes no new ones, exits.
        self.retired = False
        self.drained: asyncio.Future[None] | None = None  # set while retired with calls in flight
        pool = group.pool
        self.growth = Growth(self.pid, pool.recycle_mb, settle_calls=pool.recycle_settle_calls,
                             check_s=pool.recycle_check_s) if pool.recycle_mb > 0 else None
        self.exit_code: int | None = None
        self._ids = 0
        # Set while a missed deadline is being checked with a Ping; new calls wait for the verdict
        # instead of queueing behind a loop that a sync plugin may be blocking.
        self.verdict: asyncio.Future[None] | None = None
        self.tail = bytearray()
        self.tasks: set[asyncio.Task[None]] = set()
        self._reader_task = self._spawn_task(self._read_loop())
        self._relay_task = self._spawn_task(self._relay())
        self._spawn_task(self._watch_exit())

    def _spawn_task(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    # ---- background tasks ----------------------------------------------------------------

    async def _read_loop(self) -> None:
        readexactly = self.stream.readexactly
        try:
            while True:
                n = int.from_bytes(await readexactly(4), "big")
                if n > MAX_FRAME:
                    raise FrameError(f"frame of {n} bytes exceeds the {MAX_FRAME}-byte limit")
                body = await readexactly(n)
                try:
                    frame = _decode(body)
                except msgspec.DecodeError as exc:
                    self._undecodable(body, exc)
                    continue
                if isinstance(frame, Chunk):
                    call = self.pending.get(frame.id)
                    if call is not None:
                        call._on_event(frame.event)
                elif isinstance(frame, Result):
                    call = self.pending.get(frame.id)
                    if call is not None:
                        call._finish(result=frame)
                elif isinstance(frame, Failure):
                    call = self.pending.get(frame.id)
                    if call is not None:
                        call._finish(exc=failure_error(frame))
                elif isinstance(frame, Pong):
                    fut = self.pings.pop(frame.id, None)
                    if fut is not None and not fut.done():
                        fut.set_result(None)
                elif isinstance(frame, Log):
                    log.log(_LEVELS.get(frame.level, logging.WARNING), "[runner %s] %s", self.group.key, frame.message)
                elif isinstance(frame, Hello) and not self.hello.done():
                    self.ready = True
                    self.hello.set_result(frame)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except FrameError as exc:
            log.error("plugin runner (packages %s) sent a bad frame, killing it: %s", self.group.names, exc)
            self.kill()
        await self._died()

    def _undecodable(self, body: bytes, exc: msgspec.DecodeError) -> None:
        """A frame that is valid msgpack but not a valid frame (a plugin put, say, an int key in its
        output) fails only its own call; the stream stays in sync because the length was read."""
        try:
            raw = _decode_any(body)
        except msgspec.DecodeError:
            raw = None
        if isinstance(raw, list) and len(raw) > 1 and raw[0] in _CALL_TAGS and isinstance(raw[1], int):
            call = self.pending.get(raw[1])
            if call is not None:
                call._finish(exc=with_spans(NodeError(
                    f"node '{call._node_id}' sent a {raw[0]} the host cannot decode: {exc}"), []))
            return
        raise FrameError(f"undecodable frame: {exc}")

    async def _relay(self) -> None:
        stream = self.process.stderr
        if stream is None:
            return
        decode = codecs.getincrementaldecoder("utf-8")("replace").decode
        while chunk := await stream.read(65536):
            self.tail += chunk
            if len(self.tail) > STDERR_TAIL_BYTES:
                del self.tail[:-STDERR_TAIL_BYTES]
            text = decode(chunk)
            if text:
                with contextlib.suppress(Exception):
                    sys.stderr.write(text)
                    sys.stderr.flush()

    async def _watch_exit(self) -> None:
        # A process that exits while something else holds the socket open still counts as dead.
        await self.process.wait()
        self.transport.close()

    async def _died(self) -> None:
        was_ready = self.hello.done()
        self.alive = False
        self.ready = False
        self.group.lost(self, was_ready)
        self._settle_verdict()
        try:
            code: int | None = await asyncio.wait_for(self.process.wait(), EXIT_WAIT_S)
        except TimeoutError:
            self.kill()
            code = await self.process.wait()
        self.exit_code = code
        # Leftover children of the plugins (same process group) die with their runner.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)
        self.transport.close()
        for fut in self.pings.values():
            fut.cancel()
        self.pings.clear()
        if not self.hello.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._relay_task), STDERR_FLUSH_S)
            self.hello.set_exception(RunnerStartError(
                f"plugin runner (packages {self.group.names}) {_exit_text(code)} before it was ready{self.stderr_tail()}"))
            self.hello.exception()  # retrieved here so an unawaited start leaves no warning
        for call in list(self.pending.values()):
            if self.closing:
                msg = f"plugin runner (packages {self.group.names}) was shut down while running node '{call._node_id}'"
            else:
                msg = (f"plugin runner (packages {self.group.names}) {_exit_text(code)} "
                       f"while running node '{call._node_id}'")
            call._finish(exc=with_spans(RunnerCrashed(msg), []))
        self.pending.clear()
        if not self.closing:
            log.error("plugin runner (packages %s, pid %d) %s", self.group.names, self.pid, _exit_text(code))

    def stderr_tail(self) -> str:
        if not self.tail:
            return ""
        return "\n--- runner stderr (last lines) ---\n" + self.tail.decode("utf-8", "replace").rstrip()

    # ---- control -------------------------------------------------------------------------

    def idle(self) -> None:
        """No call in flight: a retired runner may go now; a serving one may have outgrown its memory."""
        if self.drained is not None:
            if not self.drained.done():
                self.drained.set_result(None)
        elif self.growth is not None and self.ready and self.growth.outgrown(self.loop.time(), self._ids):
            self.group.recycle(self)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def suspect(self, node_id: str) -> None:
        """A node overran its deadline: make sure the runner's loop still answers."""
        if self.alive and self.verdict is None:
            self.ready = False
            self.verdict = self.loop.create_future()
            self._spawn_task(self._health(node_id))

    def _settle_verdict(self) -> None:
        verdict, self.verdict = self.verdict, None
        if verdict is not None and not verdict.done():
            verdict.set_result(None)

    async def _health(self, node_id: str) -> None:
        ping_id = self.next_id()
        fut: asyncio.Future[None] = self.loop.create_future()
        self.pings[ping_id] = fut
        try:
            self.fw.write(Ping(ping_id))
            await asyncio.wait_for(fut, PONG_TIMEOUT_S)
        except TimeoutError:
            if self.alive:
                log.warning("plugin runner (packages %s, pid %d) did not answer a ping within %g s after node '%s' "
                            "missed its deadline (a plugin blocks its event loop); killing it",
                            self.group.names, self.pid, PONG_TIMEOUT_S, node_id)
                # The verdict settles when the reader sees it die, after the group started a new
                # process, so waiting calls go there.
                self.kill()
                return
        except asyncio.CancelledError:
            return  # the runner died meanwhile; _died settled the verdict
        finally:
            self.pings.pop(ping_id, None)
        self.ready = self.alive
        self._settle_verdict()

    async def shutdown(self) -> None:
        """Bounded: Shutdown frame → wait → SIGTERM process group → wait → SIGKILL."""
        self.closing = True
        if self.alive:
            with contextlib.suppress(Exception):
                self.fw.write(Shutdown())
        try:
            await asyncio.wait_for(self.process.wait(), SHUTDOWN_WAIT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), TERM_WAIT_S)
            except TimeoutError:
                self.kill()
                await self.process.wait()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=EXIT_WAIT_S + STDERR_FLUSH_S)
        for t in list(self.tasks):
            t.cancel()


class _Group:
    """The packages one runner process hosts, across restarts of that process."""

    def __init__(self, pool: RunnerPool, key: str, manifests: list[Manifest]) -> None:
        self.pool = pool
        self.key = key
        self.manifests = manifests
        self.names = ", ".join(m.id for m in manifests)
        self.proc: _Proc | None = None
        self.starting: asyncio.Task[_Proc] | None = None
        self.restarts: deque[float] = deque()  # loop times of restarts within the window
        self.crashes: deque[float] = deque()  # loop times of crashes within the window (for messages)
        self.node_types: set[str] = set()
        self.recycled_at = float("-inf")  # loop time of the last replacement for memory
        self.replaced = 0  # runners replaced for memory so far
        self.retiring: set[_Proc] = set()
        self.retire_tasks: set[asyncio.Task[None]] = set()

    def lost(self, proc: _Proc, was_ready: bool) -> None:
        """``proc`` died: respawn it now, if the budget allows and we are not closing. A runner
        that dies before its Hello is the start path's business (it raises RunnerStartError)."""
        if self.proc is proc:
            self.proc = None
        if proc.closing or proc.retired or self.pool.closing or not was_ready:
            return
        self.crashes.append(asyncio.get_running_loop().time())
        if self.starting is not None:
            return
        if self._take_restart():
            self.starting = self._start_task(log_failure=True)
        else:
            log.error("%s", self._blocked_message())

    def recycle(self, old: _Proc) -> None:
        """``old`` outgrew its memory (runner_memory.py): start a fresh runner; once it is ready new
        calls go there, and ``old`` exits when its calls are done. At most once per
        ``recycle_interval_s``, and never while another start is under way."""
        loop = asyncio.get_running_loop()
        if self.starting is not None or self.pool.closing or loop.time() - self.recycled_at < self.pool.recycle_interval_s:
            return
        self.recycled_at = loop.time()
        growth = old.growth
        assert growth is not None
        log.info("plugin runner (packages %s, pid %d) grew from %.0f to %.0f MB; starting a fresh one to take over",
                 self.names, old.pid, growth.baseline_mb or 0.0, growth.last_mb or 0.0)
        self.starting = self._start_task(log_failure=True)
        task = loop.create_task(self._retire(old, self.starting))
        self.retire_tasks.add(task)
        task.add_done_callback(self.retire_tasks.discard)

    async def _retire(self, old: _Proc, starting: asyncio.Task[_Proc]) -> None:
        try:
            new = await asyncio.shield(starting)
        except (Exception, asyncio.CancelledError):  # noqa: BLE001 - the start task logged why
            return  # no replacement (it could not start, or the pool is closing): ``old`` serves on
        old.retired = True
        old.ready = False
        self.replaced += 1
        self.retiring.add(old)
        try:
            if old.pending:
                log.info("plugin runner (packages %s) pid %d took over from pid %d, which exits after its %d "
                         "call(s) in flight", self.names, new.pid, old.pid, len(old.pending))
                old.drained = old.loop.create_future()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(old.drained), RETIRE_DRAIN_S)
            await old.shutdown()
        finally:
            self.retiring.discard(old)

    def _blocked_message(self) -> str:
        window = self.pool.restart_window_s
        if not self.restarts:
            return (f"plugin runner (packages {self.names}) crashed and restarts are disabled "
                    "(restart_budget=0)")
        wait_s = max(self.restarts[0] + window - asyncio.get_running_loop().time(), 0.0)
        return (f"plugin runner (packages {self.names}) crashed {len(self.crashes)} times within {window:g} s; "
                f"not restarting it for another {wait_s:.0f} s")

    def _take_restart(self) -> bool:
        now = asyncio.get_running_loop().time()
        window = self.pool.restart_window_s
        for times in (self.restarts, self.crashes):
            while times and now - times[0] >= window:
                times.popleft()
        if len(self.restarts) >= self.pool.restart_budget:
            return False
        self.restarts.append(now)
        return True

    def _start_task(self, *, log_failure: bool = False) -> asyncio.Task[_Proc]:
        task = asyncio.get_running_loop().create_task(self._spawn())

        def done(t: asyncio.Task[_Proc]) -> None:
            if self.starting is t:
                self.starting = None
            # Always retrieve the exception; log it when no caller may be waiting to report it.
            exc = None if t.cancelled() else t.exception()
            if exc is not None and log_failure:
                log.error("%s", exc)

        task.add_done_callback(done)
        return task

    async def acquire(self) -> _Proc:
        proc = self.proc
        if proc is not None and proc.ready:
            return proc
        while proc is not None and proc.verdict is not None:
            await asyncio.shield(proc.verdict)
            proc = self.proc
            if proc is not None and proc.ready:
                return proc
        if self.pool.closing:
            raise RunnerCrashed(f"plugin runner (packages {self.names}) is shut down")
        if self.starting is None:
            if self.pool.started and not self._take_restart():
                raise RunnerCrashed(self._blocked_message())
            self.starting = self._start_task()
        starting = self.starting
        try:
            return await asyncio.shield(starting)
        except asyncio.CancelledError:
            # The start was abandoned because the pool is closing; this caller was not cancelled.
            task = asyncio.current_task()
            if starting.cancelled() and (task is None or not task.cancelling()):
                raise RunnerCrashed(f"plugin runner (packages {self.names}) is shut down") from None
            raise
        except RunnerStartError as exc:
            raise RunnerCrashed(f"plugin runner (packages {self.names}) could not be restarted: {exc}") from exc

    async def _spawn(self) -> _Proc:
        host_sock, child_sock = socket.socketpair()
        fd = child_sock.fileno()
        cmd = [sys.executable, "-m", "plugin_runner", "--fd", str(fd)]
        for d in self.pool.manifest_dirs:
            cmd += ["--manifests", str(d)]
        cmd += ["--packages", ",".join(m.id for m in self.manifests)]
        env = dict(os.environ)
        # Fewer malloc arenas: less virtual memory (RLIMIT_AS counts it) and less fragmentation.
        env.setdefault("MALLOC_ARENA_MAX", "2")
        try:
            process = await asyncio.create_subprocess_exec(
                *cmd, pass_fds=[fd], start_new_session=True, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        except BaseException:
            host_sock.close()
            raise
        finally:
            child_sock.close()
        proc: _Proc | None = None
        try:
            reader, writer = await asyncio.open_unix_connection(sock=host_sock)
            proc = _Proc(self, process, reader, writer)
            hello = await asyncio.wait_for(asyncio.shield(proc.hello), START_TIMEOUT_S)
        except TimeoutError:
            assert proc is not None
            proc.closing = True
            proc.kill()
            await asyncio.wait({*proc.tasks}, timeout=EXIT_WAIT_S + STDERR_FLUSH_S)
            raise RunnerStartError(f"plugin runner (packages {self.names}) did not report ready within "
                                   f"{START_TIMEOUT_S:g} s{proc.stderr_tail()}") from None
        except BaseException:
            if proc is not None:
                proc.closing = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            raise
        self.node_types = {t.name for t in hello.node_types}
        self.proc = proc
        log.info("plugin runner (packages %s) ready, pid %d, %d node type(s)", self.names, hello.pid,
                 len(self.node_types))
        return proc


class RunnerPool:
    def __init__(self, manifests: list[Manifest], *, manifest_dirs: list[Path] | None = None,
                 restart_budget: int = 5, restart_window_s: float = 60.0, recycle_mb: float = 0.0,
                 recycle_settle_calls: int = RECYCLE_SETTLE_CALLS, recycle_check_s: float = RECYCLE_CHECK_S,
                 recycle_interval_s: float = RECYCLE_INTERVAL_S) -> None:
        self.restart_budget = restart_budget
        self.restart_window_s = restart_window_s
        # Replace a runner whose memory grew by more than recycle_mb over its settled size (0: never).
        self.recycle_mb = recycle_mb
        self.recycle_settle_calls = recycle_settle_calls
        self.recycle_check_s = recycle_check_s
        self.recycle_interval_s = recycle_interval_s
        self.closing = False
        self.started = False
        if manifest_dirs is None:
            unplaced = [m.id for m in manifests if not m.path]
            if unplaced:
                raise ValueError(f"manifests {unplaced} have no file path; pass manifest_dirs")
            manifest_dirs = list(dict.fromkeys(Path(m.path).resolve().parent for m in manifests))
        self.manifest_dirs = [Path(d).resolve() for d in manifest_dirs]
        by_key: dict[str, list[Manifest]] = {}
        for m in manifests:
            by_key.setdefault(m.runner, []).append(m)
        self._groups = [_Group(self, key, ms) for key, ms in by_key.items()]
        self._by_type: dict[str, _Group] = {}
        for g in self._groups:
            for m in g.manifests:
                for name in m.node_types:
                    self._by_type[name] = g

    async def start(self) -> None:
        """Spawn every runner and wait for its Hello; RunnerStartError (naming the broken
        package's manifest via the runner's stderr) if any fails."""
        tasks = [g._start_task() for g in self._groups]
        for g, t in zip(self._groups, tasks, strict=True):
            g.starting = t
        results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.close()
            raise errors[0]
        self.started = True

    async def close(self) -> None:
        self.closing = True
        for g in self._groups:
            if g.starting is not None:
                g.starting.cancel()
                with contextlib.suppress(BaseException):
                    await g.starting
        for g in self._groups:
            for t in list(g.retire_tasks):
                t.cancel()
        procs = {p for g in self._groups for p in (g.proc, *g.retiring) if p is not None}
        await asyncio.gather(*(p.shutdown() for p in procs))

    def node_types(self) -> set[str]:
        return {n for g in self._groups for n in g.node_types}

    def status(self) -> list[dict[str, Any]]:
        """Per runner group (for /api/health): its packages, its live process with resident and settled
        memory (MB; settled: see runner_memory.py), how many runners were replaced for memory, and the
        pids of replaced ones still finishing their calls."""
        out = []
        for g in self._groups:
            p = g.proc if g.proc is not None and g.proc.alive else None
            rss = resident_mb(p.pid) if p is not None else None
            settled = p.growth.baseline_mb if p is not None and p.growth is not None else None
            out.append({"group": g.key, "packages": [m.id for m in g.manifests], "pid": p.pid if p else None,
                        "rss_mb": None if rss is None else round(rss, 1),
                        "settled_mb": None if settled is None else round(settled, 1),
                        "replaced": g.replaced, "retiring": sorted(r.pid for r in g.retiring)})
        return out

    def processes(self) -> dict[str, int]:
        """Runner group → pid of its live process."""
        return {g.key: g.proc.pid for g in self._groups if g.proc is not None and g.proc.alive}

    def call(self, node_type: str, *, node_id: str, config: dict[str, Any], inputs: dict[str, Any],
             request: Request | None, stream: bool, timeout_s: float) -> Call:
        group = self._by_type.get(node_type)
        inv = Invoke(0, node_type, node_id, config, inputs, request, stream, timeout_s)
        call = Call(group, inv)
        if group is None:
            call._finish(exc=with_spans(NodeError(f"node '{node_id}': no plugin provides node type '{node_type}'"),
                                         []))
            return call
        proc = group.proc
        if proc is not None and proc.ready:
            call._send(proc)
        return call
