"""Canonical ⇄ Anthropic Messages wire format (pure functions, no I/O).

``build_body(req, config, stream)`` → the JSON body for ``/v1/messages``:
- system and developer messages (wherever they are) → top-level ``system`` blocks, in order,
  keeping ``cache_control``;
- tool results (role ``tool``) → ``tool_result`` blocks in a user message; consecutive user/tool
  messages merge into one user message with its ``tool_result`` blocks first (the API requires
  them to lead), consecutive assistant messages merge too;
- images → base64 or url sources (``data:`` URLs are unpacked into base64);
- thinking parts → ``thinking`` blocks with their signature byte-exact, or ``redacted_thinking``;
  unsigned thinking is dropped (the API rejects a signature it did not issue);
- tool calls → ``tool_use`` blocks (arguments JSON decoded into ``input``); ``function`` tools → ``input_schema``; versioned Anthropic built-in
  tools (``web_search_20250305`` …) pass through from ``raw``, other providers' built-ins drop;
- tool_choice auto/required/tool/none → auto/any/tool/none, ``parallel_tool_calls: false`` →
  ``disable_parallel_tool_use``; ``Reasoning`` → ``thinking: {type: enabled, budget_tokens}``
  (effort low/medium/high → a budget when only effort is given; a client's max_tokens caps the
  budget, a defaulted max_tokens grows by the budget);
- a JSON-Schema ``response_format`` (Chat's, or Responses' ``text.format`` / Messages'
  ``output_config.format`` as the protocols normalise them) → ``output_config.format`` (structured
  outputs); ``json_object`` has no Anthropic equivalent and is not sent (the model is unconstrained);
  other ``output_config`` keys an Anthropic client sent pass through;
- ``max_tokens`` is required: the request's, else ``params.max_tokens``, else ``config.max_tokens``,
  else 4096. ``config.params`` are defaults the request overrides.
``parse_message(raw)`` → canonical ``Response``; usage follows the canonical convention
(``input_tokens`` = input + cache reads + cache writes). ``error_message(body)`` reads the
``{"type": "error", "error": {"type", "message"}}`` shape.
"""

from __future__ import annotations

import re
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

DEFAULT_MAX_TOKENS = 4096
# Thinking budgets (tokens) for an OpenAI-style effort when the client gave no budget.
BUDGET_BY_EFFORT = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
# Anthropic's smallest accepted thinking budget (tokens).
MIN_BUDGET = 1024
# Keys of a client's ``extra`` the Messages API accepts (it rejects unknown fields).
EXTRA_KEYS = frozenset({"top_k", "service_tier", "container", "mcp_servers", "context_management", "thinking"})
# Anthropic's built-in tool types carry a date version, e.g. ``bash_20250124``.
_VERSIONED_TOOL = re.compile(r"_\d{8}$")
_DATA_URL = re.compile(r"^data:([^;,]+);base64,(.*)$", re.DOTALL)

STOP: dict[str, StopReason] = {
    "end_turn": "end_turn", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence", "tool_use": "tool_use",
    "pause_turn": "pause_turn", "refusal": "refusal", "model_context_window_exceeded": "max_tokens",
}

# Anthropic error types → the HTTP status they come with (for errors reported inside a stream).
STATUS_BY_ERROR_TYPE = {
    "invalid_request_error": 400, "authentication_error": 401, "permission_error": 403, "not_found_error": 404,
    "request_too_large": 413, "rate_limit_error": 429, "api_error": 500, "timeout_error": 504,
    "overloaded_error": 529,
}


# ---- decoding ------------------------------------------------------------------------------


class WireUsage(msgspec.Struct):
    input_tokens: int | None = 0
    output_tokens: int | None = 0
    cache_creation_input_tokens: int | None = 0
    cache_read_input_tokens: int | None = 0


class Block(msgspec.Struct):
    type: str
    text: str | None = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None
    id: str | None = None
    name: str | None = None
    # Raw JSON bytes of a tool_use input, so the arguments reach the client exactly as generated.
    input: msgspec.Raw = msgspec.Raw(b"{}")


class WireMessage(msgspec.Struct):
    id: str = ""
    model: str = ""
    content: list[Block] = []
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: WireUsage | None = None


class WireError(msgspec.Struct):
    type: str = "api_error"
    message: str = ""


class ErrorBody(msgspec.Struct):
    error: WireError | None = None
    message: str | None = None


