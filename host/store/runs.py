"""Runs and their spans: batch writes from the recorder, reads for the management API.

Contract:
- ``write_runs(rows)`` inserts a batch of ``RunRow`` in ONE transaction: a ``runs`` row each and a
  ``run_spans`` row holding the run's spans as one JSON array (recorded order; a span id repeated
  within a run keeps its first span; inputs and outputs as the engine's msgspec JSON; numbered span ids
  and outputs stored once, as schema.py says, are read back as full ids and in every span they belong
  to). Idempotent on
  run id: a run already stored is left as it is (with its spans), so retrying a batch after a failure
  never duplicates or corrupts.
  Write path (the CPU a traced request costs, so it is lean): rows go to the driver as flat positional
  values, ROWS_PER_STATEMENT rows per INSERT, built a chunk at a time on the event loop; a run's spans
  are one encoder call, made when the recorder sealed the run (recorder.seal) or here. A
  file-backed SQLite store writes each batch in one hand-off to a connection and thread of its own (see
  ``_SqliteWriter``); in-memory SQLite goes straight to the pool's aiosqlite connection, PostgreSQL
  through SQLAlchemy's ``exec_driver_sql`` (asyncpg pipelines the statements).
  Measured with ``python -m bench.trace_writes`` (5,000 one-node proxy runs of three spans shaped like
  the benchmark's, in the recorder's batches, on the 2-core bench VM): see that module's docstring.
- ``get_run(id)`` → the public run shape (GET /api/runs/{id})::

    {id, workflow, workflow_version, model, protocol, status, stream, session_id,
     started_at, ended_at (ISO-8601 UTC), duration_ms,
     usage: {input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens},
     cost_usd, error,
     spans: [{id, parent_id, kind, name, status, started_at, ended_at, duration_ms, input, output,
              usage (same keys, or null), cost_usd, error, model, provider}]}   # recorded order

  or None. ``list_runs(...)`` gives the same without ``spans``, newest first; ``before`` is the id
  of the last run of the previous page (``UnknownCursor`` if no such run).
- ``list_sessions(limit)`` newest activity first; ``get_session(id)`` its runs oldest first, each
  with spans (for replay); ``stats(since)`` per model and per workflow: runs, errors, usage, cost,
  p50/p95 duration (PostgreSQL computes percentiles; SQLite lacks them, so Python does, with the
  same linear interpolation).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, case, event, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect, RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import ColumnElement, Insert

from host.protocols.stored import stored_request
from host.store.base import StoreBase, StoreError, UnknownCursor, iso, millis
from host.store.schema import run_spans as S
from host.store.schema import runs as R
from host.tracing.records import RunRow, unique_spans
from plugin_runner.protocol import json_encode

USAGE_KEYS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
# Bound on bound parameters per IN (...) query: far below SQLite's and asyncpg's limits.
IN_CHUNK = 500
# Runs (with their spans) per chunk of write_runs: building a chunk's rows runs on the event loop, so this
# bounds how long one chunk holds it (about a millisecond: a few µs per run with three spans).
WRITE_CHUNK_RUNS = 128
# Rows per INSERT statement (multi-row VALUES); a batch of the recorder's is a few such statements per
# table. Every statement execution has a fixed cost in the driver and the database (SQLite: bind, step,
# reset, halt; PostgreSQL: a Bind/Execute in the pipeline), about as much as a small row itself. Instructions
# per run, counted with callgrind (schema 1, a row per span: 1 row 145k, 2 129k, 4 115k, 8 105k, 16 105k;
# schema 2, a run and its spans document, with sealing: 8 171k, 32 164k). Beyond 32 the count stays flat,
# but on a busy host each SQLite statement is also a GIL hand-off between the writer thread and the event
# loop: with 256 instead of 32 the event loop spent ~2.5 µs less per traced request at c=32 (alternating
# rounds, twice). At most 18 columns × 256 rows = 4,608 parameters: far below SQLite's 32,766 and
# PostgreSQL's 32,767.
ROWS_PER_STATEMENT = 256
# How much lower the SQLite trace writer's thread runs than the rest of the host (Linux nice levels, per
# thread). Its batches (a few ms of CPU, a few times a second) then give way to the request path: the
# p99 added latency at c=1 with tracing on fell from ~1.5 to ~1.1 ms (off: ~0.8), throughput at c=32
# unchanged (alternating rounds, both versions up). At nice +10 it still gets about a tenth of a core
# against busy request threads, twice what it needs at the host's peak, so traces keep up under overload;
# SCHED_IDLE did no better for latency and could starve the writer.
TRACE_WRITER_NICE = 10
# A session page is at most this many runs (each with its spans) so one huge session cannot
# exhaust the host's memory.
SESSION_RUNS_LIMIT = 1000


# Column order of the positional rows ``_run_values`` / ``_span_values`` build; the INSERT statements are
# compiled with exactly these columns, in this order (checked against the tables by ``_Insert``).
RUN_COLUMNS = ("id", "workflow", "workflow_version", "model", "protocol", "status", "stream", "started_at",
               "ended_at", "duration_ms", *USAGE_KEYS, "cost_usd", "error", "session_id")
SPAN_COLUMNS = ("run_id", "spans")


# Python's sqlite3 binds exact int/float/str itself but sends every other value (None, bool) through its
# adapter registry, and a miss there costs two failed attribute lookups that build AttributeErrors: about
# a fifth of the driver's work for a run's rows. Registered adapters make it one dict hit and one call.
# They bind the same values as before (NULL, and bool as the integer it already was), so nothing else
# changes. ``{}.get`` is a C-level callable returning None for any argument: cheaper than a Python one.
sqlite3.register_adapter(type(None), cast("Callable[[None], None]", {}.get))
sqlite3.register_adapter(bool, int)


def _run_values(out: list[Any], r: RunRow) -> None:
    """Append ``r``'s row (RUN_COLUMNS) to the flat parameter list ``out``."""
    u = r.usage
    start, end = r.started_at, r.ended_at
    out += (r.id, r.workflow, r.workflow_version, r.model, r.protocol, r.status, r.stream, start, end,
            None if end is None else round((end - start) * 1000.0, 3), u.input_tokens, u.output_tokens,
            u.cache_read_tokens, u.cache_write_tokens, u.reasoning_tokens, r.cost_usd, r.error, r.session_id)


