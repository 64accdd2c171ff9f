"""Runs tests/fake_upstream.py as a real subprocess on a free 127.0.0.1 port, for any test.

    with FakeUpstream() as up:
        up.openai_base_url      # http://127.0.0.1:<port>/v1   (an OpenAI-style base_url)
        up.anthropic_base_url   # http://127.0.0.1:<port>      (an Anthropic-style base_url)
        up.requests()           # every request it received, oldest first (see fake_upstream's docstring)
        up.clear()              # forget them (and its prompt cache)

``header(record, name)`` reads a recorded header case-insensitively; ``record_with(up, marker)`` is
the one request whose body mentions ``marker``, ``sent_with`` the last of several;
``await disconnected(up, marker)`` waits until the upstream saw that request's client go away.
For model-node tests: ``ask(text)`` builds a one-message request, ``folded(events)`` is the
response a stream of events adds up to, ``READ_TOOL`` is a Claude Code-like ``Read`` tool,
``refused_port()`` a 127.0.0.1 port nothing listens on, and ``cancel_mid_stream(run, ctx-args)``
cancels a streaming node once its first text arrived and returns its context. Fixtures: ``upstream`` is a
session-scoped one (import it with ``# noqa: F401``, parameters named after it need ``# noqa: F811``);
or a module makes its own with ``upstream = upstream_fixture()`` (one server per module, no noqa).
Tests that inspect ``requests()`` should pick their records by a unique marker in the prompt (or
``clear()`` first).
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import httpx
import pytest

from plugin_sdk.node import NodeContext, NodeFn
from plugin_sdk.types import Accumulator, BlockDelta, Request, Response, StreamEvent, Tool, text_message

ROOT = Path(__file__).resolve().parent.parent
# Seconds the fake upstream may take to import and bind on a loaded CI machine.
START_TIMEOUT_S = 30.0
# Seconds it gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 5.0
# Seconds a cancelled stream's upstream may take to notice its client left (it does at its next write).
DISCONNECT_WAIT_S = 6.0
# Seconds a streaming node may take to send its first text before the test gives up.
FIRST_TEXT_TIMEOUT_S = 30.0

READ_TOOL = Tool(name="Read", description="Read a file", parameters={
    "type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]})


class FakeUpstream:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    def start(self) -> Self:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.fake_upstream", "--port", "0"], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=None, start_new_session=True)
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + START_TIMEOUT_S
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"fake upstream did not start (output so far: {buf!r})")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    continue
                buf += chunk
        line = buf.split(b"\n", 1)[0].decode()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"fake upstream printed {line!r} instead of 'PORT <n>'")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def requests(self) -> list[dict[str, Any]]:
        r = httpx.get(self.base_url + "/_requests", timeout=10.0)
        r.raise_for_status()
        out: list[dict[str, Any]] = r.json()
        return out

    def clear(self) -> None:
        httpx.post(self.base_url + "/_requests/clear", timeout=10.0).raise_for_status()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def header(record: dict[str, Any], name: str) -> str | None:
    lname = name.lower()
    return next((v for k, v in record["headers"].items() if k.lower() == lname), None)


def record_with(up: FakeUpstream, marker: str) -> dict[str, Any]:
    """The one upstream request whose body mentions ``marker``."""
    recs = [r for r in up.requests() if marker in json.dumps(r["body"])]
    assert len(recs) == 1, f"expected one upstream request carrying {marker!r}, got {len(recs)}"
    return recs[0]


def sent_with(up: FakeUpstream, marker: str) -> dict[str, Any]:
    """The last upstream request that mentions ``marker``, with its headers."""
    found = [r for r in up.requests() if marker in json.dumps(r["body"])]
    assert found, f"no upstream request mentions {marker!r}"
    rec: dict[str, Any] = found[-1]
    return rec


async def disconnected(up: FakeUpstream, marker: str) -> dict[str, Any]:
    """``record_with(up, marker)`` once it shows the client went away, or after ``DISCONNECT_WAIT_S``."""
    for _ in range(300):  # the upstream notices the disconnect at its next write
        if (await asyncio.to_thread(record_with, up, marker))["disconnected"]:
            break
        await asyncio.sleep(DISCONNECT_WAIT_S / 300)
    return record_with(up, marker)


def ask(text: str, **kw: Any) -> Request:
    return Request(model="client-model", messages=[text_message("user", text)], **kw)


def folded(events: list[StreamEvent]) -> Response:
    acc = Accumulator()
    for ev in events:
        acc.feed(ev)
    return acc.response()


@contextmanager
def refused_port() -> Iterator[int]:
    """A 127.0.0.1 port that is bound but never listening, so connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


async def cancel_mid_stream(run: NodeFn, *, node_type: str, config: dict[str, Any], request: Request) -> NodeContext:
    """Run a streaming node, cancel it once its first text delta arrived, and return its context."""
    got_text = asyncio.Event()

    async def emit(ev: StreamEvent) -> None:
        if isinstance(ev, BlockDelta):
            got_text.set()

    ctx = NodeContext(node_id="n", node_type=node_type, config=config, inputs={}, request=request, stream=True,
                      emit=emit)
    task = asyncio.ensure_future(run(ctx))
    await asyncio.wait_for(got_text.wait(), FIRST_TEXT_TIMEOUT_S)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return ctx


def upstream_fixture(scope: Literal["module", "session"] = "module") -> Any:
    """A pytest fixture that runs one fake upstream for the module (or the session)."""

    def upstream() -> Iterator[FakeUpstream]:
        with FakeUpstream() as up:
            yield up

    return pytest.fixture(scope=scope, name="upstream")(upstream)


upstream = upstream_fixture("session")
