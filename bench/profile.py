"""``--profile``: sample the gateway's processes with py-spy during the c=32 phase and summarise the hot path.

Contract:
- :func:`ensure_pyspy` installs py-spy into ``bench/.venv-tools`` once (it is a tool for the benchmark,
  not a dependency of flowbase) and returns the path of its binary.
- :class:`Profiler` starts one ``py-spy record`` per process (host and each plugin runner), for a fixed
  number of seconds, writing raw collapsed stacks; :meth:`Profiler.finish` waits for them and returns,
  per process, the functions with the most samples on-CPU: ``self`` (the frame itself) and ``inclusive``
  (the frame anywhere on the stack), in percent of that process's samples.
Numbers measured while profiling are perturbed by the sampler; a profiled run is for finding the hot
path, not for the table.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import tree_pids

TOOLS_VENV = Path(__file__).resolve().parent / ".venv-tools"
# pip installing one wheel (seconds).
PIP_TIMEOUT_S = 600
# py-spy attaching and writing its file after the sampling window (seconds).
PYSPY_GRACE_S = 30
_LINE_NO = re.compile(r":\d+\)$")


def ensure_pyspy() -> str:
    binary = TOOLS_VENV / "bin" / "py-spy"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(TOOLS_VENV)], check=True, capture_output=True)
        # Keeps the tool venv out of git without touching the project's .gitignore.
        (TOOLS_VENV / ".gitignore").write_text("*\n")
        subprocess.run([str(TOOLS_VENV / "bin" / "python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", "py-spy"], check=True, capture_output=True,
                       timeout=PIP_TIMEOUT_S)
    return str(binary)


@dataclass
class ProcessProfile:
    pid: int
    command: str
    samples: int
    self_pct: list[tuple[float, str]] = field(default_factory=list)
    inclusive_pct: list[tuple[float, str]] = field(default_factory=list)
    raw_file: str = ""


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:160]
    except OSError:
        return "?"


def summarize(raw: Path, top: int = 25) -> tuple[int, list[tuple[float, str]], list[tuple[float, str]]]:
    """Samples, top self frames and top inclusive frames of a py-spy ``--format raw`` file."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        # Per function, not per line: "f (mod.py:12)" and "f (mod.py:14)" are the same hot spot.
        frames = [_LINE_NO.sub(")", f) for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    if total == 0:
        return 0, [], []

    def pct(c: Counter[str]) -> list[tuple[float, str]]:
        return [(round(100 * n / total, 1), f) for f, n in c.most_common(top)]

    return total, pct(own), pct(incl)


class Profiler:
    def __init__(self, pyspy: str, out_dir: Path) -> None:
        self.pyspy = pyspy
        self.out_dir = out_dir
        self.running: list[tuple[int, Path, subprocess.Popen[bytes]]] = []

    def start(self, root: int, seconds: float, label: str) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for pid in tree_pids(root):
            raw = self.out_dir / f"{label}-{pid}.txt"
            cmd = [self.pyspy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                   "--rate", "250", "--format", "raw", "--output", str(raw), "--nonblocking"]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.running.append((pid, raw, proc))

    def finish(self) -> list[ProcessProfile]:
        out = []
        for pid, raw, proc in self.running:
            try:
                proc.wait(timeout=PYSPY_GRACE_S + 60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if not raw.exists():
                continue
            samples, own, incl = summarize(raw)
            out.append(ProcessProfile(pid, _command(pid), samples, own, incl, str(raw)))
        self.running = []
        return out


def render(profiles: list[ProcessProfile], top: int = 15) -> str:
    lines = []
    for p in profiles:
        lines.append(f"pid {p.pid} ({p.samples} samples): {p.command}")
        lines.append("  self:")
        lines += [f"    {pct:5.1f}%  {frame}" for pct, frame in p.self_pct[:top]]
        lines.append("  inclusive:")
        lines += [f"    {pct:5.1f}%  {frame}" for pct, frame in p.inclusive_pct[:top]]
    return "\n".join(lines)
