"""Settings: command-line flags first, then environment variables, then defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env_flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() not in ("0", "false", "no", "off", "")


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
    log_level: str = field(default_factory=lambda: os.environ.get("FLOWBASE_LOG_LEVEL", "info"))

    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'flowbase.db').resolve()}"
