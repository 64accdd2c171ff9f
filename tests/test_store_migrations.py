"""Opening a database written by an older flowbase upgrades it in place and loses nothing: schema 1
(a row per span) becomes schema 2 (a JSON array of spans per run), on SQLite and PostgreSQL; an
existing SQLite file keeps its page size (new ones get 16 KiB)."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy import inspect, text, update
from sqlalchemy.engine import make_url
from support_store import T0, make_run

from host.store.db import Store, sqlite_url
from host.store.migrations import V2_RUNS_PER_PAGE
from host.store.schema import SCHEMA_VERSION, meta

PG_ADMIN_DSN = os.environ.get("FLOWBASE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

V1_SPANS = """CREATE TABLE spans (
    run_id VARCHAR(64) NOT NULL REFERENCES runs (id) ON DELETE CASCADE, id VARCHAR(128) NOT NULL,
    parent_id VARCHAR(128), seq INTEGER NOT NULL, kind VARCHAR(16) NOT NULL, name VARCHAR(255) NOT NULL,
    status VARCHAR(16) NOT NULL, started_at DOUBLE PRECISION NOT NULL, ended_at DOUBLE PRECISION, input JSON,
    output JSON, usage JSON, cost_usd DOUBLE PRECISION, error TEXT, model VARCHAR(255), provider VARCHAR(255),
    CONSTRAINT pk_spans PRIMARY KEY (run_id, id))"""
V1_SPAN_INSERT = text("INSERT INTO spans VALUES (:run_id, :id, :parent_id, :seq, :kind, :name, :status, :started_at, "
                      ":ended_at, :input, :output, :usage, :cost_usd, :error, :model, :provider)")
USAGE_TEXT = ('{"input_tokens":12,"output_tokens":3,"cache_read_tokens":0,"cache_write_tokens":0,'
              '"reasoning_tokens":1}')


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of its own (the migration must run on a database nobody else has opened)."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    name = f"flowbase_migrate_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield make_url(PG_ADMIN_DSN).set(drivername="postgresql+asyncpg", database=name).render_as_string(
            hide_password=False)
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def v1_spans(run_id: str, i: int) -> list[dict[str, object]]:
    """Three spans as schema 1 stored them: JSON columns as text, every usage key present."""
    base = {"run_id": run_id, "status": "ok", "ended_at": T0 + 1, "cost_usd": None, "error": None, "model": None,
            "provider": None, "usage": None, "input": None, "output": None}
    return [
        {**base, "id": f"{run_id}.0", "parent_id": None, "seq": 0, "kind": "workflow", "name": "wf-a",
         "started_at": T0, "input": '{"model":"m-a","messages":[{"role":"user","content":"héllo \\u2028"}]}',
         "output": f'{{"text":"answer {i}"}}', "usage": USAGE_TEXT, "cost_usd": 0.25},
        {**base, "id": f"{run_id}.1", "parent_id": f"{run_id}.0", "seq": 1, "kind": "node", "name": "answer",
         "started_at": T0 + 0.1, "ended_at": None, "status": "error", "error": "upstream said no"},
        {**base, "id": f"{run_id}.2", "parent_id": f"{run_id}.1", "seq": 2, "kind": "model_call", "name": "up/small",
         "started_at": T0 + 0.2, "input": '{"n":1.5,"list":[1,null,true]}', "usage": USAGE_TEXT, "model": "small",
         "provider": "up", "cost_usd": 0.25},
    ]


async def make_v1_database(url: str, runs: int) -> None:
    """A database as flowbase with schema version 1 left it: a spans table and a full session index."""
    store = await Store.open(url)
    try:
        await store.write_runs([make_run(f"run-{i:05d}", session_id="s-1" if i % 2 else None) for i in range(runs)])
        async with store.write() as conn:
            await conn.execute(text("DROP TABLE run_spans"))
            await conn.execute(text("DROP INDEX ix_runs_session_id"))
            await conn.execute(text("CREATE INDEX ix_runs_session_id ON runs (session_id, started_at)"))
            await conn.execute(text(V1_SPANS))
            rows = [span for i in range(runs) for span in v1_spans(f"run-{i:05d}", i)]
            await conn.execute(V1_SPAN_INSERT, rows)
            await conn.execute(update(meta).where(meta.c.key == "schema_version").values(value="1"))
    finally:
        await store.close()


async def test_a_schema_1_database_is_upgraded_on_open_with_every_span_intact(fresh_url: str) -> None:
    runs = V2_RUNS_PER_PAGE + 7  # more than one page of the migration
    await make_v1_database(fresh_url, runs)
    store = await Store.open(fresh_url)
    try:
        assert await store.schema_version() == SCHEMA_VERSION == 2
        for i in (0, 1, V2_RUNS_PER_PAGE, runs - 1):
            got = await store.get_run(f"run-{i:05d}")
            assert got is not None
            spans = got["spans"]
            assert [s["id"] for s in spans] == [f"run-{i:05d}.{k}" for k in range(3)]
            assert spans[0]["input"] == {"model": "m-a", "messages": [{"role": "user", "content": "héllo \u2028"}]}
            assert spans[0]["output"] == {"text": f"answer {i}"}
            assert spans[0]["usage"] == {"input_tokens": 12, "output_tokens": 3, "cache_read_tokens": 0,
                                         "cache_write_tokens": 0, "reasoning_tokens": 1}
            assert (spans[1]["status"], spans[1]["error"], spans[1]["ended_at"], spans[1]["usage"]) == (
                "error", "upstream said no", None, None)
            assert (spans[2]["input"], spans[2]["model"], spans[2]["provider"], spans[2]["cost_usd"]) == (
                {"n": 1.5, "list": [1, None, True]}, "small", "up", 0.25)
        session = await store.get_session("s-1")
        assert session is not None and len(session["runs"]) == runs // 2
        assert all(len(r["spans"]) == 3 for r in session["runs"])
        async with store.read() as conn:
            assert not await conn.run_sync(lambda c: inspect(c).has_table("spans"))
        # New runs are written next to the migrated ones.
        await store.write_runs([make_run("after")])
        assert (await store.get_run("after") or {}).get("spans")
    finally:
        await store.close()
    again = await Store.open(fresh_url)  # opening an upgraded database again changes nothing
    try:
        assert await again.schema_version() == SCHEMA_VERSION
        assert len((await again.get_run("run-00000") or {})["spans"]) == 3
    finally:
        await again.close()


async def test_a_new_sqlite_store_gets_16_kib_pages_and_an_existing_file_keeps_its_own(tmp_path: Path) -> None:
    (tmp_path / "new").mkdir()
    fresh = await Store.open(sqlite_url(tmp_path / "new"))
    run = make_run(f"run_{uuid.uuid4().hex}")
    await fresh.write_runs([run])
    await fresh.close()
    with sqlite3.connect(tmp_path / "new" / "flowbase.db") as conn:
        assert conn.execute("PRAGMA page_size").fetchone() == (16384,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    (tmp_path / "old").mkdir()
    with sqlite3.connect(tmp_path / "old" / "flowbase.db") as conn:  # an earlier flowbase's file
        conn.execute("PRAGMA page_size=4096")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE kept (v TEXT)")
        conn.execute("INSERT INTO kept VALUES ('still here')")
    old = await Store.open(sqlite_url(tmp_path / "old"))
    await old.write_runs([run])
    assert (await old.get_run(run.id)) is not None
    await old.close()
    with sqlite3.connect(tmp_path / "old" / "flowbase.db") as conn:
        assert conn.execute("PRAGMA page_size").fetchone() == (4096,)
        assert conn.execute("SELECT v FROM kept").fetchall() == [("still here",)]
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
