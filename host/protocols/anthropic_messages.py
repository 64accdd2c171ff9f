"""Anthropic Messages (``/v1/messages``, ``/v1/messages/count_tokens``) ⇄ canonical types. Pure
functions, no I/O.

Interface (the same as the OpenAI adapters; host/api/v1.py calls exactly this):
- ``parse_request(body) -> (Request, options)``; ``parse_count_tokens(body) -> Request`` (the same
  body without the required ``max_tokens``). Bad input raises ``InvalidRequest`` whose message and
  ``param`` name the exact path (``messages[2].content[0].source``).
- ``render_response(resp, model, options) -> bytes``: a ``message`` object.
- ``StreamEncoder(model, options)``: ``event(ev)`` → named SSE events (``event: <type>`` +
  ``data:``), ``error(err)`` → ``event: error``, ``end()`` → ``message_stop``.
- ``error_body(err) -> (status, body, headers)``, ``session_id(headers, req, options)``,
  ``render_models(models)``, ``count_tokens_body(req)``.

Request mapping:
- ``system`` (a string or text blocks) → one leading ``system`` message, ``cache_control`` kept on
  each ``TextPart``. Claude Code's per-request ``x-anthropic-billing-header: …`` system block is
  dropped: it means nothing to a model and, changing every request, would defeat prompt caching.
  ``role: "system"`` entries inside ``messages`` (Claude Code sends them) stay system messages
  at their position.
- Each ``tool_result`` block becomes a ``tool`` message holding one ``ToolResultPart``; the user
  content around it stays in ``user`` messages, in the original order.
- ``tool_use.input`` → ``ToolCallPart.arguments`` (compact JSON text); ``thinking`` keeps its
  signature and ``redacted_thinking`` its data byte-exact.
- ``document`` blocks: a text document (``source.type`` text or content) becomes its text; a PDF
  or file document becomes a short text placeholder saying it was left out (Claude Code's Read tool
  returns PDFs inside tool results, and failing the whole request would stop the agent).
  ``search_result`` → text, ``compaction`` → its summary text. Server-tool blocks
  (``server_tool_use``, ``*_tool_result``, ``mcp_tool_use`` …), ``container_upload``,
  ``tool_reference`` and block types this module does not know are dropped: they were executed
  by a provider or describe provider state no other model can use. A block without a ``type``
  is an error.
- Custom tools → ``Tool(kind="function")`` (with ``raw`` when it carries more than name,
  description and schema, e.g. ``cache_control``); typed built-in tools (``web_search_20250305``,
  ``bash_20250124`` …) → ``Tool(kind=<type>, raw=<definition>)``.
- ``tool_choice`` auto/any/tool/none → auto/required/tool/none; ``disable_parallel_tool_use`` →
  ``parallel_tool_calls=False``. ``thinking`` enabled/disabled → ``Reasoning``; adaptive (and any
  other type) → ``Reasoning(enabled=True)`` with the original kept in ``extra["thinking"]``.
  ``output_config.effort`` → ``Reasoning.effort``, ``output_config.format`` (or the older
  top-level ``output_format``) → the Chat Completions ``response_format`` shape.
  ``metadata.user_id`` → ``user``; ``top_k`` and every top-level field not modelled here
  (``service_tier``, ``container``, ``mcp_servers``, ``context_management`` …) → ``extra`` as sent.

Response mapping: ``usage.input_tokens`` is the canonical input minus cache reads and writes
(Anthropic's convention); ``content_filter`` → ``refusal``; tool-call arguments that are not a
JSON object become ``input: {}``. Images and tool results have no response form and are skipped.
The stream numbers its blocks in the order they start (the canonical index when every block has a
wire form). A thinking block's signature goes out as one ``signature_delta`` at its stop (the SDK
replaces, not appends, signatures). Tool-call arguments stream live once they start with ``{``;
arguments that do not look like a JSON object are never sent, so the client sees ``input: {}``.
``message_delta.usage`` carries every count (cumulative, as the API does), so counts known only
at the end still reach the client.

Errors: ``{"type":"error","error":{"type","message"}}`` with the canonical status (an upstream's
own); ``overloaded`` keeps 503/529 and is 529 otherwise; ``timeout`` → ``timeout_error`` 504
(Anthropic's gateway-timeout type); 402 → ``billing_error``, 413 → ``request_too_large``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import msgspec

from host.protocols.common import (
    decode_body,
    encode,
    invalid,
    merged_usage,
    new_id,
    opt_bool,
    opt_dict,
    opt_float,
    opt_int,
    opt_list,
    opt_str,
    req_dict,
    req_list,
    req_str,
    retry_after_headers,
    sse_event,
)
from plugin_sdk.errors import FlowbaseError, InvalidRequest
from plugin_sdk.tokens import count_request_tokens
from plugin_sdk.types import (
    BlockDelta,
    BlockStart,
    BlockStop,
    ImagePart,
    Message,
    Part,
    Reasoning,
    Request,
    Response,
    Role,
    StopReason,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    Usage,
)

__all__ = [
    "StreamEncoder", "anthropic_error", "count_tokens_body", "error_body", "parse_count_tokens", "parse_request",
    "render_models", "render_response", "session_id", "stop_reason", "usage_body",
]

# Top-level fields turned into Request fields; everything else goes to Request.extra as sent.
_MODELLED = frozenset({
    "model", "messages", "system", "max_tokens", "stream", "stop_sequences", "metadata", "temperature", "top_p",
    "tools", "tool_choice", "thinking", "output_config", "output_format",
})
_BILLING_PREFIX = "x-anthropic-billing-header:"
# Block types dropped on purpose (see the module docstring); unknown types are dropped too.
_TOOL_KEYS = frozenset({"name", "description", "input_schema", "type", "strict"})
_decode_json = msgspec.json.Decoder().decode

_STOP: dict[str, str] = {"content_filter": "refusal"}


def stop_reason(stop: StopReason) -> str:
    return _STOP.get(stop, stop)


# ---- request ----------------------------------------------------------------------------------


def parse_request(body: bytes) -> tuple[Request, dict[str, Any]]:
    return _parse(decode_body(body), count_only=False), {}


def parse_count_tokens(body: bytes) -> Request:
    return _parse(decode_body(body), count_only=True)


def _parse(obj: dict[str, Any], *, count_only: bool) -> Request:
    model = req_str(obj, "model")
    max_tokens = opt_int(obj, "max_tokens")
    if not count_only:
        if max_tokens is None:
            raise InvalidRequest("max_tokens: required field is missing", param="max_tokens")
        if max_tokens < 0:
            raise InvalidRequest(f"max_tokens: expected a non-negative integer, got {max_tokens}", param="max_tokens")
    raw_messages = req_list(obj, "messages")
    if not raw_messages:
        raise InvalidRequest("messages: expected at least one message", param="messages")
    messages = _system(obj.get("system"))
    _messages(raw_messages, messages)

    extra: dict[str, Any] = {k: v for k, v in obj.items() if k not in _MODELLED}
    opt_int(obj, "top_k")
    metadata = opt_dict(obj, "metadata") or {}
    user = opt_str(metadata, "user_id", "metadata") if metadata else None
    reasoning = _thinking(opt_dict(obj, "thinking"), extra)
    reasoning, response_format = _output_config(obj, reasoning, extra)
    tool_choice, parallel = _tool_choice(opt_dict(obj, "tool_choice"))
    return Request(
        model=model,
        messages=messages,
        tools=_tools(opt_list(obj, "tools")),
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        max_tokens=None if count_only else max_tokens,
        temperature=opt_float(obj, "temperature"),
        top_p=opt_float(obj, "top_p"),
        stop=_stop_sequences(obj.get("stop_sequences")),
        stream=False if count_only else bool(opt_bool(obj, "stream")),
        reasoning=reasoning,
        response_format=response_format,
        metadata=metadata,
        user=user,
        extra=extra,
    )


def _system(v: Any) -> list[Message]:
    if v is None:
        return []
    if type(v) is str:
        return [Message("system", [TextPart(v)])] if v and not v.startswith(_BILLING_PREFIX) else []
    if type(v) is not list:
        raise invalid("system", "a string or an array of text blocks", v)
    parts: list[Part] = []
    for i, b in enumerate(v):
        path = f"system[{i}]"
        if not isinstance(b, dict):
            raise invalid(path, "a text block", b)
        kind = b.get("type")
        if kind != "text":
            raise InvalidRequest(f"{path}.type: system blocks must be of type 'text', got {kind!r}", param=f"{path}.type")
        text = req_str(b, "text", path)
        if text.startswith(_BILLING_PREFIX):
            continue
        parts.append(TextPart(text, opt_dict(b, "cache_control", path)))
    return [Message("system", parts)] if parts else []


def _messages(raw: list[Any], out: list[Message]) -> None:
    # Hot path (agents resend the whole history every turn): well-formed blocks are taken directly;
    # paths such as ``messages[3].content[1]`` are only formatted when something is wrong.
    for i, m in enumerate(raw):
        if type(m) is not dict:
            raise invalid(f"messages[{i}]", "a message object", m)
        role = m.get("role")
        if role != "user" and role != "assistant" and role != "system":
            path = f"messages[{i}].role"
            if role is None:
                raise InvalidRequest(f"{path}: required field is missing", param=path)
            raise InvalidRequest(f"{path}: expected one of user, assistant, system, got {role!r}", param=path)
        content = m.get("content")
        if type(content) is str:
            out.append(Message(role, [TextPart(content)]))
        elif type(content) is list:
            _blocks(role, content, i, out)
        else:
            path = f"messages[{i}].content"
            if content is None:
                raise InvalidRequest(f"{path}: required field is missing", param=path)
            raise invalid(path, "a string or an array of content blocks", content)


def _blocks(role: Role, content: list[Any], i: int, out: list[Message]) -> None:
    """One wire message's blocks → its canonical message(s): tool results split out in order."""
    parts: list[Part] = []
    for j, b in enumerate(content):
        if type(b) is dict:
            kind = b.get("type")
            if kind == "text":
                text = b.get("text")
                if type(text) is str:
                    cc = b.get("cache_control")
                    parts.append(TextPart(text, cc if type(cc) is dict else None))
                    continue
            elif kind == "tool_result":
                if parts:
                    out.append(Message(role, parts))
                    parts = []
                out.append(Message("tool", [_tool_result(b, f"messages[{i}].content[{j}]")]))
                continue
            elif kind == "tool_use":
                call_id, name, args = b.get("id"), b.get("name"), b.get("input")
                if type(call_id) is str and type(name) is str and type(args) is dict:
                    parts.append(ToolCallPart(call_id, name, encode(args).decode()))
                    continue
        part = _block(b, f"messages[{i}].content[{j}]")
        if part is not None:
            parts.append(part)
    if parts or not content:
        out.append(Message(role, parts))


