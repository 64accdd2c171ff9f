"""A fake LLM provider for the test suite: a real HTTP server that speaks the providers' wire formats.

    python -m tests.fake_upstream --port 0        # prints "PORT <n>" once it listens on 127.0.0.1

Routes: ``POST /v1/chat/completions`` (also ``/chat/completions``) — OpenAI Chat Completions;
``POST /v1/messages`` — Anthropic Messages; both streamed (real SSE, one chunk per word) or not, with
realistic usage. ``GET /v1/models``. ``GET /_requests`` lists every request received (method, path,
headers exactly as received — so tests can check the API key reached the upstream —, body, the status
answered, ``disconnected`` when the client went away mid-answer, and ``peer``: the client's port, which
shows connection reuse); ``GET|POST /_requests/clear``
forgets them (and the prompt cache).

Behaviour is scripted by the model name (``+``-joined, e.g. ``thinking+tool-call``) and/or magic
phrases ``[[name]]`` in the last user message:

- default: a deterministic echo, ``expected_reply(model, text)``; after a tool result,
  ``expected_tool_reply(model, tool_name, result_text)``;
- ``tool-call``: calls the first offered tool with ``plausible_args(schema, text)`` (Anthropic also
  writes ``Let me call <name>.`` first); ``parallel-tools``: calls the first two tools (or the
  first one twice); after a tool result it answers with the tool reply above;
- ``thinking``: Anthropic thinking block signed with ``signature_for(thinking)`` (OpenAI:
  ``reasoning_content`` + ``reasoning_tokens``); ``redacted-thinking``: a redacted_thinking block;
  a thinking/redacted block sent back with a signature/data the server did not issue is a 400, as
  the real API does;
- ``cached``: usage reports cache hits (OpenAI ``cached_tokens`` = half the prompt; Anthropic cache
  read = half, cache write = a quarter). Anthropic requests with ``cache_control`` breakpoints are
  also cached for real: the first time a prefix is written, later requests read it;
- ``error-<status>``: that status with the provider's real error JSON (429 with ``retry-after: 20``);
- ``slow`` / ``slow-<ms>``: waits that long (default 100 ms) before answering and between chunks;
  ``hang``: never answers; ``words-<n>``: answers ``n`` filler words;
- ``stream-error``: a mid-stream error event after two chunks; ``drop``: the connection is cut;
  ``ignore-stream``: answers one JSON body even when asked to stream (as some servers do).
Requests are checked like the real APIs check them (e.g. Anthropic needs ``max_tokens`` and
``anthropic-version``; every tool call needs its tool result next) and answered 400 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import itertools
import re
import time
from typing import Any

import msgspec
from aiohttp import web

_MAGIC = re.compile(r"\[\[([a-z0-9-]+)\]\]")
_WORDS = re.compile(r"\S+\s*")
_json = msgspec.json.encode
_ids = itertools.count(1)
RETRY_AFTER = "20"


# ---- scripting -----------------------------------------------------------------------------


class Script(msgspec.Struct):
    tool_call: bool = False
    parallel: bool = False
    thinking: bool = False
    redacted: bool = False
    cached: bool = False
    error: int | None = None
    slow_ms: int = 0
    hang: bool = False
    words: int | None = None
    stream_error: bool = False
    drop: bool = False
    ignore_stream: bool = False


_FLAGS = {"tool-call": ("tool_call",), "tool-calls": ("tool_call",), "parallel-tools": ("tool_call", "parallel"),
          "thinking": ("thinking",), "redacted-thinking": ("redacted",), "cached": ("cached",), "hang": ("hang",),
          "stream-error": ("stream_error",), "drop": ("drop",), "ignore-stream": ("ignore_stream",)}
_NUMBERED = re.compile(r"(slow|words|error)-(\d+)")
_NUMBER_FIELD = {"slow": "slow_ms", "words": "words", "error": "error"}


def script_for(model: str, text: str) -> Script:
    s = Script()
    for name in [*model.split("+"), *_MAGIC.findall(text)]:
        if name in _FLAGS:
            for attr in _FLAGS[name]:
                setattr(s, attr, True)
        elif name == "slow":
            s.slow_ms = 100
        elif m := _NUMBERED.fullmatch(name):
            setattr(s, _NUMBER_FIELD[m.group(1)], int(m.group(2)))
    return s


def expected_reply(model: str, text: str, images: int = 0) -> str:
    """The default answer: the model name and the last user text, echoed."""
    reply = f"[{model}] {text}" if text else f"[{model}] (no text)"
    if images:
        reply += f" (+{images} image{'s' if images > 1 else ''})"
    return reply


def expected_tool_reply(model: str, name: str, result: str) -> str:
    return f"[{model}] tool {name} returned: {result}"


def filler(model: str, n: int) -> str:
    return f"[{model}] " + " ".join(f"w{i}" for i in range(1, n + 1))


def thinking_for(text: str) -> str:
    return f"The user wrote {len(text)} characters. I will echo them back."


def signature_for(thinking: str) -> str:
    # Long, with '+', '/' and '=' in it, like real signatures: any re-encoding would show.
    digest = hashlib.sha256(b"fake-signature:" + thinking.encode()).digest()
    return base64.b64encode(digest * 3 + b"\x01").decode()


def redacted_data_for(text: str) -> str:
    return base64.b64encode(b"fake-redacted:" + hashlib.sha256(text.encode()).digest()).decode()


def _redacted_ok(data: str) -> bool:
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        return False
    return raw.startswith(b"fake-redacted:") and len(raw) == 14 + 32


def _value(name: str, p: dict[str, Any], text: str) -> Any:
    if p.get("enum"):
        return p["enum"][0]
    t = p.get("type", "string")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "string")
    lname = name.lower()
    if t == "string":
        if "path" in lname or "file" in lname:
            return "/tmp/fake-upstream.txt"
        if "cmd" in lname or "command" in lname:
            return "echo hello"
        if "url" in lname:
            return "https://example.com/"
        return text[:100] or "example"
    if t == "integer":
        return 1
    if t == "number":
        return 1.5
    if t == "boolean":
        return True
    if t == "array":
        items = p.get("items") or {}
        if "command" in lname or "cmd" in lname:
            return ["echo", "hello"]
        return [_value(name, items, text)] if items else []
    if t == "object":
        return plausible_args(p, text)
    return None


def plausible_args(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """Arguments for a tool call: a plausible value for each required property (all if none is)."""
    props: dict[str, Any] = schema.get("properties") or {}
    names = schema.get("required") or list(props)
    return {n: _value(n, props.get(n) or {}, text) for n in names}


def tokens(n_chars: int) -> int:
    return max(1, (n_chars + 3) // 4)


def _cut(reply: str, stops: list[str]) -> tuple[str, str | None]:
    best: tuple[int, str] | None = None
    for s in stops:
        i = reply.find(s) if s else -1
        if i >= 0 and (best is None or i < best[0]):
            best = (i, s)
    return (reply, None) if best is None else (reply[:best[0]], best[1])


class Answer(msgspec.Struct):
    """What to answer, protocol-neutral."""

    text: str = ""
    thinking: str | None = None
    redacted: str | None = None
    calls: list[tuple[str, str, str]] = []  # (id, name, arguments JSON)
    stop: str = "end_turn"  # end_turn | max_tokens | stop_sequence | tool_use
    stop_sequence: str | None = None


def _pieces(text: str) -> list[str]:
    return _WORDS.findall(text) or ([text] if text else [])


def plan(s: Script, model: str, text: str, images: int, tools: list[tuple[str, dict[str, Any]]],
         tool_result: tuple[str, str] | None, max_tokens: int | None, stops: list[str], call_prefix: str) -> Answer:
    a = Answer()
    if s.thinking:
        a.thinking = thinking_for(text)
    if s.redacted:
        a.redacted = redacted_data_for(text)
    if tool_result is not None:
        a.text = expected_tool_reply(model, *tool_result)
    elif s.tool_call and tools:
        chosen = (tools[:2] if len(tools) > 1 else tools * 2) if s.parallel else tools[:1]
        a.calls = [(f"{call_prefix}{next(_ids):024d}", name, _json(plausible_args(schema, text)).decode())
                   for name, schema in chosen]
        a.stop = "tool_use"
        return a
    elif s.words is not None:
        a.text = filler(model, s.words)
    else:
        a.text = expected_reply(model, text, images)
    a.text, a.stop_sequence = _cut(a.text, stops)
    if a.stop_sequence is not None:
        a.stop = "stop_sequence"
    pieces = _pieces(a.text)
    if max_tokens is not None and len(pieces) > max_tokens:
        a.text = "".join(pieces[:max_tokens])
        a.stop = "max_tokens"
    return a


def output_tokens(a: Answer) -> int:
    n = len(_pieces(a.text))
    n += sum(tokens(len(args)) + 3 for _, _, args in a.calls)
    return n + (tokens(len(a.thinking)) if a.thinking else 0)


# ---- recording -----------------------------------------------------------------------------


class State:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.prompt_cache: set[str] = set()


STATE = web.AppKey("state", State)


async def _record(request: web.Request) -> tuple[dict[str, Any], Any]:
    raw = await request.read()
    try:
        body: Any = msgspec.json.decode(raw) if raw else None
    except msgspec.DecodeError:
        body = None
    peer = request.transport.get_extra_info("peername") if request.transport else None
    rec: dict[str, Any] = {"method": request.method, "path": request.path, "query": request.query_string,
                           "headers": dict(request.headers), "body": body, "status": None, "disconnected": False,
                           "peer": peer[1] if peer else None}
    if body is None and raw:
        rec["raw"] = raw.decode("utf-8", "replace")
    request.app[STATE].requests.append(rec)
    return rec, body


async def list_requests(request: web.Request) -> web.Response:
    return web.Response(body=_json(request.app[STATE].requests), content_type="application/json")


async def clear_requests(request: web.Request) -> web.Response:
    st = request.app[STATE]
    st.requests.clear()
    st.prompt_cache.clear()
    return web.Response(body=b'{"cleared": true}', content_type="application/json")


async def models(request: web.Request) -> web.Response:
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in ("fake-small", "fake-large")]
    return web.Response(body=_json({"object": "list", "data": data}), content_type="application/json")


async def _pace(s: Script) -> None:
    if s.slow_ms:
        await asyncio.sleep(s.slow_ms / 1000)


async def _hang(request: web.Request) -> None:
    # Handler cancellation (enabled in serve) ends this when the client disconnects.
    await asyncio.Event().wait()


def _error(rec: dict[str, Any], status: int, body: dict[str, Any], retry_after: str | None = None) -> web.Response:
    rec["status"] = status
    headers = {"retry-after": retry_after} if retry_after else {}
    return web.Response(status=status, body=_json(body), content_type="application/json", headers=headers)


async def _sse_start(request: web.Request, rec: dict[str, Any]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    rec["status"] = 200
    await resp.prepare(request)
    return resp


# ---- OpenAI Chat Completions ---------------------------------------------------------------

OPENAI_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request: scripted error-400 from the fake upstream.", "invalid_request_error", None),
    401: ("Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
          "invalid_request_error", "invalid_api_key"),
    404: ("The model does not exist or you do not have access to it.", "invalid_request_error", "model_not_found"),
    429: ("Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.",
          "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    503: ("The engine is currently overloaded, please try again later", "server_error", None),
}


def openai_error(status: int, message: str | None = None, param: str | None = None) -> dict[str, Any]:
    default = (f"Scripted error {status} from the fake upstream.",
               "server_error" if status >= 500 else "invalid_request_error", None)
    msg, typ, code = OPENAI_ERRORS.get(status, default)
    return {"error": {"message": message or msg, "type": typ, "param": param, "code": code}}


def _oa_text(content: Any) -> tuple[str, int]:
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        return "", 0
    text = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return text, sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image_url")


def _unanswered(ids: set[str]) -> tuple[str, str]:
    return (("An assistant message with 'tool_calls' must be followed by tool messages responding to each "
            f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(sorted(ids))}"),
            "messages")


def _openai_invalid(body: Any) -> tuple[str, str | None] | None:
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request.", None
    if not body.get("model"):
        return "you must provide a model parameter", "model"
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return "Missing required parameter: 'messages'.", "messages"
    for i, t in enumerate(body.get("tools") or []):
        if not isinstance(t, dict) or t.get("type") != "function" or not (t.get("function") or {}).get("name"):
            return f"Missing required parameter: 'tools[{i}].function.name'.", f"tools[{i}]"
    if "tool_choice" in body and not body.get("tools"):
        return ("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
                "tool_choice")
    if "stream_options" in body and not body.get("stream"):
        return "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options"
    issued: set[str] = set()
    pending: set[str] = set()
    for i, m in enumerate(msgs):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("system", "developer", "user", "assistant", "tool"):
            return ((f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'tool', "
                    "'function', and 'developer'."), f"messages.[{i}].role")
        if pending and role != "tool":
            return _unanswered(pending)
        if role == "tool":
            if m.get("tool_call_id") not in issued:
                return (("Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
                        "with 'tool_calls'."), f"messages.[{i}].role")
            pending.discard(m["tool_call_id"])
        elif role == "assistant":
            issued = {c.get("id") for c in m.get("tool_calls") or []}
            pending = set(issued)
    if pending:
        return _unanswered(pending)
    return None


def _openai_tool_result(msgs: list[dict[str, Any]]) -> tuple[str, str] | None:
    if msgs[-1].get("role") != "tool":
        return None
    tail: list[dict[str, Any]] = []
    for m in reversed(msgs):
        if m.get("role") != "tool":
            names = {c.get("id"): (c.get("function") or {}).get("name", "") for c in m.get("tool_calls") or []}
            break
        tail.insert(0, m)
    else:
        names = {}
    return (", ".join(names.get(m.get("tool_call_id"), "?") for m in tail),
            "\n".join(_oa_text(m.get("content"))[0] for m in tail))


def openai_usage(prompt: int, out: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


async def openai_chat(request: web.Request) -> web.StreamResponse:
    rec, body = await _record(request)
    invalid = _openai_invalid(body)
    if invalid is not None:
        return _error(rec, 400, openai_error(400, invalid[0], invalid[1]))
    msgs: list[dict[str, Any]] = body["messages"]
    model: str = body["model"]
    text, images = next((_oa_text(m.get("content")) for m in reversed(msgs) if m.get("role") == "user"), ("", 0))
    s = script_for(model, text)
    try:
        if s.hang:
            await _hang(request)
        await _pace(s)
        if s.drop and not body.get("stream"):
            request.transport.close()  # type: ignore[union-attr]
            return web.Response()
        if s.error is not None:
            return _error(rec, s.error, openai_error(s.error), RETRY_AFTER if s.error == 429 else None)
        tools = [(t["function"]["name"], t["function"].get("parameters") or {}) for t in body.get("tools") or []]
        stop = body.get("stop")
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        a = plan(s, model, text, images, tools, _openai_tool_result(msgs),
                 body.get("max_completion_tokens") or body.get("max_tokens"), stops, "call_fake")
        prompt = tokens(len(_json(msgs)) + (len(_json(body["tools"])) if body.get("tools") else 0))
        reasoning = tokens(len(a.thinking)) if a.thinking else 0
        usage = openai_usage(prompt, output_tokens(a), prompt // 2 if s.cached else 0, reasoning)
        cid = f"chatcmpl-fake{next(_ids):012d}"
        if body.get("stream") and not s.ignore_stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await _openai_stream(request, rec, s, a, cid, model, usage if include_usage else None)
        message: dict[str, Any] = {"role": "assistant", "content": a.text or None, "refusal": None, "annotations": []}
        if a.thinking:
            message["reasoning_content"] = a.thinking
        if a.calls:
            message["tool_calls"] = [{"id": i, "type": "function", "function": {"name": n, "arguments": args}}
                                     for i, n, args in a.calls]
        rec["status"] = 200
        return web.Response(body=_json({
            "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": FINISH[a.stop]}],
            "usage": usage, "system_fingerprint": "fp_fake"}), content_type="application/json")
    except asyncio.CancelledError:
        rec["disconnected"] = True
        raise


def _arg_pieces(args: str) -> list[str]:
    # Providers stream arguments in fragments of a few characters.
    return [args[i:i + 8] for i in range(0, len(args), 8)]


async def _openai_stream(request: web.Request, rec: dict[str, Any], s: Script, a: Answer, cid: str, model: str,
                         usage: dict[str, Any] | None) -> web.StreamResponse:
    resp = await _sse_start(request, rec)
    base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_fake"}
    if usage is not None:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        c = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        return b"data: " + _json(c) + b"\n\n"

    try:
        await resp.write(chunk({"role": "assistant", "content": "", "refusal": None}))
        for piece in _pieces(a.thinking or ""):
            await _pace(s)
            await resp.write(chunk({"reasoning_content": piece}))
        for n, piece in enumerate(_pieces(a.text)):
            await _pace(s)
            await resp.write(chunk({"content": piece}))
            if n == 1 and s.stream_error:
                err = openai_error(500)
                await resp.write(b"data: " + _json(err) + b"\n\n")
                return resp
            if n == 1 and s.drop:
                request.transport.close()  # type: ignore[union-attr]
                return resp
        for k, (call_id, name, args) in enumerate(a.calls):
            await resp.write(chunk({"tool_calls": [{"index": k, "id": call_id, "type": "function",
                                                    "function": {"name": name, "arguments": ""}}]}))
            for piece in _arg_pieces(args):
                await _pace(s)
                await resp.write(chunk({"tool_calls": [{"index": k, "function": {"arguments": piece}}]}))
        await resp.write(chunk({}, FINISH[a.stop]))
        if usage is not None:
            await resp.write(b"data: " + _json({**base, "choices": [], "usage": usage}) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        rec["disconnected"] = True
        raise
    return resp


# ---- Anthropic Messages --------------------------------------------------------------------

ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request: scripted error-400 from the fake upstream."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", ("This request would exceed the rate limit for your organization of 50 requests per "
                              "minute. Please try again in 20 seconds.")),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def anthropic_error(status: int, message: str | None = None) -> dict[str, Any]:
    default = ("api_error" if status >= 500 else "invalid_request_error", f"Scripted error {status}.")
    typ, msg = ANTHROPIC_ERRORS.get(status, default)
    return {"type": "error", "error": {"type": typ, "message": message or msg}, "request_id": f"req_fake{status}"}


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _an_text(blocks: list[dict[str, Any]]) -> str:
    return "".join(b.get("text", "") for b in blocks if b.get("type") == "text")


def _anthropic_invalid(request: web.Request, body: Any) -> str | None:
    if "anthropic-version" not in request.headers:
        return "anthropic-version: header is required"
    if not isinstance(body, dict):
        return "Invalid JSON body"
    if not body.get("model"):
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return "messages: Field required"
    for i, t in enumerate(body.get("tools") or []):
        if not isinstance(t, dict) or not t.get("name"):
            return f"tools.{i}.name: Field required"
        if "type" not in t and not isinstance(t.get("input_schema"), dict):
            return f"tools.{i}.custom.input_schema: Field required"
    for blk in _blocks(body.get("system")):
        if blk.get("type") != "text" or not blk.get("text"):
            return "system: text content blocks must be non-empty"
    prev_uses: dict[str, str] = {}
    for i, m in enumerate(msgs):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        blocks = _blocks(m.get("content"))
        if not blocks:
            return (f"messages.{i}: all messages must have non-empty content except for the optional final "
                    "assistant message")
        answered: set[str] = set()
        other_seen = False
        for j, b in enumerate(blocks):
            t = b.get("type")
            if t == "text" and not b.get("text"):
                return "messages: text content blocks must be non-empty"
            if t == "thinking" and b.get("signature") != signature_for(b.get("thinking", "")):
                return f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
            if t == "redacted_thinking" and not _redacted_ok(str(b.get("data", ""))):
                return f"messages.{i}.content.{j}: Invalid `data` in `redacted_thinking` block"
            if t == "tool_result":
                if other_seen:
                    return f"messages.{i}.content.{j}: `tool_result` blocks must come before any other content"
                if b.get("tool_use_id") not in prev_uses:
                    return (f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                            f"{b.get('tool_use_id')}. Each `tool_result` block must have a corresponding `tool_use` "
                            "block in the previous message.")
                answered.add(b["tool_use_id"])
            else:
                other_seen = True
        missing = sorted(set(prev_uses) - answered)
        if missing:
            return (f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                    f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block in "
                    "the next message.")
        prev_uses = {b.get("id", ""): b.get("name", "") for b in blocks if b.get("type") == "tool_use"}
    if prev_uses:
        return (f"messages.{len(msgs)}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(sorted(prev_uses))}.")
    return None


def _prompt_usage(st: State, body: dict[str, Any], s: Script) -> tuple[int, int, int]:
    """(input, cache read, cache write) tokens; prefixes ending at a cache_control breakpoint are
    written to the cache the first time and read from it afterwards."""
    seq: list[Any] = [*(body.get("tools") or []), *_blocks(body.get("system"))]
    for m in body["messages"]:
        seq.extend(_blocks(m.get("content")))
    h = hashlib.sha256()
    total = 0
    points: list[tuple[str, int]] = []
    for blk in seq:
        enc = _json({k: v for k, v in blk.items() if k != "cache_control"})
        h.update(enc)
        total += tokens(len(enc))
        if blk.get("cache_control"):
            points.append((h.hexdigest(), total))
    read = max((n for d, n in points if d in st.prompt_cache), default=0)
    write = points[-1][1] - read if points and points[-1][0] not in st.prompt_cache else 0
    st.prompt_cache.update(d for d, _ in points)
    if s.cached:
        read, write = total // 2, total // 4
    return total - read - write, read, write


def tool_preamble(name: str) -> str:
    return f"Let me call {name}."


async def anthropic_messages(request: web.Request) -> web.StreamResponse:
    rec, body = await _record(request)
    invalid = _anthropic_invalid(request, body)
    if invalid is not None:
        return _error(rec, 400, anthropic_error(400, invalid))
    msgs: list[dict[str, Any]] = body["messages"]
    model: str = body["model"]
    user_blocks = next((_blocks(m.get("content")) for m in reversed(msgs)
                        if m.get("role") == "user" and _an_text(_blocks(m.get("content")))), [])
    text = _an_text(user_blocks)
    images = sum(1 for b in user_blocks if b.get("type") == "image")
    s = script_for(model, text)
    try:
        if s.hang:
            await _hang(request)
        await _pace(s)
        if s.drop and not body.get("stream"):
            request.transport.close()  # type: ignore[union-attr]
            return web.Response()
        if s.error is not None:
            return _error(rec, s.error, anthropic_error(s.error), RETRY_AFTER if s.error == 429 else None)
        tools = [(t["name"], t["input_schema"]) for t in body.get("tools") or [] if "input_schema" in t]
        a = plan(s, model, text, images, tools, _anthropic_tool_result(msgs), body["max_tokens"],
                 list(body.get("stop_sequences") or []), "toolu_fake")
        if a.calls and not a.text:
            a.text = tool_preamble(a.calls[0][1])
        inp, read, write = _prompt_usage(request.app[STATE], body, s)
        usage = {"input_tokens": inp, "cache_creation_input_tokens": write, "cache_read_input_tokens": read,
                 "output_tokens": output_tokens(a), "service_tier": "standard"}
        mid = f"msg_fake{next(_ids):016d}"
        content: list[dict[str, Any]] = []
        if a.thinking:
            content.append({"type": "thinking", "thinking": a.thinking, "signature": signature_for(a.thinking)})
        if a.redacted:
            content.append({"type": "redacted_thinking", "data": a.redacted})
        if a.text:
            content.append({"type": "text", "text": a.text})
        content.extend({"type": "tool_use", "id": i, "name": n, "input": msgspec.json.decode(args)}
                       for i, n, args in a.calls)
        if body.get("stream") and not s.ignore_stream:
            return await _anthropic_stream(request, rec, s, a, mid, model, content, usage)
        rec["status"] = 200
        return web.Response(body=_json({
            "id": mid, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": a.stop, "stop_sequence": a.stop_sequence, "usage": usage}), content_type="application/json")
    except asyncio.CancelledError:
        rec["disconnected"] = True
        raise


def _anthropic_tool_result(msgs: list[dict[str, Any]]) -> tuple[str, str] | None:
    last = _blocks(msgs[-1].get("content"))
    results = [b for b in last if b.get("type") == "tool_result"]
    if msgs[-1].get("role") != "user" or not results:
        return None
    names = {b.get("id"): b.get("name", "") for b in _blocks(msgs[-2].get("content"))} if len(msgs) > 1 else {}
    texts = [r["content"] if isinstance(r.get("content"), str) else _an_text(_blocks(r.get("content")))
             for r in results]
    return ", ".join(names.get(r.get("tool_use_id"), "?") for r in results), "\n".join(texts)


def _event(data: dict[str, Any]) -> bytes:
    return b"event: " + str(data["type"]).encode() + b"\ndata: " + _json(data) + b"\n\n"


async def _anthropic_stream(request: web.Request, rec: dict[str, Any], s: Script, a: Answer, mid: str, model: str,
                            content: list[dict[str, Any]], usage: dict[str, Any]) -> web.StreamResponse:
    resp = await _sse_start(request, rec)
    start_usage = {**usage, "output_tokens": 1}
    try:
        await resp.write(_event({"type": "message_start", "message": {
            "id": mid, "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": start_usage}}))
        await resp.write(_event({"type": "ping"}))
        for i, blk in enumerate(content):
            t = blk["type"]
            start = {"text": {"type": "text", "text": ""}, "tool_use": {**blk, "input": {}}, "redacted_thinking": blk,
                     "thinking": {"type": "thinking", "thinking": "", "signature": ""}}[t]
            await resp.write(_event({"type": "content_block_start", "index": i, "content_block": start}))
            if t == "text":
                for n, piece in enumerate(_pieces(blk["text"])):
                    await _pace(s)
                    await resp.write(_event({"type": "content_block_delta", "index": i,
                                             "delta": {"type": "text_delta", "text": piece}}))
                    if n == 1 and s.stream_error:
                        await resp.write(_event(anthropic_error(529)))
                        return resp
                    if n == 1 and s.drop:
                        request.transport.close()  # type: ignore[union-attr]
                        return resp
            elif t == "thinking":
                for piece in _pieces(blk["thinking"]):
                    await _pace(s)
                    await resp.write(_event({"type": "content_block_delta", "index": i,
                                             "delta": {"type": "thinking_delta", "thinking": piece}}))
                await resp.write(_event({"type": "content_block_delta", "index": i,
                                         "delta": {"type": "signature_delta", "signature": blk["signature"]}}))
            elif t == "tool_use":
                args = _json(blk["input"]).decode()
                for piece in ["", *_arg_pieces(args)]:
                    await resp.write(_event({"type": "content_block_delta", "index": i,
                                             "delta": {"type": "input_json_delta", "partial_json": piece}}))
            await resp.write(_event({"type": "content_block_stop", "index": i}))
        await resp.write(_event({"type": "message_delta", "delta": {"stop_reason": a.stop,
                                                                    "stop_sequence": a.stop_sequence},
                                 "usage": {"output_tokens": usage["output_tokens"]}}))
        await resp.write(_event({"type": "message_stop"}))
        await resp.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        rec["disconnected"] = True
        raise
    return resp


# ---- server --------------------------------------------------------------------------------


def make_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE] = State()
    app.router.add_post("/v1/chat/completions", openai_chat)
    app.router.add_post("/chat/completions", openai_chat)
    app.router.add_post("/v1/messages", anthropic_messages)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/_requests", list_requests)
    app.router.add_get("/_requests/clear", clear_requests)
    app.router.add_post("/_requests/clear", clear_requests)
    return app


async def start(host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, int]:
    """Start the server in the running loop; returns the runner (``await runner.cleanup()`` stops it)
    and the port it listens on."""
    # handler_cancellation: a handler is cancelled when its client disconnects, so ``hang`` and slow
    # streams end and record ``disconnected``.
    runner = web.AppRunner(make_app(), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    return runner, int(runner.addresses[0][1])


async def _main(host: str, port: int) -> None:
    import signal

    runner, bound = await start(host, port)
    print(f"PORT {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="fake OpenAI/Anthropic upstream for flowbase tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(_main(args.host, args.port))


if __name__ == "__main__":
    main()
