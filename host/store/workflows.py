"""Workflows and their version history.

Contract:
- ``save_workflow(name, model, source_text, definition) -> int``: the version now current. A new
  version is made only when the definition's digest (SHA-256 of its canonical JSON) differs from
  the current version's; otherwise the current version number comes back and nothing is written.
  Versions are never rewritten: going back to an earlier definition makes a new version.
  The model name moves with the workflow: if another workflow held it, that one's ``model`` becomes
  NULL (it is no longer published under it) until it is saved again.
- ``source_text`` is the file as written and ``definition`` its parse with ``${VAR}`` references
  unresolved; callers never pass resolved configuration.
- Reads return plain dicts with ISO-8601 UTC times: ``list_workflows()``, ``get_workflow(name)``
  (with the current version's source and definition), ``list_versions(name)`` newest first,
  ``get_version(name, version)``. Unknown names give None (``list_versions``: an empty list).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import msgspec
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from host.store.base import StoreBase, iso
from host.store.schema import workflow_versions as V
from host.store.schema import workflows as W

# Two hosts sharing one PostgreSQL may save the same workflow at once; the loser of the unique
# constraint re-reads and tries again (attempts, not seconds).
SAVE_ATTEMPTS = 3


def definition_digest(definition: dict[str, Any]) -> str:
    """SHA-256 of the definition's canonical JSON (keys sorted), hex."""
    return hashlib.sha256(msgspec.json.encode(definition, order="sorted")).hexdigest()


def _workflow(row: RowMapping) -> dict[str, Any]:
    return {"name": row["name"], "model": row["model"], "current_version": row["current_version"],
            "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"])}


def _version(row: RowMapping, *, full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"workflow": row["workflow"], "version": row["version"], "digest": row["digest"],
                           "created_at": iso(row["created_at"])}
    if full:
        out["source_text"] = row["source_text"]
        out["definition"] = row["definition"]
    return out


class WorkflowStore(StoreBase):
    async def save_workflow(self, name: str, model: str, source_text: str, definition: dict[str, Any]) -> int:
        digest = definition_digest(definition)
        for attempt in range(SAVE_ATTEMPTS):
            try:
                return await self._save_once(name, model, source_text, definition, digest)
            except IntegrityError:
                if attempt == SAVE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _save_once(self, name: str, model: str, source_text: str, definition: dict[str, Any],
                         digest: str) -> int:
        now = time.time()
        async with self.write() as conn:
            row = (await conn.execute(select(W.c.model, W.c.current_version).where(W.c.name == name))).first()
            if row is not None:
                current = (await conn.execute(select(V.c.digest).where(
                    V.c.workflow == name, V.c.version == row.current_version))).scalar_one_or_none()
                if current == digest:
                    if row.model != model:
                        await self._claim_model(conn, name, model)
                        await conn.execute(update(W).where(W.c.name == name).values(model=model, updated_at=now))
                    return int(row.current_version)
            await self._claim_model(conn, name, model)
            if row is None:
                version = 1
                await conn.execute(insert(W).values(name=name, model=model, current_version=version,
                                                    created_at=now, updated_at=now))
            else:
                last = (await conn.execute(select(func.max(V.c.version)).where(V.c.workflow == name))).scalar()
                version = int(last or 0) + 1
            await conn.execute(insert(V).values(workflow=name, version=version, source_text=source_text,
                                                definition=definition, digest=digest, created_at=now))
            if row is not None:
                await conn.execute(update(W).where(W.c.name == name).values(
                    model=model, current_version=version, updated_at=now))
            return version

    @staticmethod
    async def _claim_model(conn: AsyncConnection, name: str, model: str) -> None:
        await conn.execute(update(W).where(W.c.model == model, W.c.name != name).values(model=None))

    async def list_workflows(self) -> list[dict[str, Any]]:
        async with self.read() as conn:
            rows = (await conn.execute(select(W).order_by(W.c.name))).mappings().all()
        return [_workflow(r) for r in rows]

    async def get_workflow(self, name: str) -> dict[str, Any] | None:
        q = (select(W, V.c.source_text, V.c.definition, V.c.digest)
             .join(V, (V.c.workflow == W.c.name) & (V.c.version == W.c.current_version))
             .where(W.c.name == name))
        async with self.read() as conn:
            row = (await conn.execute(q)).mappings().first()
        if row is None:
            return None
        out = _workflow(row)
        out.update(source_text=row["source_text"], definition=row["definition"], digest=row["digest"])
        return out

    async def list_versions(self, name: str) -> list[dict[str, Any]]:
        q = (select(V.c.workflow, V.c.version, V.c.digest, V.c.created_at)
             .where(V.c.workflow == name).order_by(V.c.version.desc()))
        async with self.read() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [_version(r, full=False) for r in rows]

    async def get_version(self, name: str, version: int) -> dict[str, Any] | None:
        async with self.read() as conn:
            row = (await conn.execute(select(V).where(V.c.workflow == name, V.c.version == version))).mappings().first()
        return None if row is None else _version(row, full=True)
