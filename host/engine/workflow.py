"""Workflow files: parse, resolve ``${VAR}``, validate and compile into a runnable ``Workflow``.

A workflow file (YAML) names the model clients call and the nodes that answer it::

    version: 1
    name: proxy
    model: gpt-proxy
    providers:
      upstream: {type: openai, base_url: ${UPSTREAM_BASE_URL}, api_key: ${UPSTREAM_API_KEY}}
    nodes:
      - id: answer
        type: llm
        provider: upstream
        model: small

Everything is checked at load, and every error names the file and the node: unknown node type or
provider, a template referring to an unknown node, a cycle, a config that fails the node type's
JSON Schema, a missing environment variable. Resolved secrets live only in the compiled
``Workflow`` held in memory; ``definition`` (what the store keeps) is the file as written.
"""

from __future__ import annotations

import graphlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import jsonschema
import msgspec
import yaml

from host.engine.templates import Condition, Template, TemplateError, compile_value, names_in
from plugin_runner.manifest import NodeTypeSpec
from plugin_sdk.types import Role

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NODE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_NAMES = frozenset({"request", "env", "loop", "range", "true", "false", "none"})
# Node timeout when neither the node, its provider nor its manifest says (seconds): long enough for
# a slow reasoning model, short enough that a stuck node does not hold a client forever.
DEFAULT_TIMEOUT_S = 600.0


class WorkflowError(ValueError):
    """A workflow file cannot be loaded; the message names the file (and node)."""


class ProviderSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    type: str
    base_url: str | None = None
    api_key: str | None = None
    headers: dict[str, str] = {}
    timeout_s: float | None = None
    params: dict[str, Any] = {}
    price: dict[str, float] | None = None
    options: dict[str, Any] = {}


class MessageSpec(msgspec.Struct, forbid_unknown_fields=True):
    role: Literal["system", "developer", "user", "assistant"]
    content: str


class NodeSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    id: str
    type: str
    provider: str | None = None
    model: str | None = None
    system: str | None = None
    prompt: str | None = None
    messages: list[MessageSpec] | None = None
    tools: Literal["inherit", "none"] | None = None
    params: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    config: dict[str, Any] = {}
    when: str | None = None
    after: list[str] = []
    timeout_s: float | None = None
    on_error: Literal["fail", "skip"] = "fail"


class WorkflowSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    version: int
    name: str
    model: str
    nodes: list[NodeSpec]
    description: str = ""
    providers: dict[str, ProviderSpec] = {}
    output: str | list[str] | None = None


@dataclass
class Node:
    id: str
    type: str
    is_model: bool
    config: dict[str, Any]
    timeout_s: float
    deps: list[str]
    inputs: Any = None
    when: Condition | None = None
    provider: str | None = None
    model: str | None = None
    system: Template | None = None
    messages: list[tuple[Role, Template]] | None = None
    inherit_tools: bool = True
    params: dict[str, Any] = field(default_factory=dict)
    price: dict[str, float] | None = None
    on_error: Literal["fail", "skip"] = "fail"

    @property
    def passthrough(self) -> bool:
        """The node gets the client's request as it came (no system/prompt/messages override)."""
        return self.system is None and self.messages is None


@dataclass
class Workflow:
    name: str
    model: str
    description: str
    nodes: dict[str, Node]
    order: list[str]
    outputs: list[str]
    source: str
    definition: dict[str, Any]
    path: str
    secrets: list[str]
    version: int = 0
    # Nodes some other node waits for.
    depended_on: frozenset[str] = frozenset()


def _resolve_env(value: Any, env: Mapping[str, str], where: str, used: dict[str, str]) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                used[name] = env[name]
                return env[name]
            if default is not None:
                return default
            raise WorkflowError(f"{where}: environment variable ${{{name}}} is not set")
        return _ENV_REF.sub(sub, value) if "${" in value else value
    if isinstance(value, dict):
        return {k: _resolve_env(v, env, where, used) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v, env, where, used) for v in value]
    return value


