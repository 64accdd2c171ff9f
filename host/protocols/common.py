"""Helpers shared by the protocol adapters (openai_chat, openai_responses, anthropic_messages).

Contract (small and stable; the adapters depend on exactly this):
- ``decode_body(body)`` → the request's top-level JSON object as a dict, or ``InvalidRequest`` saying
  what is wrong (not JSON, not an object). One msgspec decode, no schema: adapters walk the dict
  with the field readers below, which raise ``InvalidRequest`` naming the exact path.
- Field readers ``opt_str/opt_int/opt_float/opt_bool/opt_dict/opt_list`` return ``None`` when the
  key is absent or null, the value when it has the expected type, else raise ``InvalidRequest``
  with ``param`` = the path (e.g. ``messages[2].content``); ``req_*`` variants also reject absence.
- ``invalid(path, expected, value)`` builds the ``InvalidRequest`` "<path>: expected <expected>,
  got <json type>" those readers raise, for adapters' own checks.
- ``new_id(prefix)`` → a fresh random id such as ``chatcmpl-3f9a…`` (prefix included verbatim).
- ``encode(obj)`` → compact JSON bytes (one module-level msgspec encoder).
- ``sse_data(obj)`` → ``data: <json>\\n\\n``; ``sse_event(name, obj)`` → ``event: <name>\\ndata: <json>\\n\\n``.
- ``parse_data_url(url)`` → ``(media_type, base64_data)`` for a ``data:<type>;base64,<data>`` URL, else None.
- ``retry_after_headers(err)`` → ``{"retry-after": …}`` when the error carries a known retry-after.
- ``merged_usage(start, end)`` → the stream's final usage: prompt-side counts may only have come with
  ``StreamStart`` (Anthropic-style upstreams), so each count is the larger of the two.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec

from plugin_sdk.errors import FlowbaseError, InvalidRequest
from plugin_sdk.types import Usage

__all__ = [
    "decode_body", "encode", "invalid", "json_type", "merged_usage", "new_id", "opt_bool", "opt_dict", "opt_float",
    "opt_int", "opt_list", "opt_str", "parse_data_url", "req_dict", "req_list", "req_str",
    "retry_after_headers", "sse_data", "sse_event",
]

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
encode = _encoder.encode


def decode_body(body: bytes) -> dict[str, Any]:
    """The request body's top-level JSON object."""
    if not body or not body.strip():
        raise InvalidRequest("request body is empty: expected a JSON object")
    try:
        obj = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidRequest(f"request body: expected a JSON object, got {json_type(obj)}")
    return obj


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def invalid(path: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(f"{path}: expected {expected}, got {json_type(value)}", param=path)


def _path(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _missing(parent: str, key: str) -> InvalidRequest:
    path = _path(parent, key)
    return InvalidRequest(f"{path}: required field is missing", param=path)


def opt_str(obj: dict[str, Any], key: str, parent: str = "") -> str | None:
    v = obj.get(key)
    if v is None or isinstance(v, str):
        return v
    raise invalid(_path(parent, key), "a string", v)


def req_str(obj: dict[str, Any], key: str, parent: str = "") -> str:
    v = opt_str(obj, key, parent)
    if v is None:
        raise _missing(parent, key)
    return v


def opt_int(obj: dict[str, Any], key: str, parent: str = "") -> int | None:
    v = obj.get(key)
    if v is None or (isinstance(v, int) and not isinstance(v, bool)):
        return v
    # JSON has one number type; accept 5.0 where an integer is meant, as OpenAI does.
    if isinstance(v, float) and v.is_integer():
        return int(v)
    raise invalid(_path(parent, key), "an integer", v)


def opt_float(obj: dict[str, Any], key: str, parent: str = "") -> float | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    raise invalid(_path(parent, key), "a number", v)


def opt_bool(obj: dict[str, Any], key: str, parent: str = "") -> bool | None:
    v = obj.get(key)
    if v is None or isinstance(v, bool):
        return v
    raise invalid(_path(parent, key), "a boolean", v)


def opt_dict(obj: dict[str, Any], key: str, parent: str = "") -> dict[str, Any] | None:
    v = obj.get(key)
    if v is None or isinstance(v, dict):
        return v
    raise invalid(_path(parent, key), "an object", v)


def req_dict(obj: dict[str, Any], key: str, parent: str = "") -> dict[str, Any]:
    v = opt_dict(obj, key, parent)
    if v is None:
        raise _missing(parent, key)
    return v


def opt_list(obj: dict[str, Any], key: str, parent: str = "") -> list[Any] | None:
    v = obj.get(key)
    if v is None or isinstance(v, list):
        return v
    raise invalid(_path(parent, key), "an array", v)


def req_list(obj: dict[str, Any], key: str, parent: str = "") -> list[Any]:
    v = opt_list(obj, key, parent)
    if v is None:
        raise _missing(parent, key)
    return v


def new_id(prefix: str) -> str:
    # 96 random bits: unique enough for response/tool-call ids. Not secrets, so the
    # process PRNG (no syscall) instead of os.urandom, which showed up in the profile.
    return f"{prefix}{random.getrandbits(96):024x}"


def sse_data(obj: Any) -> bytes:
    return b"data: " + _encoder.encode(obj) + b"\n\n"


def sse_event(name: str, obj: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _encoder.encode(obj) + b"\n\n"


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``data:image/png;base64,AAAA`` → ``("image/png", "AAAA")``; anything else → None."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    if not sep or not head.endswith(";base64"):
        return None
    return head[:-7] or "application/octet-stream", data


def retry_after_headers(err: FlowbaseError) -> dict[str, str]:
    retry_after = getattr(err, "retry_after", None)
    return {"retry-after": str(retry_after)} if retry_after else {}


def merged_usage(start: Usage | None, end: Usage) -> Usage:
    if start is None:
        return end
    return Usage(
        input_tokens=max(start.input_tokens, end.input_tokens),
        output_tokens=max(start.output_tokens, end.output_tokens),
        cache_read_tokens=max(start.cache_read_tokens, end.cache_read_tokens),
        cache_write_tokens=max(start.cache_write_tokens, end.cache_write_tokens),
        reasoning_tokens=max(start.reasoning_tokens, end.reasoning_tokens),
    )
