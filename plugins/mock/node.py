"""The ``mock.chat`` node: a deterministic offline model (demos, tests, agent-client e2e runs).

``run(ctx)`` answers ``ctx.request`` from ``script.plan`` (scripted rules or the echo default),
streams it word by word when ``ctx.stream`` (tool-call arguments in fragments, a thinking block with
its deterministic signature first), and returns the whole canonical ``Response``. Token usage comes
from ``plugin_sdk.tokens`` so it is plausible and stable: input = the request's tokens, output =
text + thinking + tool calls, reasoning = thinking. The request's ``max_tokens`` cuts the text
(stop reason ``max_tokens``) and its ``stop`` sequences cut it at the first one (``stop_sequence``).

Config (besides the provider settings every model node gets, which the mock ignores): ``reply``
(default answer template), ``script`` (rules, see ``script.py``), ``fail: {status, message,
retry_after}`` (every call fails with that upstream error), ``latency_ms`` (before the first token)
and ``chunk_delay_ms`` (between streamed chunks). One ``model_call`` span per call.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
import uuid
from typing import Any

import msgspec

from plugin_sdk.errors import NodeError, UpstreamError
from plugin_sdk.node import NodeContext
from plugin_sdk.tokens import count_request_tokens, count_text_tokens
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
from plugin_sdk.upstream import record_model_call, require_request
from plugins.mock.script import FailSpec, Plan, plan

_WORDS = re.compile(r"\S+\s*|\s+")
# Characters of tool-call arguments per streamed fragment (providers send a few at a time).
ARG_FRAGMENT = 16
DEFAULT_FAIL_MESSAGE = "mock upstream error"
_to_builtins = msgspec.to_builtins


def signature_for(model: str, thinking: str) -> str:
    """The thinking signature the mock issues: stable for the same model and text."""
    return base64.b64encode(hashlib.sha256(f"mock:{model}:{thinking}".encode()).digest()).decode()


def _cut(text: str, stops: list[str]) -> tuple[str, str | None]:
    best: tuple[int, str] | None = None
    for s in stops:
        i = text.find(s) if s else -1
        if i >= 0 and (best is None or i < best[0]):
            best = (i, s)
    return (text, None) if best is None else (text[:best[0]], best[1])


def _fit(pieces: list[str], max_tokens: int) -> list[str]:
    out: list[str] = []
    used = 0
    for p in pieces:
        used += count_text_tokens(p)
        if used > max_tokens:
            break
        out.append(p)
    return out


def _error(fail: FailSpec | dict[str, Any]) -> UpstreamError:
    f = fail if isinstance(fail, FailSpec) else msgspec.convert(fail, FailSpec)
    retry = str(f.retry_after) if f.retry_after is not None else None
    return UpstreamError(f.message or DEFAULT_FAIL_MESSAGE, status=f.status, retry_after=retry)


async def run(ctx: NodeContext) -> Response:
    req = require_request(ctx, "mock.chat")
    config = ctx.config
    model: str = config["model"]
    provider: str = config.get("provider") or "mock"
    started = time.time()
    latency = float(config.get("latency_ms") or 0) / 1000
    delay = float(config.get("chunk_delay_ms") or 0) / 1000
    try:
        if config.get("fail"):
            raise _error(config["fail"])
        p: Plan = plan(req, config)
        if p.fail is not None:
            raise _error(p.fail)
    except UpstreamError as exc:
        if latency:
            await asyncio.sleep(latency)
        record_model_call(ctx, provider, model, started, _to_builtins(req), error=exc)
        raise
    except msgspec.ValidationError as exc:
        raise NodeError(f"mock config `fail` is invalid: {exc}") from exc

    stop: StopReason = "tool_use" if p.calls else "end_turn"
    text, stop_sequence = _cut(p.text, req.stop)
    if stop_sequence is not None:
        stop = "stop_sequence"
    pieces = _WORDS.findall(text)
    if req.max_tokens is not None:
        fitted = _fit(pieces, req.max_tokens)
        if len(fitted) < len(pieces):
            pieces, stop = fitted, "max_tokens"
            text = "".join(pieces)
    content: list[Part] = []
    if p.thinking is not None:
        content.append(ThinkingPart(text=p.thinking, signature=signature_for(model, p.thinking)))
    if text or not (p.calls or p.thinking):
        content.append(TextPart(text))
    if stop != "max_tokens":  # an answer cut short never gets to its tool calls
        content.extend(ToolCallPart(id=f"call_{uuid.uuid4().hex[:24]}", name=n, arguments=a) for n, a in p.calls)
    thinking_tokens = count_text_tokens(p.thinking) if p.thinking else 0
    out_tokens = count_text_tokens(text) + thinking_tokens
    out_tokens += sum(count_text_tokens(c.name + c.arguments) for c in content if isinstance(c, ToolCallPart))
    usage = Usage(input_tokens=count_request_tokens(req), output_tokens=out_tokens, reasoning_tokens=thinking_tokens)
    resp = Response(id=f"mock-{uuid.uuid4().hex[:24]}", model=model, content=content, stop_reason=stop,
                    stop_sequence=stop_sequence, usage=usage)
    if latency:
        await asyncio.sleep(latency)
    if ctx.stream:
        await _stream(ctx, resp, pieces, delay)
    elif delay:
        await asyncio.sleep(delay * len(pieces))
    record_model_call(ctx, provider, model, started, _to_builtins(req), resp=resp)
    return resp


async def _stream(ctx: NodeContext, resp: Response, pieces: list[str], delay: float) -> None:
    async def send(ev: StreamEvent, pause: bool = False) -> None:
        if pause and delay:
            await asyncio.sleep(delay)
        await ctx.emit(ev)

    await send(StreamStart(id=resp.id, model=resp.model, usage=Usage(input_tokens=resp.usage.input_tokens)))
    for i, part in enumerate(resp.content):
        if isinstance(part, TextPart):
            await send(BlockStart(i, TextPart("")))
            for n, piece in enumerate(pieces):
                await send(BlockDelta(i, text=piece), pause=n > 0)
        elif isinstance(part, ThinkingPart):
            await send(BlockStart(i, ThinkingPart()))
            for piece in _WORDS.findall(part.text):
                await send(BlockDelta(i, text=piece), pause=True)
            await send(BlockDelta(i, signature=part.signature or ""))
        elif isinstance(part, ToolCallPart):
            await send(BlockStart(i, ToolCallPart(id=part.id, name=part.name)), pause=True)
            args = part.arguments
            for k in range(0, len(args), ARG_FRAGMENT):
                await send(BlockDelta(i, arguments=args[k:k + ARG_FRAGMENT]))
        await send(BlockStop(i))
    await send(StreamEnd(stop_reason=resp.stop_reason, stop_sequence=resp.stop_sequence, usage=resp.usage))
