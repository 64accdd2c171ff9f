"""``make bench``: flowbase versus calling the upstream directly versus the LiteLLM proxy, in one run.

Usage: ``python -m bench.run [--quick] [--no-litellm] [--targets direct,flowbase,...] [--results-dir DIR]``

Contract:
- Installs what it needs first: ``wrk`` (Debian package) and LiteLLM in ``bench/.venv-litellm``.
- Starts a fast fake upstream (and a second one pacing streamed chunks for the soak), then measures,
  one after another so they never share the CPU: direct, flowbase with tracing on, flowbase with
  tracing off, the two flowbases in alternating rounds (both up, same history), then the soak and the
  memory growth check on flowbase with tracing on, then LiteLLM (the flowbases stopped first). A target
  that fails to start or answers wrongly is reported as failed; the others still run.
- Prints the table, the target checks with PASS/FAIL and a README-ready markdown table, and writes the
  whole run as JSON to ``bench/results/<UTC timestamp>.json``. :func:`run` returns that same dict.
- Exit status: 0 when the harness ran (even if a target check failed; ``--strict`` makes FAIL exit 1),
  2 when the harness itself could not run.
Everything listens on 127.0.0.1 only; every phase has a time bound.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import measure, report, targets
from bench.loadgen import QUICK_CMD_TIMEOUT_S, LoadGenError, ensure_wrk, wrk_version
from bench.procs import ServiceError
from bench.profile import Profiler, ensure_pyspy
from bench.profile import render as render_profile

RESULTS_DIR = targets.BENCH_DIR / "results"
ALL_TARGETS = ("direct", "flowbase", "flowbase-notrace", "litellm")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _dep_versions() -> dict[str, str]:
    """Installed versions of flowbase's runtime dependencies (from pyproject.toml) and the server stack."""
    deps = tomllib.loads((targets.ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = [re.split(r"[\[<>=!~ ;]", d, maxsplit=1)[0] for d in deps] + ["uvloop", "httptools", "starlette"]
    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], check=False, cwd=targets.ROOT, capture_output=True, text=True,
                              timeout=QUICK_CMD_TIMEOUT_S).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info() -> dict[str, Any]:
    mem_kb = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:")), 0)
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(mem_kb / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "flowbase_commit": _git("rev-parse", "--short", "HEAD"),
        "flowbase_tree_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "flowbase_deps": _dep_versions(),
    }


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return round(obj, 4)
    return obj


def _measure(name: str, start: Callable[[], targets.Target], wrk: str, cfg: measure.BenchConfig,
             upstream: targets.Upstream, live: list[targets.Target],
             profiler: Profiler | None = None) -> tuple[measure.TargetResult, targets.Target | None]:
    """Start a target and measure it; it stays up (in ``live``) for later phases. ``None`` if it failed."""
    _log(f"{name}: starting")
    measure.wait_for_quiet(_log, max_wait_s=cfg.quiet_wait_s)
    probe = measure.cpu_probe()
    target: targets.Target | None = None
    try:
        target = start()
        live.append(target)
        result = measure.measure_target(target, wrk, cfg, upstream, _log, profiler)
        result.cpu_probe_ms = probe
        return result, target
    except (ServiceError, measure.TargetFailed, LoadGenError, OSError) as exc:
        _log(f"{name}: FAILED: {exc}")
        if target is not None:
            target.stop()
        return measure.TargetResult(name, status="failed", error=str(exc)), None


