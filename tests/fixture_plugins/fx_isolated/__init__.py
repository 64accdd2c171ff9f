"""Test-only plugin package hosted in its own runner process (``runner: isolated``)."""

from __future__ import annotations

import os
import resource
from typing import Any

from plugin_sdk.hookspecs import hookimpl
from plugin_sdk.node import NodeContext, Register


async def iso_pid(ctx: NodeContext) -> dict[str, Any]:
    return {"pid": os.getpid()}


async def iso_limits(ctx: NodeContext) -> dict[str, Any]:
    return {"address_space": resource.getrlimit(resource.RLIMIT_AS)[0],
            "core": resource.getrlimit(resource.RLIMIT_CORE)[0]}


@hookimpl
def register_node_types(register: Register) -> None:
    register("fx.iso_pid", iso_pid)
    register("fx.iso_limits", iso_limits)
