"""The canonical model: the one request/response/stream shape every part of flowbase speaks.

Protocol adapters (host/protocols) translate client wire formats to and from these types; provider
plugins translate them to and from their upstream's wire format. Nothing else knows a wire format.

Conventions (normalised here so each adapter only converts once):
- ``Usage.input_tokens`` counts *all* prompt tokens, cache reads and cache writes included (OpenAI's
  convention). The Anthropic adapter subtracts the cache counts when it reports to its client.
- ``ToolCallPart.arguments`` is the JSON text of the arguments exactly as the model produced it.
- ``ThinkingPart.signature`` and ``ThinkingPart.redacted_data`` are opaque and kept byte-exact.
- Tool results travel as ``ToolResultPart`` inside a message of role ``tool``.
- Stream events address content blocks by ``index``: the position of the part in the final
  ``Response.content``. ``BlockStart`` opens a block, ``BlockDelta`` appends, ``BlockStop`` closes.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Role = Literal["system", "developer", "user", "assistant", "tool"]
StopReason = Literal["end_turn", "max_tokens", "tool_use", "stop_sequence", "content_filter", "refusal", "pause_turn"]


class TextPart(msgspec.Struct, tag="text", omit_defaults=True):
    text: str
    # Anthropic prompt-caching marker or similar provider hints, passed through untouched.
    cache_control: dict[str, Any] | None = None


class ImagePart(msgspec.Struct, tag="image", omit_defaults=True):
    """An image by URL or inline base64 ``data`` with its ``media_type``."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: str | None = None


class ToolCallPart(msgspec.Struct, tag="tool_call", omit_defaults=True):
    id: str
    name: str
    arguments: str = ""


class ToolResultPart(msgspec.Struct, tag="tool_result", omit_defaults=True):
    tool_call_id: str
    content: list[TextPart | ImagePart] = []
    is_error: bool = False


class ThinkingPart(msgspec.Struct, tag="thinking", omit_defaults=True):
    text: str = ""
    signature: str | None = None
    # Anthropic ``redacted_thinking`` blocks carry only opaque data; kept byte-exact.
    redacted_data: str | None = None


Part = TextPart | ImagePart | ToolCallPart | ToolResultPart | ThinkingPart


class Message(msgspec.Struct, omit_defaults=True):
    role: Role
    content: list[Part] = []
    name: str | None = None


class Tool(msgspec.Struct, omit_defaults=True):
    """A tool the model may call. ``kind`` is ``function`` for ordinary tools; other kinds (a
    provider's built-in tools such as ``web_search``) keep their original definition in ``raw``
    so an adapter of the same family can pass them on and others can drop them."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] = {}
    kind: str = "function"
    raw: dict[str, Any] | None = None
    strict: bool | None = None


class ToolChoice(msgspec.Struct, omit_defaults=True):
    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None


class Reasoning(msgspec.Struct, omit_defaults=True):
    """``effort`` is OpenAI's low/medium/high; ``budget_tokens`` is Anthropic's thinking budget.
    Adapters map one onto the other when only one is given."""

    enabled: bool = True
    effort: str | None = None
    budget_tokens: int | None = None
    summary: str | None = None


class Request(msgspec.Struct, omit_defaults=True):
    model: str
    messages: list[Message] = []
    tools: list[Tool] = []
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = []
    stream: bool = False
    reasoning: Reasoning | None = None
    # OpenAI ``response_format`` / Responses ``text.format`` as given (json_schema, json_object).
    response_format: dict[str, Any] | None = None
    metadata: dict[str, Any] = {}
    user: str | None = None
    # Other parameters the client sent (seed, top_k, presence_penalty …) as it named them.
    extra: dict[str, Any] = {}
    # The client protocol the request came in on ("chat", "responses", "messages"). Provider
    # plugins pass ``extra`` through unfiltered only to an upstream that speaks the same wire
    # format; across protocols only parameters they know the meaning of survive.
    origin: str | None = None


class Usage(msgspec.Struct, omit_defaults=True):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.reasoning_tokens += other.reasoning_tokens


class Response(msgspec.Struct, omit_defaults=True):
    id: str
    model: str
    content: list[Part] = []
    stop_reason: StopReason = "end_turn"
    stop_sequence: str | None = None
    usage: Usage = msgspec.field(default_factory=Usage)

    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    def tool_calls(self) -> list[ToolCallPart]:
        return [p for p in self.content if isinstance(p, ToolCallPart)]


# ---- stream events -------------------------------------------------------------------------


class StreamStart(msgspec.Struct, tag="start", omit_defaults=True):
    id: str
    model: str
    # Prompt-side usage known up front (Anthropic reports it in message_start).
    usage: Usage | None = None


class BlockStart(msgspec.Struct, tag="block_start", omit_defaults=True):
    """Opens content block ``index``. ``part`` is a TextPart(""), ThinkingPart() or
    ToolCallPart(id, name, "") — the block's initial state."""

    index: int
    part: Part