def _block(b: Any, path: str) -> Part | None:
    """The slow path for one content block: checks, rarer types, tolerated ones (→ None)."""
    if not isinstance(b, dict):
        raise invalid(path, "a content block object", b)
    kind = b.get("type")
    if kind == "text":
        return TextPart(req_str(b, "text", path), opt_dict(b, "cache_control", path))
    if kind == "image":
        return _image(b, path)
    if kind == "tool_use":
        args = b.get("input")
        if isinstance(args, dict):
            arguments = encode(args).decode()
        elif isinstance(args, str):  # lenient: a client that sends the arguments as JSON text
            arguments = args
        elif args is None:
            arguments = ""
        else:
            raise invalid(f"{path}.input", "an object", args)
        return ToolCallPart(req_str(b, "id", path), req_str(b, "name", path), arguments)
    if kind == "thinking":
        return ThinkingPart(req_str(b, "thinking", path), opt_str(b, "signature", path))
    if kind == "redacted_thinking":
        return ThinkingPart(redacted_data=req_str(b, "data", path))
    if kind == "document":
        return _document(b, path)
    if kind == "search_result":
        return TextPart(_search_result(b, path))
    if kind == "compaction":
        summary = opt_str(b, "content", path)
        return TextPart(summary) if summary else None
    if kind is None:
        raise InvalidRequest(f"{path}.type: required field is missing", param=f"{path}.type")
    if not isinstance(kind, str):
        raise invalid(f"{path}.type", "a string", kind)
    return None  # server-tool traffic, container uploads, tool references, future block types


