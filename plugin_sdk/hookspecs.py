"""The one hook every node plugin implements (built-in ones included)."""

from __future__ import annotations

import pluggy

from plugin_sdk.node import Register

hookspec = pluggy.HookspecMarker("flowbase")
hookimpl = pluggy.HookimplMarker("flowbase")


@hookspec
def register_node_types(register: Register) -> None:
    """Call ``register(name, run)`` once per node type this package provides. ``name`` must be
    listed in the package manifest's ``node_types``; ``run`` is ``async (NodeContext) -> output``."""
