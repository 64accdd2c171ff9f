"""Templates and conditions in workflow files: Jinja2 in a sandbox, compiled once at load.

``{{ request.input }}`` is the last user message's text; ``{{ request.system }}`` the system prompt;
``{{ request.model }}``, ``{{ request.messages }}``, ``{{ request.metadata }}``; ``{{ <node_id>.text }}``
and any other output field of an earlier node. ``when:`` is a bare Jinja expression
(``route.route == 'code'``). References are checked at load: an unknown name is an error.
"""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ENV = ImmutableSandboxedEnvironment(autoescape=False, keep_trailing_newline=True)


class TemplateError(ValueError):
    """A template or condition does not compile."""


class Template:
    """A compiled template; ``names`` are the top-level variables it reads."""

    __slots__ = ("_static", "_tpl", "names", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            ast = _ENV.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"template {source!r}: {exc.message} (line {exc.lineno})") from exc
        self.names: set[str] = set(meta.find_undeclared_variables(ast))
        # A template without any {{ }} renders to itself: skip Jinja entirely.
        self._static = not self.names and "{" not in source
        self._tpl = None if self._static else _ENV.from_string(source)

    def render(self, ctx: dict[str, Any]) -> str:
        if self._tpl is None:
            return self.source
        return self._tpl.render(ctx)


class Condition:
    __slots__ = ("_expr", "names", "source")

    def __init__(self, source: str) -> None:
        src = source.strip()
        if src.startswith("{{") and src.endswith("}}"):
            src = src[2:-2].strip()
        self.source = source
        try:
            tree = _ENV.parse("{{ (" + src + ") }}")
            self._expr = _ENV.compile_expression(src)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"condition {source!r}: {exc.message}") from exc
        self.names = set(meta.find_undeclared_variables(tree))
        if any(isinstance(n, nodes.Assign) for n in tree.find_all(nodes.Assign)):
            raise TemplateError(f"condition {source!r}: assignments are not allowed")

    def holds(self, ctx: dict[str, Any]) -> bool:
        return bool(self._expr(**ctx))


def compile_value(value: Any) -> Any:
    """Strings become Templates, containers are compiled recursively, other scalars stay."""
    if isinstance(value, str):
        return Template(value)
    if isinstance(value, dict):
        return {k: compile_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compile_value(v) for v in value]
    return value


def render_value(value: Any, ctx: dict[str, Any]) -> Any:
    if isinstance(value, Template):
        return value.render(ctx)
    if isinstance(value, dict):
        return {k: render_value(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, ctx) for v in value]
    return value


def names_in(value: Any) -> set[str]:
    if isinstance(value, (Template, Condition)):
        return value.names
    out: set[str] = set()
    if isinstance(value, dict):
        for v in value.values():
            out |= names_in(v)
    elif isinstance(value, list):
        for v in value:
            out |= names_in(v)
    return out
