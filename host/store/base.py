"""What every part of the store shares: the engine, write transactions, JSON codec, time format.

``StoreBase`` is the common base of the ``Store`` facets (workflows.py, runs.py) that ``db.Store``
combines. Write transactions go through ``write()``: on SQLite it begins ``BEGIN IMMEDIATE`` so a
writer takes the database lock up front and waits for it (busy timeout) instead of failing on a
stale read snapshot; on PostgreSQL it is an ordinary transaction. (Trace batches on a SQLite file
take the same IMMEDIATE lock on a connection of their own: see runs.py.)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from plugin_runner.protocol import json_encode


class StoreError(Exception):
    """The store cannot do what was asked (newer schema, bad cursor …)."""


class UnknownCursor(StoreError, ValueError):
    """A pagination cursor that names no row."""


_DECODER = msgspec.json.Decoder()


def json_dumps(obj: Any) -> str:
    """``json_encode(obj).decode()``: the traces' encoder, so every JSON column is written alike."""
    return json_encode(obj).decode()


def json_loads(text: str | bytes) -> Any:
    return _DECODER.decode(text)


def iso(ts: float | None) -> str | None:
    """Unix seconds → ISO-8601 UTC with milliseconds, e.g. ``2025-01-02T03:04:05.678Z``."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def millis(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start) * 1000.0, 3)


class StoreBase:
    engine: AsyncEngine
    # The same pool, with the option that makes SQLite begin IMMEDIATE (see db.py).
    _writer: AsyncEngine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self._writer.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn
