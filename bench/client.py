"""A small raw HTTP/1.1 client (asyncio + httptools) for what wrk cannot measure: streamed answers.

Contract:
- :func:`post` sends one Chat Completions request on a keep-alive :class:`Connection` and returns an
  :class:`Exchange`: status, the answer text (streamed deltas joined, or the message content), whether a
  ``finish_reason``, a usage block and ``data: [DONE]`` arrived, and timings — ``ttfb_ms`` is the time
  from sending the request to the first SSE event that carries answer text (a bare role chunk does
  not count: a gateway could send that before the upstream answered).
- :func:`ttfb_series` measures streamed TTFB sequentially at concurrency 1 (like wrk -c1).
- :func:`soak` runs N streamed requests at once, each on its own connection, and checks that every
  answer is exactly the one expected for its own prompt.
Timings use ``time.perf_counter``; a raw protocol keeps the client's own overhead small and identical
for every target, so differences between targets are the gateway's.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import httptools
import msgspec

# How long one benchmark request may take before it counts as failed (seconds): far above any healthy
# answer, low enough that a hung gateway ends the run.
REQUEST_TIMEOUT_S = 60.0


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    message: _Delta | None = None
    finish_reason: str | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = []
    usage: dict[str, Any] | None = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode


class Exchange:
    """One request and its answer as it arrives."""

    def __init__(self, stream: bool) -> None:
        self.stream = stream
        self.t_sent = 0.0
        self.t_first_content: float | None = None
        self.t_end: float | None = None
        self.status = 0
        self.body = bytearray()
        self._sse = b""
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.done = False
        self.error: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def ttfb_ms(self) -> float | None:
        return None if self.t_first_content is None else (self.t_first_content - self.t_sent) * 1000

    @property
    def total_ms(self) -> float | None:
        return None if self.t_end is None else (self.t_end - self.t_sent) * 1000

    def feed(self, data: bytes) -> None:
        if not self.stream or self.status != 200:
            self.body += data
            return
        buf = (self._sse + data).replace(b"\r\n", b"\n")
        *events, self._sse = buf.split(b"\n\n")
        for event in events:
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    self._on_data(line[5:].strip())

    def _on_data(self, data: bytes) -> None:
        if data == b"[DONE]":
            self.done = True
            return
        try:
            chunk = _decode_chunk(data)
        except msgspec.DecodeError as exc:
            self.error = f"undecodable SSE data: {exc}"
            return
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta is not None and choice.delta.content:
                if self.t_first_content is None:
                    self.t_first_content = time.perf_counter()
                self.parts.append(choice.delta.content)
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason

    def finish(self) -> None:
        self.t_end = time.perf_counter()
        if self.stream and self.status == 200:
            return
        if self.status != 200:
            self.error = f"HTTP {self.status}: {bytes(self.body[:300]).decode(errors='replace')}"
            return
        try:
            chunk = _decode_chunk(bytes(self.body))
        except msgspec.DecodeError as exc:
            self.error = f"undecodable body: {exc}"
            return
        self.usage = chunk.usage
        for choice in chunk.choices:
            if choice.message is not None and choice.message.content:
                self.parts.append(choice.message.content)
            self.finish_reason = choice.finish_reason
        self.t_first_content = self.t_end


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.complete: asyncio.Future[None] | None = None
        self.keep_alive = True

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        _, proto = await asyncio.get_running_loop().create_connection(cls, host, port)
        return proto

    @property
    def usable(self) -> bool:
        return self.transport is not None and self.keep_alive

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"bad HTTP response: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail("connection closed before the answer was complete")

    def _fail(self, message: str) -> None:
        if self.complete is not None and not self.complete.done():
            if self.exchange is not None:
                self.exchange.error = message
            self.complete.set_result(None)
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    # httptools callbacks
    def on_headers_complete(self) -> None:
        if self.exchange is not None:
            self.exchange.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None:
            self.exchange.feed(body)

    def on_message_complete(self) -> None:
        self.keep_alive = bool(self.parser.should_keep_alive())
        if self.exchange is not None:
            self.exchange.finish()
        if self.complete is not None and not self.complete.done():
            self.complete.set_result(None)

    async def send(self, head: bytes, body: bytes, exchange: Exchange) -> Exchange:
        if self.transport is None:
            raise ConnectionError("connection is closed")
        self.exchange = exchange
        self.complete = asyncio.get_running_loop().create_future()
        exchange.t_sent = time.perf_counter()
        self.transport.write(head + body)
        try:
            await asyncio.wait_for(self.complete, REQUEST_TIMEOUT_S)
        except TimeoutError:
            exchange.error = f"no complete answer within {REQUEST_TIMEOUT_S:.0f}s"
            self._fail(exchange.error)
        if not self.keep_alive and self.transport is not None:
            self.transport.close()
            self.transport = None
        return exchange

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


def request_head(host: str, port: int, path: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{extra}\r\n").encode()


async def post(conn: Connection, host: str, port: int, path: str, body: bytes, headers: Mapping[str, str],
               stream: bool) -> Exchange:
    return await conn.send(request_head(host, port, path, body, headers), body, Exchange(stream))


def percentiles(values: list[float], points: tuple[float, ...] = (50, 90, 99)) -> dict[str, float]:
    """Nearest-rank percentiles (``{"p50": …}``); empty input gives an empty dict."""
    if not values:
        return {}
    ordered = sorted(values)
    out = {}
    for p in points:
        rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
        out[f"p{p:g}"] = ordered[rank - 1]
    out["mean"] = sum(ordered) / len(ordered)
    return out


@dataclass
class SeriesResult:
    requests: int
    errors: int
    ttfb_ms: dict[str, float] = field(default_factory=dict)
    total_ms: dict[str, float] = field(default_factory=dict)
    first_error: str | None = None


async def ttfb_series(host: str, port: int, path: str, body: Callable[[int], bytes], headers: Mapping[str, str],
                      *, count: int, max_time_s: float) -> SeriesResult:
    """Streamed requests one after another on one keep-alive connection (reopened if the server closes)."""
    ttfb: list[float] = []
    total: list[float] = []
    errors = 0
    first_error: str | None = None
    conn: Connection | None = None
    deadline = time.monotonic() + max_time_s
    sent = 0
    try:
        while sent < count and time.monotonic() < deadline:
            if conn is None or not conn.usable:
                conn = await Connection.open(host, port)
            ex = await post(conn, host, port, path, body(sent), headers, stream=True)
            sent += 1
            if ex.error or ex.ttfb_ms is None or not ex.done:
                errors += 1
                first_error = first_error or ex.error or "stream ended without text or [DONE]"
                continue
            ttfb.append(ex.ttfb_ms)
            total.append(ex.total_ms or 0.0)
    finally:
        if conn is not None:
            conn.close()
    return SeriesResult(requests=sent, errors=errors, ttfb_ms=percentiles(ttfb), total_ms=percentiles(total),
                        first_error=first_error)


@dataclass
class SoakResult:
    requests: int
    completed_ok: int
    failed: int
    wall_s: float
    ttfb_ms: dict[str, float] = field(default_factory=dict)
    total_ms: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


async def soak(host: str, port: int, path: str, *, concurrency: int, body: Callable[[int], bytes],
               expected: Callable[[int], str], headers: Mapping[str, str]) -> SoakResult:
    """``concurrency`` streamed requests at once; each must return exactly ``expected(i)``."""

    async def one(i: int) -> Exchange:
        ex = Exchange(stream=True)
        try:
            conn = await Connection.open(host, port)
        except OSError as exc:
            ex.error = f"connect failed: {exc}"
            return ex
        try:
            return await post(conn, host, port, path, body(i), headers, stream=True)
        finally:
            conn.close()

    t0 = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(concurrency)))
    wall = time.perf_counter() - t0
    failures: list[str] = []
    ok = 0
    for i, ex in enumerate(results):
        problem = ex.error
        if problem is None and ex.text != expected(i):
            problem = f"wrong answer: {ex.text[:120]!r} != {expected(i)[:120]!r}"
        if problem is None and (not ex.done or ex.finish_reason is None):
            problem = "stream ended without finish_reason or [DONE]"
        if problem is None:
            ok += 1
        elif len(failures) < 5:
            failures.append(f"request {i}: {problem}")
    return SoakResult(requests=concurrency, completed_ok=ok, failed=concurrency - ok, wall_s=wall,
                      ttfb_ms=percentiles([e.ttfb_ms for e in results if e.ttfb_ms is not None]),
                      total_ms=percentiles([e.total_ms for e in results if e.total_ms is not None]),
                      failures=failures)
