"""When to replace a plugin runner whose memory grew (``RunnerPool`` does the replacing, runners.py).

A runner's resident memory can stay far above what it uses: CPython keeps each 1 MiB arena while
one object in it lives, so a burst of a thousand concurrent streams left a runner ~15 MB up for
good although its live objects were back within ~3 MB (tracemalloc; ``sys._debugmallocstats()``:
19 → 32 arenas, none released). A plugin that leaks does the same without a burst. Neither can be
given back from inside the process; a fresh process can take over (uWSGI's reload-on-rss, Celery's
max-memory-per-child).

Contract: ``Growth(pid, limit_mb, …).outgrown(now, calls)`` is asked each time the runner has no call
in flight. It reads the runner's resident memory at most once per ``check_s``; the first reading
after ``settle_calls`` calls is the runner's settled size (imports, pools and caches warmed up), and
a later one more than ``limit_mb`` above it answers True. Everything else answers False at the cost
of one comparison, so asking on every idle moment is free.
"""

from __future__ import annotations

import os

_PAGE_MB = (os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096) / 2**20


def resident_mb(pid: int) -> float | None:
    """The resident memory of process ``pid`` in MB, or None where it cannot be read (gone; not Linux)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_MB
    except (OSError, ValueError, IndexError):
        return None


class Growth:
    __slots__ = ("baseline_mb", "check_s", "last_mb", "limit_mb", "next_check", "pid", "settle_calls")

    def __init__(self, pid: int, limit_mb: float, *, settle_calls: int, check_s: float) -> None:
        self.pid = pid
        self.limit_mb = limit_mb
        self.settle_calls = settle_calls
        self.check_s = check_s
        self.next_check = float("-inf")
        self.baseline_mb: float | None = None
        self.last_mb: float | None = None

    def outgrown(self, now: float, calls: int) -> bool:
        if now < self.next_check or calls < self.settle_calls:
            return False
        self.next_check = now + self.check_s
        rss = resident_mb(self.pid)
        if rss is None:
            return False
        self.last_mb = rss
        if self.baseline_mb is None:
            self.baseline_mb = rss
            return False
        return rss > self.baseline_mb + self.limit_mb
