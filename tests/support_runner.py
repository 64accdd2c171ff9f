"""Helpers for the runner tests: the fixture plugin packages and a started RunnerPool over them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from host.runners import Call, RunnerPool
from plugin_runner.manifest import load_manifests

FIXTURES = Path(__file__).resolve().parent / "fixture_plugins"
MANIFESTS = FIXTURES / "manifests"
# A deadline no healthy fixture node comes near (seconds); tests that want a timeout pass their own.
ROOMY_TIMEOUT_S = 30.0


@contextlib.asynccontextmanager
async def running_pool(*dirs: Path, **kw: Any) -> AsyncIterator[RunnerPool]:
    dirs = dirs or (MANIFESTS,)
    pool = RunnerPool(load_manifests(list(dirs)), manifest_dirs=list(dirs), **kw)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


def invoke(pool: RunnerPool, node_type: str, *, node_id: str = "n1", inputs: dict[str, Any] | None = None,
           stream: bool = False, timeout_s: float = ROOMY_TIMEOUT_S) -> Call:
    return pool.call(node_type, node_id=node_id, config={}, inputs=inputs or {}, request=None, stream=stream,
                     timeout_s=timeout_s)