def _span_values(out: list[Any], r: RunRow) -> None:
    """Append ``r``'s ``run_spans`` row (SPAN_COLUMNS) to the flat parameter list ``out``: its spans as one
    JSON document (sealed already, or encoded now), as the UTF-8 bytes they were encoded to. SQLite stores
    them as a BLOB, PostgreSQL's json type as its text (db.py: ``_json_as_bytes``); decoding them to str
    first cost the event loop ~20 µs per run for an agent's 75 KB document. The store reads both alike."""
    doc = r.spans_json
    out += (r.id, json_encode(unique_spans(r.spans)) if doc is None else doc)


def _run(row: RowMapping) -> dict[str, Any]:
    return {"id": row["id"], "workflow": row["workflow"], "workflow_version": row["workflow_version"],
            "model": row["model"], "protocol": row["protocol"], "status": row["status"], "stream": row["stream"],
            "session_id": row["session_id"], "started_at": iso(row["started_at"]), "ended_at": iso(row["ended_at"]),
            "duration_ms": row["duration_ms"], "usage": {k: row[k] for k in USAGE_KEYS},
            "cost_usd": row["cost_usd"], "error": row["error"]}


def _span_id(v: Any, run_id: str) -> Any:
    """A stored span id as the API shows it: the engine's numbered spans are "<run id>.<n>"."""
    return f"{run_id}.{v}" if type(v) is int else v


def _span(d: dict[str, Any], run_id: str) -> dict[str, Any]:
    """A stored span (one object of a ``run_spans`` array) in the public shape: every key, None where unset."""
    get = d.get
    usage = get("usage")
    started, ended = get("started_at"), get("ended_at")
    fmt, inp = get("input_format"), get("input")
    if fmt is not None:  # a client's request body as it came: shown as the canonical request
        inp = stored_request(fmt, inp)
    return {"id": _span_id(get("id"), run_id), "parent_id": _span_id(get("parent_id"), run_id), "kind": get("kind"),
            "name": get("name"), "status": get("status"), "started_at": iso(started), "ended_at": iso(ended),
            "duration_ms": millis(started, ended), "input": inp, "output": get("output"),
            "usage": None if usage is None else {k: usage.get(k, 0) for k in USAGE_KEYS},
            "cost_usd": get("cost_usd"), "error": get("error"), "model": get("model"), "provider": get("provider")}