def _image(b: dict[str, Any], path: str) -> ImagePart:
    source = req_dict(b, "source", path)
    spath = f"{path}.source"
    kind = source.get("type")
    if kind == "base64":
        return ImagePart(data=req_str(source, "data", spath), media_type=req_str(source, "media_type", spath))
    if kind == "url":
        return ImagePart(url=req_str(source, "url", spath))
    if kind == "file":
        raise InvalidRequest(f"{spath}: file sources (the Files API) are not supported by flowbase; send the image "
                             f"as base64 or url", param=spath)
    raise InvalidRequest(f"{spath}.type: expected 'base64' or 'url', got {kind!r}", param=f"{spath}.type")


def _document(b: dict[str, Any], path: str) -> TextPart:
    source = req_dict(b, "source", path)
    spath = f"{path}.source"
    title = opt_str(b, "title", path)
    kind = source.get("type")
    if kind == "text":
        text = req_str(source, "data", spath)
    elif kind == "content":
        inner = source.get("content")
        if isinstance(inner, str):
            text = inner
        elif isinstance(inner, list):
            text = "\n\n".join(req_str(x, "text", f"{spath}.content[{k}]") for k, x in enumerate(inner)
                               if isinstance(x, dict) and x.get("type") == "text")
        else:
            raise invalid(f"{spath}.content", "a string or an array of content blocks", inner)
    elif kind in ("base64", "url", "file"):
        media = opt_str(source, "media_type", spath) or "application/pdf"
        name = f" {title!r}" if title else ""
        return TextPart(f"[document{name} ({media}) not included: flowbase does not pass PDF or file documents "
                        f"to models]")
    else:
        raise InvalidRequest(f"{spath}.type: expected 'base64', 'url', 'text', 'content' or 'file', got {kind!r}",
                             param=f"{spath}.type")
    return TextPart(f"{title}\n\n{text}" if title else text, opt_dict(b, "cache_control", path))


