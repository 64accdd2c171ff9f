"""What the mock model answers: the config's ``script`` rules, evaluated in order, else a default.

A rule (all keys optional)::

    match: "(?i)read (?P<path>\\S+)"   # regex searched in the last user text (on a tool-result turn:
                                       # in the tool result); named groups become {path} etc.
    when_tool: Read | [exec_command, shell]   # applies only if the request offers (one of) these tools
    on_tool_result: true               # applies only when the turn answers tool calls (else never then)
    thinking: "Let me look at {path}"  # a thinking block with a deterministic signature
    reply: "Reading {path}."           # text (before the tool call, if there is one)
    tool_call: {name: Read, arguments: {file_path: "{path}"}}   # or a list of them; name defaults to
                                       # the offered tool that satisfied when_tool
    fail: {status: 503, message: "…", retry_after: "2"}         # answer with this upstream error

Templates replace ``{name}`` with: ``input`` (last user text), ``model`` (the config model),
``system`` (system/developer text), ``tool_result`` / ``tool_name`` (on a tool-result turn),
``request_model`` (what the client asked for) and the rule's named groups; other braces stay as
they are. Tool-call arguments are templated recursively (strings inside dicts and lists).

Defaults: ``config.reply`` if set, else ``"Echo: {input}"`` (a greeting when there is no user text),
and on a tool-result turn ``"Tool <name> returned: <first 200 chars>"`` (so an agent loop
ends instead of calling the tool again).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from plugin_sdk.errors import NodeError
from plugin_sdk.types import Request, TextPart, ToolCallPart, ToolResultPart

DEFAULT_REPLY = "Echo: {input}"
GREETING = "Hello! I am {model}, flowbase's offline mock model. Send me a message and I will echo it."
# Characters of a tool result quoted by the default tool-result reply.
TOOL_RESULT_QUOTE = 200
# Distinct scripts whose compiled rules are kept (workflows have few; a bound keeps memory flat).
MAX_CACHED_SCRIPTS = 256

_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ToolCallSpec(msgspec.Struct, forbid_unknown_fields=True):
    name: str | None = None
    arguments: dict[str, Any] = {}


class FailSpec(msgspec.Struct, forbid_unknown_fields=True):
    status: int
    message: str | None = None
    retry_after: str | int | None = None


class RuleSpec(msgspec.Struct, forbid_unknown_fields=True):
    match: str | None = None
    when_tool: str | list[str] | None = None
    on_tool_result: bool = False
    thinking: str | None = None
    reply: str | None = None
    tool_call: ToolCallSpec | list[ToolCallSpec] | None = None
    fail: FailSpec | None = None


class Rule:
    __slots__ = ("calls", "fail", "on_tool_result", "pattern", "reply", "thinking", "tools")

    def __init__(self, spec: RuleSpec, n: int) -> None:
        try:
            self.pattern = re.compile(spec.match) if spec.match is not None else None
        except re.error as exc:
            raise NodeError(f"mock script rule {n}: invalid match regex {spec.match!r}: {exc}") from exc
        self.tools = [spec.when_tool] if isinstance(spec.when_tool, str) else list(spec.when_tool or [])
        calls = spec.tool_call if isinstance(spec.tool_call, list) else [spec.tool_call] if spec.tool_call else []
        if any(c.name is None for c in calls) and not self.tools:
            raise NodeError(f"mock script rule {n}: a tool_call without a name needs when_tool")
        self.calls = calls
        self.on_tool_result = spec.on_tool_result
        self.thinking = spec.thinking
        self.reply = spec.reply
        self.fail = spec.fail


class Plan(msgspec.Struct):
    """The answer, before streaming: thinking, text, tool calls (name, arguments JSON) or a failure."""

    text: str = ""
    thinking: str | None = None
    calls: list[tuple[str, str]] = []
    fail: FailSpec | None = None


_cache: dict[bytes, list[Rule]] = {}
_encode = msgspec.json.Encoder().encode


def compile_script(script: Any) -> list[Rule]:
    if not script:
        return []
    key = _encode(script)
    rules = _cache.get(key)
    if rules is None:
        try:
            specs = msgspec.convert(script, list[RuleSpec])
        except msgspec.ValidationError as exc:
            raise NodeError(f"mock script is invalid: {exc}") from exc
        rules = [Rule(s, i) for i, s in enumerate(specs)]
        if len(_cache) >= MAX_CACHED_SCRIPTS:
            _cache.clear()
        _cache[key] = rules
    return rules


def render(template: str, env: dict[str, str]) -> str:
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), template)


def render_value(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, str):
        return render(value, env)
    if isinstance(value, dict):
        return {k: render_value(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, env) for v in value]
    return value


def _text(parts: list[Any]) -> str:
    return "".join(p.text for p in parts if isinstance(p, TextPart))


def tool_turn(req: Request) -> tuple[str, str] | None:
    """(tool names, result text) when the messages after the last assistant turn carry tool results."""
    last_assistant = -1
    for i in range(len(req.messages) - 1, -1, -1):
        if req.messages[i].role == "assistant":
            last_assistant = i
            break
    results = [p for m in req.messages[last_assistant + 1:] for p in m.content if isinstance(p, ToolResultPart)]
    if not results:
        return None
    names: dict[str, str] = {}
    if last_assistant >= 0:
        names = {p.id: p.name for p in req.messages[last_assistant].content if isinstance(p, ToolCallPart)}
    return (", ".join(names.get(r.tool_call_id, "tool") for r in results),
            "\n".join(_text(r.content) for r in results))


def user_text(req: Request) -> str:
    for m in reversed(req.messages):
        if m.role == "user":
            text = _text(m.content)
            if text:
                return text
    return ""


def plan(req: Request, config: dict[str, Any]) -> Plan:
    model: str = config["model"]
    text = user_text(req)
    turn = tool_turn(req)
    env = {"input": text, "model": model, "request_model": req.model,
           "system": "\n\n".join(_text(m.content) for m in req.messages if m.role in ("system", "developer"))}
    if turn is not None:
        env["tool_name"], env["tool_result"] = turn
    offered = {t.name for t in req.tools}
    default: str = config.get("reply") or DEFAULT_REPLY
    for rule in compile_script(config.get("script")):
        if rule.on_tool_result != (turn is not None):
            continue
        subject = turn[1] if turn is not None else text
        m = rule.pattern.search(subject) if rule.pattern is not None else None
        if rule.pattern is not None and m is None:
            continue
        tool = next((t for t in rule.tools if t in offered), None)
        if rule.tools and tool is None:
            continue
        renv = {**env, **m.groupdict(default="")} if m is not None else env
        if rule.fail is not None:
            return Plan(fail=rule.fail)
        calls = [(c.name or tool or "", _encode(render_value(c.arguments, renv)).decode()) for c in rule.calls]
        reply = render(rule.reply, renv) if rule.reply is not None else ("" if calls else render(default, renv))
        thinking = render(rule.thinking, renv) if rule.thinking is not None else None
        return Plan(text=reply, thinking=thinking, calls=calls)
    if turn is not None:
        return Plan(text=f"Tool {turn[0]} returned: {turn[1][:TOOL_RESULT_QUOTE]}")
    return Plan(text=render(default if text or config.get("reply") else GREETING, env))
