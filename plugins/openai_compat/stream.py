"""OpenAI Chat Completions SSE → canonical stream events, chunk by chunk (no buffering).

The node splits the byte stream into ``data:`` payloads with ``plugin_sdk.upstream.SSELines``;
``ChunkFolder.feed(chunk)`` turns one decoded chunk into canonical events:

- the first chunk opens the stream (``StreamStart``);
- ``reasoning_content`` / ``reasoning`` deltas → a thinking block, ``content`` (and ``refusal``)
  deltas → a text block; switching between them closes the open block and opens the next one;
- ``tool_calls`` deltas keyed by their ``index`` → one tool-call block each (the block opens with
  the call's id and name; argument fragments follow as deltas);
- ``finish_reason`` → the stop reason; a ``usage`` chunk → the final usage.
``ChunkFolder.finish_events()`` closes the open blocks and ends the stream (``StreamEnd``);
``response()`` is then the whole answer, collected as the events went out (text pieces are joined
once at the end, so a long answer costs linear time). A chunk carrying ``{"error": …}`` (servers
report mid-stream failures that way) raises ``UpstreamError``.
"""

from __future__ import annotations

from plugin_sdk.errors import UpstreamError
from plugin_sdk.types import (
    BlockDelta,
    BlockStart,
    BlockStop,
    Part,
    Response,
    StopReason,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    Usage,
)
from plugins.openai_compat.wire import Completion, FunctionCall, stop_reason, to_usage

DONE = b"[DONE]"


class ChunkFolder:
    __slots__ = ("finish", "heads", "id", "kind", "model", "next_index", "open", "pieces", "seen_finish", "started",
                 "tools", "usage")

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = ""
        self.heads: list[TextPart | ThinkingPart | ToolCallPart] = []  # each block's opening part
        self.pieces: list[list[str]] = []  # each block's text / argument fragments
        self.started = False
        self.next_index = 0
        self.open: int | None = None  # the block currently open
        self.kind = ""  # "text" | "thinking" | "tool" — what the open block is
        self.tools: dict[int, int] = {}  # upstream tool_call index → block index
        self.finish: StopReason = "end_turn"
        self.seen_finish = False
        self.usage = Usage()

    def _close(self, out: list[StreamEvent]) -> None:
        if self.open is not None:
            out.append(BlockStop(self.open))
            self.open = None
            self.kind = ""

    def _begin(self, kind: str, part: TextPart | ThinkingPart | ToolCallPart, out: list[StreamEvent]) -> int:
        self._close(out)
        idx = self.next_index
        self.next_index += 1
        self.open, self.kind = idx, kind
        self.heads.append(part)
        self.pieces.append([])
        out.append(BlockStart(idx, part))
        return idx

    def _ensure(self, kind: str, out: list[StreamEvent]) -> int:
        """The open block if it is of ``kind``, else a new one (closing the open block)."""
        if self.kind == kind and self.open is not None:
            return self.open
        return self._begin(kind, ThinkingPart() if kind == "thinking" else TextPart(""), out)

    def feed(self, c: Completion) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if c.error is not None:
            code = c.error.code
            status = code if isinstance(code, int) and 400 <= code < 600 else 500
            raise UpstreamError(c.error.message or "upstream reported an error mid-stream", status=status,
                                code=code if isinstance(code, str) else None)
        if not self.started:
            self.started = True
            self.id, self.model = c.id, c.model or self.model
            out.append(StreamStart(id=self.id, model=self.model))
        if c.usage is not None:
            self.usage = to_usage(c.usage)
        if not c.choices:
            return out
        choice = c.choices[0]
        d = choice.delta
        if d is not None:
            thinking = d.reasoning_content or d.reasoning
            if thinking:
                idx = self._ensure("thinking", out)
                self.pieces[idx].append(thinking)
                out.append(BlockDelta(idx, text=thinking))
            text = d.content or d.refusal
            if text:
                if d.refusal and not d.content:
                    self.finish = "refusal"
                idx = self._ensure("text", out)
                self.pieces[idx].append(text)
                out.append(BlockDelta(idx, text=text))
            if d.tool_calls:
                for pos, call in enumerate(d.tool_calls):
                    key = call.index if call.index is not None else pos
                    fn = call.function or FunctionCall()
                    block = self.tools.get(key)
                    if block is None:
                        block = self._begin("tool", ToolCallPart(id=call.id or "", name=fn.name or ""), out)
                        self.tools[key] = block
                    if fn.arguments:
                        self.pieces[block].append(fn.arguments)
                        out.append(BlockDelta(block, arguments=fn.arguments))
        if choice.finish_reason:
            self.seen_finish = True
            if self.finish != "refusal":
                self.finish = stop_reason(choice.finish_reason)
        return out

    def finish_events(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if not self.started:
            self.started = True
            out.append(StreamStart(id="", model=self.model))
        self._close(out)
        out.append(StreamEnd(stop_reason=self.finish, usage=self.usage))
        return out

    def response(self) -> Response:
        content: list[Part] = []
        for head, pieces in zip(self.heads, self.pieces):
            joined = "".join(pieces)
            if isinstance(head, ToolCallPart):
                content.append(ToolCallPart(id=head.id, name=head.name, arguments=joined))
            elif isinstance(head, ThinkingPart):
                content.append(ThinkingPart(text=joined))
            else:
                content.append(TextPart(joined))
        return Response(id=self.id, model=self.model, content=content, stop_reason=self.finish, usage=self.usage)