def _search_result(b: dict[str, Any], path: str) -> str:
    title = opt_str(b, "title", path) or ""
    source = opt_str(b, "source", path) or ""
    blocks = opt_list(b, "content", path) or []
    body = "\n\n".join(x["text"] for x in blocks if isinstance(x, dict) and isinstance(x.get("text"), str))
    head = f"{title} ({source})" if title and source else title or source
    return f"{head}\n\n{body}" if head else body


def _tool_result(b: dict[str, Any], path: str) -> ToolResultPart:
    call_id = b.get("tool_use_id")
    if type(call_id) is not str:
        call_id = req_str(b, "tool_use_id", path)
    is_error = b.get("is_error") is True or bool(opt_bool(b, "is_error", path))
    content = b.get("content")
    if type(content) is str:
        return ToolResultPart(call_id, [TextPart(content)], is_error)
    if content is None:
        return ToolResultPart(call_id, [], is_error)
    if type(content) is not list:
        raise invalid(f"{path}.content", "a string or an array of content blocks", content)
    parts: list[TextPart | ImagePart] = []
    for k, x in enumerate(content):
        if type(x) is dict and x.get("type") == "text" and type(x.get("text")) is str:
            cc = x.get("cache_control")
            parts.append(TextPart(x["text"], cc if type(cc) is dict else None))
            continue
        part = _block(x, f"{path}.content[{k}]")
        if isinstance(part, TextPart | ImagePart):
            parts.append(part)
        elif part is not None:
            kind = x.get("type")
            raise InvalidRequest(f"{path}.content[{k}].type: a tool result holds text, image or document blocks, "
                                 f"got {kind!r}", param=f"{path}.content[{k}].type")
    return ToolResultPart(call_id, parts, is_error)


def _tools(raw: list[Any] | None) -> list[Tool]:
    tools: list[Tool] = []
    for i, t in enumerate(raw or ()):
        path = f"tools[{i}]"
        if not isinstance(t, dict):
            raise invalid(path, "a tool object", t)
        kind = opt_str(t, "type", path)
        if kind is None or kind == "custom":
            tools.append(Tool(
                name=req_str(t, "name", path), description=opt_str(t, "description", path),
                parameters=req_dict(t, "input_schema", path), strict=opt_bool(t, "strict", path),
                raw=t if not _TOOL_KEYS.issuperset(t) else None,
            ))
        else:  # a provider built-in (web_search_20250305, bash_20250124, mcp_toolset …): kept verbatim
            name = t.get("name")
            tools.append(Tool(name=name if isinstance(name, str) else kind, kind=kind, raw=t))
    return tools