def _spans(doc: Any, run_id: str) -> list[dict[str, Any]]:
    """A run's stored spans in the public shape, with each output stored once (``SpanRow.output_of``) in
    every span it belongs to."""
    if not isinstance(doc, list):
        return []
    out = [_span(d, run_id) for d in doc]
    shared = [(span, d["output_of"]) for span, d in zip(out, doc, strict=True) if "output_of" in d]
    if shared:
        outputs = {d.get("id"): d.get("output") for d in reversed(doc)}  # a repeated id: its first span
        for span, of in shared:
            span["output"] = outputs.get(of)
    return out


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (PostgreSQL's ``percentile_cont``); ``values`` sorted."""
    if not values:
        return None
    pos = (len(values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), IN_CHUNK):
        yield items[i:i + IN_CHUNK]


class _Agg:
    """Running totals for one stats group."""

    __slots__ = ("cost", "durations", "errors", "runs", "usage")

    def __init__(self) -> None:
        self.runs = 0
        self.errors = 0
        self.usage = dict.fromkeys(USAGE_KEYS, 0)
        self.cost: float | None = None
        self.durations: list[float] = []

    def add(self, row: RowMapping) -> None:
        self.runs += int(row["runs"])
        self.errors += int(row["errors"] or 0)
        for k in USAGE_KEYS:
            self.usage[k] += int(row[k] or 0)
        if row["cost_usd"] is not None:
            self.cost = (self.cost or 0.0) + float(row["cost_usd"])

    def out(self, p50: float | None = None, p95: float | None = None) -> dict[str, Any]:
        if self.durations:
            self.durations.sort()
            p50, p95 = percentile(self.durations, 0.5), percentile(self.durations, 0.95)
        return {"runs": self.runs, "errors": self.errors, "usage": self.usage,
                "cost_usd": None if self.cost is None else round(self.cost, 12),
                "p50_ms": None if p50 is None else round(p50, 3), "p95_ms": None if p95 is None else round(p95, 3)}


Statement = tuple[str, list[tuple[Any, ...]]]  # SQL, then one parameter tuple per execution


class _Insert:
    """``INSERT … ON CONFLICT DO NOTHING`` into one table for 1 … ROWS_PER_STATEMENT rows, in the driver's
    own SQL and paramstyle, taking the rows' values flat and positionally."""

    __slots__ = ("columns", "dialect", "sql", "table")

    def __init__(self, table: Table, columns: tuple[str, ...], dialect: Dialect) -> None:
        if {c.name for c in table.c} != set(columns):
            raise StoreError(f"write_runs does not cover the columns of table '{table.name}'")
        self.table, self.columns, self.dialect = table, columns, dialect
        self.sql: dict[int, str] = {}
        self.for_rows(ROWS_PER_STATEMENT)

    def for_rows(self, n: int) -> str:
        sql = self.sql.get(n)
        if sql is None:
            values: list[dict[str, Any]] = [{c: bindparam(f"{c}_{i}") for c in self.columns} for i in range(n)]
            stmt: Insert
            if self.dialect.name == "postgresql":
                stmt = pg_insert(self.table).values(values).on_conflict_do_nothing()
            elif self.dialect.name == "sqlite":
                # OR FAIL: a multi-row INSERT that may abort (a NOT NULL column) otherwise keeps a
                # statement journal (a temp file) so it can undo its own earlier rows: a copy of every
                # page it touches. A failed write rolls back the whole transaction anyway. Key conflicts
                # are still skipped by DO NOTHING.
                stmt = sqlite_insert(self.table).prefix_with("OR FAIL").values(values).on_conflict_do_nothing()
            else:
                raise StoreError(f"unsupported database dialect '{self.dialect.name}'")
            compiled = stmt.compile(dialect=self.dialect)
            # Positional parameters (qmark on aiosqlite, $n on asyncpg) must come in the rows' order.
            if tuple(compiled.positiontup or ()) != tuple(f"{c}_{i}" for i in range(n) for c in self.columns):
                raise StoreError(f"the {self.dialect.name} driver's paramstyle '{self.dialect.paramstyle}' does "
                                 "not take parameters in column order")
            sql = self.sql[n] = compiled.string
        return sql

    def statements(self, flat: list[Any]) -> list[Statement]:
        """The statements that insert the rows whose values ``flat`` holds back to back: full groups of
        ROWS_PER_STATEMENT rows, then the rest in groups of 128, 64, … 2 and 1 rows as needed (a few
        statement shapes to compile and cache, instead of one per possible remainder)."""
        width = len(self.columns)
        step = width * ROWS_PER_STATEMENT
        full = len(flat) // step * step
        out: list[Statement] = []
        if full:
            out.append((self.for_rows(ROWS_PER_STATEMENT), [tuple(flat[i:i + step]) for i in range(0, full, step)]))
        at, rest = full, (len(flat) - full) // width
        size = ROWS_PER_STATEMENT
        while rest:
            size = max(size // 2, 1)
            if rest >= size:
                out.append((self.for_rows(size), [tuple(flat[at:at + size * width])]))
                at += size * width
                rest -= size
        return out


def _lower_this_threads_priority(by: int) -> None:
    """Raise the calling thread's nice level by ``by`` (Linux sets it per thread); where that is not
    possible the thread keeps the process's priority."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + by, 19))
    except (AttributeError, OSError):
        pass


class _SqliteWriter:
    """The trace writes of a file-backed SQLite store, on a connection of their own used only by a thread
    of their own: a whole batch (begin, inserts, commit) is one hand-off to that thread. Through the
    pool's aiosqlite connection the same batch took five round trips to the driver's thread and back,
    each costing two thread wake-ups and the GIL changing hands twice, and the pool handing out its
    connections in turn left each with a stale page cache; together more CPU than the inserts.

    The connection is set up as db.py sets up the pool's (busy timeout, synchronous=NORMAL; WAL is a
    property of the file), but for foreign keys (see ``_connect``). A write whose caller is cancelled
    still runs to its end in the thread (committed or rolled back, never half-done)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowbase-trace-sqlite")
        self._closed = False

    async def write(self, statements: Callable[[], list[Statement]]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._write, statements)

    def close(self) -> None:
        """Close the connection after any write in progress; does not wait. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._thread.submit(self._close)
        self._thread.shutdown(wait=False)

    # ---- in the writer's thread ------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # Imported here: db.py imports this module. One busy timeout for every connection of the store.
        from host.store.db import SQLITE_BUSY_TIMEOUT_MS

        _lower_this_threads_priority(TRACE_WRITER_NICE)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            # Foreign keys off on this connection only: it inserts each run before its spans in the same
            # transaction and never deletes, so the check (a lookup per row) could never fail here.
            conn.execute("PRAGMA foreign_keys=OFF")
        except BaseException:
            conn.close()
            raise
        return conn

    def _write(self, statements: Callable[[], list[Statement]]) -> None:
        conn = self._conn
        if conn is None:
            conn = self._conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements():
                conn.executemany(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class RunStore(StoreBase):
    # The run and span INSERTs for this store's dialect, made on the first write.
    _inserts: tuple[_Insert, _Insert] | None = None
    # File-backed SQLite: the writer of trace batches (made on the first write, closed with the engine:
    # disposing of it, as Store.close() does, closes the writer; a write after that makes a new one).
    _sqlite_writer: _SqliteWriter | None = None
    _closes_writer_on_dispose = False

    async def write_runs(self, rows: list[RunRow]) -> None:
        if not rows:
            return
        if self._inserts is None:
            dialect = self.engine.dialect
            self._inserts = (_Insert(R, RUN_COLUMNS, dialect), _Insert(S, SPAN_COLUMNS, dialect))
        run_insert, span_insert = self._inserts
        # Fast path: flat positional values straight to the driver, several rows per statement.
        # SQLAlchemy's per-row parameter processing (dicts, bind processors) was most of the CPU a
        # traced request cost. The rows are built before the transaction begins (so it holds the
        # database's write lock only while writing), a chunk at a time with the event loop free in between.
        run_values: list[Any] = []
        span_values: list[Any] = []
        seen: set[str] = set()
        for i in range(0, len(rows), WRITE_CHUNK_RUNS):
            if i:
                await asyncio.sleep(0)
            for r in rows[i:i + WRITE_CHUNK_RUNS]:
                if r.id in seen:
                    continue
                seen.add(r.id)
                _run_values(run_values, r)
                _span_values(span_values, r)

        def statements() -> list[Statement]:
            return run_insert.statements(run_values) + span_insert.statements(span_values)

        if self.dialect == "sqlite":
            writer = self._sqlite_writer or self._open_sqlite_writer()
            if writer is not None:
                await writer.write(statements)
                return
            async with self._sqlite_transaction() as driver:
                for sql, params in statements():
                    await driver.executemany(sql, params)
            return
        async with self.write() as conn:
            for sql, params in statements():
                await conn.exec_driver_sql(sql, params)

    def _open_sqlite_writer(self) -> _SqliteWriter | None:
        """The SQLite writer for a database file; None for an in-memory database (a second connection
        would open another, empty one) or a URL with options this path does not apply."""
        url = self.engine.url
        if not url.database or url.database == ":memory:" or url.query:
            return None
        writer = self._sqlite_writer = _SqliteWriter(url.database)
        if not self._closes_writer_on_dispose:
            event.listen(self.engine.sync_engine, "engine_disposed", self._close_sqlite_writer)
            self._closes_writer_on_dispose = True
        return writer

    def _close_sqlite_writer(self, _engine: Any = None) -> None:
        writer, self._sqlite_writer = self._sqlite_writer, None
        if writer is not None:
            writer.close()

    @contextlib.asynccontextmanager
    async def _sqlite_transaction(self) -> AsyncIterator[Any]:
        """A write transaction (BEGIN IMMEDIATE, as ``write()``) on a pooled connection, yielding its
        aiosqlite connection: five round trips to the driver's thread per batch (begin, one INSERT per
        table, commit, the pool's reset) where SQLAlchemy's own statements take nine."""
        async with self.engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            if driver is None:
                raise StoreError("the SQLite connection is closed")
            await driver.execute("BEGIN IMMEDIATE")
            try:
                yield driver
            except BaseException:
                # Queued behind anything still running in the driver's thread. Returning the
                # connection to the pool rolls back as well, so a failure here must not hide the cause.
                with contextlib.suppress(Exception):
                    await driver.rollback()
                raise
            await driver.commit()

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        async with self.read() as conn:
            row = (await conn.execute(select(R).where(R.c.id == run_id))).mappings().first()
            if row is None:
                return None
            doc = (await conn.execute(select(S.c.spans).where(S.c.run_id == run_id))).scalar()
        out = _run(row)
        out["spans"] = _spans(doc, run_id)
        return out

    async def list_runs(self, *, model: str | None = None, status: str | None = None, session_id: str | None = None,
                        workflow: str | None = None, limit: int = 50, before: str | None = None) -> list[dict[str, Any]]:
        conds: list[ColumnElement[bool]] = []
        for col, value in ((R.c.model, model), (R.c.status, status), (R.c.session_id, session_id),
                           (R.c.workflow, workflow)):
            if value is not None:
                conds.append(col == value)
        async with self.read() as conn:
            if before is not None:
                at = (await conn.execute(select(R.c.started_at).where(R.c.id == before))).scalar_one_or_none()
                if at is None:
                    raise UnknownCursor(f"unknown cursor '{before}': no run has that id")
                conds.append(or_(R.c.started_at < at, and_(R.c.started_at == at, R.c.id < before)))
            q = select(R).where(*conds).order_by(R.c.started_at.desc(), R.c.id.desc()).limit(max(limit, 0))
            rows = (await conn.execute(q)).mappings().all()
        return [_run(r) for r in rows]

    async def list_sessions(self, limit: int = 50) -> list[dict[str, Any]]:
        last = func.max(func.coalesce(R.c.ended_at, R.c.started_at)).label("last_at")
        q = (select(R.c.session_id, func.min(R.c.started_at).label("first_at"), last,
                    func.count().label("runs"), func.sum(case((R.c.status == "error", 1), else_=0)).label("errors"),
                    *(func.sum(R.c[k]).label(k) for k in USAGE_KEYS), func.sum(R.c.cost_usd).label("cost_usd"))
             .where(R.c.session_id.is_not(None)).group_by(R.c.session_id)
             .order_by(last.desc(), R.c.session_id.desc()).limit(max(limit, 0)))
        async with self.read() as conn:
            rows = (await conn.execute(q)).mappings().all()
            ids = [r["session_id"] for r in rows]
            models: dict[str, set[str]] = defaultdict(set)
            for chunk in _chunks(ids):
                pairs = await conn.execute(select(R.c.session_id, R.c.model).where(R.c.session_id.in_(chunk)).distinct())
                for sid, m in pairs:
                    models[sid].add(m)
        return [{"session_id": r["session_id"], "first_at": iso(r["first_at"]), "last_at": iso(r["last_at"]),
                 "runs": int(r["runs"]), "errors": int(r["errors"] or 0),
                 "usage": {k: int(r[k] or 0) for k in USAGE_KEYS},
                 "cost_usd": None if r["cost_usd"] is None else round(float(r["cost_usd"]), 12),
                 "models": sorted(models[r["session_id"]])} for r in rows]

    async def get_session(self, session_id: str, limit: int = SESSION_RUNS_LIMIT) -> dict[str, Any] | None:
        q = (select(R).where(R.c.session_id == session_id)
             .order_by(R.c.started_at, R.c.id).limit(max(limit, 0)))
        async with self.read() as conn:
            rows = (await conn.execute(q)).mappings().all()
            if not rows:
                return None
            by_run: dict[str, list[dict[str, Any]]] = {}
            for chunk in _chunks([r["id"] for r in rows]):
                for rid, doc in await conn.execute(select(S.c.run_id, S.c.spans).where(S.c.run_id.in_(chunk))):
                    by_run[rid] = _spans(doc, rid)
        runs = []
        usage = dict.fromkeys(USAGE_KEYS, 0)
        cost: float | None = None
        for r in rows:
            run = _run(r)
            run["spans"] = by_run.get(r["id"], [])
            runs.append(run)
            for k in USAGE_KEYS:
                usage[k] += int(r[k])
            if r["cost_usd"] is not None:
                cost = (cost or 0.0) + float(r["cost_usd"])
        return {"session_id": session_id, "first_at": iso(rows[0]["started_at"]),
                "last_at": iso(max((r["ended_at"] or r["started_at"]) for r in rows)),
                "runs": runs, "errors": sum(1 for r in rows if r["status"] == "error"), "usage": usage,
                "cost_usd": None if cost is None else round(cost, 12), "models": sorted({r["model"] for r in rows})}

    async def stats(self, since: float | None = None) -> dict[str, Any]:
        where: list[ColumnElement[bool]] = [] if since is None else [R.c.started_at >= since]
        agg = (select(R.c.model, R.c.workflow, func.count().label("runs"),
                      func.sum(case((R.c.status == "error", 1), else_=0)).label("errors"),
                      *(func.sum(R.c[k]).label(k) for k in USAGE_KEYS), func.sum(R.c.cost_usd).label("cost_usd"))
               .where(*where).group_by(R.c.model, R.c.workflow))
        total = _Agg()
        by_model: dict[str, _Agg] = defaultdict(_Agg)
        by_wf: dict[str, _Agg] = defaultdict(_Agg)
        pcts: dict[tuple[str, str | None], tuple[float | None, float | None]] = {}
        async with self.read() as conn:
            for row in (await conn.execute(agg)).mappings():
                total.add(row)
                by_model[row["model"]].add(row)
                by_wf[row["workflow"]].add(row)
            if self.dialect == "postgresql":
                pcts = await _pg_percentiles(conn, where)
            else:
                q = select(R.c.model, R.c.workflow, R.c.duration_ms).where(R.c.duration_ms.is_not(None), *where)
                for m, wf, d in await conn.execute(q):
                    total.durations.append(d)
                    by_model[m].durations.append(d)
                    by_wf[wf].durations.append(d)

        def out(a: _Agg, kind: str, key: str | None) -> dict[str, Any]:
            return a.out(*pcts.get((kind, key), (None, None)))

        return {"since": iso(since), "total": out(total, "total", None),
                "models": [{"model": k, **out(a, "model", k)} for k, a in sorted(by_model.items())],
                "workflows": [{"workflow": k, **out(a, "workflow", k)} for k, a in sorted(by_wf.items())]}


async def _pg_percentiles(conn: AsyncConnection, where: list[ColumnElement[bool]]
                          ) -> dict[tuple[str, str | None], tuple[float | None, float | None]]:
    p50 = func.percentile_cont(0.5).within_group(R.c.duration_ms).label("p50")
    p95 = func.percentile_cont(0.95).within_group(R.c.duration_ms).label("p95")
    out: dict[tuple[str, str | None], tuple[float | None, float | None]] = {}
    for kind, col in (("total", None), ("model", R.c.model), ("workflow", R.c.workflow)):
        q = select(p50, p95) if col is None else select(col, p50, p95).group_by(col)
        for row in await conn.execute(q.where(R.c.duration_ms.is_not(None), *where)):
            out[(kind, None if col is None else row[0])] = (row[-2], row[-1])
    return out
