"""What templates see of the client's request, and the request a non-passthrough model node sends.

``RequestView`` is built once per run and computes each attribute on first use, so a workflow
that never reads ``request.messages`` never pays for it.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import msgspec

from host.engine.workflow import Node
from plugin_sdk.types import Message, Request, TextPart, last_user_text, text_message


def _text(msg: Message) -> str:
    return "".join(p.text for p in msg.content if isinstance(p, TextPart))


class RequestView:
    """``{{ request.input }}`` (last user text), ``.system``, ``.model``, ``.messages`` (role/text
    pairs), ``.metadata``, ``.tools`` (tool names), ``.stream``."""

    def __init__(self, req: Request) -> None:
        self._req = req

    @cached_property
    def input(self) -> str:
        return last_user_text(self._req)

    @cached_property
    def system(self) -> str:
        return "\n\n".join(_text(m) for m in self._req.messages if m.role in ("system", "developer"))

    @property
    def model(self) -> str:
        return self._req.model

    @cached_property
    def messages(self) -> list[dict[str, str]]:
        return [{"role": m.role, "text": _text(m)} for m in self._req.messages]

    @property
    def metadata(self) -> dict[str, Any]:
        return self._req.metadata

    @cached_property
    def tools(self) -> list[str]:
        return [t.name for t in self._req.tools]

    @property
    def stream(self) -> bool:
        return self._req.stream

    def __str__(self) -> str:
        return self.input


def build_request(node: Node, req: Request, ctx: dict[str, Any]) -> Request:
    """The request a model node sends when the workflow shapes it: ``system:`` replaces the
    client's system messages, ``prompt:``/``messages:`` replace the conversation, ``tools: none``
    drops the client's tools."""
    messages: list[Message]
    if node.messages is not None:
        messages = [text_message(role, t.render(ctx)) for role, t in node.messages]
    else:
        messages = [m for m in req.messages if m.role not in ("system", "developer")] if node.system else list(req.messages)
    if node.system is not None:
        messages.insert(0, text_message("system", node.system.render(ctx)))
    return msgspec.structs.replace(req, messages=messages, tools=req.tools if node.inherit_tools else [],
                                   tool_choice=req.tool_choice if node.inherit_tools else None)



