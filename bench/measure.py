"""The measurements of one target (phases) and of the flowbase soak; pure orchestration over wrk and the client.

Contract:
- :func:`measure_target` checks a target answers correctly (streamed and not), warms it up, then
  measures: latency at concurrency 1 (wrk, thousands of requests), throughput at 32 and 128 (wrk, with
  CPU use of the gateway tree, the upstream, wrk and the whole machine), streamed time-to-first-text at
  concurrency 1 (our client), and the memory of the gateway's process tree before and after.
- :func:`measure_soak` runs N concurrent streamed requests on the paced upstream (each answer checked),
  then a long mixed run of M requests, reading the gateway's memory before, between and after.
Every phase is bounded in time by :class:`BenchConfig`; nothing here asserts targets (report.py does).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from bench import client
from bench.loadgen import WrkResult, run_wrk
from bench.procs import CLK_TCK, TreeMemory, cpu_delta, tree_cpu, tree_memory
from bench.profile import ProcessProfile, Profiler
from bench.targets import PACED_MODEL, Target, Upstream
from bench.upstream import expected_reply

PROMPT = "Say hello."
SYSTEM = "You are a concise assistant."
T = TypeVar("T")
# Other processes' CPU (percent of one core) above which a phase's numbers are flagged as unreliable,
# and under which the machine counts as quiet enough to start measuring a target.
NOISY_PCT = 25.0
QUIET_PCT = 15.0
# Pause before each memory reading of the soak (seconds): lets in-flight trace batches land, closed
# connections be released and the gateway's housekeeping after a burst finish (the host trims malloc
# within 0.5 s; a plugin runner that grew is replaced by a fresh one, which takes up to ~1 s to start on
# this VM, while both are up), so what is measured is what stays, not what is passing through.
# (1 s until 2026-11-26's third session, when the replacement came in.)
SETTLE_S = 3.0


@dataclass
class BenchConfig:
    warmup_s: float = 3.0
    c1_requests: int = 5000  # aim; the c=1 run lasts between c1_min_s and c1_max_s
    c1_min_s: float = 8.0
    c1_max_s: float = 40.0
    load_s: float = 10.0
    ttfb_requests: int = 1000
    ttfb_max_s: float = 20.0
    chunks: int = 8
    soak_concurrency: int = 1000
    soak_delay_ms: float = 20.0
    growth_requests: int = 50_000
    growth_max_s: float = 300.0
    litellm: bool = True
    litellm_workers: int = 2
    # Tracing on vs off: many short alternating rounds. This VM's speed drifts by more than tracing
    # costs (single rounds' on/off ratios ranged 0.78–1.06 within one run), so pairs measured close
    # together and a median over many of them; five rounds of 5 s could not tell 88% from 94%. On
    # session 8's VM single rounds ranged 0.67–1.15: 20 rounds rather than 12 narrow the median's
    # chance part (about ±3% with 12) by a quarter, for 48 s more.
    ab_rounds: int = 20
    ab_seconds: float = 3.0
    # The same comparison with agent-sized requests (``agent_body``), reported but not a target: fewer
    # rounds, as tracing's share there is several times larger than the VM's drift.
    agent_ab_rounds: int = 8
    quiet_wait_s: float = 180.0  # how long to wait for other processes to quiet down before each target
    profile: bool = False  # py-spy the gateways during the c=32 phase (perturbs that phase's numbers)

    @classmethod
    def quick(cls) -> BenchConfig:
        """Seconds, not minutes: proves the harness works (the smoke test), measures nothing meaningful."""
        return cls(warmup_s=1, c1_requests=200, c1_min_s=1, c1_max_s=1, load_s=1, ttfb_requests=30, ttfb_max_s=5,
                   soak_concurrency=50, soak_delay_ms=5, growth_requests=500, growth_max_s=20, litellm=False,
                   ab_rounds=1, ab_seconds=1, agent_ab_rounds=1, quiet_wait_s=0)


def body(model: str, *, stream: bool, prompt: str = PROMPT) -> bytes:
    payload: dict[str, Any] = {"model": model, "messages": [{"role": "system", "content": SYSTEM},
                                                            {"role": "user", "content": prompt}],
                               "max_tokens": 64, "temperature": 0.2}
    if stream:
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
    return msgspec.json.encode(payload)


# An agent's request: a coding agent's conversation of AGENT_TURNS turns after a long system prompt, about
# 35 KB of JSON (Claude Code and Codex send their whole conversation with every turn, often far more).
AGENT_TURNS = 100


def agent_body(model: str) -> bytes:
    messages = [{"role": "system", "content": "You are a coding agent. " * 20}]
    for i in range(AGENT_TURNS):
        messages.append({"role": "user" if i % 2 == 0 else "assistant",
                         "content": f"turn {i}: " + "some code and prose here " * 12})
    messages.append({"role": "user", "content": PROMPT})
    return msgspec.json.encode({"model": model, "messages": messages, "max_tokens": 64})


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _system_busy_s() -> float:
    """CPU seconds all cores spent not idle since boot (from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def machine_busy_pct(window_s: float = 1.0) -> float:
    """How busy the whole machine is right now, in percent of one core, over ``window_s`` seconds."""
    b0, t0 = _system_busy_s(), time.monotonic()
    time.sleep(window_s)
    return 100 * (_system_busy_s() - b0) / (time.monotonic() - t0)


def wait_for_quiet(log: Callable[[str], None], *, max_wait_s: float, threshold_pct: float = QUIET_PCT) -> float:
    """Wait (at most ``max_wait_s``) until other work on the machine stays under ``threshold_pct`` of a core.

    On a shared 2-core machine a test suite running beside the benchmark takes the gateway's CPU and
    skews every ratio; waiting for a quiet moment is cheaper than a misleading run. Returns the last reading.
    """
    deadline = time.monotonic() + max_wait_s
    busy = machine_busy_pct()
    if busy > threshold_pct and max_wait_s > 0:
        log(f"  machine busy ({busy:.0f}% of a core in other processes): waiting up to {max_wait_s:.0f}s for quiet")
        while busy > threshold_pct and time.monotonic() < deadline:
            busy = machine_busy_pct(2.0)
    return busy


# Iterations of the CPU probe's loop: about 0.1 s of one core on the bench VM.
CPU_PROBE_LOOPS = 400_000
# Probe runs per reading; the fastest one counts (the others may have been interrupted).
CPU_PROBE_REPEATS = 3


def cpu_probe() -> float:
    """Milliseconds a fixed pure-Python workload takes on one core, fastest of a few runs.

    The VM's speed drifts (a neighbour on the host, not visible as CPU use or steal inside the VM):
    the same code measured 53k and 20k req/s on the direct row in one night. A probe before each
    target tells whether the targets of one run were measured on the same machine."""
    best = float("inf")
    for _ in range(CPU_PROBE_REPEATS):
        t0 = time.perf_counter()
        acc = 0
        for i in range(CPU_PROBE_LOOPS):
            acc = (acc + i * i) % 1_000_003
        best = min(best, (time.perf_counter() - t0) * 1000)
    return round(best, 2)


@dataclass
class CpuUse:
    """CPU use during one load phase, in percent of one core (200 = both cores of a 2-core machine)."""

    gateway_pct: float
    upstream_pct: float
    loadgen_pct: float
    machine_pct: float
    gateway_us_per_request: float
    others_pct: float = 0.0  # everything not ours: other processes (and kernel work not charged to ours)


@dataclass
class TargetResult:
    name: str
    status: str = "ok"  # ok | failed | skipped
    error: str | None = None
    info: dict[str, str] = field(default_factory=dict)
    startup_s: float | None = None
    c1: WrkResult | None = None
    c32: WrkResult | None = None
    c128: WrkResult | None = None
    cpu1: CpuUse | None = None
    cpu32: CpuUse | None = None
    cpu128: CpuUse | None = None
    ttfb: client.SeriesResult | None = None
    memory_idle: TreeMemory | None = None
    memory: TreeMemory | None = None
    upstream_requests: int | None = None
    profile: list[ProcessProfile] | None = None
    cpu_probe_ms: float | None = None  # the VM's single-core speed just before this target (cpu_probe)


class TargetFailed(RuntimeError):
    pass


def check_answers(target: Target, chunks: int) -> None:
    """One plain and one streamed request must come back with exactly the upstream's answer."""
    want = expected_reply(PROMPT, chunks)

    async def go() -> list[client.Exchange]:
        conn = await client.Connection.open(target.host, target.port)
        try:
            plain = await client.post(conn, target.host, target.port, "/v1/chat/completions",
                                      body(target.model, stream=False), target.headers, stream=False)
            if not conn.usable:
                conn.close()
                conn = await client.Connection.open(target.host, target.port)
            streamed = await client.post(conn, target.host, target.port, "/v1/chat/completions",
                                         body(target.model, stream=True), target.headers, stream=True)
            return [plain, streamed]
        finally:
            conn.close()

    for ex in _run(go()):
        kind = "streamed" if ex.stream else "plain"
        if ex.error:
            raise TargetFailed(f"{target.name}: {kind} request failed: {ex.error}")
        if ex.text != want:
            raise TargetFailed(f"{target.name}: {kind} answer {ex.text[:200]!r} is not the upstream's {want!r}")
        if ex.stream and not (ex.done and ex.finish_reason):
            raise TargetFailed(f"{target.name}: streamed answer ended without finish_reason/[DONE]")


def _load(wrk: str, target: Target, upstream: Upstream, connections: int, duration_s: float,
          bodies: list[bytes]) -> tuple[WrkResult, CpuUse]:
    gw_root = target.service.pid if target.service is not None else None
    gw0 = tree_cpu(gw_root) if gw_root is not None else {}
    up0 = tree_cpu(upstream.service.pid)
    sys0, t0 = _system_busy_s(), time.monotonic()
    res = run_wrk(wrk, target.url, connections=connections, duration_s=duration_s, bodies=bodies,
                  headers=target.headers)
    wall = time.monotonic() - t0
    gw = cpu_delta(gw0, tree_cpu(gw_root)) if gw_root is not None else 0.0
    up = cpu_delta(up0, tree_cpu(upstream.service.pid))
    machine = _system_busy_s() - sys0
    cpu = CpuUse(gateway_pct=100 * gw / wall, upstream_pct=100 * up / wall, loadgen_pct=100 * res.loadgen_cpu_s / wall,
                 machine_pct=100 * machine / wall,
                 gateway_us_per_request=1e6 * gw / res.requests if res.requests else 0.0)
    cpu.others_pct = max(0.0, cpu.machine_pct - cpu.gateway_pct - cpu.upstream_pct - cpu.loadgen_pct)
    return res, cpu


def measure_target(target: Target, wrk: str, cfg: BenchConfig, upstream: Upstream,
                   log: Callable[[str], None], profiler: Profiler | None = None) -> TargetResult:
    result = TargetResult(target.name, info=dict(target.info))
    if target.service is not None:
        result.startup_s = round(target.service.ready_after_s, 2)
        result.memory_idle = tree_memory(target.service.pid)
    requests_before = upstream.stats()["requests"]
    check_answers(target, cfg.chunks)
    plain = [body(target.model, stream=False)]
    log(f"  {target.name}: warm-up")
    run_wrk(wrk, target.url, connections=32, duration_s=cfg.warmup_s, bodies=plain, headers=target.headers)
    probe = run_wrk(wrk, target.url, connections=1, duration_s=1, bodies=plain, headers=target.headers)
    c1_s = min(cfg.c1_max_s, max(cfg.c1_min_s, cfg.c1_requests / max(probe.rps, 1.0)))
    log(f"  {target.name}: concurrency 1 for {c1_s:.0f}s")
    result.c1, result.cpu1 = _load(wrk, target, upstream, 1, c1_s, plain)
    for conns in (32, 128):
        log(f"  {target.name}: concurrency {conns} for {cfg.load_s:.0f}s")
        sampled = profiler if conns == 32 and target.service is not None else None
        if sampled is not None and target.service is not None:
            sampled.start(target.service.pid, cfg.load_s, target.name)
        res, cpu = _load(wrk, target, upstream, conns, cfg.load_s, plain)
        if sampled is not None:
            result.profile = sampled.finish()
        if conns == 32:
            result.c32, result.cpu32 = res, cpu
        else:
            result.c128, result.cpu128 = res, cpu
    log(f"  {target.name}: streamed time to first text")
    streamed = body(target.model, stream=True)
    result.ttfb = _run(client.ttfb_series(target.host, target.port, "/v1/chat/completions", lambda i: streamed,
                                          target.headers, count=cfg.ttfb_requests, max_time_s=cfg.ttfb_max_s))
    if target.service is not None:
        result.memory = tree_memory(target.service.pid)
    result.upstream_requests = upstream.stats()["requests"] - requests_before
    return result


@dataclass
class SoakReport:
    concurrency: int
    chunk_delay_ms: float
    rss_before_mb: float
    soak: client.SoakResult | None = None
    rss_after_soak_mb: float | None = None
    growth_requests: int = 0
    growth_errors: int = 0
    growth_rps: float | None = None
    rss_after_growth_mb: float | None = None
    upstream_streams_cancelled: int | None = None
    error: str | None = None
    # RSS (MB) of each of the gateway's processes, the host first, at the three readings above.
    by_process_mb: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class TracingAB:
    """Throughput at c=32 of tracing on and off, measured in alternating rounds while both are up, so a
    change in the machine's background load hits both alike (a single run each is too noisy for 10%)."""

    rounds: int
    seconds: float
    on_rps: list[float] = field(default_factory=list)
    off_rps: list[float] = field(default_factory=list)
    errors: int = 0
    request_bytes: int = 0
    # Resident memory of each gateway's processes right after the last round (what tracing holds under load).
    rss_on_mb: float | None = None
    rss_off_mb: float | None = None

    @staticmethod
    def _median(xs: list[float]) -> float | None:
        # For an even count, the mean of the two middle values (the upper one alone leans high).
        return statistics.median(xs) if xs else None

    @property
    def on_median(self) -> float | None:
        return self._median(self.on_rps)

    @property
    def off_median(self) -> float | None:
        return self._median(self.off_rps)

    @property
    def ratio_median(self) -> float | None:
        """The median over rounds of on / off measured back to back in one round: a pair shares the
        machine's background load of the moment, which drifts by more than 10% between rounds here."""
        return self._median([a / b for a, b in zip(self.on_rps, self.off_rps, strict=False) if b])


def tracing_ab(on: Target, off: Target, wrk: str, cfg: BenchConfig, log: Callable[[str], None], *,
               agent: bool = False) -> TracingAB:
    """``agent``: with agent-sized requests (``agent_body``) for ``cfg.agent_ab_rounds`` rounds."""
    rounds = cfg.agent_ab_rounds if agent else cfg.ab_rounds
    make = agent_body if agent else (lambda model: body(model, stream=False))
    plain_on, plain_off = [make(on.model)], [make(off.model)]
    log(f"  tracing on vs off{', agent-sized requests' if agent else ''}: {rounds} alternating rounds of "
        f"{cfg.ab_seconds:.0f}s at c=32")
    ab = TracingAB(rounds=rounds, seconds=cfg.ab_seconds, request_bytes=len(plain_on[0]))
    for i in range(rounds):
        # Alternate which goes first so neither always follows the other's warm caches.
        order = [(on, plain_on, ab.on_rps), (off, plain_off, ab.off_rps)]
        for target, bodies, sink in (order if i % 2 == 0 else order[::-1]):
            res = run_wrk(wrk, target.url, connections=32, duration_s=cfg.ab_seconds, bodies=bodies,
                          headers=target.headers)
            sink.append(res.rps)
            ab.errors += res.errors
    if on.service is not None and off.service is not None:
        ab.rss_on_mb, ab.rss_off_mb = tree_memory(on.service.pid).rss_mb, tree_memory(off.service.pid).rss_mb
    return ab


def soak_prompt(i: int) -> str:
    return f"soak request {i} of the streaming soak"


def measure_soak(target: Target, wrk: str, cfg: BenchConfig, paced: Upstream, rps_hint: float,
                 log: Callable[[str], None]) -> SoakReport:
    assert target.service is not None
    pid = target.service.pid
    time.sleep(SETTLE_S)
    mem = tree_memory(pid)
    report = SoakReport(concurrency=cfg.soak_concurrency, chunk_delay_ms=cfg.soak_delay_ms,
                        rss_before_mb=mem.rss_mb, by_process_mb={"before": mem.by_process_mb})
    log(f"  {target.name}: soak, {cfg.soak_concurrency} concurrent streams, chunks {cfg.soak_delay_ms:g} ms apart")
    report.soak = _run(client.soak(
        target.host, target.port, "/v1/chat/completions", concurrency=cfg.soak_concurrency,
        body=lambda i: body(PACED_MODEL, stream=True, prompt=soak_prompt(i)),
        expected=lambda i: expected_reply(soak_prompt(i), paced.chunks), headers=target.headers))
    report.upstream_streams_cancelled = paced.stats()["streams_cancelled"]
    time.sleep(SETTLE_S)
    mem = tree_memory(pid)
    report.rss_after_soak_mb, report.by_process_mb["after_soak"] = mem.rss_mb, mem.by_process_mb
    log(f"  {target.name}: growth check, {cfg.growth_requests} requests (streamed and not, alternating)")
    mixed = [body(target.model, stream=False), body(target.model, stream=True)]
    deadline = time.monotonic() + cfg.growth_max_s
    rate = max(rps_hint, 50.0)
    wall = 0.0
    while report.growth_requests < cfg.growth_requests and time.monotonic() < deadline:
        remaining = cfg.growth_requests - report.growth_requests
        duration = max(1.0, min(30.0, remaining / rate * 1.02, deadline - time.monotonic()))
        res = run_wrk(wrk, target.url, connections=32, duration_s=duration, bodies=mixed, headers=target.headers)
        report.growth_requests += res.requests
        report.growth_errors += res.errors
        wall += res.duration_s
        rate = max(res.rps, 50.0)
    report.growth_rps = report.growth_requests / wall if wall else None
    time.sleep(SETTLE_S)
    mem = tree_memory(pid)
    report.rss_after_growth_mb, report.by_process_mb["after_growth"] = mem.rss_mb, mem.by_process_mb
    return report


def open_file_limit(wanted: int) -> int:
    """Raise this process's (and so its children's) open-file limit toward ``wanted``; return the new soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft if soft != resource.RLIM_INFINITY else os.sysconf("SC_OPEN_MAX")
