"""Length-prefixed msgpack framing over a stream socket: a 4-byte big-endian length, then the
frame. Encoders/decoders are built once per process (msgspec perf guidance)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

import msgspec

from plugin_runner.protocol import ToHost, ToRunner

T = TypeVar("T")

# A frame larger than this is a bug or an attack, not a node output; refuse it (bytes).
MAX_FRAME = 64 * 1024 * 1024


class FrameError(Exception):
    """The peer sent something that is not a valid frame."""


class Gathered:
    """Bytes written during one callback of the event loop, handed to ``send`` together (one write)
    when it ends (``loop.call_soon``): nothing waits past the callback that wrote it."""

    __slots__ = ("_loop", "_pending", "_scheduled", "_send")

    def __init__(self, send: Callable[[bytes], None], loop: asyncio.AbstractEventLoop) -> None:
        self._send = send
        self._loop = loop
        self._pending: list[bytes] = []
        self._scheduled = False

    def add(self, data: bytes) -> None:
        self._pending.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        pending = self._pending
        if pending:
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()
            self._send(data)

    def clear(self) -> None:
        self._pending.clear()

    def size(self) -> int:
        return sum(len(p) for p in self._pending)


class FrameWriter:
    """Encodes frames into one reused buffer (length placeholder, then msgpack in place) and sends the
    frames written during one callback of the event loop together (``Gathered``): a streamed answer's
    events parsed from one upstream read, or many calls' frames under load, cost one send instead of
    one each (``drain`` and ``close`` send what is gathered first)."""

    __slots__ = ("_buf", "_enc", "_out", "_writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._enc = msgspec.msgpack.Encoder()
        self._buf = bytearray(64)
        self._out = Gathered(self._send, asyncio.get_running_loop())

    def write(self, frame: msgspec.Struct) -> None:
        buf = self._buf
        self._enc.encode_into(frame, buf, 4)
        n = len(buf) - 4
        buf[0:4] = n.to_bytes(4, "big")
        self._out.add(bytes(buf))

    def _send(self, data: bytes) -> None:
        if not self._writer.transport.is_closing():
            self._writer.write(data)

    def flush(self) -> None:
        """Send the gathered frames now."""
        self._out.flush()

    async def drain(self) -> None:
        self._out.flush()
        await self._writer.drain()

    def close(self) -> None:
        self._out.flush()
        self._writer.close()


class FrameReader(Generic[T]):
    __slots__ = ("_dec", "_reader")

    def __init__(self, reader: asyncio.StreamReader, dec: msgspec.msgpack.Decoder[T]) -> None:
        self._reader = reader
        self._dec = dec

    async def read(self) -> T:
        """The next frame; raises ``asyncio.IncompleteReadError`` at EOF, FrameError on garbage."""
        head = await self._reader.readexactly(4)
        n = int.from_bytes(head, "big")
        if n > MAX_FRAME:
            raise FrameError(f"frame of {n} bytes exceeds the {MAX_FRAME}-byte limit")
        body = await self._reader.readexactly(n)
        try:
            return self._dec.decode(body)
        except msgspec.DecodeError as exc:
            raise FrameError(f"undecodable frame: {exc}") from exc


def host_reader(reader: asyncio.StreamReader) -> FrameReader[ToHost]:
    return FrameReader(reader, msgspec.msgpack.Decoder(ToHost))


def runner_reader(reader: asyncio.StreamReader) -> FrameReader[ToRunner]:
    return FrameReader(reader, msgspec.msgpack.Decoder(ToRunner))
