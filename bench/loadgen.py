"""The external load generator: ``wrk`` (Debian package), installed on first use, driven with a Lua script.

Contract:
- :func:`ensure_wrk` returns the path of ``wrk``, installing the Debian package non-interactively
  (``apt-get install -y wrk``, after ``apt-get update`` if the first try fails) when it is missing.
- :func:`run_wrk` runs one closed-loop load (``connections`` keep-alive connections, one wrk thread,
  ``duration_s`` seconds) of POSTs cycling through ``bodies`` and returns a :class:`WrkResult`:
  request count, requests/s, errors (connect/read/write/timeout and HTTP status >= 400), latency
  percentiles in milliseconds (wrk measures in microseconds) and the CPU seconds wrk itself used.

wrk rather than hey: measured here, hey spends about 3x the CPU per request that wrk does, and on a
2-core machine the load generator's CPU is taken from the gateway under test; hey's latency output is
also rounded to 0.1 ms, too coarse for sub-millisecond differences.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# A wrk request slower than this counts as a timeout error (seconds): generous, so a slow gateway
# at c=128 shows up as low throughput and high p99 rather than as errors.
WRK_TIMEOUT_S = 30
# apt-get can wait on the dpkg lock or a slow mirror (seconds).
APT_TIMEOUT_S = 600

# `wrk -v` prints and exits at once; this only guards against a broken binary (seconds).
QUICK_CMD_TIMEOUT_S = 10

_MARK = "WRKJSON "
_LUA_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'MARK{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,'
    .. '"timeout":%d,"mean_us":%.2f,"max_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
""".replace("MARK", _MARK)


class LoadGenError(RuntimeError):
    pass


@dataclass
class WrkResult:
    connections: int
    requests: int
    duration_s: float
    rps: float
    errors: int
    error_breakdown: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    loadgen_cpu_s: float = 0.0


def _lua_string(text: str) -> str:
    level = "=" * 4
    if f"]{level}]" in text:
        raise ValueError("body contains the Lua long-bracket terminator")
    return f"[{level}[{text}]{level}]"


def lua_script(bodies: Sequence[bytes], headers: Mapping[str, str]) -> str:
    lines = ['wrk.method = "POST"']
    # The spaces matter: "t[[" would open a Lua long string.
    lines += [f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items()]
    if len(bodies) == 1:
        # A fixed body lets wrk build the request once instead of calling Lua per request.
        lines.append(f"wrk.body = {_lua_string(bodies[0].decode())}")
    else:
        lines.append("local bodies = {" + ", ".join(_lua_string(b.decode()) for b in bodies) + "}")
        lines.append("local n = 0")
        lines.append("request = function()\n  n = n + 1\n  return wrk.format(nil, nil, nil, bodies[(n % #bodies) + 1])\nend")
    return "\n".join(lines) + "\n" + _LUA_DONE


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        raise LoadGenError("wrk is not installed and apt-get is not available: install wrk and rerun")
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*prefix, apt, "install", "-y", "-q", "wrk"]
    if subprocess.run(install, check=False, env=env, capture_output=True, timeout=APT_TIMEOUT_S).returncode != 0:
        subprocess.run([*prefix, apt, "update", "-q"], check=False, env=env, capture_output=True, timeout=APT_TIMEOUT_S)
        done = subprocess.run(install, check=False, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
        if done.returncode != 0:
            raise LoadGenError(f"apt-get install wrk failed:\n{done.stderr[-2000:]}")
    found = shutil.which("wrk")
    if not found:
        raise LoadGenError("wrk was installed but is not on PATH")
    return found


def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "-v"], check=False, capture_output=True, text=True, timeout=QUICK_CMD_TIMEOUT_S)
    return (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else "unknown"


def run_wrk(wrk: str, url: str, *, connections: int, duration_s: float, bodies: Sequence[bytes],
            headers: Mapping[str, str]) -> WrkResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua_script(bodies, headers))
        script = f.name
    try:
        cmd = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s", f"--timeout={WRK_TIMEOUT_S}s",
               "-s", script, url]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # wait4 rather than communicate(): it hands back wrk's own CPU use. wrk's output is a few lines,
        # far below the pipe buffer, so waiting before reading cannot block.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out = proc.stdout.read().decode() if proc.stdout else ""
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    finally:
        Path(script).unlink(missing_ok=True)
    line = next((ln for ln in out.splitlines() if ln.startswith(_MARK)), None)
    if proc.returncode != 0 or line is None:
        raise LoadGenError(f"wrk failed (exit {proc.returncode}):\n{out[-2000:]}\n{err[-2000:]}")
    data = json.loads(line[len(_MARK):])
    breakdown = {k: int(data[k]) for k in ("connect", "read", "write", "status", "timeout")}
    duration = data["duration_us"] / 1e6
    return WrkResult(
        connections=connections,
        requests=int(data["requests"]),
        duration_s=duration,
        rps=data["requests"] / duration if duration > 0 else 0.0,
        errors=sum(breakdown.values()),
        error_breakdown=breakdown,
        latency_ms={"mean": data["mean_us"] / 1000, "p50": data["p50_us"] / 1000, "p90": data["p90_us"] / 1000,
                    "p99": data["p99_us"] / 1000, "p99.9": data["p999_us"] / 1000, "max": data["max_us"] / 1000},
        loadgen_cpu_s=usage.ru_utime + usage.ru_stime,
    )
