"""The HTTP server protocol flowbase runs under uvicorn: uvicorn's httptools protocol, with every
write made in one turn of the event loop leaving in one send.

Why: uvicorn writes a response's status line and headers, then its body, each straight to the
socket, so a plain JSON answer costs two ``send`` calls, and a stream one per chunk plus one for
the terminating chunk. A TCP send on loopback costs about 25 µs of CPU on the 2-core bench VM
(the kernel runs the receiver's side of the stack in the sender's call), as much as a tenth of
what flowbase spends on a request. Bytes written during one callback go out together at the end
of it (``loop.call_soon``), so the headers and body of an answer share one send, as do stream
chunks that are ready at the same time; a chunk never waits for a later one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from plugin_runner.framing import Gathered


class CorkedTransport:
    """A transport whose writes are gathered until the running callback ends, then sent in one write
    (``Gathered``). Everything else is the wrapped transport's; closing sends what is gathered first."""

    __slots__ = ("_out", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._out = Gathered(transport.write, loop)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            self._out.add(bytes(data))  # a copy: callers may reuse their buffer

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def close(self) -> None:
        self._out.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._out.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._out.clear()
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._out.size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a ``CorkedTransport``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CorkedTransport(transport, self.loop))  # type: ignore[arg-type]