class BlockDelta(msgspec.Struct, tag="block_delta", omit_defaults=True):
    """Appends to block ``index``: ``text`` for text/thinking, ``arguments`` JSON text for tool
    calls, ``signature`` for thinking blocks."""

    index: int
    text: str = ""
    arguments: str = ""
    signature: str = ""


class BlockStop(msgspec.Struct, tag="block_stop", omit_defaults=True):
    index: int


class StreamEnd(msgspec.Struct, tag="end", omit_defaults=True):
    stop_reason: StopReason = "end_turn"
    stop_sequence: str | None = None
    usage: Usage = msgspec.field(default_factory=Usage)


StreamEvent = StreamStart | BlockStart | BlockDelta | BlockStop | StreamEnd


class Accumulator:
    """Folds a stream of events into the ``Response`` it describes (used by the engine to record
    what a streamed node returned, and by adapters that need the whole answer)."""

    __slots__ = ("_pieces", "_sigs", "id", "model", "parts", "stop_reason", "stop_sequence", "usage")

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.parts: dict[int, Part] = {}
        self.stop_reason: StopReason = "end_turn"
        self.stop_sequence: str | None = None
        self.usage = Usage()
        # Deltas are collected in lists and joined once: appending to a str is quadratic.
        self._pieces: dict[int, list[str]] = {}
        self._sigs: dict[int, list[str]] = {}

    def feed(self, ev: StreamEvent) -> None:
        if isinstance(ev, BlockDelta):
            if ev.text or ev.arguments:
                self._pieces.setdefault(ev.index, []).append(ev.text or ev.arguments)
            if ev.signature:
                self._sigs.setdefault(ev.index, []).append(ev.signature)
        elif isinstance(ev, BlockStart):
            self.parts[ev.index] = msgspec.structs.replace(ev.part)
        elif isinstance(ev, StreamStart):
            self.id, self.model = ev.id, ev.model
            if ev.usage is not None:
                self.usage = msgspec.structs.replace(ev.usage)
        elif isinstance(ev, StreamEnd):
            self.stop_reason, self.stop_sequence = ev.stop_reason, ev.stop_sequence
            u = ev.usage
            # Prompt-side counts may have come with StreamStart; keep the larger of each.
            self.usage = Usage(
                input_tokens=max(u.input_tokens, self.usage.input_tokens),
                output_tokens=max(u.output_tokens, self.usage.output_tokens),
                cache_read_tokens=max(u.cache_read_tokens, self.usage.cache_read_tokens),
                cache_write_tokens=max(u.cache_write_tokens, self.usage.cache_write_tokens),
                reasoning_tokens=max(u.reasoning_tokens, self.usage.reasoning_tokens),
            )

    def response(self) -> Response:
        content: list[Part] = []
        for idx in sorted(self.parts):
            part = self.parts[idx]
            more = "".join(self._pieces.get(idx, ()))
            if isinstance(part, TextPart):
                part = TextPart(part.text + more, cache_control=part.cache_control)
            elif isinstance(part, ThinkingPart):
                sig = "".join(self._sigs.get(idx, ()))
                part = ThinkingPart(part.text + more, signature=((part.signature or "") + sig) or None,
                                    redacted_data=part.redacted_data)
            elif isinstance(part, ToolCallPart):
                part = ToolCallPart(id=part.id, name=part.name, arguments=part.arguments + more)
            content.append(part)
        return Response(
            id=self.id, model=self.model, content=content, stop_reason=self.stop_reason,
            stop_sequence=self.stop_sequence, usage=self.usage,
        )


def response_events(resp: Response) -> list[StreamEvent]:
    """The stream that describes ``resp``: used to stream a non-streaming node's answer."""
    events: list[StreamEvent] = [StreamStart(id=resp.id, model=resp.model)]
    for i, part in enumerate(resp.content):
        if isinstance(part, TextPart):
            events.append(BlockStart(i, TextPart("")))
            if part.text:
                events.append(BlockDelta(i, text=part.text))
        elif isinstance(part, ThinkingPart):
            events.append(BlockStart(i, ThinkingPart(redacted_data=part.redacted_data)))
            if part.text:
                events.append(BlockDelta(i, text=part.text))
            if part.signature:
                events.append(BlockDelta(i, signature=part.signature))
        elif isinstance(part, ToolCallPart):
            events.append(BlockStart(i, ToolCallPart(id=part.id, name=part.name)))
            if part.arguments:
                events.append(BlockDelta(i, arguments=part.arguments))
        else:
            continue
        events.append(BlockStop(i))
    events.append(StreamEnd(stop_reason=resp.stop_reason, stop_sequence=resp.stop_sequence, usage=resp.usage))
    return events


def last_user_text(req: Request) -> str:
    """Text of the last user message (what templates call ``request.input``)."""
    for msg in reversed(req.messages):
        if msg.role == "user":
            return "".join(p.text for p in msg.content if isinstance(p, TextPart))
    return ""


def text_message(role: Role, text: str) -> Message:
    return Message(role=role, content=[TextPart(text)])
