"""Microbenchmark of the trace write path: CPU per recorded run, on SQLite and PostgreSQL.

``python -m bench.trace_writes [--runs N] [--batch N] [--pg DSN | --no-pg] [--profile]`` builds N
runs shaped like ``make bench``'s proxy requests (a workflow span, a node span and a model_call span),
seals them as the recorder does (prices them and encodes their spans, ``recorder.seal``; not in the
numbers) and writes them through ``Store.write_runs`` in batches of ``--batch`` (the recorder's
default batch size). It prints, per database, the CPU time per run of the whole process (user +
system time of the event-loop thread and of the SQLite writer thread — both compete with requests for
this machine's cores) and of the event-loop thread alone (what holds up requests directly), plus wall
time. PostgreSQL runs against a throw-away database created on the server named by ``--pg`` (default:
the local server the tests use) and dropped afterwards; when that server runs on this machine, the CPU
its processes used meanwhile is shown too (it includes whatever else uses that server at the time).

History, on the 2-core bench VM (5,000 runs, batches of 256 unless said). Schema 1, a row per span: SQLAlchemy
``insert`` with a dict per row, SQLite 179 µs, PostgreSQL 138 µs (server 202 µs); flat positional
rows, SQLite 52 µs, PostgreSQL 34 µs (server 132 µs). Schema 2, a row per run holding its spans'
JSON (``host/store/runs.py``): SQLite 24 µs per run; callgrind counts the whole write (sealing
included) at 171k instructions per run with 8 rows per INSERT and 164k with 32. Session 8 (AMD EPYC
VM, 20,000 runs, numbered span ids and the answer stored once): batches of 2,048, SQLite 13.2-13.8
µs, PostgreSQL 9.4-10.0 µs (server 35-43 µs); batches of 256, SQLite 15.6 µs, PostgreSQL 12.7 µs.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy.engine import make_url

from host.store.db import Store
from host.tracing.recorder import MAX_BATCH, seal
from host.tracing.records import RunRow, SpanRow
from plugin_sdk.types import Request, Usage, text_message

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
# Connecting to the admin database to create / drop the throw-away one (seconds).
PG_CONNECT_TIMEOUT_S = 10.0

_CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def postgres_cpu_s() -> float | None:
    """CPU seconds used so far by the PostgreSQL server processes on this machine (None: none seen)."""
    total, seen = 0, False
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm, _, rest = stat.partition(")")
        if not comm.endswith("(postgres"):
            continue
        fields = rest.split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
        seen = True
    return total / _CLOCK_TICKS_PER_S if seen else None


_REQUEST = Request(model="gpt-proxy", messages=[text_message("system", "You are a concise assistant."),
                                                 text_message("user", "Say hello.")],
                   max_tokens=64, temperature=0.2, origin="chat")
_ANSWER = "You said: Say hello.. The quick brown fox jumps over the"


def make_run(i: int) -> RunRow:
    """One traced proxy request of ``make bench``, shaped as the engine hands it to the recorder."""
    rid = f"run_{i:020d}"
    u = Usage(17, 8)
    t = 1_750_000_000.0 + i * 0.001
    out = {"text": _ANSWER, "tool_calls": [], "stop_reason": "end_turn", "usage": {"input_tokens": 17,
                                                                                 "output_tokens": 8}}
    spans = [
        SpanRow(id=0, parent_id=None, kind="workflow", name="proxy", status="ok", started_at=t,
                ended_at=t + 0.002, input=_REQUEST, output_of=1, usage=u),
        SpanRow(id=1, parent_id=0, kind="node", name="answer", status="ok", started_at=t,
                ended_at=t + 0.002, output=out, usage=u, model="small", provider="upstream"),
        SpanRow(id=2, parent_id=1, kind="model_call", name="upstream/small", status="ok",
                started_at=t, ended_at=t + 0.002,
                input={"model": "small", "messages": [{"role": "system", "content": "You are a concise assistant."},
                                                      {"role": "user", "content": "Say hello."}],
                       "max_tokens": 64, "temperature": 0.2},
                output={"id": f"chatcmpl-{i}", "model": "small", "content": [{"type": "text", "text": _ANSWER}],
                        "usage": {"input_tokens": 17, "output_tokens": 8}},
                usage=u, model="gpt-4o-mini", provider="upstream"),
    ]
    return RunRow(id=rid, workflow="proxy", workflow_version=1, model="gpt-proxy", protocol="chat", status="ok",
                  started_at=t, ended_at=t + 0.002, usage=u, spans=spans)


@asynccontextmanager
async def sqlite_store() -> AsyncIterator[Store]:
    with tempfile.TemporaryDirectory() as d:
        store = await Store.open(f"sqlite+aiosqlite:///{d}/bench.db")
        try:
            yield store
        finally:
            await store.close()


@asynccontextmanager
async def pg_store(admin_dsn: str) -> AsyncIterator[Store]:
    name = f"flowbase_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn, timeout=PG_CONNECT_TIMEOUT_S)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(admin_dsn).set(drivername="postgresql+asyncpg", database=name)
    try:
        store = await Store.open(url.render_as_string(hide_password=False))
        try:
            yield store
        finally:
            await store.close()
    finally:
        admin = await asyncpg.connect(admin_dsn, timeout=PG_CONNECT_TIMEOUT_S)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def measure(store: Store, n: int, batch: int, profile: bool) -> dict[str, float]:
    rows = [make_run(i) for i in range(n)]
    for r in rows:
        seal(r)
    # Warm up: the first batch pays for statement compilation / preparation once.
    await store.write_runs([make_run(n + i) for i in range(batch)])
    prof = cProfile.Profile() if profile else None
    server0 = postgres_cpu_s() if store.dialect == "postgresql" else None
    cpu0, thr0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
    if prof:
        prof.enable()
    for i in range(0, n, batch):
        await store.write_runs(rows[i:i + batch])
    if prof:
        prof.disable()
    cpu1, thr1, wall1 = time.process_time(), time.thread_time(), time.perf_counter()
    server1 = postgres_cpu_s() if server0 is not None else None
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)
    out = {"cpu_us": (cpu1 - cpu0) / n * 1e6, "loop_us": (thr1 - thr0) / n * 1e6,
           "wall_us": (wall1 - wall0) / n * 1e6}
    if server0 is not None and server1 is not None:
        out["server_us"] = (server1 - server0) / n * 1e6
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=MAX_BATCH)
    ap.add_argument("--pg", default=DEFAULT_PG, help="asyncpg DSN of a server to create a scratch database on")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of the write loop")
    args = ap.parse_args()
    async with sqlite_store() as st:
        r = await measure(st, args.runs, args.batch, args.profile)
    print(f"sqlite     cpu {r['cpu_us']:6.1f} us/run   event-loop thread {r['loop_us']:6.1f} us/run   "
          f"wall {r['wall_us']:6.1f} us/run")
    if not args.no_pg:
        async with pg_store(args.pg) as st:
            r = await measure(st, args.runs, args.batch, args.profile)
        server = f"   server {r['server_us']:6.1f} us/run" if "server_us" in r else ""
        print(f"postgresql cpu {r['cpu_us']:6.1f} us/run   event-loop thread {r['loop_us']:6.1f} us/run   "
              f"wall {r['wall_us']:6.1f} us/run{server}")


if __name__ == "__main__":
    asyncio.run(main())
