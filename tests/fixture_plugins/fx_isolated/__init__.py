"""Test-only plugin package hosted in its own runner process (``runner: isolated``)."""

from __future__ import annotations

import os
from typing import Any

from plugin_sdk.hookspecs import hookimpl
from plugin_sdk.node import NodeContext, Register


async def iso_pid(ctx: NodeContext) -> dict[str, Any]:
    return {"pid": os.getpid()}


@hookimpl
def register_node_types(register: Register) -> None:
    register("fx.iso_pid", iso_pid)