def _tool_choice(v: dict[str, Any] | None) -> tuple[ToolChoice | None, bool | None]:
    if v is None:
        return None, None
    kind = v.get("type")
    parallel = False if opt_bool(v, "disable_parallel_tool_use", "tool_choice") else None
    if kind == "auto":
        return ToolChoice("auto"), parallel
    if kind == "any":
        return ToolChoice("required"), parallel
    if kind == "tool":
        return ToolChoice("tool", req_str(v, "name", "tool_choice")), parallel
    if kind == "none":
        return ToolChoice("none"), None
    raise InvalidRequest(f"tool_choice.type: expected 'auto', 'any', 'tool' or 'none', got {kind!r}",
                         param="tool_choice.type")


def _thinking(v: dict[str, Any] | None, extra: dict[str, Any]) -> Reasoning | None:
    if v is None:
        return None
    kind = req_str(v, "type", "thinking")
    if kind == "enabled":
        return Reasoning(enabled=True, budget_tokens=opt_int(v, "budget_tokens", "thinking"))
    if kind == "disabled":
        return Reasoning(enabled=False)
    # adaptive, between_tools, later kinds: the model decides; an Anthropic provider gets them as sent.
    extra["thinking"] = v
    return Reasoning(enabled=True)


def _output_config(obj: dict[str, Any], reasoning: Reasoning | None,
                   extra: dict[str, Any]) -> tuple[Reasoning | None, dict[str, Any] | None]:
    cfg = opt_dict(obj, "output_config")
    fmt = opt_dict(obj, "output_format")
    if cfg is not None:
        effort = opt_str(cfg, "effort", "output_config")
        if effort is not None:
            if reasoning is None:
                reasoning = Reasoning(enabled=True, effort=effort)
            else:
                reasoning.effort = effort
        fmt = opt_dict(cfg, "format", "output_config") or fmt
        if not {"effort", "format"}.issuperset(cfg):
            extra["output_config"] = cfg
    if fmt is None:
        return reasoning, None
    if fmt.get("type") == "json_schema":
        # Chat Completions needs a name; the schema is the one the client gave.
        return reasoning, {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt.get("schema") or {},
                                                                  "strict": True}}
    return reasoning, dict(fmt)


def _stop_sequences(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, list) and all(isinstance(s, str) for s in v):
        return v
    raise invalid("stop_sequences", "an array of strings", v)


# ---- response ---------------------------------------------------------------------------------


def usage_body(u: Usage) -> dict[str, int]:
    return {
        "input_tokens": max(0, u.input_tokens - u.cache_read_tokens - u.cache_write_tokens),
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "output_tokens": u.output_tokens,
    }


def _tool_input(arguments: str) -> dict[str, Any]:
    if not arguments:
        return {}
    try:
        value = _decode_json(arguments)
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _content_block(p: Part) -> dict[str, Any] | None:
    if isinstance(p, TextPart):
        return {"type": "text", "text": p.text}
    if isinstance(p, ToolCallPart):
        return {"type": "tool_use", "id": p.id, "name": p.name, "input": _tool_input(p.arguments)}
    if isinstance(p, ThinkingPart):
        if p.redacted_data is not None:
            return {"type": "redacted_thinking", "data": p.redacted_data}
        return {"type": "thinking", "thinking": p.text, "signature": p.signature or ""}
    return None  # images and tool results have no form in an answer


def render_response(resp: Response, model: str, options: dict[str, Any]) -> bytes:
    content = [b for b in map(_content_block, resp.content) if b is not None]
    return encode({
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(resp.stop_reason),
        "stop_sequence": resp.stop_sequence,
        "usage": usage_body(resp.usage),
    })


def count_tokens_body(req: Request) -> bytes:
    return encode({"input_tokens": count_request_tokens(req)})


