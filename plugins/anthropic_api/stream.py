"""Anthropic Messages SSE → canonical stream events, event by event (no buffering).

The node splits the byte stream into ``data:`` payloads with ``plugin_sdk.upstream.SSELines`` (each
payload carries its event ``type``, so the ``event:`` lines need not be tracked). ``EventFolder.feed(event)``:

- ``message_start`` → ``StreamStart`` with the prompt-side usage (input incl. cache reads/writes);
- ``content_block_start/delta/stop`` → ``BlockStart/BlockDelta/BlockStop``: ``text_delta`` and
  ``thinking_delta`` append text, ``signature_delta`` the thinking signature (byte-exact),
  ``input_json_delta`` tool-call arguments; ``redacted_thinking`` opens a thinking block with its
  data. Block types nothing downstream reads (server tool results …) are skipped and the canonical
  indexes stay dense;
- ``message_delta`` → stop reason and output usage; ``message_stop`` → ``StreamEnd``;
- ``error`` → ``UpstreamError`` with the status the error type stands for; ``ping`` is ignored.
``response()`` is then the whole answer, collected as the events went out (fragments are joined
once at the end, so a long answer costs linear time).
"""

from __future__ import annotations

import msgspec

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
from plugins.anthropic_api.wire import STATUS_BY_ERROR_TYPE, STOP, Block, WireError, WireMessage, WireUsage


class Delta(msgspec.Struct):
    type: str = ""
    text: str | None = None
    thinking: str | None = None
    signature: str | None = None
    partial_json: str | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None


class Event(msgspec.Struct):
    type: str
    index: int = 0
    message: WireMessage | None = None
    content_block: Block | None = None
    delta: Delta | None = None
    usage: WireUsage | None = None
    error: WireError | None = None


decode_event = msgspec.json.Decoder(Event).decode


def _max_usage(a: Usage, u: WireUsage) -> Usage:
    # message_delta usage is cumulative; newer API versions repeat the prompt-side counts there.
    read = max(a.cache_read_tokens, u.cache_read_input_tokens or 0)
    write = max(a.cache_write_tokens, u.cache_creation_input_tokens or 0)
    prompt = (u.input_tokens or 0) + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0)
    return Usage(input_tokens=max(a.input_tokens, prompt), output_tokens=max(a.output_tokens, u.output_tokens or 0),
                 cache_read_tokens=read, cache_write_tokens=write)


class EventFolder:
    __slots__ = ("args_seen", "blocks", "done", "heads", "id", "model", "next_index", "pieces", "signatures",
                 "stop_reason", "stop_sequence", "tools", "usage")

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = ""
        self.heads: list[Part] = []  # each canonical block's opening part
        self.pieces: list[list[str]] = []  # its text / thinking / argument fragments
        self.signatures: list[list[str]] = []  # thinking signature fragments
        self.blocks: dict[int, int] = {}  # Anthropic block index → canonical block index
        self.tools: set[int] = set()  # canonical indexes of tool-call blocks
        self.args_seen: set[int] = set()  # tool-call blocks that received argument JSON
        self.next_index = 0
        self.stop_reason: StopReason = "end_turn"
        self.stop_sequence: str | None = None
        self.usage = Usage()
        self.done = False

    def feed(self, ev: Event) -> list[StreamEvent]:
        t = ev.type
        if t == "content_block_delta":
            idx = self.blocks.get(ev.index)
            d = ev.delta
            if idx is None or d is None:
                return []
            if d.type == "text_delta" and d.text:
                self.pieces[idx].append(d.text)
                return [BlockDelta(idx, text=d.text)]
            if d.type == "input_json_delta" and d.partial_json:
                self.args_seen.add(idx)
                self.pieces[idx].append(d.partial_json)
                return [BlockDelta(idx, arguments=d.partial_json)]
            if d.type == "thinking_delta" and d.thinking:
                self.pieces[idx].append(d.thinking)
                return [BlockDelta(idx, text=d.thinking)]
            if d.type == "signature_delta" and d.signature:
                self.signatures[idx].append(d.signature)
                return [BlockDelta(idx, signature=d.signature)]
            return []
        if t == "content_block_start":
            b = ev.content_block
            if b is None:
                return []
            part: Part
            if b.type == "text":
                part = TextPart("")
            elif b.type == "thinking":
                part = ThinkingPart()
            elif b.type == "redacted_thinking":
                part = ThinkingPart(redacted_data=b.data or "")
            elif b.type == "tool_use":
                # content_block_start carries ``input: {}``; the arguments arrive as deltas.
                part = ToolCallPart(id=b.id or "", name=b.name or "")
            else:
                return []  # server tool blocks etc.: nothing downstream reads them
            idx = self.next_index
            self.next_index += 1
            self.blocks[ev.index] = idx
            self.heads.append(part)
            self.pieces.append([])
            self.signatures.append([])
            out: list[StreamEvent] = [BlockStart(idx, part)]
            if b.type == "tool_use":
                self.tools.add(idx)
            elif b.text or b.thinking:
                self.pieces[idx].append(b.text or b.thinking or "")
                out.append(BlockDelta(idx, text=b.text or b.thinking or ""))
            if b.signature:
                self.signatures[idx].append(b.signature)
                out.append(BlockDelta(idx, signature=b.signature))
            return out
        if t == "content_block_stop":
            idx = self.blocks.get(ev.index)
            if idx is None:
                return []
            # A tool called with no arguments streams no input_json_delta; its input is still {}.
            if idx in self.tools and idx not in self.args_seen:
                self.pieces[idx].append("{}")
                return [BlockDelta(idx, arguments="{}"), BlockStop(idx)]
            return [BlockStop(idx)]
        if t == "message_start":
            m = ev.message or WireMessage()
            if m.usage is not None:
                self.usage = _max_usage(self.usage, m.usage)
            self.id, self.model = m.id, m.model or self.model
            return [StreamStart(id=self.id, model=self.model, usage=msgspec.structs.replace(self.usage))]
        if t == "message_delta":
            if ev.delta is not None and ev.delta.stop_reason:
                self.stop_reason = STOP.get(ev.delta.stop_reason, "end_turn")
                self.stop_sequence = ev.delta.stop_sequence
            if ev.usage is not None:
                self.usage = _max_usage(self.usage, ev.usage)
            return []
        if t == "message_stop":
            self.done = True
            return [StreamEnd(stop_reason=self.stop_reason, stop_sequence=self.stop_sequence, usage=self.usage)]
        if t == "error":
            err = ev.error or WireError()
            raise UpstreamError(err.message or "upstream reported an error mid-stream",
                                status=STATUS_BY_ERROR_TYPE.get(err.type, 500))
        return []  # ping and event types added after this was written

    def response(self) -> Response:
        content: list[Part] = []
        for head, pieces, sigs in zip(self.heads, self.pieces, self.signatures):
            joined = "".join(pieces)
            if isinstance(head, ToolCallPart):
                content.append(ToolCallPart(id=head.id, name=head.name, arguments=joined))
            elif isinstance(head, ThinkingPart):
                content.append(ThinkingPart(text=joined, signature="".join(sigs) or None,
                                            redacted_data=head.redacted_data))
            else:
                content.append(TextPart(joined))
        return Response(id=self.id, model=self.model, content=content, stop_reason=self.stop_reason,
                        stop_sequence=self.stop_sequence, usage=self.usage)
