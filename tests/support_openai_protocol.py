"""Helpers for the OpenAI protocol adapter tests: SSE parsing, an offline official-SDK client fed with
our adapters' bytes, and golden-file loading with id/time normalisation."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import openai
import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
# FLOWBASE_UPDATE_GOLDEN=1 rewrites the expected sections of golden files from the current code
# (review the diff before committing it).
UPDATE = os.environ.get("FLOWBASE_UPDATE_GOLDEN") == "1"

_GENERATED_ID = re.compile(r"^(chatcmpl-|resp_|msg_|rs_|fc_)[0-9a-f]{24}$")
_TIME_KEYS = frozenset({"created", "created_at", "completed_at"})


def parse_sse(data: bytes) -> list[dict[str, Any]]:
    """SSE bytes → [{"event": name?, "data": decoded JSON or "[DONE]"}], checking the framing."""
    text = data.decode()
    assert text.endswith("\n\n"), "every SSE message ends with a blank line"
    messages = []
    for block in text[:-2].split("\n\n"):
        msg: dict[str, Any] = {}
        for line in block.split("\n"):
            field, sep, value = line.partition(": ")
            assert sep and field in ("event", "data") and field not in msg, f"bad SSE line {line!r}"
            msg[field] = value
        raw = msg["data"]
        msg["data"] = raw if raw == "[DONE]" else json.loads(raw)
        messages.append(msg)
    return messages


def normalise(obj: Any) -> Any:
    """Replace generated ids by ``<prefix><n>`` (n = order of first appearance, so equal ids stay
    equal) and timestamps by ``"<time>"``, making adapter output comparable with a golden file."""
    seen: dict[str, str] = {}

    def walk(v: Any, key: str | None = None) -> Any:
        if isinstance(v, dict):
            return {k: walk(x, k) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if key in _TIME_KEYS and isinstance(v, int) and not isinstance(v, bool):
            return "<time>"
        if isinstance(v, str):
            m = _GENERATED_ID.match(v)
            if m:
                if v not in seen:
                    seen[v] = f"{m.group(1)}<{len(seen) + 1}>"
                return seen[v]
        return v

    return walk(obj)


def golden_cases(protocol: str) -> list[Path]:
    return sorted((GOLDEN / protocol).glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text())
    return case


def save(path: Path, case: dict[str, Any]) -> None:
    path.write_text(json.dumps(case, indent=2, ensure_ascii=False) + "\n")


def to_builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj)


def sdk_client(body: bytes, *, status: int = 200, content_type: str = "application/json",
               headers: dict[str, str] | None = None,
               seen: list[httpx2.Request] | None = None) -> openai.OpenAI:
    """An official ``openai.OpenAI`` client whose every request is answered with ``body`` (our
    adapter's output), offline; requests it sent are appended to ``seen``."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        if seen is not None:
            seen.append(request)
        return httpx2.Response(status, content=body, headers={"content-type": content_type, **(headers or {})})

    return openai.OpenAI(api_key="sk-test", base_url="http://flowbase.test/v1", max_retries=0,
                         http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))


def captured_body(call: Callable[[openai.OpenAI], Any]) -> bytes:
    """The request body the official SDK sends for ``call(client)`` (answered with a 400, which
    the SDK raises as BadRequestError, so no answer needs to be made up)."""
    seen: list[httpx2.Request] = []
    client = sdk_client(b'{"error": {"message": "captured", "type": "invalid_request_error"}}', status=400, seen=seen)
    with pytest.raises(openai.BadRequestError):
        call(client)
    assert len(seen) == 1, "the SDK sent exactly one request"
    return seen[0].read()


# ---- golden runner ------------------------------------------------------------------------------

def make_error(spec: dict[str, Any]) -> Any:
    """A plugin_sdk error from its golden description {"class", "message", …keyword arguments}."""
    from plugin_sdk import errors

    kwargs = {k: v for k, v in spec.items() if k not in ("class", "message")}
    return getattr(errors, spec["class"])(spec["message"], **kwargs)


def run_golden(path: Path, adapter: Any) -> None:
    """Check (or with FLOWBASE_UPDATE_GOLDEN=1 rewrite) every section of one golden file:
    ``request`` (wire → canonical + options), ``response`` (canonical → wire), ``stream``
    (canonical events → SSE messages, ending with ``end()`` or ``error()``), ``errors``
    (error → status, body, headers)."""
    from plugin_sdk.types import Response, StreamEvent

    case = load(path)
    got: dict[str, Any] = {}
    if "request" in case:
        sec = case["request"]
        req, options = adapter.parse_request(json.dumps(sec["wire"]).encode())
        got["request"] = {"canonical": to_builtins(req), "options": options}
    if "response" in case:
        sec = case["response"]
        resp = msgspec.convert(sec["canonical"], Response)
        got["response"] = {"wire": normalise(json.loads(adapter.render_response(resp, sec["model"], sec["options"])))}
    if "stream" in case:
        sec = case["stream"]
        enc = adapter.StreamEncoder(sec["model"], sec["options"])
        events = msgspec.convert(sec["events"], list[StreamEvent])
        data = b"".join(enc.event(ev) for ev in events)
        data += enc.error(make_error(sec["error"])) if "error" in sec else enc.end()
        got["stream"] = {"sse": normalise(parse_sse(data))}
    if "errors" in case:
        got["errors"] = []
        for entry in case["errors"]:
            status, body, headers = adapter.error_body(make_error(entry["error"]))
            got["errors"].append({"expected": {"status": status, "body": json.loads(body), "headers": headers}})

    if UPDATE:
        for name, produced in got.items():
            if name == "errors":
                for entry, out in zip(case["errors"], produced, strict=True):
                    entry.update(out)
            else:
                case[name].update(produced)
        save(path, case)
        return
    for name, produced in got.items():
        if name == "errors":
            for entry, out in zip(case["errors"], produced, strict=True):
                assert out["expected"] == entry.get("expected"), f"{path.name}: error {entry['error']}"
            continue
        for key, value in produced.items():
            assert value == case[name].get(key), f"{path.name}: section {name}.{key} differs"
