"""Opening the store: one ``Store`` over SQLite (embedded, the default) or PostgreSQL (shared).

Contract:
- ``await Store.open(url)`` connects, creates the tables if missing and records/checks the schema
  version in ``meta`` (a database written by a newer flowbase is refused with ``StoreError``; an
  older one is migrated step by step through ``MIGRATIONS``). ``await store.close()`` releases it.
- URLs: ``sqlite_url(data_dir)`` → ``sqlite+aiosqlite:///DATA_DIR/flowbase.db``; PostgreSQL is
  ``postgresql+asyncpg://…`` (the caller reads FLOWBASE_DATABASE_URL). ``sqlite+aiosqlite://`` with
  no path is an in-memory store (one shared connection).
- SQLite connections run in WAL mode (readers never block the writer), with a busy timeout and
  foreign keys on; write transactions begin IMMEDIATE (see base.py). A new database file gets
  16 KiB pages (``SQLITE_PAGE_SIZE``).
- ``Store`` has the workflow methods (workflows.py) and run methods (runs.py); ``ping()`` checks
  the database answers (for /api/health).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import StaticPool

from host.store.base import StoreError, json_dumps, json_loads
from host.store.migrations import MIGRATIONS
from host.store.runs import RunStore
from host.store.schema import SCHEMA_VERSION, meta, metadata
from host.store.workflows import WorkflowStore

# How long a SQLite writer waits for another connection's write lock before failing (milliseconds):
# long enough to ride out a large trace batch from another process, short enough to surface a
# stuck writer.
SQLITE_BUSY_TIMEOUT_MS = 10_000
# Serialises schema creation when several hosts start against one PostgreSQL at once: the key of
# pg_advisory_xact_lock, "flowbase" in ASCII (fits a signed 64-bit integer).
PG_SCHEMA_LOCK = 0x666C6F7762617365
# Option that marks the write-engine's connections so the SQLite "begin" hook says IMMEDIATE.
_IMMEDIATE = "flowbase_begin_immediate"
# Page size of a new SQLite database (bytes; an existing file keeps its own). A traced run is a
# row of ~2 KB of spans plus index entries; with 16 KiB pages a batch of runs is written as a
# quarter as many WAL frames: about 30% less CPU per stored run than SQLite's 4 KiB (measured on
# the trace write path; 32 and 64 KiB were no better).
SQLITE_PAGE_SIZE = 16384


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{(Path(data_dir) / 'flowbase.db').resolve()}"


def _sqlite_hooks(sync_engine: Any, *, file_backed: bool) -> None:
    @event.listens_for(sync_engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see on_begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if file_backed:
            cur.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")  # only a new file takes it: before WAL
            cur.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable in WAL mode except for the last commits on power loss: fine for traces.
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_IMMEDIATE) else "BEGIN")


def _json_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


async def _json_as_bytes(conn: Any) -> None:
    # ``json`` values go to and come from the server as their UTF-8 bytes (json's binary format is its
    # text): a trace's spans document is bound as the bytes it was encoded to (runs.py), and read without
    # decoding to str first. SQLAlchemy's own codec takes and gives str only.
    await conn.set_type_codec("json", encoder=_json_bytes, decoder=json_loads, schema="pg_catalog", format="binary")


def _pg_hooks(sync_engine: Any) -> None:
    # After the dialect's own connect hook (which installs its json codec): this one replaces it.
    @event.listens_for(sync_engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.run_async(_json_as_bytes)


class Store(WorkflowStore, RunStore):
    def __init__(self, url: str) -> None:
        u = make_url(url)
        # hide_parameters: database errors must not echo traced content (or anything secret) into logs.
        kw: dict[str, Any] = {"json_serializer": json_dumps, "json_deserializer": json_loads, "hide_parameters": True}
        if u.get_backend_name() == "sqlite":
            memory = u.database in (None, "", ":memory:")
            if memory:
                kw["poolclass"] = StaticPool
            self.engine = create_async_engine(u, **kw)
            _sqlite_hooks(self.engine.sync_engine, file_backed=not memory)
        elif u.get_backend_name() == "postgresql":
            # pre_ping: a PostgreSQL restart must not leave dead connections in the pool.
            self.engine = create_async_engine(u, pool_pre_ping=True, **kw)
            _pg_hooks(self.engine.sync_engine)
        else:
            raise StoreError(f"unsupported database URL scheme '{u.drivername}' (use sqlite+aiosqlite or "
                             "postgresql+asyncpg)")
        self._writer = self.engine.execution_options(**{_IMMEDIATE: True})
        self.url = u.render_as_string(hide_password=True)

    @classmethod
    async def open(cls, url: str) -> Store:
        store = cls(url)
        try:
            await store._init_schema()
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def schema_version(self) -> int:
        async with self.read() as conn:
            value = (await conn.execute(select(meta.c.value).where(meta.c.key == "schema_version"))).scalar_one()
        return int(value)

    async def _init_schema(self) -> None:
        async with self.write() as conn:
            if self.dialect == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_SCHEMA_LOCK})
            await conn.run_sync(metadata.create_all)
            found = (await conn.execute(select(meta.c.value).where(meta.c.key == "schema_version"))).scalar()
            if found is None:
                await conn.execute(insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
                return
            version = int(found)
            if version > SCHEMA_VERSION:
                raise StoreError(f"the database at {self.url} has schema version {version}, newer than this "
                                 f"flowbase understands ({SCHEMA_VERSION}); upgrade flowbase")
            while version < SCHEMA_VERSION:
                step = MIGRATIONS.get(version)
                if step is None:
                    raise StoreError(f"no migration from schema version {version} to {version + 1}")
                await step(conn)
                version += 1
            await conn.execute(update(meta).where(meta.c.key == "schema_version").values(value=str(version)))
