"""Built-in plugin package ``flow``: the non-model node types ``template``, ``formatter``,
``verifier`` and ``router`` (see ``nodes.py`` and ``manifests/flow.yaml``)."""

from __future__ import annotations

from plugin_sdk.hookspecs import hookimpl
from plugin_sdk.node import Register
from plugins.flow import nodes


@hookimpl
def register_node_types(register: Register) -> None:
    register("template", nodes.template)
    register("formatter", nodes.formatter)
    register("verifier", nodes.verifier)
    register("router", nodes.router)
