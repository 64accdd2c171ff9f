"""Turns a run's measurements into the side-by-side table, the target checks (PASS/FAIL) and README markdown.

Contract:
- :func:`added` is a target's latency percentiles minus direct's (c=1, plain) and its streamed
  time-to-first-text p50/p99 minus direct's, in milliseconds.
- :func:`checks` evaluates the targets of the performance issue from one run's numbers; a check whose
  inputs were not measured (LiteLLM skipped, flowbase failed) is ``n/a``, never PASS.
- :func:`text_table` and :func:`markdown` render the same rows: direct, flowbase tracing on, flowbase
  tracing off, LiteLLM.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.measure import NOISY_PCT, SoakReport, TargetResult, TracingAB

# A CPU probe this much slower before one target than before another flags the run (1.15 = 15%).
SPEED_DRIFT = 1.15

ROW_LABELS = {"direct": "direct (no gateway)", "flowbase": "flowbase, tracing on",
              "flowbase-notrace": "flowbase, tracing off", "litellm": "LiteLLM proxy"}


@dataclass
class Added:
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    ttfb_p50_ms: float | None = None
    ttfb_p99_ms: float | None = None


@dataclass
class Check:
    name: str
    value: str
    goal: str
    verdict: str  # PASS | FAIL | n/a | info (reported, not a target)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def added(res: TargetResult, direct: TargetResult) -> Added:
    out = Added()
    if res.c1 is not None and direct.c1 is not None:
        out.p50_ms = _diff(res.c1.latency_ms.get("p50"), direct.c1.latency_ms.get("p50"))
        out.p90_ms = _diff(res.c1.latency_ms.get("p90"), direct.c1.latency_ms.get("p90"))
        out.p99_ms = _diff(res.c1.latency_ms.get("p99"), direct.c1.latency_ms.get("p99"))
    if res.ttfb is not None and direct.ttfb is not None:
        out.ttfb_p50_ms = _diff(res.ttfb.ttfb_ms.get("p50"), direct.ttfb.ttfb_ms.get("p50"))
        out.ttfb_p99_ms = _diff(res.ttfb.ttfb_ms.get("p99"), direct.ttfb.ttfb_ms.get("p99"))
    return out


def _ok(res: TargetResult | None) -> TargetResult | None:
    return res if res is not None and res.status == "ok" else None


def _verdict(cond: bool | None) -> str:
    return "n/a" if cond is None else ("PASS" if cond else "FAIL")


def _f(v: float | None, fmt: str = "{:.2f}") -> str:
    return "—" if v is None else fmt.format(v)


def checks(results: dict[str, TargetResult], soak: SoakReport | None, ab: TracingAB | None = None,
           agent_ab: TracingAB | None = None) -> list[Check]:
    direct, fb, fb_off, ll = (_ok(results.get(k)) for k in ("direct", "flowbase", "flowbase-notrace", "litellm"))
    out: list[Check] = []
    fb_add = added(fb, direct) if fb and direct else None
    ll_add = added(ll, direct) if ll and direct else None

    a, b = (fb_add.p50_ms if fb_add else None), (ll_add.p50_ms if ll_add else None)
    cond = None if a is None or b is None else a <= b / 10
    out.append(Check("added p50 latency at c=1 vs LiteLLM", f"{_f(a)} ms vs {_f(b)} ms"
                     + (f" (1/{b / a:.0f})" if a and b and a > 0 else ""), "≤ 1/10 of LiteLLM's", _verdict(cond)))
    out.append(Check("added p50 latency at c=1", f"{_f(a, '{:.3f}')} ms", "< 1 ms",
                     _verdict(None if a is None else a < 1.0)))

    r_fb = fb.c32.rps if fb and fb.c32 else None
    r_ll = ll.c32.rps if ll and ll.c32 else None
    cond = None if r_fb is None or r_ll is None else r_fb >= 10 * r_ll
    out.append(Check("throughput at c=32 vs LiteLLM", f"{_f(r_fb, '{:.0f}')} vs {_f(r_ll, '{:.0f}')} req/s"
                     + (f" ({r_fb / r_ll:.1f}x)" if r_fb and r_ll else ""), "≥ 10x LiteLLM's", _verdict(cond)))

    m_fb = fb.memory.rss_mb if fb and fb.memory else None
    m_ll = ll.memory.rss_mb if ll and ll.memory else None
    cond = None if m_fb is None or m_ll is None else m_fb <= m_ll / 4
    out.append(Check("resident memory after the run vs LiteLLM", f"{_f(m_fb, '{:.0f}')} vs {_f(m_ll, '{:.0f}')} MB",
                     "≤ 1/4 of LiteLLM's", _verdict(cond)))

    on: float | None
    off: float | None
    ratio: float | None
    if ab is not None and ab.on_median and ab.off_median and ab.ratio_median:
        on, off, ratio = ab.on_median, ab.off_median, ab.ratio_median
        how = f"median of the on/off ratios of {ab.rounds} alternating rounds"
    else:
        on = fb.c32.rps if fb and fb.c32 else None
        off = fb_off.c32.rps if fb_off and fb_off.c32 else None
        ratio = on / off if on and off else None
        how = "one run each"
    cond = None if ratio is None else ratio >= 0.9
    out.append(Check("tracing on vs off, throughput at c=32", f"{_f(on, '{:.0f}')} vs {_f(off, '{:.0f}')} req/s"
                     + (f" ({100 * ratio:.0f}%, {how})" if ratio else ""), "≥ 90% of tracing off",
                     _verdict(cond)))

    errs = None
    if fb and fb.c32 and fb.c128:
        errs = fb.c32.errors + fb.c128.errors + (fb.c1.errors if fb.c1 else 0) + (fb.ttfb.errors if fb.ttfb else 0)
    out.append(Check("flowbase errors under load (c=1, 32, 128, streamed)", _f(errs, "{:.0f}"), "0",
                     _verdict(None if errs is None else errs == 0)))

    s = soak.soak if soak is not None else None
    out.append(Check(f"soak: {soak.concurrency if soak else '—'} concurrent streams complete correctly",
                     f"{s.completed_ok}/{s.requests} ok" if s else "—", "all",
                     _verdict(None if s is None else s.failed == 0 and s.requests > 0)))
    before = soak.rss_before_mb if soak is not None and soak.rss_before_mb > 0 else None
    after_soak = soak.rss_after_soak_mb if soak is not None else None
    r1 = None if before is None or after_soak is None else after_soak / before
    out.append(Check("soak: memory after the soak vs before it",
                     f"{_f(before, '{:.0f}')} → {_f(after_soak, '{:.0f}')} MB ({_f(r1)}x)", "≤ 1.2x",
                     _verdict(None if r1 is None else r1 <= 1.2)))
    n = soak.growth_requests if soak is not None else 0
    after_growth = soak.rss_after_growth_mb if soak is not None and n > 0 else None
    r2 = None if before is None or after_growth is None else after_growth / before
    errors = soak.growth_errors if soak is not None else 0
    out.append(Check(f"growth: memory after the soak and {n} more requests vs before the soak",
                     f"{_f(before, '{:.0f}')} → {_f(after_growth, '{:.0f}')} MB ({_f(r2)}x), {errors} errors",
                     "≤ 1.2x, 0 errors", _verdict(None if r2 is None else r2 <= 1.2 and errors == 0)))
    if agent_ab is not None:
        out.append(agent_check(agent_ab))
    return out


def agent_check(ab: TracingAB) -> Check:
    ratio = ab.ratio_median
    value = (f"{_f(ab.on_median, '{:.0f}')} vs {_f(ab.off_median, '{:.0f}')} req/s"
             + (f" ({100 * ratio:.0f}%, median of {ab.rounds} alternating rounds)" if ratio else "")
             + f"; resident {_f(ab.rss_on_mb, '{:.0f}')} vs {_f(ab.rss_off_mb, '{:.0f}')} MB"
             + (f"; {ab.errors} errors" if ab.errors else ""))
    return Check(f"tracing on vs off with agent-sized requests ({ab.request_bytes / 1024:.0f} KB), c=32", value,
                 "reported", "info")


def _row(res: TargetResult, direct: TargetResult | None) -> list[str]:
    label = ROW_LABELS.get(res.name, res.name)
    if res.status != "ok":
        return [label, f"{res.status}: {(res.error or '').splitlines()[0][:60] if res.error else ''}", "", "", "", "", ""]
    if res.name == "direct" or direct is None:
        lat = f"{_f(res.c1.latency_ms['p50'], '{:.3f}')} / {_f(res.c1.latency_ms['p99'], '{:.3f}')} (abs)" if res.c1 else "—"
        ttfb = f"{_f(res.ttfb.ttfb_ms.get('p50'), '{:.3f}')} (abs)" if res.ttfb else "—"
    else:
        add = added(res, direct)
        lat = f"{_f(add.p50_ms, '{:+.3f}')} / {_f(add.p99_ms, '{:+.3f}')}"
        ttfb = _f(add.ttfb_p50_ms, "{:+.3f}")
    rps32 = f"{res.c32.rps:,.0f} ({res.c32.errors})" if res.c32 else "—"
    rps128 = f"{res.c128.rps:,.0f} ({res.c128.errors})" if res.c128 else "—"
    mem = f"{res.memory.rss_mb:.0f} ({res.memory.processes}p)" if res.memory else "—"
    cpu = (f"{res.cpu32.gateway_pct:.0f}% · {res.cpu32.gateway_us_per_request:.0f} µs/req"
           if res.cpu32 and res.name != "direct" else (f"upstream {res.cpu32.upstream_pct:.0f}%" if res.cpu32 else "—"))
    return [label, lat, rps32, rps128, ttfb, mem, cpu]


HEADERS = ["", "added latency c=1 p50 / p99 (ms)", "req/s c=32 (errors)", "req/s c=128 (errors)",
           "added TTFB p50 (ms)", "RSS MB (procs)", "gateway CPU at c=32"]


def rows(results: dict[str, TargetResult]) -> list[list[str]]:
    direct = _ok(results.get("direct"))
    return [_row(results[k], direct) for k in ("direct", "flowbase", "flowbase-notrace", "litellm") if k in results]


def text_table(results: dict[str, TargetResult], checks_: list[Check]) -> str:
    body = [HEADERS, *rows(results)]
    widths = [max(len(r[i]) for r in body) for i in range(len(HEADERS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    # Other processes on the machine take CPU from the gateway under test: show how much, per target.
    for res in results.values():
        if res.cpu32 is not None:
            c = res.cpu32
            lines.append(f"CPU at c=32, {ROW_LABELS.get(res.name, res.name)}: machine {c.machine_pct:.0f}% = gateway "
                         f"{c.gateway_pct:.0f}% + upstream {c.upstream_pct:.0f}% + wrk {c.loadgen_pct:.0f}% "
                         f"+ everything else {c.others_pct:.0f}% (100% = one core)")
    per_req = {k: r.cpu32.gateway_us_per_request for k, r in results.items()
               if r.cpu32 is not None and r.status == "ok" and k != "direct"}
    if per_req:
        # CPU time per request barely moves when other processes compete for the CPU, unlike req/s.
        lines.append("gateway CPU per request at c=32 (steadier than req/s on a busy machine): "
                     + ", ".join(f"{ROW_LABELS.get(k, k)} {v:,.0f} µs" for k, v in per_req.items()))
    lines += ["", *[f"WARNING: {w}" for w in noise_warnings(results)], ""]
    cw = max(len(c.name) for c in checks_) if checks_ else 0
    lines += [f"{c.verdict:4}  {c.name.ljust(cw)}  {c.value}   "
              + ("(reported, not a target)" if c.verdict == "info" else f"(target {c.goal})") for c in checks_]
    return "\n".join(lines)


def soak_memory_line(soak: SoakReport) -> str:
    """Each process's RSS at the soak's readings: which of them kept what."""
    parts = []
    for when, each in soak.by_process_mb.items():
        names = ["host", *(f"runner {i}" for i in range(1, len(each)))]
        parts.append(f"{when.replace('_', ' ')}: " + ", ".join(f"{n} {mb:.1f}" for n, mb in zip(names, each)))
    return "soak memory by process (MB) — " + "; ".join(parts)


def noise_warnings(results: dict[str, TargetResult]) -> list[str]:
    """Phases during which other processes took enough CPU to make this run's comparisons unreliable,
    and a VM whose own speed changed between targets (the CPU probe before each)."""
    out = []
    for res in results.values():
        for phase, cpu in (("c=1", res.cpu1), ("c=32", res.cpu32), ("c=128", res.cpu128)):
            if cpu is not None and cpu.others_pct > NOISY_PCT:
                out.append(f"{ROW_LABELS.get(res.name, res.name)} at {phase}: other processes used "
                           f"{cpu.others_pct:.0f}% of a core; its numbers are unreliable (rerun on a quiet machine)")
    probes = {ROW_LABELS.get(r.name, r.name): r.cpu_probe_ms for r in results.values() if r.cpu_probe_ms}
    if len(probes) > 1 and max(probes.values()) > SPEED_DRIFT * min(probes.values()):
        out.append("the VM's own speed changed between targets (CPU probe before each: "
                   + ", ".join(f"{k} {v:.0f} ms" for k, v in probes.items())
                   + "); comparisons between them are unreliable")
    return out


def markdown(results: dict[str, TargetResult], checks_: list[Check], machine: str) -> str:
    out = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(r) + " |" for r in rows(results)]
    note = (f"Measured by `make bench` on {machine}. Latency and TTFB are added over calling the fake upstream "
            "directly (direct's row is absolute); RSS is the sum over the gateway's processes after the run.")
    out += ["", note,
            "", "| target | measured | goal | |", "|---|---|---|---|"]
    out += [f"| {c.name} | {c.value} | {c.goal} | {c.verdict} |" for c in checks_]
    noisy = noise_warnings(results)
    if noisy:
        out += ["", "**Not a clean run** — other processes competed for the CPU: " + "; ".join(noisy) + "."]
    return "\n".join(out)
