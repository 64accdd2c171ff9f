"""Loads the plugin packages a runner hosts; a bad plugin is an error at start-up, never at the
first request.

``load(manifests)`` for each manifest, in order:
1. puts ``sys_path`` (if the manifest has one) on ``sys.path`` and imports ``module``;
2. registers the module with the ``PluginManager("flowbase")`` that knows ``plugin_sdk.hookspecs``
   (pluggy verifies the hookimpl signatures) and requires a ``register_node_types`` hookimpl;
3. calls that package's hookimpl alone, with a ``register`` bound to the package, so every node
   type is attributed to the package that registered it;
4. checks the registrations against the manifest: an unlisted name, a name registered twice, a
   non-async ``run`` or a listed name never registered is a ``LoadError``;
5. compiles each node type's input/output JSON Schemas once (``plugin_sdk.schemas``).
Every ``LoadError`` message names the package and its manifest file.

``FLOWBASE_TRACE_HOOKS=1`` traces every hook call to stderr (pluggy's tracing).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType

import pluggy

from plugin_runner.manifest import Manifest, NodeTypeSpec
from plugin_sdk import hookspecs
from plugin_sdk.node import NodeFn
from plugin_sdk.schemas import NodeSchemas, SchemaError

Closer = Callable[[], Awaitable[None]]


class LoadError(Exception):
    """A plugin package cannot be loaded; the message names the package and manifest file."""


class NodeType:
    __slots__ = ("name", "package", "run", "schemas", "spec")

    def __init__(self, name: str, package: str, run: NodeFn, spec: NodeTypeSpec, schemas: NodeSchemas) -> None:
        self.name = name
        self.package = package
        self.run = run
        self.spec = spec
        # None when neither schema is set: the per-call check is then a single ``is None``.
        self.schemas: NodeSchemas | None = schemas if (schemas.input or schemas.output) else None


class Loaded:
    """What a runner serves: node types by name, the packages' close callbacks, the manager."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.node_types: dict[str, NodeType] = {}
        self.closers: list[tuple[str, Closer]] = []


def _where(m: Manifest) -> str:
    return f"plugin package {m.id!r} (manifest {m.path or '<in memory>'})"


def _is_async(fn: object) -> bool:
    # A function, or an object whose class defines ``async def __call__``.
    return inspect.iscoroutinefunction(fn) or (callable(fn) and inspect.iscoroutinefunction(type(fn).__call__))


def _import(m: Manifest) -> ModuleType:
    if m.sys_path:
        base = Path(m.path).parent if m.path else Path.cwd()
        entry = str((base / m.sys_path).resolve())
        if entry not in sys.path:
            sys.path.append(entry)
    try:
        return importlib.import_module(m.module)
    except (Exception, SystemExit) as exc:
        tb = "".join(traceback.format_exception(exc))
        raise LoadError(f"{_where(m)}: importing module {m.module!r} failed: "
                        f"{type(exc).__name__}: {exc}\n{tb}") from exc


def _register_package(loaded: Loaded, m: Manifest, module: ModuleType) -> None:
    pm = loaded.pm
    try:
        pm.register(module, name=m.id)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise LoadError(f"{_where(m)}: module {m.module!r} has an invalid hook implementation: {exc}") from exc
    except ValueError as exc:  # the same module listed by two manifests
        raise LoadError(f"{_where(m)}: cannot register module {m.module!r}: {exc}") from exc
    impls = [i for i in pm.hook.register_node_types.get_hookimpls() if i.plugin is module]
    if not impls:
        raise LoadError(f"{_where(m)}: module {m.module!r} implements no register_node_types hook "
                        "(decorate it with plugin_sdk.hookspecs.hookimpl)")
    seen: dict[str, NodeFn] = {}
    closers: list[Closer] = []

    def register(name: str, run: NodeFn, *, close: Closer | None = None) -> None:
        if name not in m.node_types:
            listed = ", ".join(sorted(m.node_types)) or "none"
            raise LoadError(f"{_where(m)}: registers node type {name!r}, which its manifest does not list "
                            f"(listed: {listed})")
        if name in seen:
            raise LoadError(f"{_where(m)}: registers node type {name!r} twice")
        if not _is_async(run):
            raise LoadError(f"{_where(m)}: node type {name!r}: run must be an async function "
                            f"(got {type(run).__name__}); a sync run would block every other node")
        if close is not None and not _is_async(close):
            raise LoadError(f"{_where(m)}: node type {name!r}: close must be an async function")
        seen[name] = run
        if close is not None and all(c is not close for c in closers):
            closers.append(close)

    others = [p for p in pm.get_plugins() if p is not module]
    caller = pm.subset_hook_caller("register_node_types", remove_plugins=others)
    try:
        caller(register=register)
    except LoadError:
        raise
    except Exception as exc:
        tb = "".join(traceback.format_exception(exc))
        raise LoadError(f"{_where(m)}: register_node_types raised {type(exc).__name__}: {exc}\n{tb}") from exc
    missing = sorted(set(m.node_types) - set(seen))
    if missing:
        raise LoadError(f"{_where(m)}: manifest lists node type(s) {', '.join(map(repr, missing))} "
                        "that the module never registers")
    for name, run in seen.items():
        spec = m.node_types[name]
        try:
            schemas = NodeSchemas.compile(spec, where=f"{_where(m)}: node type {name!r}")
        except SchemaError as exc:
            raise LoadError(str(exc)) from exc
        loaded.node_types[name] = NodeType(name, m.id, run, spec, schemas)
    loaded.closers.extend((m.id, c) for c in closers)


def load(manifests: list[Manifest]) -> Loaded:
    pm = pluggy.PluginManager("flowbase")
    pm.add_hookspecs(hookspecs)
    if os.environ.get("FLOWBASE_TRACE_HOOKS") == "1":
        pm.trace.root.setwriter(sys.stderr.write)
        pm.enable_tracing()
    loaded = Loaded(pm)
    for m in manifests:
        _register_package(loaded, m, _import(m))
    return loaded
