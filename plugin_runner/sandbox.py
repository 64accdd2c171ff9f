"""Process limits the plugin runner applies to itself before it imports any plugin.

What IS applied (``apply(manifests)``):
- ``RLIMIT_AS`` (address space) = the largest ``limits.memory_mb`` among the packages this runner
  hosts, when any of them sets one. A plugin that allocates past it gets ``MemoryError`` (or the
  runner dies and the host reports RunnerCrashed and respawns it). RLIMIT_AS counts *virtual*
  memory — thread stacks and malloc arenas included — so give it headroom over the expected RSS
  (the host starts runners with ``MALLOC_ARENA_MAX=2`` to keep that overhead small).
- ``RLIMIT_CORE`` = 0: a crashing runner never writes a core file holding request data or keys.
- Linux: the parent-death signal is SIGKILL, so a runner whose host vanished dies even when a
  blocking plugin keeps it from noticing the closed socket.
- Deadlines are enforced twice: by the runner (``asyncio.timeout``) and by the host, which kills a
  runner whose event loop stops answering (see host/runners.py).

What is NOT sandboxed — a plugin runs with the host user's rights: it can read and write files,
open network connections, spawn processes and read the environment it inherited (which is the
host's). There is no seccomp/namespace isolation and no CPU-time limit; only install plugins you
trust, and use ``runner:`` in a manifest to give risky packages a process (and crash domain) of
their own.
"""

from __future__ import annotations

import ctypes
import resource
import signal
import sys

from plugin_runner.manifest import Manifest

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def memory_limit_mb(manifests: list[Manifest]) -> int | None:
    limits = [m.limits.memory_mb for m in manifests if m.limits.memory_mb]
    return max(limits) if limits else None


def apply(manifests: list[Manifest]) -> list[str]:
    """Apply the limits; returns a description of each one applied (for a debug log line)."""
    applied: list[str] = []
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    applied.append("core dumps off")
    mb = memory_limit_mb(manifests)
    if mb is not None:
        limit = mb * 1024 * 1024
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        applied.append(f"address space ≤ {limit // (1024 * 1024)} MiB")
    if sys.platform == "linux":
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0:
                applied.append("dies with its host")
        except (OSError, AttributeError):
            pass  # no prctl (unusual libc): the runner still exits on socket EOF
    return applied