def run(cfg: measure.BenchConfig, *, only: tuple[str, ...] = ALL_TARGETS, results_dir: Path = RESULTS_DIR,
        litellm_spec: str = "litellm[proxy]", keep_logs: bool = False) -> dict[str, Any]:
    started = dt.datetime.now(dt.UTC)
    nofile = measure.open_file_limit(max(8192, cfg.soak_concurrency * 4 + 1024))
    wrk = ensure_wrk()
    info = machine_info()
    info["wrk"] = wrk_version(wrk)
    info["open_file_limit"] = nofile
    work = Path(tempfile.mkdtemp(prefix="flowbase-bench-"))
    api_key = "sk-bench-" + secrets.token_hex(16)
    if "litellm" in only and cfg.litellm:
        _log("litellm: preparing bench/.venv-litellm (first run installs litellm[proxy])")
        try:
            info["litellm"] = targets.ensure_litellm(litellm_spec, work / "litellm-install.log")
        except (subprocess.SubprocessError, OSError) as exc:
            info["litellm"] = f"install failed: {exc}"
    profiler = Profiler(ensure_pyspy(), work / "profiles") if cfg.profile else None
    results: dict[str, measure.TargetResult] = {}
    soak: measure.SoakReport | None = None
    ab: measure.TracingAB | None = None
    agent_ab: measure.TracingAB | None = None
    live: list[targets.Target] = []
    upstream = targets.start_upstream(work, chunks=cfg.chunks, delay_ms=0, label="fast")
    paced = None
    try:
        if "flowbase" in only:
            paced = targets.start_upstream(work, chunks=cfg.chunks, delay_ms=cfg.soak_delay_ms, label="paced")
        if "direct" in only:
            results["direct"], _ = _measure("direct", lambda: targets.direct_target(upstream), wrk, cfg, upstream,
                                            live)
        fb_on = fb_off = None
        if "flowbase" in only:
            results["flowbase"], fb_on = _measure(
                "flowbase", lambda: targets.start_flowbase(work, name="flowbase", tracing=True, upstream=upstream,
                                                           paced=paced, api_key=api_key), wrk, cfg, upstream, live,
                profiler)
        if "flowbase-notrace" in only:
            results["flowbase-notrace"], fb_off = _measure(
                "flowbase-notrace", lambda: targets.start_flowbase(work, name="flowbase-notrace", tracing=False,
                                                                   upstream=upstream, paced=None, api_key=api_key),
                wrk, cfg, upstream, live, profiler)
        # Tracing on against off while both have served the same requests: the soak and growth check come
        # after. A host that has been through them uses ~4-6 µs more CPU per request with tracing off too
        # (measured), which is their cost, not tracing's.
        if fb_on is not None and fb_off is not None:
            try:
                ab = measure.tracing_ab(fb_on, fb_off, wrk, cfg, _log)
            except (LoadGenError, OSError) as exc:
                _log(f"tracing on/off comparison failed: {exc}")
        if fb_on is not None and paced is not None:
            c32 = results["flowbase"].c32
            try:
                soak = measure.measure_soak(fb_on, wrk, cfg, paced, c32.rps if c32 else 1000.0, _log)
            except (LoadGenError, OSError) as exc:
                soak = measure.SoakReport(cfg.soak_concurrency, cfg.soak_delay_ms, 0.0, error=str(exc))
        # Agent-sized requests last, so that what they leave in memory cannot touch the soak's figures.
        if fb_on is not None and fb_off is not None:
            try:
                agent_ab = measure.tracing_ab(fb_on, fb_off, wrk, cfg, _log, agent=True)
            except (LoadGenError, OSError) as exc:
                _log(f"tracing on/off comparison with agent-sized requests failed: {exc}")
        for t in live:
            t.stop()
        if "litellm" in only:
            if not cfg.litellm:
                results["litellm"] = measure.TargetResult("litellm", status="skipped", error="--no-litellm")
            elif str(info.get("litellm", "")).startswith("install failed"):
                results["litellm"] = measure.TargetResult("litellm", status="failed", error=str(info["litellm"]))
            else:
                results["litellm"], _ = _measure(
                    "litellm", lambda: targets.start_litellm(work, upstream=upstream, api_key=api_key,
                                                             workers=cfg.litellm_workers),
                    wrk, cfg, upstream, live, profiler)
    finally:
        for t in live:
            t.stop()
        upstream.service.stop()
        if paced is not None:
            paced.service.stop()

    checks = report.checks(results, soak, ab, agent_ab)
    machine = f"{info['cores']} cores ({info['cpu_model']}), Python {info['python']}"
    table = report.text_table(results, checks)
    md_table = report.markdown(results, checks, machine)
    print("\n" + table + "\n")
    if soak is not None and soak.soak is not None and soak.soak.failures:
        print("soak failures:\n  " + "\n  ".join(soak.soak.failures))
    if soak is not None and soak.by_process_mb:
        print(report.soak_memory_line(soak))
    for res in results.values():
        if res.status == "failed":
            print(f"{res.name} failed: {res.error}")
        if res.profile:
            print(f"\nprofile of {res.name} at c=32 (py-spy, on-CPU samples):\n{render_profile(res.profile)}")
    print("\nREADME table (markdown):\n\n" + md_table + "\n")
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    doc: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "duration_s": round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1),
        "machine": info,
        "config": _jsonable(cfg),
        "targets": _jsonable(results),
        "added_over_direct_ms": {k: _jsonable(report.added(v, results["direct"])) for k, v in results.items()
                                 if k != "direct" and "direct" in results},
        "soak": _jsonable(soak),
        "tracing_ab": _jsonable(ab),
        "tracing_ab_agent": _jsonable(agent_ab),
        "checks": _jsonable(checks),
        "noise_warnings": report.noise_warnings(results),
        "markdown": md_table,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    out = results_dir / f"{stamp}.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    tmp.rename(out)
    doc["results_file"] = str(out)
    print(f"results: {out}")
    if keep_logs or cfg.profile or any(r.status == "failed" for r in results.values()):
        print(f"logs: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return doc


def _sigterm(signum: int, frame: object) -> None:
    # Turn SIGTERM into an exception so the finally blocks stop every child process.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description="flowbase vs direct vs LiteLLM")
    ap.add_argument("--quick", action="store_true", help="tiny counts, no LiteLLM: proves the harness works")
    ap.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM proxy")
    ap.add_argument("--targets", default=",".join(ALL_TARGETS), help=f"comma-separated subset of {ALL_TARGETS}")
    ap.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    ap.add_argument("--litellm-spec", default=os.environ.get("BENCH_LITELLM_SPEC", "litellm[proxy]"),
                    help="what pip installs into bench/.venv-litellm")
    ap.add_argument("--soak", type=int, help="concurrent streams in the soak (default 1000)")
    ap.add_argument("--growth", type=int, help="requests in the memory growth check (default 50000)")
    ap.add_argument("--load-seconds", type=float, help="seconds per throughput phase (default 10)")
    ap.add_argument("--keep-logs", action="store_true")
    ap.add_argument("--profile", action="store_true",
                    help="py-spy each gateway during c=32 and print its hot path (that phase's numbers are perturbed)")
    ap.add_argument("--strict", action="store_true", help="exit 1 if any target check FAILs")
    args = ap.parse_args(argv)
    cfg = measure.BenchConfig.quick() if args.quick else measure.BenchConfig()
    if args.no_litellm:
        cfg.litellm = False
    if args.soak is not None:
        cfg.soak_concurrency = args.soak
    if args.growth is not None:
        cfg.growth_requests = args.growth
    cfg.profile = args.profile
    if args.load_seconds is not None:
        cfg.load_s = args.load_seconds
    only = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    unknown = set(only) - set(ALL_TARGETS)
    if unknown:
        ap.error(f"unknown targets: {', '.join(sorted(unknown))}")
    signal.signal(signal.SIGTERM, _sigterm)
    t0 = time.monotonic()
    try:
        doc = run(cfg, only=only, results_dir=args.results_dir, litellm_spec=args.litellm_spec,
                  keep_logs=args.keep_logs)
    except (LoadGenError, ServiceError, OSError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    _log(f"bench: done in {time.monotonic() - t0:.0f}s")
    if args.strict and any(c["verdict"] == "FAIL" for c in doc["checks"]):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
