"""Schema migrations: ``MIGRATIONS[n]`` upgrades a database at schema version n to n + 1.

Each step runs inside the transaction that opens the store (``Store._init_schema``), after
``metadata.create_all`` has created any table the current schema adds, so a step either completes
with the version bump or leaves the database as it was.

- 1 → 2: spans move from one row each (table ``spans``) to one ``run_spans`` row per run holding
  them as a JSON array (schema.py says why); ``ix_runs_session_id`` becomes partial. Inputs and
  outputs are carried over as the JSON text they were stored as, never decoded and re-encoded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from sqlalchemy import Index, bindparam, insert, inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection

from host.store.schema import run_spans, runs

Migration = Callable[[AsyncConnection], Awaitable[None]]

# Runs migrated per round trip (their spans are read with one IN query).
V2_RUNS_PER_PAGE = 500
_V1_COLUMNS = ("id", "parent_id", "kind", "name", "status", "started_at", "ended_at", "input", "output", "usage",
               "cost_usd", "error", "model", "provider")
_V1_JSON = {"input", "output", "usage"}


async def _v1_to_v2(conn: AsyncConnection) -> None:
    if await conn.run_sync(lambda c: inspect(c).has_table("spans")):
        # JSON columns read as text on both databases, so they go into the new arrays byte for byte.
        cols = ", ".join(f"CAST({c} AS TEXT)" if c in _V1_JSON else c for c in _V1_COLUMNS)
        page = text(f"SELECT run_id, {cols} FROM spans WHERE run_id IN :ids ORDER BY run_id, seq").bindparams(
            bindparam("ids", expanding=True))
        after = ""
        while True:
            ids = list((await conn.execute(text("SELECT id FROM runs WHERE id > :after ORDER BY id LIMIT :n"),
                                           {"after": after, "n": V2_RUNS_PER_PAGE})).scalars())
            if not ids:
                break
            after = ids[-1]
            docs: dict[str, list[dict[str, Any]]] = {}
            for row in await conn.execute(page, {"ids": ids}):
                span = {c: (msgspec.Raw(v.encode()) if c in _V1_JSON else v)
                        for c, v in zip(_V1_COLUMNS, row[1:], strict=True) if v is not None}
                docs.setdefault(row[0], []).append(span)
            if docs:
                await conn.execute(insert(run_spans), [{"run_id": rid, "spans": doc} for rid, doc in docs.items()])
        await conn.execute(text("DROP TABLE spans"))
    session_ix = next(ix for ix in runs.indexes if ix.name == "ix_runs_session_id")
    await conn.run_sync(lambda c: Index.drop(session_ix, c, checkfirst=True))
    await conn.run_sync(lambda c: Index.create(session_ix, c))


MIGRATIONS: dict[int, Migration] = {1: _v1_to_v2}
