"""``previous_response_id`` (OpenAI Responses API): the conversation behind an earlier response.

A Responses-protocol run answers with the id ``resp_<x>`` for run ``run_<x>``, so an earlier
response's conversation is read back from its trace: the request the client sent (the workflow
span's input) plus the answer it got (text and tool calls). This needs tracing on; instructions
are not carried over (the new request's apply), as in OpenAI's API.
"""

from __future__ import annotations

from typing import Any

import msgspec

from host.store.db import Store
from host.tracing.recorder import Recorder
from plugin_sdk.errors import InvalidRequest, NotFound
from plugin_sdk.types import Message, Part, Request, TextPart, ToolCallPart

# How long to wait for the previous run's trace to reach the store (seconds): it was submitted
# when that response finished, so this only covers the batch writer's interval.
FLUSH_TIMEOUT_S = 5.0


def response_id_for(run_id: str) -> str:
    return "resp_" + run_id.removeprefix("run_")


class History:
    def __init__(self, store: Store, recorder: Recorder | None) -> None:
        self.store = store
        self.recorder = recorder

    async def conversation(self, response_id: str) -> list[Message]:
        if self.recorder is None:
            raise InvalidRequest("previous_response_id needs tracing on (FLOWBASE_TRACING=1): flowbase reads the "
                                 "earlier conversation from its trace; send the whole conversation as input instead",
                                 param="previous_response_id")
        if not response_id.startswith("resp_"):
            raise NotFound(f"previous response '{response_id}' not found", param="previous_response_id",
                           code="previous_response_not_found")
        await self.recorder.flush(FLUSH_TIMEOUT_S)
        run = await self.store.get_run("run_" + response_id.removeprefix("resp_"))
        root = next((s for s in run["spans"] if s["kind"] == "workflow"), None) if run else None
        if run is None or root is None or run["protocol"] != "responses" or run["status"] != "ok":
            raise NotFound(f"previous response '{response_id}' not found (or it did not complete)",
                           param="previous_response_id", code="previous_response_not_found")
        earlier = msgspec.convert(root["input"], Request)
        messages = [m for m in earlier.messages if m.role not in ("system", "developer")]
        answer = _answer_message(root["output"] or {})
        if answer.content:
            messages.append(answer)
        return messages


def _answer_message(output: dict[str, Any]) -> Message:
    content: list[Part] = []
    if output.get("text"):
        content.append(TextPart(output["text"]))
    for call in output.get("tool_calls") or []:
        content.append(ToolCallPart(id=call["id"], name=call["name"], arguments=call.get("arguments", "")))
    return Message(role="assistant", content=content)
