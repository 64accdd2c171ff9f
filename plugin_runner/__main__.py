"""``python -m plugin_runner --fd N [--manifests DIR ...] [--packages id1,id2]``

The plugin runner process. ``N`` is an inherited stream socket (one end of a socketpair; the host
holds the other). Before anything else fd 1 becomes a copy of fd 2, so a plugin's stray ``print``
lands on stderr and can never corrupt the frame channel, and stdin reads /dev/null.

It loads the manifests in ``--manifests`` (default: the built-in ``manifests/``), keeps the
packages named in ``--packages`` (default: all), applies the sandbox limits, imports and checks
the plugins (plugin_runner/loader.py), then serves frames (plugin_runner/server.py) until
Shutdown or EOF. A plugin that cannot be loaded ends the process at once with exit code 2 and a
message naming the package and its manifest file on stderr.

Env: ``FLOWBASE_LOG_LEVEL`` (default ``warning``) is the level of the log records sent to the host;
``FLOWBASE_TRACE_HOOKS=1`` traces hook calls to stderr. Uses uvloop when it is installed.
"""

from __future__ import annotations

import os
import sys

# First thing, before any import could print: stdout → stderr, stdin → /dev/null.
os.dup2(2, 1)
sys.stdout = sys.stderr  # unbuffered-ish and in order with stderr output
_null = os.open(os.devnull, os.O_RDONLY)
os.dup2(_null, 0)
os.close(_null)

import argparse
import asyncio
import logging
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from plugin_runner import heap, sandbox
from plugin_runner.loader import LoadError, load
from plugin_runner.manifest import Manifest, ManifestError, load_manifests
from plugin_runner.server import FrameLogHandler, Server

EXIT_LOAD_ERROR = 2


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m plugin_runner", description="flowbase plugin runner")
    p.add_argument("--fd", type=int, required=True, help="inherited socket fd to serve frames on")
    p.add_argument("--manifests", type=Path, action="append", default=None, help="manifest folder (repeatable)")
    p.add_argument("--packages", default="", help="comma-separated package ids to host (default: all)")
    return p.parse_args(argv)


def _select(dirs: list[Path] | None, packages: str) -> list[Manifest]:
    manifests = load_manifests(dirs)
    wanted = [p for p in packages.split(",") if p]
    if not wanted:
        return manifests
    by_id = {m.id: m for m in manifests}
    missing = [p for p in wanted if p not in by_id]
    if missing:
        where = ", ".join(str(d) for d in dirs) if dirs else "the built-in manifests"
        raise ManifestError(f"no manifest for package(s) {', '.join(missing)} in {where}")
    return [by_id[p] for p in wanted]


async def _serve(fd: int, manifests: list[Manifest]) -> int:
    loaded = load(manifests)  # after the sandbox: import-time allocations count too
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)  # processes a plugin spawns must not hold the channel open
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    server = Server(loaded, reader, writer)
    level = logging.getLevelName(os.environ.get("FLOWBASE_LOG_LEVEL", "warning").upper())
    root = logging.getLogger()
    root.setLevel(level if isinstance(level, int) else logging.WARNING)
    root.addHandler(FrameLogHandler(server, root.level))
    heap.settle()  # the plugins are loaded: freeze them, collect young objects less often
    trimmer = asyncio.create_task(heap.give_back())
    try:
        return await server.serve()
    finally:
        trimmer.cancel()


def _run(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    result: int = uvloop.run(coro)
    return result


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    try:
        manifests = _select(args.manifests, args.packages)
        sandbox.apply(manifests)
        return _run(_serve(args.fd, manifests))
    except (LoadError, ManifestError) as exc:
        print(f"flowbase plugin runner: cannot start: {exc}", file=sys.stderr)
        return EXIT_LOAD_ERROR


if __name__ == "__main__":
    sys.exit(main())