_decode_message = msgspec.json.Decoder(WireMessage).decode
_decode_error = msgspec.json.Decoder(ErrorBody).decode


def to_usage(u: WireUsage | None) -> Usage:
    if u is None:
        return Usage()
    read = u.cache_read_input_tokens or 0
    write = u.cache_creation_input_tokens or 0
    return Usage(input_tokens=(u.input_tokens or 0) + read + write, output_tokens=u.output_tokens or 0,
                 cache_read_tokens=read, cache_write_tokens=write)


def to_part(b: Block) -> Part | None:
    """The canonical part for a content block (``None`` for block types nothing downstream reads)."""
    if b.type == "text":
        return TextPart(b.text or "")
    if b.type == "thinking":
        return ThinkingPart(text=b.thinking or "", signature=b.signature)
    if b.type == "redacted_thinking":
        return ThinkingPart(redacted_data=b.data or "")
    if b.type == "tool_use":
        args = bytes(b.input).decode() or "{}"
        return ToolCallPart(id=b.id or "", name=b.name or "", arguments=args)
    return None


def parse_message(raw: bytes, fallback_model: str) -> Response:
    try:
        m = _decode_message(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise UpstreamError(f"upstream answered with an unreadable message: {exc}", status=502) from exc
    content = [p for p in map(to_part, m.content) if p is not None]
    return Response(id=m.id, model=m.model or fallback_model, content=content,
                    stop_reason=STOP.get(m.stop_reason or "end_turn", "end_turn"), stop_sequence=m.stop_sequence,
                    usage=to_usage(m.usage))


def error_message(body: bytes, status: int) -> tuple[str, str | None]:
    """(message, Anthropic error type) from an error body, or its text when it is not JSON."""
    try:
        e = _decode_error(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return raw_error_message(body, status), None
    if e.error is not None and e.error.message:
        return e.error.message, e.error.type
    return (e.message or f"upstream answered HTTP {status}"), None


# ---- encoding ------------------------------------------------------------------------------


def _tool_input(arguments: str) -> Any:
    # The API takes a JSON object; arguments a model produced that are not one become {}.
    if not arguments.strip():
        return {}
    try:
        value = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _image(p: ImagePart) -> dict[str, Any]:
    if p.data is not None:
        source: dict[str, Any] = {"type": "base64", "media_type": p.media_type or "image/png", "data": p.data}
    else:
        m = _DATA_URL.match(p.url or "")
        source = ({"type": "base64", "media_type": m.group(1), "data": m.group(2)} if m
                  else {"type": "url", "url": p.url or ""})
    return {"type": "image", "source": source}


def _text(p: TextPart) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": p.text}
    if p.cache_control is not None:
        block["cache_control"] = p.cache_control
    return block


def _tool_result(r: ToolResultPart) -> dict[str, Any]:
    content = [_text(c) if isinstance(c, TextPart) else _image(c) for c in r.content
               if not isinstance(c, TextPart) or c.text]
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": r.tool_call_id, "content": content}
    if r.is_error:
        block["is_error"] = True
    return block


def _blocks(m: Message) -> tuple[list[Any], list[Any]]:
    """(tool_result blocks, other blocks) of one message, in the Messages API shape."""
    results: list[Any] = []
    blocks: list[Any] = []
    for p in m.content:
        if isinstance(p, TextPart):
            if p.text:  # the API rejects empty text blocks
                blocks.append(_text(p))
        elif isinstance(p, ToolResultPart):
            results.append(_tool_result(p))
        elif isinstance(p, ToolCallPart):
            blocks.append({"type": "tool_use", "id": p.id, "name": p.name, "input": _tool_input(p.arguments)})
        elif isinstance(p, ThinkingPart):
            if p.redacted_data is not None:
                blocks.append({"type": "redacted_thinking", "data": p.redacted_data})
            elif p.signature:
                blocks.append({"type": "thinking", "thinking": p.text, "signature": p.signature})
            # Unsigned thinking (a chat client's reasoning_content, another provider's reasoning) is
            # dropped: the API rejects a thinking block whose signature it did not issue.
        elif isinstance(p, ImagePart):
            blocks.append(_image(p))
    return results, blocks


def _messages(req: Request) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    # Per merged message: its tool_result blocks and other blocks, kept apart until the end.
    pending: list[tuple[str, list[Any], list[Any]]] = []
    for m in req.messages:
        if m.role in ("system", "developer"):
            system.extend(_text(p) for p in m.content if isinstance(p, TextPart) and p.text)
            continue
        role = "assistant" if m.role == "assistant" else "user"
        results, blocks = _blocks(m)
        if pending and pending[-1][0] == role:
            pending[-1][1].extend(results)
            pending[-1][2].extend(blocks)
        else:
            pending.append((role, results, blocks))
    for role, results, blocks in pending:
        content = results + blocks
        if content:
            out.append({"role": role, "content": content})
    return system, out


def _tools(req: Request) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for t in req.tools:
        if t.kind == "function":
            d: dict[str, Any] = {"name": t.name, "input_schema": t.parameters or {"type": "object", "properties": {}}}
            if t.description:
                d["description"] = t.description
            if t.raw is not None and "cache_control" in t.raw:
                d["cache_control"] = t.raw["cache_control"]
            out.append(d)
        elif t.raw is not None and _VERSIONED_TOOL.search(str(t.raw.get("type", ""))):
            out.append(t.raw)
    return out


def _thinking(req: Request, max_tokens: int, client_max: bool) -> tuple[dict[str, Any] | None, int]:
    """(thinking block, max_tokens). The API requires max_tokens > budget_tokens: a max_tokens the
    client chose caps the budget; a default one grows to leave the answer its usual room."""
    r = req.reasoning
    if r is None or not r.enabled:
        return None, max_tokens
    budget = r.budget_tokens or BUDGET_BY_EFFORT.get(r.effort or "", 0)
    if not budget:
        return None, max_tokens
    if not client_max:
        return {"type": "enabled", "budget_tokens": budget}, max(max_tokens, budget + max_tokens)
    budget = min(budget, max_tokens - 1)
    if budget < MIN_BUDGET:
        return None, max_tokens
    return {"type": "enabled", "budget_tokens": budget}, max_tokens


def build_body(req: Request, config: dict[str, Any], stream: bool) -> dict[str, Any]:
    params = config.get("params") or {}
    body: dict[str, Any] = {k: v for k, v in params.items() if k not in ("model", "messages", "system", "stream")}
    max_tokens = req.max_tokens or params.get("max_tokens") or config.get("max_tokens") or DEFAULT_MAX_TOKENS
    thinking, max_tokens = _thinking(req, max_tokens, req.max_tokens is not None)
    system, messages = _messages(req)
    body["model"] = config["model"]
    body["max_tokens"] = max_tokens
    if system:
        body["system"] = system
    body["messages"] = messages
    tools = _tools(req)
    if tools:
        body["tools"] = tools
        tc = req.tool_choice
        choice: dict[str, Any] | None = None
        if tc is not None:
            choice = {"type": {"required": "any"}.get(tc.mode, tc.mode)}
            if tc.mode == "tool":
                choice["name"] = tc.name
        if req.parallel_tool_calls is False and (choice is None or choice["type"] != "none"):
            choice = choice or {"type": "auto"}
            choice["disable_parallel_tool_use"] = True
        if choice is not None:
            body["tool_choice"] = choice
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop:
        body["stop_sequences"] = req.stop
    if thinking is not None:
        body["thinking"] = thinking
    user_id = req.metadata.get("user_id") or req.user
    if user_id:
        body["metadata"] = {"user_id": user_id}
    # Anthropic-only parameters keep their meaning only when an Anthropic client sent them (an
    # OpenAI client's service_tier "flex" is not Anthropic's); top_k means the same everywhere.
    same_wire = req.origin in (None, "messages")
    for k, v in req.extra.items():
        if k in EXTRA_KEYS and (same_wire or k == "top_k") and not (k == "thinking" and thinking is not None):
            body[k] = v
    output = _output_config(req, same_wire)
    if output:
        defaults = body.get("output_config")
        body["output_config"] = {**defaults, **output} if isinstance(defaults, dict) else output
    if stream:
        body["stream"] = True
    return body


def _output_config(req: Request, same_wire: bool) -> dict[str, Any]:
    sent = req.extra.get("output_config")
    # effort and format arrive as Request.reasoning and Request.response_format; the rest as sent.
    out = {k: v for k, v in sent.items() if k not in ("effort", "format")} if same_wire and isinstance(
        sent, dict) else {}
    rf = req.response_format
    if rf is not None and rf.get("type") == "json_schema":
        spec = rf.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        out["format"] = {"type": "json_schema", "schema": schema if isinstance(schema, dict) else {}}
    return out
