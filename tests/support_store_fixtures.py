"""Fixtures for the store, recorder and admin API tests (load with ``pytest_plugins``).

``store`` is parametrised over SQLite (a fresh file per test) and PostgreSQL (127.0.0.1:5432, a
database created for this test session and dropped at its end; emptied before each test). If
PostgreSQL is unreachable the PostgreSQL tests fail: CI starts it (.ci/run).
Override the server with FLOWBASE_TEST_PG_DSN (an asyncpg DSN to an existing database to connect
through, default ``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy import delete
from sqlalchemy.engine import make_url

from host.store.db import Store, sqlite_url
from host.store.schema import run_spans, runs, workflow_versions, workflows

PG_ADMIN_DSN = os.environ.get("FLOWBASE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
# How long to wait for PostgreSQL to accept a connection before failing the tests (seconds).
PG_CONNECT_TIMEOUT_S = 10.0


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    name = f"flowbase_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=PG_CONNECT_TIMEOUT_S)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(PG_ADMIN_DSN).set(drivername="postgresql+asyncpg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=PG_CONNECT_TIMEOUT_S)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest_asyncio.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    try:
        async with s.write() as conn:
            for table in (run_spans, runs, workflow_versions, workflows):
                await conn.execute(delete(table))
        yield s
    finally:
        await s.close()


@pytest_asyncio.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(sqlite_url(tmp_path))
    try:
        yield s
    finally:
        await s.close()
