"""Writes made during one callback of the event loop leave in one send, in order, and nothing is held
back past that callback or lost on close: the HTTP transport (host/serving.py) and the runner
channel's frames (plugin_runner/framing.py)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from host.serving import CorkedTransport
from plugin_runner.framing import FrameWriter, host_reader
from plugin_runner.protocol import Pong


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5)}.get(name, default)


async def test_an_answers_headers_and_body_written_in_one_callback_leave_in_one_send() -> None:
    raw = RecordingTransport()
    t = CorkedTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"HTTP/1.1 200 OK\r\n\r\n")
    t.write(bytearray(b"{}"))
    assert raw.writes == [] and t.get_write_buffer_size() == 21
    await asyncio.sleep(0)
    assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
    # The next callback's chunk is not held for a later one.
    t.write(b"data: 1\n\n")
    await asyncio.sleep(0)
    assert raw.writes[-1] == b"data: 1\n\n"
    # Everything else is the wrapped transport's.
    assert t.get_extra_info("peername") == ("127.0.0.1", 5)


async def test_closing_sends_what_was_gathered_before_the_transport_closes() -> None:
    raw = RecordingTransport()
    t = CorkedTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"last words")
    t.close()
    assert raw.writes == [b"last words"] and raw.closed
    await asyncio.sleep(0)
    assert raw.writes == [b"last words"]  # the scheduled flush finds nothing more to send


async def test_frames_written_in_one_callback_arrive_together_and_all_decode() -> None:
    a, b = socket.socketpair()
    _, writer = await asyncio.open_unix_connection(sock=a)
    reader, _ = await asyncio.open_unix_connection(sock=b)
    fw = FrameWriter(writer)
    for i in range(5):
        fw.write(Pong(i))
    await asyncio.sleep(0)
    frames = host_reader(reader)
    assert [await frames.read() for _ in range(5)] == [Pong(i) for i in range(5)]
    fw.write(Pong(99))
    fw.close()  # gathered frames go out before the socket closes
    assert await frames.read() == Pong(99)
