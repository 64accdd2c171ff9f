"""Settings: command-line flags first, then environment variables, then defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from host.tracing.recorder import BATCH_INTERVAL_S


def _env_flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() not in ("0", "false", "no", "off", "")


def _env_number(name: str, default: float, what: str) -> float:
    """A number of 0 or more from the environment; ``what`` says what it counts, for the error."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise SettingsError(f"{name} must be {what}; got {raw!r}")
    return value


class SettingsError(ValueError):
    """A setting from the environment that cannot be used; the message names it."""


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 7800
    data_dir: Path = Path(".flowbase")
    # None: serve the built-in demo workflow (flowbase-demo) only.
    workflows: Path | None = None
    database_url: str | None = field(default_factory=lambda: os.environ.get("FLOWBASE_DATABASE_URL") or None)
    tracing: bool = field(default_factory=lambda: _env_flag("FLOWBASE_TRACING", True))
    api_keys: frozenset[str] = field(default_factory=lambda: frozenset(
        k.strip() for k in os.environ.get("FLOWBASE_API_KEYS", "").split(",") if k.strip()))
    # Extra manifest folders (third-party plugins), os.pathsep-separated in FLOWBASE_PLUGIN_DIRS.
    plugin_dirs: list[Path] = field(default_factory=lambda: [
        Path(p) for p in os.environ.get("FLOWBASE_PLUGIN_DIRS", "").split(os.pathsep) if p])
    watch: bool = True
    # Replace a plugin runner whose resident memory grew this many MB over its settled size (after a
    # burst, or a leaking plugin): host/runner_memory.py. 0 turns it off.
    runner_recycle_mb: float = field(default_factory=lambda: _env_number(
        "FLOWBASE_RUNNER_RECYCLE_MB", 8.0, "a number of MB, 0 or more (0 turns it off)"))
    # How long the trace writer gathers runs into one batch (host/tracing/recorder.py says what it saves);
    # reads through the API flush it first, so only readers of the database itself see the delay.
    trace_batch_s: float = field(default_factory=lambda: _env_number(
        "FLOWBASE_TRACE_BATCH_S", BATCH_INTERVAL_S, "a number of seconds, 0 or more"))
    log_level: str = field(default_factory=lambda: os.environ.get("FLOWBASE_LOG_LEVEL", "info"))

    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'flowbase.db').resolve()}"
