"""A client request as the trace keeps it: the body the client sent, read back as the canonical request.

The workflow span of a run stores the client's request body as it came (``SpanRow.input_format`` names its
protocol) instead of the canonical ``Request`` encoded again: an agent's request is a whole conversation,
tens of KB, and encoding it once more per request was most of what tracing cost the event loop for such
requests. Parsing is a pure function of the body (the adapters' ``parse_request``), so reading it back
gives the canonical request the run served, ``origin`` included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from host.protocols import anthropic_messages, openai_chat, openai_responses
from plugin_runner.protocol import json_encode
from plugin_sdk.types import Request

_PARSERS: dict[str, Callable[[bytes], tuple[Request, dict[str, Any]]]] = {
    "chat": openai_chat.parse_request,
    "responses": openai_responses.parse_request,
    "messages": anthropic_messages.parse_request,
}


def stored_request(protocol: str, body: Any) -> Any:
    """The canonical request, as JSON values, that the client body ``body`` (decoded JSON) of a ``protocol``
    request parses to; ``body`` itself if it does not (an unknown protocol, or a body no adapter accepts
    now: the trace still shows what the client sent)."""
    parse = _PARSERS.get(protocol)
    if parse is None:
        return body
    try:
        req, _ = parse(json_encode(body))
    except Exception:  # noqa: BLE001 - a stored body that no longer parses is shown as it is
        return body
    req.origin = protocol
    return msgspec.json.decode(json_encode(req))  # exactly the JSON values a stored canonical request reads as