def _name_nodes(message: str, definition: dict[str, Any]) -> str:
    """msgspec says ``at `$.nodes[2].model```; say which node that is."""
    m = re.search(r"`\$\.nodes\[(\d+)\]", message)
    nodes = definition.get("nodes")
    if m and isinstance(nodes, list) and int(m.group(1)) < len(nodes) and isinstance(nodes[int(m.group(1))], dict):
        node_id = nodes[int(m.group(1))].get("id")
        if node_id:
            return f"node '{node_id}': {message}"
    return message


def parse_source(text: str, path: str) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WorkflowError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise WorkflowError(f"{path}: a workflow file must be a YAML mapping (version, name, model, nodes)")
    return raw


def load_workflow(text: str, path: str, node_types: Mapping[str, NodeTypeSpec],
                  env: Mapping[str, str] | None = None) -> Workflow:
    """Compile a workflow file. ``node_types`` are the types the running plugins provide."""
    definition = parse_source(text, path)
    used: dict[str, str] = {}
    resolved = _resolve_env(definition, os.environ if env is None else env, path, used)
    try:
        spec = msgspec.convert(resolved, WorkflowSpec)
    except msgspec.ValidationError as exc:
        raise WorkflowError(f"{path}: {_name_nodes(str(exc), definition)}") from exc
    if spec.version != 1:
        raise WorkflowError(f"{path}: unsupported workflow version {spec.version} (this flowbase reads version 1)")
    if not spec.nodes:
        raise WorkflowError(f"{path}: a workflow needs at least one node")
    secrets = [p.api_key for p in spec.providers.values() if p.api_key]
    secrets += [v for p in spec.providers.values() for v in p.headers.values()]
    nodes = _compile_nodes(spec, path, node_types)
    order = _topo_order(nodes, path)
    outputs = _outputs(spec, nodes, path)
    return Workflow(name=spec.name, model=spec.model, description=spec.description, nodes=nodes,
                    order=order, outputs=outputs, source=text, definition=definition, path=path,
                    secrets=[s for s in secrets if s], depended_on=frozenset(d for n in nodes.values() for d in n.deps))


def _model_type(provider: ProviderSpec, node_types: Mapping[str, NodeTypeSpec]) -> str | None:
    for name, nt in node_types.items():
        if nt.provider_type == provider.type:
            return name
    return None


def _compile_nodes(spec: WorkflowSpec, path: str, node_types: Mapping[str, NodeTypeSpec]) -> dict[str, Node]:
    ids = [n.id for n in spec.nodes]
    nodes: dict[str, Node] = {}
    for ns in spec.nodes:
        where = f"{path}: node '{ns.id}'"
        if not _NODE_ID.match(ns.id) or ns.id in RESERVED_NAMES:
            raise WorkflowError(f"{where}: a node id must be an identifier (letters, digits, _) and not {sorted(RESERVED_NAMES)}")
        if ns.id in nodes:
            raise WorkflowError(f"{where}: duplicate node id")
        try:
            node = _compile_node(ns, spec, where, node_types)
        except TemplateError as exc:
            raise WorkflowError(f"{where}: {exc}") from exc
        refs = names_in(node.inputs) | (node.when.names if node.when else set())
        refs |= node.system.names if node.system else set()
        for _, t in node.messages or []:
            refs |= t.names
        for ref in sorted(refs | set(ns.after)):
            if ref == ns.id:
                raise WorkflowError(f"{where}: refers to itself")
            if ref not in ids and ref not in RESERVED_NAMES:
                raise WorkflowError(f"{where}: refers to unknown node or variable '{ref}' (known nodes: {', '.join(ids)}; "
                                    "the client's request is 'request')")
        node.deps = sorted(r for r in refs | set(ns.after) if r in ids)
        node.on_error = ns.on_error
        nodes[ns.id] = node
    return nodes


