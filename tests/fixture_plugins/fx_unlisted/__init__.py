"""Test-only plugin package that registers a node type its manifest does not list."""

from __future__ import annotations

from typing import Any

from plugin_sdk.hookspecs import hookimpl
from plugin_sdk.node import NodeContext, Register


async def run(ctx: NodeContext) -> dict[str, Any]:
    return {}


@hookimpl
def register_node_types(register: Register) -> None:
    register("fx.listed", run)
    register("fx.sneaky", run)
