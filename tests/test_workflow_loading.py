"""Workflow files: what loads, what is refused, and how the refusal reads."""

from __future__ import annotations

import pytest

from bench.targets import PROXY_WORKFLOW as PROXY  # the foundation issue's proxy example, as the benchmark serves it
from host.engine.workflow import WorkflowError, load_workflow
from plugin_runner.manifest import NodeTypeSpec

TYPES = {
    "openai.chat": NodeTypeSpec(provider_type="openai", config_schema={
        "type": "object", "required": ["model"],
        "properties": {"model": {"type": "string"}, "api_key": {"type": "string"}, "base_url": {"type": "string"}},
    }),
    "mock.chat": NodeTypeSpec(provider_type="mock"),
    "template": NodeTypeSpec(),
    "router": NodeTypeSpec(config_schema={"type": "object", "required": ["routes"]}),
}

ENV = {"UPSTREAM_BASE_URL": "http://127.0.0.1:9/v1", "UPSTREAM_API_KEY": "sk-test-secret-123"}


def load(text: str, env: dict[str, str] | None = None) -> object:
    return load_workflow(text, "wf.yaml", TYPES, ENV if env is None else env)


def test_the_proxy_example_loads_as_a_passthrough_openai_node_with_resolved_settings() -> None:
    wf = load_workflow(PROXY, "proxy.yaml", TYPES, ENV)
    node = wf.nodes["answer"]
    assert wf.model == "gpt-proxy" and wf.outputs == ["answer"]
    assert node.type == "openai.chat" and node.passthrough and node.inherit_tools
    assert node.config["base_url"] == "http://127.0.0.1:9/v1" and node.config["model"] == "small"
    assert wf.secrets == ["sk-test-secret-123"]


def test_the_stored_definition_keeps_variable_references_not_secrets() -> None:
    wf = load_workflow(PROXY, "proxy.yaml", TYPES, ENV)
    assert "sk-test-secret-123" not in wf.source and "sk-test-secret-123" not in str(wf.definition)
    assert wf.definition["providers"]["upstream"]["api_key"] == "${UPSTREAM_API_KEY}"


def test_a_missing_environment_variable_names_the_file_and_the_variable() -> None:
    with pytest.raises(WorkflowError, match=r"proxy\.yaml: environment variable \$\{UPSTREAM_API_KEY\} is not set"):
        load_workflow(PROXY, "proxy.yaml", TYPES, {"UPSTREAM_BASE_URL": "x"})


def test_a_default_after_colon_dash_is_used_when_the_variable_is_unset() -> None:
    wf = load(PROXY.replace("${UPSTREAM_BASE_URL}", "${NOPE:-http://127.0.0.1:1/v1}"))
    assert wf.nodes["answer"].config["base_url"] == "http://127.0.0.1:1/v1"  # type: ignore[attr-defined]


MULTI = """
version: 1
name: multi
model: m
providers: {local: {type: mock}}
nodes:
  - id: route
    type: router
    inputs: {text: "{{ request.input }}"}
    config: {routes: [{name: code, match: code}]}
  - id: small
    type: llm
    provider: local
    model: s
    prompt: "{{ request.input }}"
  - id: big
    type: llm
    provider: local
    model: b
    when: route.route == 'code'
  - id: fmt
    type: template
    inputs: {text: "{{ small.text }} / {{ big.text }}"}
output: [big, fmt]
"""


def test_references_become_dependencies_and_independent_nodes_have_none() -> None:
    wf = load(MULTI)
    assert wf.nodes["route"].deps == [] and wf.nodes["small"].deps == []  # type: ignore[attr-defined]
    assert wf.nodes["big"].deps == ["route"]  # type: ignore[attr-defined]
    assert wf.nodes["fmt"].deps == ["big", "small"]  # type: ignore[attr-defined]
    assert wf.outputs == ["big", "fmt"]  # type: ignore[attr-defined]
    assert not wf.nodes["small"].inherit_tools  # type: ignore[attr-defined]


@pytest.mark.parametrize(("change", "message"), [
    (("type: template", "type: nosuch"), r"node 'fmt': unknown node type 'nosuch'"),
    (("{{ small.text }}", "{{ ghost.text }}"), r"node 'fmt': refers to unknown node or variable 'ghost'"),
    (("route.route == 'code'", "fmt.text == 'x'"), r"node '(big|fmt)' is part of a cycle"),
    (("provider: local\n    model: s", "provider: nowhere\n    model: s"), r"node 'small': unknown provider 'nowhere'"),
    (("config: {routes: [{name: code, match: code}]}", "config: {}"), r"node 'route': invalid config at \(config\): 'routes' is a required"),
    (("id: fmt", "id: route"), r"node 'route': duplicate node id"),
    (("output: [big, fmt]", "output: nothing"), r"output names unknown node 'nothing'"),
    (("when: route.route == 'code'", "when: route.route =="), r"node 'big': condition"),
])
def test_broken_workflows_are_refused_with_an_error_naming_the_node(change: tuple[str, str], message: str) -> None:
    with pytest.raises(WorkflowError, match=message):
        load(MULTI.replace(*change))


def test_config_errors_never_echo_secret_values() -> None:
    text = PROXY.replace("model: small", "model: 42")
    with pytest.raises(WorkflowError) as info:
        load(text)
    assert "sk-test-secret-123" not in str(info.value) and "node 'answer'" in str(info.value)


def test_unknown_top_level_keys_and_bad_yaml_are_clear_errors() -> None:
    with pytest.raises(WorkflowError, match=r"wf\.yaml: Object contains unknown field `modle`"):
        load(PROXY.replace("model: gpt-proxy", "modle: gpt-proxy\nmodel: x"))
    with pytest.raises(WorkflowError, match=r"wf\.yaml: not valid YAML"):
        load("version: 1\nnodes: [\n")
