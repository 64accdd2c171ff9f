"""The mock.chat node: deterministic answers, scripted tool calls for agent clients, failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from plugin_runner.manifest import load_manifest
from plugin_sdk.errors import NodeError, UpstreamError
from plugin_sdk.testing import NodeRun, run_node
from plugin_sdk.tokens import count_request_tokens, count_text_tokens
from plugin_sdk.types import (
    Accumulator,
    BlockDelta,
    BlockStart,
    Message,
    Request,
    Response,
    StreamEnd,
    StreamStart,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolResultPart,
    text_message,
)
from plugins.mock import node as mock

SPEC = load_manifest(Path(__file__).resolve().parent.parent / "manifests" / "mock.yaml").node_types["mock.chat"]
OBJ = {"type": "object", "properties": {}}
READ, BASH = Tool(name="Read", parameters=OBJ), Tool(name="Bash", parameters=OBJ)
EXEC, SHELL = Tool(name="exec_command", parameters=OBJ), Tool(name="shell", parameters=OBJ)

# What an end-to-end test scripts for Claude Code (Read) and Codex (exec_command or shell).
AGENT_SCRIPT: list[dict[str, Any]] = [
    {"match": r"(?i)read (?P<path>/\S+)", "when_tool": "Read", "reply": "Reading {path}.",
     "tool_call": {"arguments": {"file_path": "{path}"}}},
    {"match": r"(?i)read (?P<path>/\S+)", "when_tool": "exec_command",
     "tool_call": {"arguments": {"cmd": "cat {path}"}}},
    {"match": r"(?i)read (?P<path>/\S+)", "when_tool": "shell",
     "tool_call": {"arguments": {"command": ["bash", "-lc", "cat {path}"]}}},
    {"on_tool_result": True, "reply": "The file says: {tool_result}"},
]


async def call(req: Request, *, stream: bool = False, **config: Any) -> NodeRun:
    config = {"model": "mock-1", **config}
    schema = SPEC.config_schema
    jsonschema.validators.validator_for(schema)(schema).validate(config)  # what the host checks at load
    return await run_node(mock.run, config=config, request=req, stream=stream, validate_with=SPEC,
                          node_type="mock.chat")


def ask(text: str, tools: list[Tool] | None = None, **kw: Any) -> Request:
    return Request(model="client", messages=[text_message("user", text)], tools=tools or [], **kw)


def answered(req: Request, resp: Response, result: str) -> Request:
    [tc] = resp.tool_calls()
    return Request(model="client", tools=req.tools, messages=[
        *req.messages, Message(role="assistant", content=resp.content),
        Message(role="tool", content=[ToolResultPart(tool_call_id=tc.id, content=[TextPart(result)])])])


def folded(res: NodeRun) -> Response:
    acc = Accumulator()
    for ev in res.events:
        acc.feed(ev)
    return acc.response()


async def test_by_default_the_mock_echoes_word_by_word_with_counted_usage() -> None:
    req = ask("hello there world")
    res = await call(req, stream=True)
    assert res.response is not None and res.response.text() == "Echo: hello there world"
    assert [e.text for e in res.events if isinstance(e, BlockDelta)] == ["Echo: ", "hello ", "there ", "world"]
    assert isinstance(res.events[0], StreamStart) and isinstance(res.events[-1], StreamEnd)
    assert folded(res) == res.response
    usage = res.response.usage
    assert usage.input_tokens == count_request_tokens(req) > 0
    assert usage.output_tokens == count_text_tokens("Echo: hello there world")
    [span] = res.spans
    assert (span.kind, span.name, span.model, span.provider) == ("model_call", "mock/mock-1", "mock-1", "mock")
    assert span.usage == usage and span.output["content"][0]["text"] == "Echo: hello there world"
    again = await call(req)
    assert again.response is not None and again.response.content == res.response.content


async def test_without_user_text_the_mock_greets_and_reply_templates_override_the_echo() -> None:
    res = await call(Request(model="c", messages=[text_message("system", "sys")]))
    assert res.output["text"].startswith("Hello! I am mock-1")
    res = await call(ask("ping"), reply="{model} heard {input!} under '{system}' for {request_model}", provider="p")
    assert res.output["text"] == "mock-1 heard {input!} under '' for client"
    assert res.spans[0].name == "p/mock-1"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_script_makes_the_mock_call_claude_codes_read_tool_and_then_report_the_file(stream: bool) -> None:
    req = ask("Please read /tmp/work/notes.txt and summarise it", tools=[BASH, READ])
    res = await call(req, stream=stream, script=AGENT_SCRIPT)
    assert res.response is not None and res.response.stop_reason == "tool_use"
    text, tc = res.response.content
    assert text == TextPart("Reading /tmp/work/notes.txt.")
    assert isinstance(tc, ToolCallPart) and tc.name == "Read"
    assert json.loads(tc.arguments) == {"file_path": "/tmp/work/notes.txt"}
    if stream:
        assert folded(res) == res.response
        assert [e for e in res.events if isinstance(e, BlockStart)][1] == BlockStart(1, ToolCallPart(tc.id, "Read"))
    res2 = await call(answered(req, res.response, "line one\nline two"), stream=stream, script=AGENT_SCRIPT)
    assert res2.output["text"] == "The file says: line one\nline two" and res2.output["stop_reason"] == "end_turn"


@pytest.mark.parametrize(("tool", "arguments"), [(EXEC, {"cmd": "cat /etc/hostname"}),
                                                 (SHELL, {"command": ["bash", "-lc", "cat /etc/hostname"]})])
async def test_a_script_calls_whichever_codex_shell_tool_the_request_offers(tool: Tool,
                                                                            arguments: dict[str, Any]) -> None:
    res = await call(ask("read /etc/hostname", tools=[tool]), script=AGENT_SCRIPT)
    assert res.output["text"] == "" and [(c["name"], json.loads(c["arguments"])) for c in res.output["tool_calls"]] \
        == [(tool.name, arguments)]


async def test_a_rule_whose_tool_is_not_offered_does_not_apply() -> None:
    res = await call(ask("read /etc/hostname", tools=[BASH]), script=AGENT_SCRIPT)
    assert res.output == {"text": "Echo: read /etc/hostname", "tool_calls": [], "stop_reason": "end_turn",
                          "usage": res.output["usage"]}


async def test_a_tool_result_turn_without_a_rule_quotes_the_result_so_agent_loops_end() -> None:
    script = [{"match": "go", "tool_call": {"name": "Bash", "arguments": {"command": "ls"}}}]
    req = ask("go", tools=[BASH])
    res = await call(req, script=script)
    assert res.response is not None and res.output["tool_calls"][0]["name"] == "Bash"
    # Claude Code sends the tool result together with more user text; it is still a tool-result turn.
    follow = answered(req, res.response, "x" * 300)
    follow.messages.append(text_message("user", "<system-reminder>go on</system-reminder>"))
    res2 = await call(follow, script=script)
    assert res2.output["text"] == "Tool Bash returned: " + "x" * 200 and res2.output["tool_calls"] == []


async def test_several_tool_calls_and_their_results_are_named_together() -> None:
    script = [{"match": "both", "tool_call": [{"name": "Read", "arguments": {"file_path": "/a"}},
                                              {"name": "Bash", "arguments": {"command": "ls"}}]},
              {"on_tool_result": True, "match": "(?s)A.*B", "reply": "{tool_name}: {tool_result}"}]
    req = ask("do both", tools=[READ, BASH])
    res = await call(req, stream=True, script=script)
    assert res.response is not None
    calls = res.response.tool_calls()
    assert [c.name for c in calls] == ["Read", "Bash"] and len({c.id for c in calls}) == 2
    follow = Request(model="c", messages=[*req.messages, Message(role="assistant", content=res.response.content),
                                          Message(role="tool", content=[ToolResultPart(calls[0].id, [TextPart("A")])]),
                                          Message(role="tool", content=[ToolResultPart(calls[1].id, [TextPart("B")])])])
    res2 = await call(follow, script=script)
    assert res2.output["text"] == "Read, Bash: A\nB"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_thinking_rule_adds_a_signed_thinking_block_counted_as_reasoning(stream: bool) -> None:
    script = [{"match": "(?P<topic>cats)", "thinking": "Considering {topic} carefully.", "reply": "Cats are nice."}]
    res = await call(ask("tell me about cats"), stream=stream, script=script)
    assert res.response is not None
    thinking, text = res.response.content
    expected = "Considering cats carefully."
    assert thinking == ThinkingPart(text=expected, signature=mock.signature_for("mock-1", expected))
    assert text == TextPart("Cats are nice.")
    assert res.response.usage.reasoning_tokens == count_text_tokens(expected)
    if stream:
        assert folded(res) == res.response
        assert BlockDelta(0, signature=mock.signature_for("mock-1", expected)) in res.events


@pytest.mark.parametrize("stream", [False, True])
async def test_fail_config_raises_the_scripted_upstream_error(stream: bool) -> None:
    with pytest.raises(UpstreamError) as info:
        await call(ask("hi"), stream=stream, fail={"status": 429, "message": "slow down", "retry_after": 3})
    assert (info.value.status, info.value.message, info.value.retry_after) == (429, "slow down", "3")
    [span] = info.value.spans  # type: ignore[attr-defined]
    assert span.error == "slow down" and span.kind == "model_call"
    script = [{"match": "explode", "fail": {"status": 503}}]
    with pytest.raises(UpstreamError) as info:
        await call(ask("please explode"), stream=stream, script=script)
    assert info.value.status == 503 and info.value.kind == "overloaded"
    assert (await call(ask("stay calm"), script=script)).output["text"] == "Echo: stay calm"


async def test_max_tokens_and_stop_sequences_cut_the_answer() -> None:
    res = await call(ask("one two three four five six", max_tokens=3), stream=True)
    assert res.response is not None and res.response.stop_reason == "max_tokens"
    assert res.response.usage.output_tokens <= 3 and "Echo: one two three four five six".startswith(res.output["text"])
    assert folded(res) == res.response
    res = await call(ask("alpha beta STOP gamma", stop=["STOP", "beta"]))
    assert res.response is not None
    assert (res.output["text"], res.response.stop_reason, res.response.stop_sequence) == (
        "Echo: alpha ", "stop_sequence", "beta")


async def test_pacing_settings_change_timing_only() -> None:
    slow = await call(ask("a b c"), stream=True, latency_ms=5, chunk_delay_ms=2)
    fast = await call(ask("a b c"), stream=True)
    strip = [e for e in slow.events if not isinstance(e, (StreamStart, StreamEnd))]
    assert strip == [e for e in fast.events if not isinstance(e, (StreamStart, StreamEnd))]


async def test_a_broken_script_fails_the_node_with_a_clear_message() -> None:
    with pytest.raises(NodeError, match=r"mock script rule 0: invalid match regex '\(oops'"):
        await run_node(mock.run, config={"model": "m", "script": [{"match": "(oops"}]}, request=ask("x"))
    with pytest.raises(NodeError, match="a tool_call without a name needs when_tool"):
        await run_node(mock.run, config={"model": "m", "script": [{"tool_call": {}}]}, request=ask("x"))
