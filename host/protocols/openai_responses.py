"""OpenAI Responses API (``/v1/responses``) ⇄ canonical types. Pure functions, no I/O.

Same interface as openai_chat (``parse_request``, ``render_response``, ``StreamEncoder``,
``error_body``, ``session_id``); errors use the OpenAI error shape of openai_chat.

Request mapping:
- ``instructions`` becomes a leading ``system`` message (and is echoed back from ``options``).
- ``input`` is a string (one user message) or a list of items. Consecutive assistant-side items
  (assistant messages, ``reasoning``, ``function_call``, ``custom_tool_call``, ``local_shell_call``)
  fold into one assistant ``Message``, so thinking, text and tool calls of one turn stay together;
  each ``function_call_output`` becomes a ``tool`` message. Item kinds with no canonical form
  (``item_reference``, hosted-tool calls such as ``web_search_call``) are skipped.
- A ``reasoning`` item becomes a ``ThinkingPart``: its text is the reasoning content if given, else
  the summary texts; ``encrypted_content`` is kept byte-exact in ``signature``, or in
  ``redacted_data`` when it carries the ``flowbase-redacted:`` prefix this module gives redacted
  thinking on the way out — so reasoning sent back by the client round-trips to the provider.
- Function tools are flat (``{"type":"function","name",…}``); other tool types are kept as
  ``Tool(kind=type, raw=…)``. ``text.format`` of type json_schema/json_object is normalised to the
  Chat Completions ``response_format`` shape, so providers see one shape.
- ``options`` carries ``previous_response_id``, ``store``, ``instructions``, ``include``,
  ``conversation`` (for the host to decide on) and ``echo``: the request fields the response
  object repeats (tools, tool_choice, text, reasoning, sampling …).

Response mapping: each ``TextPart`` is a ``message`` item, each ``ThinkingPart`` a ``reasoning``
item (text as one summary part), each ``ToolCallPart`` a ``function_call`` item whose ``call_id``
is the canonical tool-call id. ``max_tokens``/``content_filter`` end as ``status: incomplete``.
The stream follows OpenAI's event order (created, in_progress, per item added → content events →
done, then completed / incomplete), every event numbered by ``sequence_number`` from 0.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, cast

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
    parse_data_url,
    req_str,
    sse_event,
)
from host.protocols.openai_chat import error_body, openai_error
from plugin_sdk.errors import FlowbaseError, InvalidRequest
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

__all__ = ["REDACTED_PREFIX", "StreamEncoder", "error_body", "parse_request", "render_response", "session_id"]

REDACTED_PREFIX = "flowbase-redacted:"
_MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})
# Top-level fields parse_request consumes; every other field is passed on in Request.extra.
_MODELLED = frozenset({
    "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "max_output_tokens",
    "temperature", "top_p", "reasoning", "text", "metadata", "user", "stream", "stream_options", "store",
    "previous_response_id", "include", "conversation",
})
# Request fields the response object repeats as they were sent.
_ECHOED = ("max_output_tokens", "parallel_tool_calls", "temperature", "top_p", "tool_choice", "tools", "text",
           "reasoning", "metadata", "user", "prompt_cache_key", "truncation", "service_tier", "safety_identifier",
           "top_logprobs", "max_tool_calls", "background")


# ---- request ----------------------------------------------------------------------------------


def parse_request(body: bytes) -> tuple[Request, dict[str, Any]]:
    obj = decode_body(body)
    model = req_str(obj, "model")
    instructions = opt_str(obj, "instructions")
    previous = opt_str(obj, "previous_response_id")
    conversation = obj.get("conversation")
    if conversation is not None and not isinstance(conversation, str | dict):
        raise invalid("conversation", "a string or an object", conversation)

    messages: list[Message] = []
    if instructions:
        messages.append(Message(role="system", content=[TextPart(instructions)]))
    raw_input = obj.get("input")
    if isinstance(raw_input, str):
        messages.append(Message(role="user", content=[TextPart(raw_input)]))
    elif isinstance(raw_input, list):
        _items(raw_input, messages)
    elif raw_input is not None:
        raise invalid("input", "a string or an array of input items", raw_input)
    elif previous is None and conversation is None:
        raise InvalidRequest("input: required field is missing", param="input")

    extra: dict[str, Any] = {k: v for k, v in obj.items() if k not in _MODELLED}
    opt_str(obj, "prompt_cache_key")
    tool_choice = _tool_choice(obj.get("tool_choice"), extra)
    response_format = _text_format(opt_dict(obj, "text"), extra)
    include = opt_list(obj, "include")
    if include is not None and not all(isinstance(x, str) for x in include):
        raise invalid("include", "an array of strings", include)
    store = opt_bool(obj, "store")

    req = Request(
        model=model,
        messages=messages,
        tools=_tools(obj),
        tool_choice=tool_choice,
        parallel_tool_calls=opt_bool(obj, "parallel_tool_calls"),
        max_tokens=opt_int(obj, "max_output_tokens"),
        temperature=opt_float(obj, "temperature"),
        top_p=opt_float(obj, "top_p"),
        stream=bool(opt_bool(obj, "stream")),
        reasoning=_reasoning(opt_dict(obj, "reasoning")),
        response_format=response_format,
        metadata=opt_dict(obj, "metadata") or {},
        user=opt_str(obj, "user"),
        extra=extra,
    )
    options: dict[str, Any] = {
        "instructions": instructions,
        "previous_response_id": previous,
        "store": store,
        "include": include or [],
        "conversation": conversation,
        "echo": {k: obj[k] for k in _ECHOED if obj.get(k) is not None},
    }
    return req, options


def _items(items: list[Any], out: list[Message]) -> None:
    # Hot path (a Codex request carries hundreds of items): well-formed fields are taken directly;
    # paths such as ``input[3].call_id`` are only formatted when something is wrong.
    # ``open_assistant`` is the assistant message the current run of assistant-side items extends.
    open_assistant: Message | None = None
    for i, item in enumerate(items):
        if type(item) is not dict:
            raise invalid(f"input[{i}]", "an input item object", item)
        kind = item.get("type")
        part: Part | None = None
        if kind == "message" or kind is None:
            role = item.get("role")
            if role not in _MESSAGE_ROLES:
                path = f"input[{i}].role"
                if role is None:
                    raise InvalidRequest(f"{path}: required field is missing", param=path)
                raise InvalidRequest(f"{path}: expected one of user, assistant, system, developer, got {role!r}",
                                     param=path)
            if role != "assistant":
                out.append(Message(role, cast("list[Part]", _content(item.get("content"), i, "content", False))))
                open_assistant = None
                continue
            if open_assistant is None:
                open_assistant = Message("assistant", [])
                out.append(open_assistant)
            content = item.get("content")
            if content != "":  # an empty assistant text adds nothing to the turn
                open_assistant.content.extend(_content(content, i, "content", True))
            continue
        if kind == "function_call":
            args = item.get("arguments")
            part = ToolCallPart(_str(item, "call_id", i), _str(item, "name", i),
                                args if type(args) is str else _arguments(args, f"input[{i}].arguments"))
        elif kind == "reasoning":
            part = _reasoning_item(item, i)
        elif kind in _OUTPUT_ITEMS:
            call_id = item.get("call_id")
            if type(call_id) is not str:
                call_id = _str(item, "id", i)  # local_shell_call_output names its call by ``id``
            if "output" not in item:
                raise InvalidRequest(f"input[{i}].output: required field is missing", param=f"input[{i}].output")
            result = ToolResultPart(call_id, _content(item["output"], i, "output", False))
            out.append(Message("tool", [result]))
            open_assistant = None
            continue
        elif kind == "custom_tool_call":
            part = ToolCallPart(_str(item, "call_id", i), _str(item, "name", i),
                                opt_str(item, "input", f"input[{i}]") or "")
        elif kind == "local_shell_call":
            call_id = item.get("call_id")
            action = item.get("action")
            part = ToolCallPart(call_id if type(call_id) is str else _str(item, "id", i), "local_shell",
                                encode(action).decode() if action is not None else "{}")
        elif type(kind) is not str:
            raise invalid(f"input[{i}].type", "a string", kind)
        else:
            # item_reference, web_search_call, image_generation_call, compaction …: nothing a workflow
            # can act on; they neither break nor extend the current assistant turn.
            continue
        if open_assistant is None:
            open_assistant = Message("assistant", [])
            out.append(open_assistant)
        open_assistant.content.append(part)


_OUTPUT_ITEMS = frozenset({"function_call_output", "custom_tool_call_output", "local_shell_call_output"})
_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})


def _str(item: dict[str, Any], key: str, i: int) -> str:
    v = item.get(key)
    return v if type(v) is str else req_str(item, key, f"input[{i}]")


def _content(content: Any, i: int, field: str, assistant: bool) -> list[TextPart | ImagePart]:
    """A message's ``content`` or a tool output's ``output``: a string or a list of parts."""
    if type(content) is str:
        return [TextPart(content)]
    if type(content) is not list:
        path = f"input[{i}].{field}"
        if content is None:
            raise InvalidRequest(f"{path}: required field is missing", param=path)
        raise invalid(path, "a string or an array of content parts", content)
    parts: list[TextPart | ImagePart] = []
    for j, p in enumerate(content):
        if type(p) is dict and p.get("type") in _TEXT_PARTS:
            text = p.get("text")
            if type(text) is str:
                parts.append(TextPart(text))
                continue
        parts.append(_part(p, f"input[{i}].{field}[{j}]", assistant))
    return parts


def _part(p: Any, path: str, assistant: bool) -> TextPart | ImagePart:
    if not isinstance(p, dict):
        raise invalid(path, "a content part object", p)
    kind = p.get("type")
    if kind in _TEXT_PARTS:
        return TextPart(req_str(p, "text", path))
    if kind == "refusal":
        return TextPart(req_str(p, "refusal", path))
    if kind == "input_image" and not assistant:
        return _image(p, path)
    if kind is None:
        raise InvalidRequest(f"{path}.type: required field is missing", param=f"{path}.type")
    if kind in ("input_file", "input_audio", "input_image"):
        raise InvalidRequest(f"{path}: content parts of type {kind!r} are not supported here by flowbase", param=path)
    raise InvalidRequest(f"{path}.type: unknown content part type {kind!r}", param=f"{path}.type")


def _image(p: dict[str, Any], path: str) -> ImagePart:
    url = opt_str(p, "image_url", path)
    detail = opt_str(p, "detail", path)
    if url is None:
        if p.get("file_id") is not None:
            raise InvalidRequest(f"{path}.file_id: images by file_id are not supported by flowbase; send image_url "
                                 f"(an https or data: URL)", param=f"{path}.file_id")
        raise InvalidRequest(f"{path}.image_url: required field is missing", param=f"{path}.image_url")
    inline = parse_data_url(url)
    if inline is not None:
        return ImagePart(data=inline[1], media_type=inline[0], detail=detail)
    if url.startswith("data:"):
        raise InvalidRequest(f"{path}.image_url: a data URL must be base64 (data:<media type>;base64,<data>)",
                             param=f"{path}.image_url")
    return ImagePart(url=url, detail=detail)


def _arguments(args: Any, path: str) -> str:
    if args is None:
        return ""
    if isinstance(args, str):
        return args
    if isinstance(args, dict):  # lenient: some clients send the arguments as an object
        return encode(args).decode()
    raise invalid(path, "a string of JSON", args)


def _reasoning_item(item: dict[str, Any], i: int) -> ThinkingPart:
    texts: list[str] = []
    for key, text_type in (("content", "reasoning_text"), ("summary", "summary_text")):
        entries = item.get(key)
        if not entries:
            continue
        if type(entries) is not list:
            raise invalid(f"input[{i}].{key}", "an array", entries)
        for j, e in enumerate(entries):
            text = e.get("text") if type(e) is dict else None
            if type(text) is not str:
                path = f"input[{i}].{key}[{j}]"
                if type(e) is not dict:
                    raise invalid(path, f"a {text_type} object", e)
                text = req_str(e, "text", path)
            texts.append(text)
        break  # raw reasoning wins over its summary when both came back
    encrypted = item.get("encrypted_content")
    if encrypted is None:
        return ThinkingPart("\n\n".join(texts))
    if type(encrypted) is not str:
        raise invalid(f"input[{i}].encrypted_content", "a string", encrypted)
    if encrypted.startswith(REDACTED_PREFIX):
        return ThinkingPart("\n\n".join(texts), redacted_data=encrypted[len(REDACTED_PREFIX):])
    return ThinkingPart("\n\n".join(texts), encrypted)


def _tools(obj: dict[str, Any]) -> list[Tool]:
    tools: list[Tool] = []
    for i, t in enumerate(opt_list(obj, "tools") or []):
        path = f"tools[{i}]"
        if not isinstance(t, dict):
            raise invalid(path, "a tool object", t)
        kind = req_str(t, "type", path)
        if kind == "function":
            tools.append(Tool(
                name=req_str(t, "name", path), description=opt_str(t, "description", path),
                parameters=opt_dict(t, "parameters", path) or {}, strict=opt_bool(t, "strict", path),
            ))
        else:  # web_search, custom, namespace, mcp …: kept verbatim for plugins that understand them
            name, desc = t.get("name"), t.get("description")
            tools.append(Tool(name=name if isinstance(name, str) else kind,
                              description=desc if isinstance(desc, str) else None, kind=kind, raw=t))
    return tools


def _tool_choice(v: Any, extra: dict[str, Any]) -> ToolChoice | None:
    if v is None:
        return None
    if isinstance(v, str):
        if v == "auto":
            return ToolChoice(mode="auto")
        if v == "none":
            return ToolChoice(mode="none")
        if v == "required":
            return ToolChoice(mode="required")
        raise InvalidRequest(f"tool_choice: expected 'auto', 'none', 'required' or an object naming a tool, got {v!r}",
                             param="tool_choice")
    if not isinstance(v, dict):
        raise invalid("tool_choice", "a string or an object", v)
    if v.get("type") in ("function", "custom"):
        return ToolChoice(mode="tool", name=req_str(v, "name", "tool_choice"))
    # allowed_tools, hosted tools, mcp …: keep the original for plugins, honour its mode here.
    extra["tool_choice"] = v
    return ToolChoice(mode="required" if v.get("mode") == "required" else "auto")


def _reasoning(r: dict[str, Any] | None) -> Reasoning | None:
    if r is None:
        return None
    effort = opt_str(r, "effort", "reasoning")
    summary = opt_str(r, "summary", "reasoning") or opt_str(r, "generate_summary", "reasoning")
    if effort is None and summary is None:
        return None
    return Reasoning(enabled=effort != "none", effort=effort, summary=summary)


def _text_format(text: dict[str, Any] | None, extra: dict[str, Any]) -> dict[str, Any] | None:
    if text is None:
        return None
    verbosity = opt_str(text, "verbosity", "text")
    if verbosity is not None:
        extra["verbosity"] = verbosity
    fmt = opt_dict(text, "format", "text")
    if fmt is None:
        return None
    kind = req_str(fmt, "type", "text.format")
    if kind == "text":
        return None
    if kind == "json_schema":
        spec = {k: fmt[k] for k in ("name", "description", "schema", "strict") if k in fmt}
        return {"type": "json_schema", "json_schema": spec}
    return dict(fmt)


# ---- response ---------------------------------------------------------------------------------


def usage_body(u: Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens, "cache_write_tokens": u.cache_write_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.input_tokens + u.output_tokens,
    }


def _ending(stop: StopReason) -> tuple[str, dict[str, str] | None]:
    if stop == "max_tokens":
        return "incomplete", {"reason": "max_output_tokens"}
    if stop == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _response_object(rid: str, created_at: int, model: str, options: dict[str, Any], status: str,
                     output: list[dict[str, Any]], usage: Usage | None = None,
                     incomplete: dict[str, str] | None = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
    echo: dict[str, Any] = options.get("echo") or {}
    store = options.get("store")
    obj: dict[str, Any] = {
        "id": rid,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": echo.get("background", False),
        "error": error,
        "incomplete_details": incomplete,
        "instructions": options.get("instructions"),
        "max_output_tokens": echo.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": echo.get("parallel_tool_calls", True),
        "previous_response_id": options.get("previous_response_id"),
        "reasoning": echo.get("reasoning", {"effort": None, "summary": None}),
        "store": True if store is None else store,
        "temperature": echo.get("temperature"),
        "text": {"format": {"type": "text"}, **echo.get("text", {})},
        "tool_choice": echo.get("tool_choice", "auto"),
        "tools": echo.get("tools", []),
        "top_p": echo.get("top_p"),
        "truncation": echo.get("truncation", "disabled"),
        "usage": usage_body(usage) if usage is not None else None,
        "user": echo.get("user"),
        "metadata": echo.get("metadata", {}),
    }
    for key in ("prompt_cache_key", "service_tier", "safety_identifier", "top_logprobs", "max_tool_calls"):
        if key in echo:
            obj[key] = echo[key]
    if status == "completed":
        obj["completed_at"] = int(time.time())
    return obj


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def _reasoning_output(item_id: str, text: str, signature: str | None, redacted: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": item_id, "type": "reasoning",
                            "summary": [{"type": "summary_text", "text": text}] if text else []}
    if redacted is not None:
        item["encrypted_content"] = REDACTED_PREFIX + redacted
    elif signature:
        item["encrypted_content"] = signature
    return item


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "arguments": arguments, "call_id": call_id,
            "name": name}


def render_response(resp: Response, model: str, options: dict[str, Any]) -> bytes:
    output: list[dict[str, Any]] = []
    for p in resp.content:
        if isinstance(p, TextPart):
            output.append(_message_item(new_id("msg_"), p.text))
        elif isinstance(p, ThinkingPart):
            output.append(_reasoning_output(new_id("rs_"), p.text, p.signature, p.redacted_data))
        elif isinstance(p, ToolCallPart):
            output.append(_call_item(new_id("fc_"), p.id, p.name, p.arguments))
    status, incomplete = _ending(resp.stop_reason)
    return encode(_response_object(options.get("response_id") or new_id("resp_"), int(time.time()), model, options,
                                   status, output,
                                   resp.usage, incomplete))


# ---- stream -----------------------------------------------------------------------------------


class _Block:
    """An output item being streamed, opened by a canonical block."""

    __slots__ = ("arguments", "call_id", "item_id", "kind", "name", "output_index", "redacted", "signature",
                 "summary_open", "text")

    def __init__(self, kind: str, output_index: int, item_id: str) -> None:
        self.kind = kind
        self.output_index = output_index
        self.item_id = item_id
        self.text: list[str] = []
        self.arguments: list[str] = []
        self.call_id = ""
        self.name = ""
        self.signature: list[str] = []
        self.redacted: str | None = None
        self.summary_open = False


class StreamEncoder:
    """Canonical events → Responses SSE events (``event: <type>`` + ``data: <json>``)."""

    __slots__ = ("_blocks", "_created_at", "_done", "_finished", "_id", "_model", "_options", "_seq", "_started",
                 "_usage")

    def __init__(self, model: str, options: dict[str, Any]) -> None:
        self._model = model
        self._options = options
        self._id = options.get("response_id") or new_id("resp_")
        self._created_at = int(time.time())
        self._seq = 0
        self._started = False
        self._finished = False
        self._blocks: dict[int, _Block] = {}  # open blocks by canonical index
        self._done: dict[int, dict[str, Any]] = {}  # finished items by output_index
        self._usage: Usage | None = None  # prompt-side usage sent with StreamStart

    def _emit(self, kind: str, payload: dict[str, Any]) -> bytes:
        seq = self._seq
        self._seq += 1
        return sse_event(kind, {"type": kind, "sequence_number": seq, **payload})

    def _snapshot(self, status: str, **kw: Any) -> dict[str, Any]:
        output = [self._done[i] for i in sorted(self._done)]
        return _response_object(self._id, self._created_at, self._model, self._options, status, output, **kw)

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return (self._emit("response.created", {"response": self._snapshot("in_progress")})
                + self._emit("response.in_progress", {"response": self._snapshot("in_progress")}))

    def event(self, ev: StreamEvent) -> bytes:
        if self._finished:
            return b""
        if isinstance(ev, BlockDelta):
            block = self._blocks.get(ev.index)
            return self._delta(block, ev) if block is not None else b""
        if isinstance(ev, BlockStart):
            return self._start() + self._open(ev)
        if isinstance(ev, BlockStop):
            block = self._blocks.pop(ev.index, None)
            return self._close(block) if block is not None else b""
        if isinstance(ev, StreamStart):
            self._usage = ev.usage
            return self._start()
        if isinstance(ev, StreamEnd):
            return self._start() + self._end(ev)
        return b""

    def _open(self, ev: BlockStart) -> bytes:
        part = ev.part
        index = len(self._done) + len(self._blocks)
        if isinstance(part, TextPart):
            b = self._blocks[ev.index] = _Block("message", index, new_id("msg_"))
            out = self._emit("response.output_item.added", {
                "output_index": index,
                "item": {"id": b.item_id, "type": "message", "status": "in_progress", "role": "assistant",
                         "content": []}})
            out += self._emit("response.content_part.added", {
                "item_id": b.item_id, "output_index": index, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})
            return out + (self._delta(b, BlockDelta(ev.index, text=part.text)) if part.text else b"")
        if isinstance(part, ThinkingPart):
            b = self._blocks[ev.index] = _Block("reasoning", index, new_id("rs_"))
            b.redacted = part.redacted_data
            if part.signature:
                b.signature.append(part.signature)
            out = self._emit("response.output_item.added", {
                "output_index": index, "item": {"id": b.item_id, "type": "reasoning", "summary": []}})
            return out + (self._delta(b, BlockDelta(ev.index, text=part.text)) if part.text else b"")
        if isinstance(part, ToolCallPart):
            b = self._blocks[ev.index] = _Block("function_call", index, new_id("fc_"))
            b.call_id, b.name = part.id, part.name
            out = self._emit("response.output_item.added", {
                "output_index": index, "item": _call_item(b.item_id, part.id, part.name, "", "in_progress")})
            return out + (self._delta(b, BlockDelta(ev.index, arguments=part.arguments)) if part.arguments else b"")
        return b""  # images / tool results have no Responses output form

    def _delta(self, b: _Block, ev: BlockDelta) -> bytes:
        if b.kind == "message":
            if not ev.text:
                return b""
            b.text.append(ev.text)
            return self._emit("response.output_text.delta", {
                "item_id": b.item_id, "output_index": b.output_index, "content_index": 0, "delta": ev.text,
                "logprobs": []})
        if b.kind == "function_call":
            if not ev.arguments:
                return b""
            b.arguments.append(ev.arguments)
            return self._emit("response.function_call_arguments.delta", {
                "item_id": b.item_id, "output_index": b.output_index, "delta": ev.arguments})
        if ev.signature:
            b.signature.append(ev.signature)
        if not ev.text:
            return b""
        out = b""
        if not b.summary_open:
            b.summary_open = True
            out = self._emit("response.reasoning_summary_part.added", {
                "item_id": b.item_id, "output_index": b.output_index, "summary_index": 0,
                "part": {"type": "summary_text", "text": ""}})
        b.text.append(ev.text)
        return out + self._emit("response.reasoning_summary_text.delta", {
            "item_id": b.item_id, "output_index": b.output_index, "summary_index": 0, "delta": ev.text})

    def _close(self, b: _Block) -> bytes:
        text = "".join(b.text)
        common: dict[str, Any] = {"item_id": b.item_id, "output_index": b.output_index}
        if b.kind == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            out = self._emit("response.output_text.done", {**common, "content_index": 0, "text": text, "logprobs": []})
            out += self._emit("response.content_part.done", {**common, "content_index": 0, "part": part})
            item = _message_item(b.item_id, text)
        elif b.kind == "function_call":
            arguments = "".join(b.arguments)
            out = self._emit("response.function_call_arguments.done", {**common, "name": b.name,
                                                                          "arguments": arguments})
            item = _call_item(b.item_id, b.call_id, b.name, arguments)
        else:
            out = b""
            if b.summary_open:
                out += self._emit("response.reasoning_summary_text.done", {**common, "summary_index": 0, "text": text})
                out += self._emit("response.reasoning_summary_part.done", {
                    **common, "summary_index": 0, "part": {"type": "summary_text", "text": text}})
            item = _reasoning_output(b.item_id, text, "".join(b.signature) or None, b.redacted)
        self._done[b.output_index] = item
        return out + self._emit("response.output_item.done", {"output_index": b.output_index, "item": item})

    def _close_all(self) -> bytes:
        out = b""
        for index in sorted(self._blocks):
            out += self._close(self._blocks[index])
        self._blocks.clear()
        return out

    def _end(self, ev: StreamEnd) -> bytes:
        out = self._close_all()  # a node that forgot BlockStop still yields a well-formed stream
        self._finished = True
        usage = merged_usage(self._usage, ev.usage)
        status, incomplete = _ending(ev.stop_reason)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._emit(kind, {"response": self._snapshot(status, usage=usage, incomplete=incomplete)})

    def error(self, err: FlowbaseError) -> bytes:
        """An ``error`` event, then ``response.failed`` whose error code clients classify (Codex reads
        ``rate_limit_exceeded``, ``context_length_exceeded``, ``insufficient_quota``)."""
        if self._finished:
            return b""
        self._finished = True
        shape = openai_error(err)
        code = err.code or _FAILED_CODES.get(err.kind, "server_error")
        out = self._start()
        out += self._emit("error", {"code": code, "message": shape["message"], "param": shape["param"]})
        return out + self._emit("response.failed", {
            "response": self._snapshot("failed", error={"code": code, "message": err.message})})

    def end(self) -> bytes:
        return b""


# Codes OpenAI puts in ``response.failed``; Codex backs off on rate_limit_exceeded and server_is_overloaded.
_FAILED_CODES: dict[str, str] = {"rate_limit": "rate_limit_exceeded", "invalid_request": "invalid_prompt",
                                 "overloaded": "server_is_overloaded"}


# ---- sessions ---------------------------------------------------------------------------------

# Codex sends ``session-id`` (older releases ``session_id`` and ``conversation_id``).
_SESSION_HEADERS = ("x-flowbase-session", "session-id", "session_id", "x-session-id", "conversation_id",
                    "thread-id")


def session_id(headers: Mapping[str, str], req: Request, options: dict[str, Any]) -> str | None:
    """The client's conversation id: a session header, else ``metadata.session_id``, else the
    ``conversation`` parameter, else ``prompt_cache_key``. ``headers`` must be case-insensitive
    (Starlette's are) or use lower-case names."""
    for name in _SESSION_HEADERS:
        value = headers.get(name)
        if value:
            return value
    meta = req.metadata.get("session_id")
    if isinstance(meta, str) and meta:
        return meta
    conversation = options.get("conversation")
    if isinstance(conversation, dict):
        conversation = conversation.get("id")
    if isinstance(conversation, str) and conversation:
        return conversation
    key = req.extra.get("prompt_cache_key")
    return key if isinstance(key, str) and key else None