def render_models(models: list[tuple[str, int]]) -> bytes:
    data = [{"type": "model", "id": name, "display_name": name,
             "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))} for name, created in models]
    return encode({
        "data": data, "has_more": False,
        "first_id": models[0][0] if models else None, "last_id": models[-1][0] if models else None,
    })


# ---- stream -----------------------------------------------------------------------------------

_TEXT, _THINKING, _REDACTED, _TOOL = 1, 2, 3, 4
# Tool-argument states: nothing but whitespace seen yet / streaming live / withheld (not an object).
_UNDECIDED, _LIVE, _WITHHELD = 0, 1, 2
_DELTA_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_TEXT_DELTA = b',"delta":{"type":"text_delta","text":'
_THINKING_DELTA = b',"delta":{"type":"thinking_delta","thinking":'
_JSON_DELTA = b',"delta":{"type":"input_json_delta","partial_json":'
_SIGNATURE_DELTA = b',"delta":{"type":"signature_delta","signature":'
_STOP_HEAD = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":'


class StreamEncoder:
    """Canonical events → Anthropic's named SSE events. ``message_start`` goes out before anything
    else (made up with zero usage if the first event is not a ``StreamStart``); blocks still open at
    ``StreamEnd`` are closed; ``end()`` finishes a stream that never got a ``StreamEnd``."""

    __slots__ = ("_args", "_ended", "_id", "_kinds", "_model", "_next", "_sigs", "_start_usage", "_started",
                 "_wire")

    def __init__(self, model: str, options: dict[str, Any]) -> None:
        self._model = model
        self._id = new_id("msg_")
        self._started = False
        self._ended = False
        self._start_usage: Usage | None = None
        self._wire: dict[int, bytes] = {}  # open canonical index → its wire index, as bytes
        self._kinds: dict[int, int] = {}  # open canonical index → _TEXT | _THINKING | _REDACTED | _TOOL
        self._next = 0  # wire index of the next block
        self._sigs: dict[int, list[str]] = {}  # thinking signature pieces, sent at the block's stop
        self._args: dict[int, list[Any]] = {}  # tool index → [state, withheld pieces…]

    def _message_start(self, usage: Usage | None) -> bytes:
        self._started = True
        self._start_usage = usage
        return sse_event("message_start", {"type": "message_start", "message": {
            "id": self._id, "type": "message", "role": "assistant", "model": self._model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": usage_body(usage or Usage()),
        }})

    def event(self, ev: StreamEvent) -> bytes:
        if isinstance(ev, BlockDelta):
            return self._delta(ev)
        head = b"" if self._started or isinstance(ev, StreamStart) else self._message_start(None)
        if isinstance(ev, BlockStart):
            return head + self._block_start(ev)
        if isinstance(ev, BlockStop):
            return head + self._block_stop(ev.index)
        if isinstance(ev, StreamStart):
            return b"" if self._started else self._message_start(ev.usage)
        if isinstance(ev, StreamEnd):
            return head + self._finish(ev)
        return head

    def _block_start(self, ev: BlockStart) -> bytes:
        part, index = ev.part, ev.index
        if index in self._wire:  # a repeated start: the block is already open
            return b""
        tail = b""
        block: dict[str, Any]
        if isinstance(part, TextPart):
            kind, block = _TEXT, {"type": "text", "text": ""}
        elif isinstance(part, ThinkingPart) and part.redacted_data is not None:
            kind, block = _REDACTED, {"type": "redacted_thinking", "data": part.redacted_data}
        elif isinstance(part, ThinkingPart):
            kind, block = _THINKING, {"type": "thinking", "thinking": "", "signature": ""}
            if part.signature:
                self._sigs[index] = [part.signature]
        elif isinstance(part, ToolCallPart):
            kind = _TOOL
            block = {"type": "tool_use", "id": part.id, "name": part.name, "input": {}}
            self._args[index] = [_UNDECIDED]
        else:
            return b""  # images / tool results: no wire block, and no wire index used
        wire = str(self._next).encode()
        self._next += 1
        self._wire[index] = wire
        self._kinds[index] = kind
        out = sse_event("content_block_start", {"type": "content_block_start", "index": self._next - 1,
                                                "content_block": block})
        if isinstance(part, TextPart | ThinkingPart) and part.text and kind != _REDACTED:
            tail = self._delta(BlockDelta(index, text=part.text))
        elif isinstance(part, ToolCallPart) and part.arguments:
            tail = self._delta(BlockDelta(index, arguments=part.arguments))
        return out + tail

    def _delta(self, ev: BlockDelta) -> bytes:
        kind = self._kinds.get(ev.index)
        if kind == _TEXT:
            if ev.text:
                return _DELTA_HEAD + self._wire[ev.index] + _TEXT_DELTA + encode(ev.text) + b"}}\n\n"
        elif kind == _TOOL:
            if ev.arguments:
                return self._arguments(ev.index, ev.arguments)
        elif kind == _THINKING:
            if ev.signature:
                self._sigs.setdefault(ev.index, []).append(ev.signature)
            if ev.text:
                return _DELTA_HEAD + self._wire[ev.index] + _THINKING_DELTA + encode(ev.text) + b"}}\n\n"
        return b""

    def _arguments(self, index: int, piece: str) -> bytes:
        state = self._args[index]
        if state[0] == _LIVE:
            return _DELTA_HEAD + self._wire[index] + _JSON_DELTA + encode(piece) + b"}}\n\n"
        if state[0] == _WITHHELD:
            return b""
        state.append(piece)
        pending = "".join(state[1:])
        first = pending.lstrip()[:1]
        if not first:
            return b""
        if first != "{":  # not a JSON object: the SDK would fail parsing it; the client gets input {}
            state[:] = [_WITHHELD]
            return b""
        state[:] = [_LIVE]
        return _DELTA_HEAD + self._wire[index] + _JSON_DELTA + encode(pending) + b"}}\n\n"

    def _block_stop(self, index: int) -> bytes:
        wire = self._wire.pop(index, None)
        if wire is None:
            return b""
        kind = self._kinds.pop(index)
        out = b""
        if kind == _THINKING:
            sig = self._sigs.pop(index, None)
            if sig:
                out = _DELTA_HEAD + wire + _SIGNATURE_DELTA + encode("".join(sig)) + b"}}\n\n"
        elif kind == _TOOL:
            del self._args[index]
        return out + _STOP_HEAD + wire + b"}\n\n"

    def _finish(self, ev: StreamEnd) -> bytes:
        if self._ended:
            return b""
        self._ended = True
        out = b"".join(self._block_stop(i) for i in list(self._wire))
        usage = merged_usage(self._start_usage, ev.usage)
        return out + sse_event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(ev.stop_reason), "stop_sequence": ev.stop_sequence},
            "usage": usage_body(usage),
        })

    def error(self, err: FlowbaseError) -> bytes:
        return sse_event("error", {"type": "error", "error": anthropic_error(err)})

    def end(self) -> bytes:
        head = b"" if self._started else self._message_start(None)
        if not self._ended:
            head += self._finish(StreamEnd())
        return head + b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


