"""Test-only plugin package: node types that behave and misbehave in the ways the runner and the
RunnerPool must handle (see tests/test_runner_*.py). Never shipped, never loaded by the host."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from plugin_sdk.errors import UpstreamError
from plugin_sdk.hookspecs import hookimpl
from plugin_sdk.node import NodeContext, Register
from plugin_sdk.types import BlockDelta, BlockStop, Response, StreamEnd, TextPart, Usage, response_events


async def echo(ctx: NodeContext) -> dict[str, Any]:
    return {"text": ctx.inputs["text"], "pid": os.getpid()}


async def stream(ctx: NodeContext) -> Response:
    words: list[str] = ctx.inputs.get("words", ["hello", " ", "world"])
    started = time.time()
    resp = Response(id="resp_fx", model="fx-model", content=[TextPart("".join(words))],
                    usage=Usage(input_tokens=3, output_tokens=len(words)))
    for ev in response_events(resp)[:2]:  # StreamStart, BlockStart
        await ctx.emit(ev)
    for w in words:
        await ctx.emit(BlockDelta(0, text=w))
    await ctx.emit(BlockStop(0))
    await ctx.emit(StreamEnd(usage=resp.usage))
    ctx.record("model_call", "fx-model", started_at=started, usage=resp.usage, model="fx-model", provider="fx")
    return resp


async def noisy(ctx: NodeContext) -> dict[str, Any]:
    # Things that would corrupt a frame channel on stdout: text, a fake length prefix, raw bytes.
    print("hello from a plugin that prints")
    print("\x00\x00\x00\x05garbage", flush=True)
    sys.stdout.write("more stdout\n")
    os.write(1, b"\x00\x00\x10\x00raw bytes on fd 1\n")
    return {"text": "still clean"}


async def off_schema(ctx: NodeContext) -> dict[str, Any]:
    return {"items": [{"count": 1}, {"count": "three"}]}


async def int_keys(ctx: NodeContext) -> dict[Any, Any]:
    return {1: "one"}  # valid msgpack, but not a valid Result (output keys must be strings)


async def boom(ctx: NodeContext) -> dict[str, Any]:
    raise ValueError("kaboom")


async def upstream(ctx: NodeContext) -> dict[str, Any]:
    ctx.record("model_call", "fx-upstream", started_at=time.time(), error="429 from upstream")
    raise UpstreamError("Rate limit reached for fx-model", status=429, retry_after="7", code="rate_limit_exceeded")


async def hang(ctx: NodeContext) -> dict[str, Any]:
    ctx.record("tool_call", "fx-hang-started", started_at=time.time())
    await asyncio.sleep(3600)
    return {}


async def block(ctx: NodeContext) -> dict[str, Any]:
    time.sleep(float(ctx.inputs.get("seconds", 120)))  # noqa: ASYNC251 - deliberately blocks the event loop
    return {}


async def exit_now(ctx: NodeContext) -> dict[str, Any]:
    os._exit(int(ctx.inputs.get("code", 3)))


async def delay_echo(ctx: NodeContext) -> dict[str, Any]:
    await asyncio.sleep(float(ctx.inputs["delay"]))
    return {"n": ctx.inputs["n"]}


async def log(ctx: NodeContext) -> dict[str, Any]:
    logging.getLogger("fx_basic").warning("fixture says %s", ctx.inputs.get("word", "hi"))
    return {}


# What fx.hold keeps alive for the life of the runner (a leak, for the memory tests).
_held: list[bytes] = []


async def hold(ctx: NodeContext) -> dict[str, Any]:
    """Keep ``mb`` more MB alive, then answer after ``delay`` seconds, saying which process it is."""
    _held.append(b"\x01" * int(float(ctx.inputs.get("mb", 0)) * 2**20))  # written, so resident
    await asyncio.sleep(float(ctx.inputs.get("delay", 0)))
    return {"pid": os.getpid(), "held_mb": sum(len(b) for b in _held) / 2**20}


class _Opaque:
    def __str__(self) -> str:
        return "an opaque object"


async def odd_span(ctx: NodeContext) -> dict[str, Any]:
    """Records a span whose input JSON cannot hold (a list that contains itself) and whose output holds
    an object of its own."""
    cycle: list[Any] = [1]
    cycle.append(cycle)
    ctx.record("tool_call", "fx-odd", started_at=time.time(), input={"cycle": cycle},
               output={"thing": _Opaque(), "n": 3})
    return {"text": "recorded"}


async def bad_span_usage(ctx: NodeContext) -> dict[str, Any]:
    """Records a span whose usage is not a ``Usage`` (nor anything msgpack can carry)."""
    ctx.record("model_call", "fx-bad-usage", started_at=time.time(), usage=_Opaque())  # type: ignore[arg-type]
    return {"text": "recorded"}


async def close() -> None:
    marker = os.environ.get("FX_CLOSE_MARKER")
    if marker:
        Path(marker).write_text("closed")


@hookimpl
def register_node_types(register: Register) -> None:
    register("fx.echo", echo, close=close)
    register("fx.stream", stream, close=close)
    register("fx.noisy", noisy)
    register("fx.off_schema", off_schema)
    register("fx.boom", boom)
    register("fx.int_keys", int_keys)
    register("fx.upstream", upstream)
    register("fx.hang", hang)
    register("fx.block", block)
    register("fx.exit", exit_now)
    register("fx.delay_echo", delay_echo)
    register("fx.log", log)
    register("fx.hold", hold)
    register("fx.odd_span", odd_span)
    register("fx.bad_span_usage", bad_span_usage)
