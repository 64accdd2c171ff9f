"""OpenAI Chat Completions (``/v1/chat/completions``) ⇄ canonical types. Pure functions, no I/O.

Interface (the same in every adapter; host/api/v1.py calls exactly this):
- ``parse_request(body) -> (Request, options)``: wire JSON → canonical ``Request``; ``options`` holds
  what only this protocol needs later (``{"include_usage": True}`` from ``stream_options``). Bad input
  raises ``InvalidRequest`` whose message and ``param`` name the exact path (``messages[2].content``).
- ``render_response(resp, model, options) -> bytes``: a ``chat.completion`` body for the client.
- ``StreamEncoder(model, options)``: ``event(ev)`` → SSE bytes of ``chat.completion.chunk``s,
  ``error(err)`` → an in-stream ``{"error": …}`` chunk, ``end()`` → ``data: [DONE]``.
- ``error_body(err) -> (status, body, headers)``: the OpenAI error shape (shared with /v1/responses).
- ``session_id(headers, req, options)``: the conversation id a client sent, if any.
- ``render_models(models)``: the ``/v1/models`` list.

Mapping notes: an assistant message's ``reasoning_content`` (DeepSeek/vLLM convention) is a
``ThinkingPart`` and the answer's thinking goes back out the same way; each ``tool`` message becomes
a ``tool``-role ``Message`` holding one ``ToolResultPart``; top-level fields this module does not
model (seed, penalties, logit_bias, logprobs …) are kept in ``Request.extra`` as sent. Tool-call
deltas are keyed by their ordinal among tool calls, as OpenAI streams them, not by block index.
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
    req_dict,
    req_list,
    req_str,
    retry_after_headers,
    sse_data,
)
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

__all__ = [
    "StreamEncoder", "error_body", "finish_reason", "openai_error", "parse_request", "render_models",
    "render_response", "session_id",
]

# Top-level fields parse_request turns into Request fields; everything else goes to Request.extra.
_MODELLED = frozenset({
    "model", "messages", "tools", "tool_choice", "parallel_tool_calls", "max_tokens", "max_completion_tokens",
    "temperature", "top_p", "stop", "n", "stream", "stream_options", "response_format", "reasoning_effort",
    "metadata", "user",
})
# Pass-through fields whose type is cheap to check here, so the client hears about a mistake
# from us rather than as a confusing upstream error.
_EXTRA_INTS = ("seed", "top_logprobs", "top_k")
_EXTRA_NUMBERS = ("presence_penalty", "frequency_penalty", "repetition_penalty", "min_p")

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
    "tool_use": "tool_calls", "content_filter": "content_filter", "refusal": "content_filter",
}


def finish_reason(stop: StopReason) -> str:
    return FINISH_REASONS.get(stop, "stop")


# ---- request ----------------------------------------------------------------------------------


def parse_request(body: bytes) -> tuple[Request, dict[str, Any]]:
    obj = decode_body(body)
    model = req_str(obj, "model")
    raw_messages = req_list(obj, "messages")
    if not raw_messages:
        raise InvalidRequest("messages: expected at least one message", param="messages")
    messages = _messages(raw_messages)

    extra: dict[str, Any] = {k: v for k, v in obj.items() if k not in _MODELLED}
    for key in _EXTRA_INTS:
        opt_int(obj, key)
    for key in _EXTRA_NUMBERS:
        opt_float(obj, key)
    opt_bool(obj, "logprobs")
    opt_dict(obj, "logit_bias")

    n = opt_int(obj, "n")
    if n is not None and n != 1:
        raise InvalidRequest(f"n: only n=1 is supported, got {n}", param="n")

    max_tokens = opt_int(obj, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = opt_int(obj, "max_tokens")

    effort = opt_str(obj, "reasoning_effort")
    reasoning = None
    if effort is not None:
        reasoning = Reasoning(enabled=effort != "none", effort=effort)

    options: dict[str, Any] = {}
    stream = bool(opt_bool(obj, "stream"))
    stream_options = opt_dict(obj, "stream_options")
    if stream and stream_options and opt_bool(stream_options, "include_usage", "stream_options"):
        options["include_usage"] = True

    req = Request(
        model=model,
        messages=messages,
        tools=_tools(obj),
        tool_choice=_tool_choice(obj.get("tool_choice"), extra),
        parallel_tool_calls=opt_bool(obj, "parallel_tool_calls"),
        max_tokens=max_tokens,
        temperature=opt_float(obj, "temperature"),
        top_p=opt_float(obj, "top_p"),
        stop=_stop(obj.get("stop")),
        stream=stream,
        reasoning=reasoning,
        response_format=opt_dict(obj, "response_format"),
        metadata=opt_dict(obj, "metadata") or {},
        user=opt_str(obj, "user"),
        extra=extra,
    )
    return req, options


def _messages(raw: list[Any]) -> list[Message]:
    # Hot path (agents resend the whole history every turn): well-formed fields are taken directly;
    # paths such as ``messages[3].content`` are only formatted when something is wrong.
    out: list[Message] = []
    for i, m in enumerate(raw):
        if type(m) is not dict:
            raise invalid(f"messages[{i}]", "a message object", m)
        role = m.get("role")
        name = m.get("name")
        if name is not None and type(name) is not str:
            raise invalid(f"messages[{i}].name", "a string", name)
        if role == "user" or role == "system" or role == "developer":
            content = m.get("content")
            parts = [TextPart(content)] if type(content) is str else _parts(content, i, role == "user")
            out.append(Message(role, cast("list[Part]", parts), name))
        elif role == "assistant":
            out.append(Message("assistant", _assistant_parts(m, i), name))
        elif role == "tool":
            call_id = m.get("tool_call_id")
            if type(call_id) is not str:
                call_id = req_str(m, "tool_call_id", f"messages[{i}]")
            content = m.get("content")
            result: list[TextPart | ImagePart] = [TextPart(content)] if type(content) is str else _parts(content, i, True)
            out.append(Message("tool", [ToolResultPart(call_id, result)], name))
        else:
            path = f"messages[{i}].role"
            if role is None:
                raise InvalidRequest(f"{path}: required field is missing", param=path)
            if role == "function":
                raise InvalidRequest(f"{path}: legacy 'function' messages are not supported; send the result "
                                     f"as a 'tool' message with tool_call_id", param=path)
            raise InvalidRequest(f"{path}: expected one of system, developer, user, assistant, tool, got {role!r}",
                                 param=path)
    return out


def _parts(content: Any, i: int, images: bool) -> list[TextPart | ImagePart]:
    """A non-string ``content``: an array of content parts."""
    if type(content) is not list:
        path = f"messages[{i}].content"
        if content is None:
            raise InvalidRequest(f"{path}: required field is missing", param=path)
        raise invalid(path, "a string or an array of content parts", content)
    parts: list[TextPart | ImagePart] = []
    for j, p in enumerate(content):
        if type(p) is dict and p.get("type") == "text" and "cache_control" not in p:
            text = p.get("text")
            if type(text) is str:
                parts.append(TextPart(text))
                continue
        parts.append(_content_part(p, f"messages[{i}].content[{j}]", images))
    return parts


def _content_part(p: Any, path: str, images: bool) -> TextPart | ImagePart:
    if not isinstance(p, dict):
        raise invalid(path, "a content part object", p)
    kind = p.get("type")
    if kind == "text":
        cache_control = p.get("cache_control")
        return TextPart(req_str(p, "text", path), cache_control if isinstance(cache_control, dict) else None)
    if kind == "image_url":
        if not images:
            raise InvalidRequest(f"{path}: image parts are only allowed in user and tool messages", param=path)
        return _image(p, path)
    if kind in ("input_audio", "file", "audio"):
        raise InvalidRequest(f"{path}: content parts of type {kind!r} are not supported by flowbase", param=path)
    if kind is None:
        raise InvalidRequest(f"{path}.type: required field is missing", param=f"{path}.type")
    raise InvalidRequest(f"{path}.type: unknown content part type {kind!r} (expected 'text' or 'image_url')",
                         param=f"{path}.type")


def _image(p: dict[str, Any], path: str) -> ImagePart:
    spec = p.get("image_url")
    if isinstance(spec, str):  # some clients send the URL directly
        url, detail = spec, None
    elif isinstance(spec, dict):
        url, detail = req_str(spec, "url", f"{path}.image_url"), opt_str(spec, "detail", f"{path}.image_url")
    else:
        raise invalid(f"{path}.image_url", "an object with a url", spec)
    inline = parse_data_url(url)
    if inline is not None:
        return ImagePart(data=inline[1], media_type=inline[0], detail=detail)
    if url.startswith("data:"):
        raise InvalidRequest(f"{path}.image_url.url: a data URL must be base64 (data:<media type>;base64,<data>)",
                             param=f"{path}.image_url.url")
    return ImagePart(url=url, detail=detail)


def _assistant_parts(m: dict[str, Any], i: int) -> list[Part]:
    parts: list[Part] = []
    reasoning = m.get("reasoning_content")
    if reasoning:
        if type(reasoning) is not str:
            raise invalid(f"messages[{i}].reasoning_content", "a string", reasoning)
        parts.append(ThinkingPart(reasoning))
    content = m.get("content")
    if type(content) is str:
        if content:
            parts.append(TextPart(content))
    elif type(content) is list:
        for j, p in enumerate(content):
            ppath = f"messages[{i}].content[{j}]"
            if isinstance(p, dict) and p.get("type") == "refusal":
                parts.append(TextPart(req_str(p, "refusal", ppath)))
            else:
                parts.append(_content_part(p, ppath, False))
    elif content is not None:
        raise invalid(f"messages[{i}].content", "a string, an array of content parts or null", content)
    calls = m.get("tool_calls")
    if calls:
        if type(calls) is not list:
            raise invalid(f"messages[{i}].tool_calls", "an array", calls)
        for j, call in enumerate(calls):
            fn = call.get("function") if type(call) is dict else None
            if type(fn) is dict:
                call_id, name, args = call.get("id"), fn.get("name"), fn.get("arguments")
                if type(call_id) is str and type(name) is str and type(args) is str:
                    parts.append(ToolCallPart(call_id, name, args))
                    continue
            parts.append(_tool_call(call, f"messages[{i}].tool_calls[{j}]"))
    if not parts and content is None and "tool_calls" not in m:
        path = f"messages[{i}]"
        raise InvalidRequest(f"{path}: an assistant message needs content or tool_calls", param=f"{path}.content")
    return parts


def _tool_call(call: Any, path: str) -> ToolCallPart:
    if not isinstance(call, dict):
        raise invalid(path, "a tool call object", call)
    call_id = req_str(call, "id", path)
    kind = call.get("type", "function")
    if kind == "custom":  # a custom (free-form) tool call carries its input as text
        custom = req_dict(call, "custom", path)
        return ToolCallPart(id=call_id, name=req_str(custom, "name", f"{path}.custom"),
                            arguments=opt_str(custom, "input", f"{path}.custom") or "")
    fn = req_dict(call, "function", path)
    args = fn.get("arguments")
    if isinstance(args, dict):  # lenient: some clients send the arguments as an object
        args = encode(args).decode()
    elif args is not None and not isinstance(args, str):
        raise invalid(f"{path}.function.arguments", "a string of JSON", args)
    return ToolCallPart(id=call_id, name=req_str(fn, "name", f"{path}.function"), arguments=args or "")


def _tools(obj: dict[str, Any]) -> list[Tool]:
    raw = opt_list(obj, "tools") or []
    tools: list[Tool] = []
    for i, t in enumerate(raw):
        path = f"tools[{i}]"
        if not isinstance(t, dict):
            raise invalid(path, "a tool object", t)
        kind = opt_str(t, "type", path) or "function"
        if kind == "function":
            fn = req_dict(t, "function", path)
            fpath = f"{path}.function"
            tools.append(Tool(
                name=req_str(fn, "name", fpath), description=opt_str(fn, "description", fpath),
                parameters=opt_dict(fn, "parameters", fpath) or {}, strict=opt_bool(fn, "strict", fpath),
            ))
        else:  # custom / provider built-in tools: kept verbatim for plugins that understand them
            spec = t.get(kind)
            name = t.get("name") or (spec.get("name") if isinstance(spec, dict) else None) or kind
            desc = spec.get("description") if isinstance(spec, dict) else None
            tools.append(Tool(name=str(name), description=desc if isinstance(desc, str) else None, kind=kind, raw=t))
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
        raise InvalidRequest(f"tool_choice: expected 'auto', 'none', 'required' or an object naming a function, "
                             f"got {v!r}", param="tool_choice")
    if not isinstance(v, dict):
        raise invalid("tool_choice", "a string or an object", v)
    kind = v.get("type")
    if kind in ("function", "custom"):
        spec = req_dict(v, kind, "tool_choice")
        return ToolChoice(mode="tool", name=req_str(spec, "name", f"tool_choice.{kind}"))
    # allowed_tools and future shapes: keep the original for plugins, honour its mode here.
    extra["tool_choice"] = v
    allowed = v.get("allowed_tools")
    mode = allowed.get("mode") if isinstance(allowed, dict) else None
    return ToolChoice(mode="required" if mode == "required" else "auto")


def _stop(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    if isinstance(v, list) and all(isinstance(s, str) for s in v):
        return v
    raise invalid("stop", "a string or an array of strings", v)


# ---- response ---------------------------------------------------------------------------------


def usage_body(u: Usage) -> dict[str, Any]:
    prompt_details: dict[str, int] = {"cached_tokens": u.cache_read_tokens}
    if u.cache_write_tokens:
        prompt_details["cache_write_tokens"] = u.cache_write_tokens
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def render_response(resp: Response, model: str, options: dict[str, Any]) -> bytes:
    text: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for p in resp.content:
        if isinstance(p, TextPart):
            text.append(p.text)
        elif isinstance(p, ToolCallPart):
            calls.append({"id": p.id, "type": "function", "function": {"name": p.name, "arguments": p.arguments}})
        elif isinstance(p, ThinkingPart) and p.text:
            thinking.append(p.text)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(text) if text or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    return encode({
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason(resp.stop_reason)}],
        "usage": usage_body(resp.usage),
    })


def render_models(models: list[tuple[str, int]]) -> bytes:
    return encode({
        "object": "list",
        "data": [{"id": name, "object": "model", "created": created, "owned_by": "flowbase"} for name, created in models],
    })


# ---- stream -----------------------------------------------------------------------------------


class StreamEncoder:
    """Canonical events → ``chat.completion.chunk`` SSE messages. Every chunk shares id, created and
    model, so their JSON prefix is encoded once and each delta costs one small encode."""

    __slots__ = (
        "_head",
        "_id_created_model",
        "_include_usage",
        "_kinds",
        "_started",
        "_tail",
        "_tool_index",
        "_usage",
    )

    def __init__(self, model: str, options: dict[str, Any]) -> None:
        self._include_usage = bool(options.get("include_usage"))
        self._id_created_model = (
            b'{"id":' + encode(new_id("chatcmpl-")) + b',"object":"chat.completion.chunk","created":'
            + str(int(time.time())).encode() + b',"model":' + encode(model)
        )
        self._head = b"data: " + self._id_created_model + b',"choices":[{"index":0,"delta":'
        self._tail = b',"logprobs":null,"finish_reason":null}]' + (b',"usage":null' if self._include_usage else b"") \
            + b"}\n\n"
        self._started = False
        self._kinds: dict[int, str] = {}  # block index → "text" | "thinking" | "tool" | "other"
        self._tool_index: dict[int, int] = {}  # block index → ordinal among tool calls
        self._usage: Usage | None = None  # prompt-side usage sent with StreamStart

    def _chunk(self, delta: dict[str, Any]) -> bytes:
        return self._head + encode(delta) + self._tail

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return self._chunk({"role": "assistant", "content": ""})

    def event(self, ev: StreamEvent) -> bytes:
        if isinstance(ev, BlockDelta):
            kind = self._kinds.get(ev.index)
            if kind == "text" and ev.text:
                return self._chunk({"content": ev.text})
            if kind == "tool" and ev.arguments:
                return self._chunk({"tool_calls": [{"index": self._tool_index[ev.index],
                                                    "function": {"arguments": ev.arguments}}]})
            if kind == "thinking" and ev.text:
                return self._chunk({"reasoning_content": ev.text})
            return b""
        if isinstance(ev, BlockStart):
            return self._start() + self._block_start(ev)
        if isinstance(ev, BlockStop):
            return b""
        if isinstance(ev, StreamStart):
            self._usage = ev.usage
            return self._start()
        if isinstance(ev, StreamEnd):
            return self._start() + self._finish(ev)
        return b""

    def _block_start(self, ev: BlockStart) -> bytes:
        part = ev.part
        if isinstance(part, TextPart):
            self._kinds[ev.index] = "text"
            return self._chunk({"content": part.text}) if part.text else b""
        if isinstance(part, ToolCallPart):
            self._kinds[ev.index] = "tool"
            ordinal = self._tool_index[ev.index] = len(self._tool_index)
            return self._chunk({"tool_calls": [{"index": ordinal, "id": part.id, "type": "function",
                                                "function": {"name": part.name, "arguments": part.arguments}}]})
        if isinstance(part, ThinkingPart):
            self._kinds[ev.index] = "thinking"
            return self._chunk({"reasoning_content": part.text}) if part.text else b""
        self._kinds[ev.index] = "other"  # images / tool results have no chat stream form
        return b""

    def _finish(self, ev: StreamEnd) -> bytes:
        out = (self._head + b"{}" + b',"logprobs":null,"finish_reason":' + encode(finish_reason(ev.stop_reason))
               + b"}]" + (b',"usage":null' if self._include_usage else b"") + b"}\n\n")
        if self._include_usage:
            merged = merged_usage(self._usage, ev.usage)
            out += (b"data: " + self._id_created_model + b',"choices":[],"usage":' + encode(usage_body(merged))
                    + b"}\n\n")
        return out

    def error(self, err: FlowbaseError) -> bytes:
        return sse_data({"error": openai_error(err)})

    def end(self) -> bytes:
        return b"data: [DONE]\n\n"


# ---- errors -----------------------------------------------------------------------------------

_ERROR_TYPES: dict[str, str] = {
    "invalid_request": "invalid_request_error", "authentication": "authentication_error",
    "permission": "permission_error", "not_found": "invalid_request_error", "rate_limit": "rate_limit_error",
    "api_error": "server_error", "overloaded": "server_error", "timeout": "server_error",
}
_DEFAULT_CODES: dict[str, str] = {"rate_limit": "rate_limit_exceeded", "timeout": "timeout", "overloaded": "overloaded"}


def openai_error(err: FlowbaseError) -> dict[str, Any]:
    """The ``error`` object of OpenAI's error body: message, type, param, code."""
    return {
        "message": err.message,
        "type": _ERROR_TYPES.get(err.kind, "server_error"),
        "param": err.param,
        "code": err.code or _DEFAULT_CODES.get(err.kind),
    }


def error_body(err: FlowbaseError) -> tuple[int, bytes, dict[str, str]]:
    return err.status, encode({"error": openai_error(err)}), retry_after_headers(err)


# ---- sessions ---------------------------------------------------------------------------------

_SESSION_HEADERS = ("x-flowbase-session", "session-id", "x-session-id", "session_id")


def session_id(headers: Mapping[str, str], req: Request, options: dict[str, Any]) -> str | None:
    """The client's conversation id: a session header, else ``metadata.session_id``, else ``user``.
    ``headers`` must be case-insensitive (Starlette's are) or use lower-case names."""
    for name in _SESSION_HEADERS:
        value = headers.get(name)
        if value:
            return value
    meta = req.metadata.get("session_id")
    if isinstance(meta, str) and meta:
        return meta
    return req.user or None