# ---- errors -----------------------------------------------------------------------------------

_ERROR_TYPES: dict[str, str] = {
    "invalid_request": "invalid_request_error", "authentication": "authentication_error",
    "permission": "permission_error", "not_found": "not_found_error", "rate_limit": "rate_limit_error",
    "api_error": "api_error", "overloaded": "overloaded_error", "timeout": "timeout_error",
}
_STATUS_TYPES: dict[int, str] = {402: "billing_error", 413: "request_too_large"}


def _status(err: FlowbaseError) -> int:
    if err.kind == "overloaded":
        return err.status if err.status in (503, 529) else 529
    if err.kind == "timeout":
        return err.status if err.status in (408, 504) else 504
    return err.status


def anthropic_error(err: FlowbaseError) -> dict[str, str]:
    """The ``error`` object of Anthropic's error body: type and message."""
    kind = _STATUS_TYPES.get(err.status) or _ERROR_TYPES.get(err.kind, "api_error")
    return {"type": kind, "message": err.message}


def error_body(err: FlowbaseError) -> tuple[int, bytes, dict[str, str]]:
    return _status(err), encode({"type": "error", "error": anthropic_error(err)}), retry_after_headers(err)


# ---- sessions ---------------------------------------------------------------------------------

_SESSION_HEADERS = ("x-flowbase-session", "x-claude-code-session-id")
_SESSION_MARK = "_session_"


def session_id(headers: Mapping[str, str], req: Request, options: dict[str, Any]) -> str | None:
    """The client's conversation id: ``x-flowbase-session`` (an explicit choice wins), Claude
    Code's ``x-claude-code-session-id``, else the session inside ``metadata.user_id`` (Claude
    Code's JSON ``{"session_id": …}`` or legacy ``user_<hash>_account_<id>_session_<uuid>``),
    else the whole ``user_id``. ``headers`` must be case-insensitive or use lower-case names."""
    for name in _SESSION_HEADERS:
        value = headers.get(name)
        if value:
            return value
    user = req.user
    if not user:
        return None
    if user.startswith("{"):
        try:
            parsed = _decode_json(user)
        except msgspec.DecodeError:
            return user
        sid = parsed.get("session_id") if isinstance(parsed, dict) else None
        return sid if isinstance(sid, str) and sid else user
    cut = user.rfind(_SESSION_MARK)
    if cut >= 0 and len(user) > cut + len(_SESSION_MARK):
        return user[cut + len(_SESSION_MARK):]
    return user
