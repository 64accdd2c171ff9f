"""The flow node types: text plumbing between model nodes. Each takes its input as
``inputs.text`` (rendered by the host from the workflow's ``inputs: {text: "{{ … }}"}``).

- ``template``  → ``{text, json?}``: ``inputs.text`` (or the literal ``config.text`` when no input
  is given); ``strip`` trims whitespace; ``json: true`` parses the text and adds ``json`` (text that
  is not JSON fails the node).
- ``formatter`` → ``{text, json, valid, errors}``: extracts the JSON object/array in the text (bare,
  fenced or inside prose), checks it against ``config.schema``, re-serialises it compactly or with
  ``indent``; ``fail_on_invalid`` fails the node instead of reporting ``valid: false``.
- ``verifier``  → ``{passed, failures, text}``: ``min_length``/``max_length`` (characters),
  ``contains``/``not_contains`` (strings), ``regex``/``not_regex`` (patterns), ``json_schema``
  (the text must hold JSON matching it), ``ignore_case``; ``fail_on_fail`` fails the node.
- ``router``    → ``{route}``: the ``name`` of the first of ``config.routes`` whose ``match`` regex
  or any ``contains`` string hits the text, else ``config.default`` (default ``"default"``).
"""

from __future__ import annotations

import json
from typing import Any

from plugin_sdk.errors import NodeError
from plugin_sdk.node import NodeContext
from plugins.flow.jsontext import compiled, dump, extract, schema_errors


def _text(ctx: NodeContext) -> str:
    text = ctx.inputs.get("text")
    if text is None:
        text = ctx.config.get("text")
    if text is None:
        raise NodeError(f"node '{ctx.node_id}' ({ctx.node_type}) needs inputs.text")
    return text if isinstance(text, str) else str(text)


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


async def template(ctx: NodeContext) -> dict[str, Any]:
    text = _text(ctx)
    if ctx.config.get("strip"):
        text = text.strip()
    out: dict[str, Any] = {"text": text}
    if ctx.config.get("json"):
        try:
            out["json"] = json.loads(text)
        except ValueError as exc:
            raise NodeError(f"node '{ctx.node_id}' (template) rendered text that is not JSON: {exc}") from exc
    return out


async def formatter(ctx: NodeContext) -> dict[str, Any]:
    text = _text(ctx)
    cfg = ctx.config
    value = extract(text)
    if value is None:
        out: dict[str, Any] = {"text": text, "json": None, "valid": False,
                               "errors": ["no JSON object or array found in the text"]}
    else:
        errors = schema_errors(value, cfg["schema"]) if cfg.get("schema") else []
        indent = cfg.get("indent", 2) if cfg.get("pretty") else None
        out = {"text": dump(value, indent), "json": value, "valid": not errors, "errors": errors}
    if cfg.get("fail_on_invalid") and not out["valid"]:
        raise NodeError(f"node '{ctx.node_id}' (formatter): {'; '.join(out['errors'])}")
    return out


def _check(text: str, cfg: dict[str, Any]) -> list[str]:
    failures: list[str] = []
    ignore_case = bool(cfg.get("ignore_case"))
    n = len(text)
    if (lo := cfg.get("min_length")) is not None and n < lo:
        failures.append(f"shorter than {lo} characters (got {n})")
    if (hi := cfg.get("max_length")) is not None and n > hi:
        failures.append(f"longer than {hi} characters (got {n})")
    haystack = text.lower() if ignore_case else text
    for s in _strings(cfg.get("contains")):
        if (s.lower() if ignore_case else s) not in haystack:
            failures.append(f"does not contain {s!r}")
    for s in _strings(cfg.get("not_contains")):
        if (s.lower() if ignore_case else s) in haystack:
            failures.append(f"contains forbidden {s!r}")
    for p in _strings(cfg.get("regex")):
        if not compiled(p, ignore_case).search(text):
            failures.append(f"does not match /{p}/")
    for p in _strings(cfg.get("not_regex")):
        if compiled(p, ignore_case).search(text):
            failures.append(f"matches forbidden /{p}/")
    if (schema := cfg.get("json_schema")) is not None:
        value = extract(text)
        if value is None:
            failures.append("holds no JSON object or array")
        else:
            failures.extend(f"JSON does not match the schema {e}" for e in schema_errors(value, schema))
    return failures


async def verifier(ctx: NodeContext) -> dict[str, Any]:
    text = _text(ctx)
    failures = _check(text, ctx.config)
    if failures and ctx.config.get("fail_on_fail"):
        raise NodeError(f"node '{ctx.node_id}' (verifier) rejected the text: {'; '.join(failures)}")
    return {"passed": not failures, "failures": failures, "text": text}


async def router(ctx: NodeContext) -> dict[str, Any]:
    text = _text(ctx)
    cfg = ctx.config
    default_ignore = bool(cfg.get("ignore_case"))
    for route in cfg.get("routes") or []:
        ignore_case = bool(route.get("ignore_case", default_ignore))
        pattern = route.get("match")
        if pattern is not None and compiled(pattern, ignore_case).search(text):
            return {"route": route["name"]}
        hay = text.lower() if ignore_case else text
        if any((s.lower() if ignore_case else s) in hay for s in _strings(route.get("contains"))):
            return {"route": route["name"]}
    return {"route": cfg.get("default", "default")}
