"""JSON in model text: find it, check it against a JSON Schema, write it back out.

- ``extract(text)`` → the first JSON object or array in ``text``: the whole text if it is one,
  else the first fenced block (```json … ``` or ``` … ```) that is one, else the first ``{``/``[``
  from which a complete JSON value decodes. ``None`` when there is none.
- ``schema_errors(value, schema)`` → one "at <path>: <message>" string per violation (at most
  ``MAX_ERRORS``), with validators compiled once per distinct schema.
- ``dump(value, indent)`` → compact (``indent`` None/0) or pretty JSON, non-ASCII kept as is.
- ``compiled(pattern, ignore_case)`` → a cached compiled regex; a bad pattern is a ``NodeError``
  naming it.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import msgspec

from plugin_sdk.errors import NodeError

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

# Violations reported per check: enough to fix a draft, few enough to read in a trace.
MAX_ERRORS = 20
# Candidate '{' / '[' positions tried in prose before giving up (bounds the work on long texts).
MAX_CANDIDATES = 200

_FENCE = re.compile(r"```[ \t]*(?:json[c5]?|JSON)?[ \t]*\r?\n(.*?)```", re.DOTALL)
_START = re.compile(r"[\[{]")
_decoder = json.JSONDecoder()
_validators: dict[bytes, Validator] = {}


def _container(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, (dict, list)) else None


def extract(text: str) -> Any:
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        value = _container(stripped)
        if value is not None:
            return value
    for m in _FENCE.finditer(text):
        value = _container(m.group(1).strip())
        if value is not None:
            return value
    for n, m in enumerate(_START.finditer(text)):
        if n >= MAX_CANDIDATES:
            break
        try:
            value, _ = _decoder.raw_decode(text, m.start())
        except ValueError:
            continue
        if isinstance(value, (dict, list)):
            return value
    return None


def _path(parts: Any) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _validator(schema: dict[str, Any]) -> Validator:
    key = msgspec.json.encode(schema)
    v = _validators.get(key)
    if v is None:
        from jsonschema.exceptions import SchemaError
        from jsonschema.validators import validator_for

        cls = validator_for(schema)
        try:
            cls.check_schema(schema)
        except SchemaError as exc:
            raise NodeError(f"config schema is not a valid JSON Schema: {exc.message}") from exc
        v = _validators[key] = cls(schema)
    return v


def schema_errors(value: Any, schema: dict[str, Any]) -> list[str]:
    errors = sorted(_validator(schema).iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
    return [f"at {_path(e.absolute_path)}: {e.message}" for e in errors[:MAX_ERRORS]]


def dump(value: Any, indent: int | None) -> str:
    if indent:
        return json.dumps(value, ensure_ascii=False, indent=indent)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@lru_cache(maxsize=1024)
def compiled(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise NodeError(f"invalid regular expression {pattern!r}: {exc}") from exc
