"""The flow node types (template, formatter, verifier, router), run with the runner's schema checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

from plugin_runner.manifest import load_manifest
from plugin_sdk.errors import NodeError
from plugin_sdk.node import NodeFn
from plugin_sdk.testing import run_node
from plugins.flow import nodes

MANIFEST = load_manifest(Path(__file__).resolve().parent.parent / "manifests" / "flow.yaml")
FNS: dict[str, NodeFn] = {"template": nodes.template, "formatter": nodes.formatter, "verifier": nodes.verifier,
                          "router": nodes.router}


def config_ok(node_type: str, config: dict[str, Any]) -> None:
    schema = MANIFEST.node_types[node_type].config_schema
    jsonschema.validators.validator_for(schema)(schema).validate(config)


async def run(node_type: str, text: str | None, /, **config: Any) -> dict[str, Any]:
    config_ok(node_type, config)
    res = await run_node(FNS[node_type], config=config, inputs={} if text is None else {"text": text},
                         validate_with=MANIFEST.node_types[node_type], node_type=node_type)
    return res.output


async def test_template_passes_its_rendered_text_on_stripped_or_parsed_as_json() -> None:
    assert await run("template", "  hi  ") == {"text": "  hi  "}
    assert await run("template", "  hi  ", strip=True) == {"text": "hi"}
    assert await run("template", None, text="static") == {"text": "static"}
    assert await run("template", ' {"a": [1, 2]} ', json=True) == {"text": ' {"a": [1, 2]} ', "json": {"a": [1, 2]}}
    with pytest.raises(NodeError, match=r"node 'test' \(template\) rendered text that is not JSON"):
        await run("template", "not json", json=True)


@pytest.mark.parametrize("text", [
    '{"name": "Ada", "age": 36}',
    'Here you go:\n```json\n{"name": "Ada", "age": 36}\n```\nAnything else?',
    "```\n{\"name\": \"Ada\", \"age\": 36}\n```",
    'Sure! The record is {"name": "Ada", "age": 36} as requested. {"other": 1}',
])
async def test_formatter_finds_the_json_in_bare_fenced_or_prose_text_and_writes_it_compactly(text: str) -> None:
    out = await run("formatter", text)
    assert out == {"text": '{"name":"Ada","age":36}', "json": {"name": "Ada", "age": 36}, "valid": True,
                   "errors": []}


async def test_formatter_reports_schema_violations_and_pretty_prints_on_request() -> None:
    schema = {"type": "object", "required": ["name", "age"],
              "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}
    out = await run("formatter", '[{"x": 1}]', schema={"type": "array", "items": {"type": "object"}}, pretty=True,
                    indent=4)
    assert out["valid"] is True and out["text"] == '[\n    {\n        "x": 1\n    }\n]'
    out = await run("formatter", 'result: {"name": "Ada", "age": "old"}', schema=schema)
    assert out["valid"] is False and out["errors"] == ["at $.age: 'old' is not of type 'integer'"]
    assert out["json"] == {"name": "Ada", "age": "old"}
    out = await run("formatter", "no structure here, only {braces that are not json")
    assert out == {"text": "no structure here, only {braces that are not json", "json": None, "valid": False,
                   "errors": ["no JSON object or array found in the text"]}
    with pytest.raises(NodeError, match=r"\(formatter\): at \$: 'name' is a required property"):
        await run("formatter", '{"age": 3}', schema=schema, fail_on_invalid=True)


async def test_verifier_lists_every_failed_rule() -> None:
    out = await run("verifier", "Hello World", min_length=3, max_length=5, contains=["world", "Hello"],
                    not_contains="World", regex=r"^\d+$", not_regex=[r"W\w+"])
    assert out == {"passed": False, "text": "Hello World", "failures": [
        "longer than 5 characters (got 11)", "does not contain 'world'", "contains forbidden 'World'",
        r"does not match /^\d+$/", r"matches forbidden /W\w+/"]}
    out = await run("verifier", "Hello World", contains="world", ignore_case=True, regex="^hello")
    assert out == {"passed": True, "failures": [], "text": "Hello World"}


async def test_verifier_checks_json_against_a_schema_and_can_fail_the_node() -> None:
    schema = {"type": "object", "required": ["answer"]}
    assert (await run("verifier", '```json\n{"answer": 42}\n```', json_schema=schema))["passed"] is True
    out = await run("verifier", '{"other": 1}', json_schema=schema)
    assert out["failures"] == ["JSON does not match the schema at $: 'answer' is a required property"]
    assert (await run("verifier", "plain words", json_schema=schema))["failures"] == ["holds no JSON object or array"]
    with pytest.raises(NodeError, match=r"\(verifier\) rejected the text: shorter than 50 characters \(got 5\)"):
        await run("verifier", "short", min_length=50, fail_on_fail=True)


async def test_router_picks_the_first_matching_route_else_the_default() -> None:
    routes = [{"name": "code", "match": r"\b(def|class|import)\b"},
              {"name": "math", "contains": ["integral", "derivative"], "ignore_case": True},
              {"name": "greeting", "contains": "hello"}]
    assert await run("router", "import os; hello", routes=routes) == {"route": "code"}
    assert await run("router", "What is the DERIVATIVE of x^2?", routes=routes) == {"route": "math"}
    assert await run("router", "hello there", routes=routes) == {"route": "greeting"}
    assert await run("router", "HELLO there", routes=routes) == {"route": "default"}
    assert await run("router", "HELLO there", routes=routes, ignore_case=True) == {"route": "greeting"}
    assert await run("router", "weather?", routes=routes, default="chat") == {"route": "chat"}


async def test_a_bad_regex_fails_the_node_naming_the_pattern() -> None:
    with pytest.raises(NodeError, match=r"invalid regular expression '\(unclosed'"):
        await run("router", "x", routes=[{"name": "r", "match": "(unclosed"}])


async def test_flow_nodes_need_their_text_input_and_configs_are_checked_by_their_schemas() -> None:
    with pytest.raises(NodeError, match=r"got inputs that do not match its input_schema at \$: 'text' is a required"):
        await run_node(nodes.router, config={"routes": []}, inputs={}, validate_with=MANIFEST.node_types["router"])
    bad: list[tuple[str, dict[str, Any]]] = [
        ("router", {"routes": [{"name": "x"}]}), ("verifier", {"min_length": "3"}), ("formatter", {"unknown": True}),
        ("router", {})]
    for node_type, config in bad:
        with pytest.raises(jsonschema.ValidationError):
            config_ok(node_type, config)
