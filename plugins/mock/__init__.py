"""Built-in plugin package ``mock``: the ``mock.chat`` node type (provider type ``mock``), a
deterministic offline model for demos, tests and agent-client end-to-end runs. See ``node.py``,
``script.py`` and ``manifests/mock.yaml``."""

from __future__ import annotations

from plugin_sdk.hookspecs import hookimpl
from plugin_sdk.node import Register
from plugins.mock import node


@hookimpl
def register_node_types(register: Register) -> None:
    register("mock.chat", node.run)
