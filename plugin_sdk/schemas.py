"""JSON Schema checks of a node's inputs and output, shared by the plugin runner and
``plugin_sdk.testing`` so a node behaves the same under test as in production.

- ``compile_schema(schema, where=…)`` builds a validator once (``validator_for(schema)(schema)``
  after ``check_schema``); an empty schema means "anything" and compiles to ``None`` (no cost).
  An invalid schema raises ``SchemaError`` naming ``where``.
- ``NodeSchemas.compile(spec)`` compiles a node type's ``input_schema`` and ``output_schema``;
  ``spec`` is anything with those two dict attributes (the runner passes its manifest's
  ``NodeTypeSpec``; plugin_sdk never imports plugin_runner).
- ``check_inputs`` / ``check_output`` return ``None`` when the value conforms, else one clear
  message naming the node id, node type, the schema path of the most relevant error and the error.
- ``require_inputs`` / ``node_output`` are the checks a run goes through (raising ``NodeError``);
  ``node_output`` also turns a returned ``Response`` into its output dict.

jsonschema is imported lazily: a runner whose node types declare no schemas never pays for it.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Protocol

from plugin_sdk.errors import NodeError
from plugin_sdk.node import response_output
from plugin_sdk.types import Response

if TYPE_CHECKING:
    from jsonschema.protocols import Validator


class SchemaError(Exception):
    """A schema in a manifest is not a valid JSON Schema; the message says which one."""


class HasSchemas(Protocol):
    @property
    def input_schema(self) -> dict[str, Any]: ...
    @property
    def output_schema(self) -> dict[str, Any]: ...


def compile_schema(schema: dict[str, Any], *, where: str) -> Validator | None:
    if not schema:
        return None
    from jsonschema.exceptions import SchemaError as JsonSchemaError
    from jsonschema.validators import validator_for

    cls = validator_for(schema)
    try:
        cls.check_schema(schema)
    except JsonSchemaError as exc:
        raise SchemaError(f"{where}: invalid JSON Schema at {_path(exc.absolute_path)}: {exc.message}") from exc
    return cls(schema)


def _path(parts: Any) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def violation(validator: Validator | None, value: Any) -> str | None:
    """``None`` if ``value`` conforms, else "at <path>: <message>" for the most relevant error."""
    if validator is None:
        return None
    errors = validator.iter_errors(value)
    first = next(errors, None)
    if first is None:
        return None
    from jsonschema.exceptions import best_match

    err = best_match(itertools.chain([first], errors)) or first
    return f"at {_path(err.absolute_path)}: {err.message}"


class NodeSchemas:
    """A node type's compiled input and output validators (compile once, check per call)."""

    __slots__ = ("input", "output")

    def __init__(self, input: Validator | None, output: Validator | None) -> None:
        self.input = input
        self.output = output

    @classmethod
    def compile(cls, spec: HasSchemas, *, where: str) -> NodeSchemas:
        return cls(compile_schema(spec.input_schema, where=f"{where} input_schema"),
                   compile_schema(spec.output_schema, where=f"{where} output_schema"))

    def check_inputs(self, inputs: dict[str, Any], *, node_id: str, node_type: str) -> str | None:
        v = violation(self.input, inputs)
        if v is None:
            return None
        return f"node '{node_id}' ({node_type}) got inputs that do not match its input_schema {v}"

    def check_output(self, output: dict[str, Any], *, node_id: str, node_type: str) -> str | None:
        v = violation(self.output, output)
        if v is None:
            return None
        return f"node '{node_id}' ({node_type}) returned output that does not match its output_schema {v}"


def require_inputs(schemas: NodeSchemas | None, inputs: dict[str, Any], *, node_id: str, node_type: str) -> None:
    """Raise ``NodeError`` if ``inputs`` do not match the input schema."""
    if schemas is not None and (msg := schemas.check_inputs(inputs, node_id=node_id, node_type=node_type)):
        raise NodeError(msg)


def node_output(out: object, schemas: NodeSchemas | None, *, node_id: str,
                node_type: str) -> tuple[dict[str, Any], Response | None]:
    """What ``run`` returned → (output dict, Response or None), checked against the output schema;
    raises ``NodeError`` for anything else or an off-schema output."""
    if isinstance(out, Response):
        # msgspec already typed the Response and response_output builds the dict from it, so it
        # conforms by construction; validating it again cost 13% of the runner's CPU in the profile.
        return response_output(out), out
    if not isinstance(out, dict):
        raise NodeError(f"node '{node_id}' ({node_type}) returned {type(out).__name__}; "
                        "run() must return a dict or a Response")
    if schemas is not None and (msg := schemas.check_output(out, node_id=node_id, node_type=node_type)):
        raise NodeError(msg)
    return out, None
