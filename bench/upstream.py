"""A fast fake OpenAI Chat Completions upstream for the benchmark (one process, raw asyncio on uvloop).

Contract:
- ``POST /v1/chat/completions`` (also ``/chat/completions``) answers in the OpenAI wire format, streamed
  (SSE over chunked transfer encoding, ``stream_options.include_usage`` honoured, ``data: [DONE]``) or
  not, with a realistic ``usage`` block. The answer text is :func:`reply_pieces` joined: it echoes the
  last message's text so a client can check that *its own* answer came back (the soak does).
- ``GET /v1/models`` lists one model; ``GET /stats`` returns counters as JSON; anything else is a 404.
- Zero added delay by default; ``--chunk-delay-ms`` paces streamed chunks (the streaming soak uses 20).
- HTTP/1.1 keep-alive; requests on one connection are answered in order; a client that disconnects
  mid-stream stops its stream (counted in ``/stats`` as ``streams_cancelled``).
- On start it prints ``READY <port>`` on stdout (``--port 0`` picks a free port).

It is a raw ``asyncio.Protocol`` with httptools' C parser rather than an ASGI app because it must never
be the bottleneck on a 2-core machine shared with the gateway and the load generator (measured here:
about 1.6x the requests/s of a bare ASGI app on uvicorn with uvloop and httptools; its time is mostly
the send syscall).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from collections import deque
from typing import Any, cast

import httptools
import msgspec

MODEL_ID = "small"
FILLER = "The quick brown fox jumps over the lazy dog while the benchmark keeps counting every token"


class _Msg(msgspec.Struct):
    role: str = "user"
    content: str | list[dict[str, Any]] | None = None


class _StreamOptions(msgspec.Struct):
    include_usage: bool = False


class _ChatRequest(msgspec.Struct):
    model: str = MODEL_ID
    messages: list[_Msg] = []
    stream: bool = False
    stream_options: _StreamOptions | None = None


_decode_request = msgspec.json.Decoder(_ChatRequest).decode
_encode = msgspec.json.Encoder().encode


def last_text(messages: list[_Msg]) -> str:
    """The text of the last message (text parts joined), which the answer echoes."""
    if not messages:
        return ""
    content = messages[-1].content
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))


def reply_pieces(prompt_text: str, chunks: int) -> list[str]:
    """The answer to a prompt, cut into ``chunks`` streamed pieces (>= 1); joined, it is the full answer."""
    chunks = max(1, chunks)
    words = FILLER.split(" ")
    pieces = [f"You said: {prompt_text[:200]}."]
    pieces.extend(" " + words[i % len(words)] for i in range(chunks - 1))
    return pieces


def expected_reply(prompt_text: str, chunks: int) -> str:
    return "".join(reply_pieces(prompt_text, chunks))


def _usage(req: _ChatRequest, completion_tokens: int) -> dict[str, Any]:
    prompt_tokens = 8 + sum(len(last_text([m])) for m in req.messages) // 4
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


class Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.streams = 0
        self.streams_cancelled = 0
        self.connections = 0


class _Job:
    """One parsed request waiting for its turn on its connection."""

    __slots__ = ("body", "keep_alive", "method", "path")

    def __init__(self, method: bytes, path: bytes, body: bytes, keep_alive: bool) -> None:
        self.method = method
        self.path = path
        self.body = body
        self.keep_alive = keep_alive


class UpstreamProtocol(asyncio.Protocol):
    def __init__(self, server: UpstreamServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.queue: deque[_Job] = deque()
        self.streaming: asyncio.Task[None] | None = None

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.server.stats.connections += 1

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(400, b'{"error":{"message":"bad request","type":"invalid_request_error"}}', False)
            if self.transport is not None:
                self.transport.close()
            return
        self._drain()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.streaming is not None and not self.streaming.done():
            self.streaming.cancel()
            self.server.stats.streams_cancelled += 1

    # -- httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        self.queue.append(_Job(method, self.url.split(b"?", 1)[0], b"".join(self.body), self.parser.should_keep_alive()))
        self.url = b""
        self.body = []

    # -- serving
    def _drain(self) -> None:
        """Answer queued requests in order; a paced stream holds the rest until it finishes."""
        while self.queue and self.streaming is None and self.transport is not None:
            job = self.queue.popleft()
            self._serve(job)

    def _serve(self, job: _Job) -> None:
        self.server.stats.requests += 1
        if job.path in (b"/v1/chat/completions", b"/chat/completions") and job.method == b"POST":
            try:
                req = _decode_request(job.body)
            except msgspec.DecodeError as exc:
                err = _encode({"error": {"message": f"invalid body: {exc}", "type": "invalid_request_error"}})
                self._write(400, err, job.keep_alive)
                return
            if req.stream:
                self._stream(req, job.keep_alive)
            else:
                self._complete(req, job.keep_alive)
        elif job.path in (b"/v1/models", b"/models"):
            body = _encode({"object": "list", "data": [{"id": MODEL_ID, "object": "model", "owned_by": "bench"}]})
            self._write(200, body, job.keep_alive)
        elif job.path == b"/stats":
            self._write(200, _encode(self.server.stats.__dict__), job.keep_alive)
        else:
            self._write(404, b'{"error":{"message":"not found","type":"invalid_request_error"}}', job.keep_alive)

    def _write(self, status: int, body: bytes, keep_alive: bool) -> None:
        if self.transport is None:
            return
        reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}.get(status, b"OK")
        head = (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"
                % (status, reason, len(body), b"" if keep_alive else b"connection: close\r\n"))
        self.transport.write(head + body)
        if not keep_alive:
            self.transport.close()

    def _complete(self, req: _ChatRequest, keep_alive: bool) -> None:
        pieces = reply_pieces(last_text(req.messages), self.server.chunks)
        body = _encode({
            "id": f"chatcmpl-bench{next(self.server.ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "system_fingerprint": "fp_bench",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(pieces), "refusal": None},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": _usage(req, len(pieces)),
        })
        self._write(200, body, keep_alive)

    def _stream_frames(self, req: _ChatRequest) -> list[bytes]:
        """Every HTTP chunk of one streamed answer, role chunk first, terminating 0-chunk last."""
        base = {"id": f"chatcmpl-bench{next(self.server.ids)}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": req.model, "system_fingerprint": "fp_bench"}
        pieces = reply_pieces(last_text(req.messages), self.server.chunks)
        events: list[dict[str, Any]] = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                  "logprobs": None, "finish_reason": None}]}]
        events += [{**base, "choices": [{"index": 0, "delta": {"content": p}, "logprobs": None, "finish_reason": None}]}
                   for p in pieces]
        events.append({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]})
        if req.stream_options is not None and req.stream_options.include_usage:
            events.append({**base, "choices": [], "usage": _usage(req, len(pieces))})
        datas = [b"data: " + _encode(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]
        return [b"%x\r\n%s\r\n" % (len(d), d) for d in datas] + [b"0\r\n\r\n"]

    def _stream(self, req: _ChatRequest, keep_alive: bool) -> None:
        assert self.transport is not None
        self.server.stats.streams += 1
        head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                b"transfer-encoding: chunked\r\n%s\r\n" % (b"" if keep_alive else b"connection: close\r\n"))
        frames = self._stream_frames(req)
        if self.server.delay_s <= 0:
            self.transport.write(head + b"".join(frames))
            if not keep_alive:
                self.transport.close()
            return
        self.transport.write(head + frames[0])
        self.streaming = asyncio.get_running_loop().create_task(self._paced(frames[1:], keep_alive))

    async def _paced(self, frames: list[bytes], keep_alive: bool) -> None:
        try:
            for i, frame in enumerate(frames):
                # Content chunks are paced; the closing frames (finish, usage, [DONE]) follow at once.
                if i < self.server.chunks:
                    await asyncio.sleep(self.server.delay_s)
                if self.transport is None:
                    return
                self.transport.write(frame)
            if not keep_alive and self.transport is not None:
                self.transport.close()
        finally:
            self.streaming = None
            self._drain()


class UpstreamServer:
    def __init__(self, chunks: int, delay_ms: float) -> None:
        self.chunks = max(1, chunks)
        self.delay_s = delay_ms / 1000.0
        self.stats = Stats()
        self.ids = itertools.count(1)


async def serve(host: str, port: int, chunks: int, delay_ms: float) -> None:
    server = UpstreamServer(chunks, delay_ms)
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: UpstreamProtocol(server), host, port, backlog=4096, reuse_address=True)
    bound = srv.sockets[0].getsockname()[1]
    sys.stdout.write(f"READY {bound}\n")
    sys.stdout.flush()
    async with srv:
        await srv.serve_forever()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--chunks", type=int, default=8, help="content chunks per answer (streamed pieces)")
    ap.add_argument("--chunk-delay-ms", type=float, default=0.0, help="pause before each streamed content chunk")
    args = ap.parse_args(argv)
    coro = serve(args.host, args.port, args.chunks, args.chunk_delay_ms)
    try:
        import uvloop
    except ImportError:  # plain asyncio still works, only slower
        asyncio.run(coro)
        return
    try:
        uvloop.run(coro)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
