"""Memory settings for flowbase's long-running processes (the host and each plugin runner): the garbage
collector's, applied once startup is done (``settle()``), and handing a burst's memory back to the
system afterwards (``give_back()``).

- ``gc.freeze()``: what startup built (modules, the app, loaded plugins) lives as long as the process;
  moved out of the collector's generations, a full collection no longer walks all of it (measured
  under load: 55-67 ms per full collection before, about 20 ms after).
- A first-generation threshold of ``GEN0_THRESHOLD`` allocations instead of 700: a request keeps
  hundreds of container objects alive while it runs, so with tens of requests in flight every young
  collection re-walked thousands of live objects, every few requests. Measured at concurrency 32
  (``gc.callbacks``): collector time from about 15 µs to under 3 µs per request. Garbage without
  cycles is freed by reference counting as before; only cyclic garbage waits longer.
- Both processes keep CPython's own allocator for Python objects. The host ran on glibc's
  (``PYTHONMALLOC=malloc``) from session 5 to 6 so that a burst's memory could go back to the system;
  measured again in alternating rounds (both up, c=32), glibc's cost the host's event loop 6-12 µs
  more CPU per request and 3-12% of throughput, more with tracing on, against 10-12 MB more kept after
  a burst of 1,000 streams (1.07x instead of 1.02x). A user's ``PYTHONMALLOC`` applies to every process.
  ``give_back()`` still trims what lives in malloc (buffers, anything over 512 bytes).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import os
import sys

GEN0_THRESHOLD = 20_000
# Older generations: collected after this many collections of the one below (CPython's defaults are
# 10 and 10; with rarer young collections the older ones may come at the usual pace relative to them).
GEN1_THRESHOLD = 10
GEN2_THRESHOLD = 10


def settle() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)


# How often to look (one read of /proc/self/statm, microseconds), how much resident memory may grow
# before a trim is worth it (a few MB stay for the next requests: steady load reuses them), and how
# often to try again while memory stays that far above the least it has been (a trim that found
# nothing to give back means the memory was in use; it may be free later).
TRIM_INTERVAL_S = 0.5
TRIM_GROWTH_BYTES = 4 * 2**20
TRIM_RETRY_S = 30.0
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]  # glibc only: musl and others have none
    except (OSError, AttributeError):
        return None
    return libc


_libc = _glibc()


def can_trim() -> bool:
    """Whether this process can hand malloc's free pages back (glibc on Linux)."""
    return _libc is not None


def resident() -> int:
    """This process's resident memory in bytes (Linux)."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


def trim() -> None:
    if _libc is not None:
        _libc.malloc_trim(0)


async def give_back(interval_s: float = TRIM_INTERVAL_S, threshold: int = TRIM_GROWTH_BYTES,
                    retry_s: float = TRIM_RETRY_S) -> None:
    """Runs for the life of the process: trim malloc once resident memory has grown ``threshold`` over
    what it was after the last trim and has stopped growing (a burst is over: what it freed is still
    resident, as malloc keeps it), and every ``retry_s`` while it stays ``threshold`` above the least it
    has been. A look reads resident memory only: glibc's own count of its free memory (``mallinfo2``)
    walks every free chunk, 2-3 ms of the event loop after a burst. A trim takes milliseconds (21 ms
    for 125 MB of freed small objects; 2-3 ms after a burst of a thousand streams)."""
    if _libc is None:
        return
    loop = asyncio.get_running_loop()
    least = floor = last = resident()
    retry_at = float("inf")
    while True:
        await asyncio.sleep(interval_s)
        now = resident()
        settled = floor + threshold < now <= last
        if settled or (now > least + threshold and loop.time() >= retry_at):
            trim()
            now = floor = resident()
            retry_at = loop.time() + retry_s if now > least + threshold else float("inf")
        least, floor, last = min(least, now), min(floor, now), now
