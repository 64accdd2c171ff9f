"""Child processes for the benchmark: start, wait until ready, stop; measure a process tree from /proc.

Contract:
- :class:`Service` starts a command in its own session (so the whole tree can be signalled), logs its
  output to a file, waits for a readiness probe, and stops it with SIGTERM to the group, then SIGKILL.
- :func:`tree_pids` is a process and all its descendants (host + plugin runners, or LiteLLM's parent,
  workers and resource tracker). :func:`tree_memory` sums their RSS (what ``ps`` shows; shared pages
  counted once per process) and PSS (shared pages split fairly). :func:`tree_cpu` is their CPU seconds.
Linux only (reads /proc); no third-party dependencies.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# How long a stopped service may take to exit after SIGTERM before it is killed (seconds): LiteLLM's
# uvicorn supervisor waits for its workers' graceful shutdown.
STOP_GRACE_S = 15.0
# A SIGKILLed process is gone at once; this only bounds the wait for the kernel to reap it (seconds).
KILL_WAIT_S = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ppid_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:  # exited while we looked
            continue
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def tree_pids(root: int) -> list[int]:
    """``root`` and every live descendant of it."""
    children = _ppid_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            out.append(pid)
        todo.extend(children.get(pid, []))
    return out


@dataclass
class TreeMemory:
    rss_mb: float
    pss_mb: float
    processes: int
    by_process_mb: list[float] = field(default_factory=list)  # RSS of each process, the root first


def _rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE


def _pss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def tree_memory(root: int) -> TreeMemory:
    rss = pss = n = 0
    each: list[float] = []
    for pid in tree_pids(root):
        try:
            one = _rss_bytes(pid)
            pss += _pss_bytes(pid)
        except OSError:
            continue
        rss += one
        n += 1
        each.append(one / 2**20)
    return TreeMemory(rss_mb=rss / 2**20, pss_mb=pss / 2**20, processes=n, by_process_mb=each)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    # fields[11], fields[12] are utime and stime (fields 14 and 15 of proc(5), counted after the name).
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu(root: int) -> dict[int, float]:
    out: dict[int, float] = {}
    for pid in tree_pids(root):
        try:
            out[pid] = cpu_seconds(pid)
        except OSError:
            continue
    return out


def cpu_delta(before: Mapping[int, float], after: Mapping[int, float]) -> float:
    """CPU seconds a tree spent between two :func:`tree_cpu` readings (new processes count in full)."""
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


class ServiceError(RuntimeError):
    pass


class Service:
    """A child process in its own session; ``start`` returns once ``ready()`` is true."""

    def __init__(self, name: str, cmd: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.env = dict(env) if env is not None else dict(os.environ)
        self.cwd = cwd
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_after_s = 0.0

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ServiceError(f"{self.name} is not running")
        return self.proc.pid

    def start(self, ready: Callable[[], bool], timeout_s: float, poll_s: float = 0.1) -> Service:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = t0 + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if ready():
                    self.ready_after_s = time.monotonic() - t0
                    return self
            except OSError:
                pass
            time.sleep(poll_s)
        self.stop()
        raise ServiceError(f"{self.name} was not ready within {timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # Remember the whole tree first: a child in a session of its own (a plugin runner, a worker) is not
        # reached by signalling our group, and one that outlived its parent would skew the next target.
        tree = tree_pids(self.proc.pid)
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=KILL_WAIT_S)
        except ProcessLookupError:
            pass
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