def _compile_node(ns: NodeSpec, spec: WorkflowSpec, where: str, node_types: Mapping[str, NodeTypeSpec]) -> Node:
    when = Condition(ns.when) if ns.when else None
    if ns.type == "llm" or (ns.type in node_types and node_types[ns.type].provider_type):
        if not ns.provider:
            raise WorkflowError(f"{where}: a model node needs `provider:` (one of: {', '.join(spec.providers) or 'none declared'})")
        prov = spec.providers.get(ns.provider)
        if prov is None:
            raise WorkflowError(f"{where}: unknown provider '{ns.provider}' (declared: {', '.join(spec.providers) or 'none'})")
        ntype = ns.type if ns.type != "llm" else _model_type(prov, node_types)
        if ntype is None:
            known = sorted({t.provider_type for t in node_types.values() if t.provider_type})
            raise WorkflowError(f"{where}: provider type '{prov.type}' is not provided by any plugin (known: {', '.join(known)})")
        if not ns.model:
            raise WorkflowError(f"{where}: a model node needs `model:` (the upstream model name)")
        config: dict[str, Any] = {"model": ns.model, "provider": ns.provider, **prov.options, **ns.config}
        for key in ("base_url", "api_key", "timeout_s", "price"):
            if getattr(prov, key) is not None:
                config[key] = getattr(prov, key)
        if prov.headers:
            config["headers"] = prov.headers
        params = {**prov.params, **ns.params}
        if params:
            config["params"] = params
        _check_config(config, node_types[ntype], where)
        messages: list[tuple[Role, Template]] | None = None
        if ns.messages is not None:
            messages = [(m.role, Template(m.content)) for m in ns.messages]
        if ns.prompt is not None:
            messages = (messages or []) + [("user", Template(ns.prompt))]
        timeout = ns.timeout_s or prov.timeout_s or node_types[ntype].timeout_s or DEFAULT_TIMEOUT_S
        system = Template(ns.system) if ns.system is not None else None
        inherit = ns.tools == "inherit" if ns.tools else (system is None and messages is None)
        return Node(id=ns.id, type=ntype, is_model=True, config=config, timeout_s=timeout, deps=[], when=when,
                    provider=ns.provider, model=ns.model, system=system, messages=messages, inherit_tools=inherit,
                    params=params, price=prov.price, inputs=compile_value(ns.inputs))
    if ns.type not in node_types:
        raise WorkflowError(f"{where}: unknown node type '{ns.type}' (known: llm, {', '.join(sorted(node_types))})")
    for key in ("provider", "model", "system", "prompt", "messages", "tools"):
        if getattr(ns, key):
            raise WorkflowError(f"{where}: `{key}:` only applies to model nodes (type llm), not '{ns.type}'")
    _check_config(ns.config, node_types[ns.type], where)
    timeout = ns.timeout_s or node_types[ns.type].timeout_s or DEFAULT_TIMEOUT_S
    return Node(id=ns.id, type=ns.type, is_model=False, config=ns.config, timeout_s=timeout, deps=[], when=when,
                inputs=compile_value(ns.inputs))


def _check_config(config: dict[str, Any], nt: NodeTypeSpec, where: str) -> None:
    if not nt.config_schema:
        return
    validator = jsonschema.validators.validator_for(nt.config_schema)(nt.config_schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        at = ".".join(str(p) for p in err.absolute_path) or "(config)"
        # Never echo config values: they may hold resolved secrets.
        raise WorkflowError(f"{where}: invalid config at {at}: {_schema_message(err)}")


def _schema_message(err: jsonschema.ValidationError) -> str:
    if err.validator in ("required", "additionalProperties"):
        return str(err.message)
    return f"does not satisfy `{err.validator}: {err.validator_value}`"


def _topo_order(nodes: dict[str, Node], path: str) -> list[str]:
    ts: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter({n.id: n.deps for n in nodes.values()})
    try:
        return list(ts.static_order())
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        raise WorkflowError(f"{path}: node '{cycle[0]}' is part of a cycle: {' -> '.join(cycle)}") from exc


def _outputs(spec: WorkflowSpec, nodes: dict[str, Node], path: str) -> list[str]:
    if spec.output is None:
        return [spec.nodes[-1].id]
    outs = [spec.output] if isinstance(spec.output, str) else list(spec.output)
    for o in outs:
        if o not in nodes:
            raise WorkflowError(f"{path}: output names unknown node '{o}'")
    if not outs:
        raise WorkflowError(f"{path}: output must name at least one node")
    return outs
