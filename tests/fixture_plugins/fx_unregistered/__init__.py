"""Test-only plugin package whose manifest lists a node type the module never registers."""

from __future__ import annotations

from typing import Any

from plugin_sdk.hookspecs import hookimpl
from plugin_sdk.node import NodeContext, Register


async def run(ctx: NodeContext) -> dict[str, Any]:
    return {}


@hookimpl
def register_node_types(register: Register) -> None:
    register("fx.present", run)
