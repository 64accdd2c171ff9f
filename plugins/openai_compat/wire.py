"""Canonical ⇄ OpenAI Chat Completions wire format (pure functions, no I/O).

- ``build_body(req, config, stream)`` → the JSON body (a plain dict) sent to ``/chat/completions``.
  The node config's ``params`` are defaults; what the client's request sets wins; ``config.model``
  is always the model sent. Only ``kind == "function"`` tools are sent (a provider's built-in tools
  mean nothing to another server); ``tool_choice``/``parallel_tool_calls`` only go with tools.
- ``parse_completion(raw, fallback_model)`` → canonical ``Response`` from a non-streamed answer.
- ``to_usage(wire)`` maps OpenAI usage (``prompt_tokens`` already counts cached tokens, which is
  the canonical convention) incl. ``prompt_tokens_details.cached_tokens`` and
  ``completion_tokens_details.reasoning_tokens``; DeepSeek's ``prompt_cache_hit_tokens`` too.
- ``error_message(body, status)`` → the upstream's own message from its error JSON.

Decoders are msgspec Structs built once at import: this module is on the benchmark hot path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from plugin_sdk.errors import UpstreamError
from plugin_sdk.types import (
    ImagePart,
    Message,
    Part,
    Request,
    Response,
    StopReason,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    Usage,
)
from plugin_sdk.upstream import raw_error_message

# Keys the node sets itself; a client's ``extra`` must not override them.
RESERVED = frozenset({"model", "messages", "stream", "stream_options", "tools", "tool_choice", "n"})
# Chat Completions parameters that mean the same whatever protocol the client spoke; other extras
# (Anthropic's context_management, Responses' truncation …) reach the upstream only from a Chat
# Completions client, since an OpenAI endpoint rejects parameters it does not know.
PORTABLE = frozenset({"seed", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs",
                      "prompt_cache_key", "safety_identifier", "verbosity"})

FINISH: dict[str, StopReason] = {
    "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
    "content_filter": "content_filter",
}

# Thinking budgets (tokens) at or below which a canonical budget maps to an OpenAI effort level.
EFFORT_BY_BUDGET = ((2048, "low"), (8192, "medium"))


# ---- decoding ------------------------------------------------------------------------------


class PromptDetails(msgspec.Struct):
    cached_tokens: int | None = None


class CompletionDetails(msgspec.Struct):
    reasoning_tokens: int | None = None


class WireUsage(msgspec.Struct):
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0
    prompt_tokens_details: PromptDetails | None = None
    completion_tokens_details: CompletionDetails | None = None
    prompt_cache_hit_tokens: int | None = None


class FunctionCall(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class WireToolCall(msgspec.Struct):
    id: str | None = None
    function: FunctionCall | None = None
    # Present on stream deltas; some servers omit it (then the position in the list counts).
    index: int | None = None


class WireMessage(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    refusal: str | None = None
    tool_calls: list[WireToolCall] | None = None


class Choice(msgspec.Struct):
    message: WireMessage | None = None
    delta: WireMessage | None = None
    finish_reason: str | None = None


class WireError(msgspec.Struct):
    message: str | None = None
    code: int | str | None = None
    type: str | None = None


class Completion(msgspec.Struct):
    """A non-streamed answer or one stream chunk (same envelope)."""

    id: str = ""
    model: str = ""
    choices: list[Choice] = []
    usage: WireUsage | None = None
    error: WireError | None = None


decode_completion = msgspec.json.Decoder(Completion).decode


class ErrorBody(msgspec.Struct):
    error: WireError | str | None = None
    message: str | None = None
    detail: str | None = None


_decode_error = msgspec.json.Decoder(ErrorBody).decode


def to_usage(u: WireUsage | None) -> Usage:
    if u is None:
        return Usage()
    cached = 0
    if u.prompt_tokens_details is not None and u.prompt_tokens_details.cached_tokens:
        cached = u.prompt_tokens_details.cached_tokens
    elif u.prompt_cache_hit_tokens:
        cached = u.prompt_cache_hit_tokens
    reasoning = 0
    if u.completion_tokens_details is not None and u.completion_tokens_details.reasoning_tokens:
        reasoning = u.completion_tokens_details.reasoning_tokens
    return Usage(input_tokens=u.prompt_tokens or 0, output_tokens=u.completion_tokens or 0,
                 cache_read_tokens=cached, reasoning_tokens=reasoning)


def stop_reason(finish: str | None) -> StopReason:
    return FINISH.get(finish or "stop", "end_turn")


def parse_completion(raw: bytes, fallback_model: str) -> Response:
    try:
        c = decode_completion(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise UpstreamError(f"upstream answered with an unreadable completion: {exc}", status=502) from exc
    if c.error is not None:
        raise UpstreamError(c.error.message or "upstream reported an error", status=502)
    content: list[Part] = []
    finish: StopReason = "end_turn"
    if c.choices:
        choice = c.choices[0]
        msg = choice.message or WireMessage()
        finish = stop_reason(choice.finish_reason)
        thinking = msg.reasoning_content or msg.reasoning
        if thinking:
            content.append(ThinkingPart(text=thinking))
        if msg.content:
            content.append(TextPart(msg.content))
        elif msg.refusal:
            content.append(TextPart(msg.refusal))
            finish = "refusal"
        for call in msg.tool_calls or ():
            fn = call.function or FunctionCall()
            content.append(ToolCallPart(id=call.id or "", name=fn.name or "", arguments=fn.arguments or ""))
    return Response(id=c.id, model=c.model or fallback_model, content=content, stop_reason=finish,
                    usage=to_usage(c.usage))


def error_message(body: bytes, status: int) -> tuple[str, str | None]:
    """(message, code) from an upstream error body: OpenAI's ``{"error": {...}}``, the
    ``{"message"}``/``{"detail"}`` shapes of compatible servers, or the text itself."""
    try:
        e = _decode_error(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return raw_error_message(body, status), None
    if isinstance(e.error, WireError) and e.error.message:
        code = e.error.code if isinstance(e.error.code, str) else e.error.type
        return e.error.message, code
    if isinstance(e.error, str) and e.error:
        return e.error, None
    return (e.message or e.detail or f"upstream answered HTTP {status}"), None


# ---- encoding ------------------------------------------------------------------------------


def _image(p: ImagePart) -> dict[str, Any]:
    url = p.url if p.url is not None else f"data:{p.media_type or 'image/png'};base64,{p.data or ''}"
    img: dict[str, Any] = {"url": url}
    if p.detail:
        img["detail"] = p.detail
    return {"type": "image_url", "image_url": img}


def _user_content(parts: Sequence[Part]) -> str | list[dict[str, Any]]:
    if len(parts) == 1 and isinstance(parts[0], TextPart):
        return parts[0].text  # the common case; every compatible server understands a string
    out: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, TextPart):
            out.append({"type": "text", "text": p.text})
        elif isinstance(p, ImagePart):
            out.append(_image(p))
    return out


def _tool_messages(results: list[ToolResultPart], out: list[dict[str, Any]]) -> None:
    # Chat Completions tool messages carry text only; images a tool returned follow as a user message.
    images: list[Part] = []
    for r in results:
        text = "".join(c.text for c in r.content if isinstance(c, TextPart))
        images.extend(c for c in r.content if isinstance(c, ImagePart))
        out.append({"role": "tool", "tool_call_id": r.tool_call_id, "content": text})
    if images:
        out.append({"role": "user", "content": _user_content(images)})


def _message(m: Message, developer_role: str, out: list[dict[str, Any]]) -> None:
    role = m.role
    if role == "tool":
        _tool_messages([p for p in m.content if isinstance(p, ToolResultPart)], out)
        return
    if role == "assistant":
        text = "".join(p.text for p in m.content if isinstance(p, TextPart))
        calls = [{"id": p.id, "type": "function", "function": {"name": p.name, "arguments": p.arguments or "{}"}}
                 for p in m.content if isinstance(p, ToolCallPart)]
        msg: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            msg["tool_calls"] = calls
    else:
        results = [p for p in m.content if isinstance(p, ToolResultPart)]
        if results:  # tolerate tool results inside a user message: they become tool messages first
            _tool_messages(results, out)
        parts = [p for p in m.content if isinstance(p, (TextPart, ImagePart))]
        if results and not parts:
            return
        if role in ("system", "developer"):
            text = "\n\n".join(p.text for p in parts if isinstance(p, TextPart))
            msg = {"role": developer_role if role == "developer" else "system", "content": text}
        else:
            msg = {"role": "user", "content": _user_content(parts)}
    if m.name:
        msg["name"] = m.name
    out.append(msg)


def _effort(req: Request) -> str | None:
    r = req.reasoning
    if r is None or not r.enabled:
        return None
    if r.effort:
        return r.effort
    if r.budget_tokens is not None:
        for limit, effort in EFFORT_BY_BUDGET:
            if r.budget_tokens <= limit:
                return effort
        return "high"
    return None


def build_body(req: Request, config: dict[str, Any], stream: bool) -> dict[str, Any]:
    max_field = config.get("max_tokens_field", "max_tokens")
    params = config.get("params")
    body: dict[str, Any] = {k: v for k, v in params.items() if k not in RESERVED} if params else {}
    if max_field != "max_tokens" and "max_tokens" in body:
        body[max_field] = body.pop("max_tokens")
    developer_role = config.get("developer_role", "system")
    messages: list[dict[str, Any]] = []
    for m in req.messages:
        _message(m, developer_role, messages)
    body["model"] = config["model"]
    body["messages"] = messages
    tools = [t for t in req.tools if t.kind == "function"]
    if tools:
        defs = []
        for t in tools:
            fn: dict[str, Any] = {"name": t.name, "parameters": t.parameters or {"type": "object", "properties": {}}}
            if t.description:
                fn["description"] = t.description
            if t.strict is not None:
                fn["strict"] = t.strict
            defs.append({"type": "function", "function": fn})
        body["tools"] = defs
        tc = req.tool_choice
        if tc is not None:
            body["tool_choice"] = ({"type": "function", "function": {"name": tc.name}} if tc.mode == "tool"
                                   else tc.mode)
        if req.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.max_tokens is not None:
        body[max_field] = req.max_tokens
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop:
        body["stop"] = req.stop
    if req.response_format is not None:
        body["response_format"] = req.response_format
    effort = _effort(req)
    if effort is not None:
        body["reasoning_effort"] = effort
    if req.user is not None:
        body["user"] = req.user
    same_wire = req.origin in (None, "chat")
    for k, v in req.extra.items():
        if k not in RESERVED and (same_wire or k in PORTABLE):
            body[k] = v
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body
