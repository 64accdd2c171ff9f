"""Built-in plugin package ``anthropic_api``: the ``anthropic.messages`` node type (provider type
``anthropic``), a model node for the Anthropic Messages API and servers that speak it. See
``node.py`` for its behaviour and ``manifests/anthropic_api.yaml`` for its config."""

from __future__ import annotations

from plugin_sdk.hookspecs import hookimpl
from plugin_sdk.node import Register
from plugins.anthropic_api import node


@hookimpl
def register_node_types(register: Register) -> None:
    register("anthropic.messages", node.run, close=node.close)
