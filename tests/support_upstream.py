"""Runs tests/fake_upstream.py as a real subprocess on a free 127.0.0.1 port, for any test.

    with FakeUpstream() as up:
        up.openai_base_url      # http://127.0.0.1:<port>/v1   (an OpenAI-style base_url)
        up.anthropic_base_url   # http://127.0.0.1:<port>      (an Anthropic-style base_url)
        up.requests()           # every request it received, oldest first (see fake_upstream's docstring)
        up.clear()              # forget them (and its prompt cache)

``header(record, name)`` reads a recorded header case-insensitively. Fixtures: ``upstream`` is a
session-scoped one (import it with ``# noqa: F401``, parameters named after it need ``# noqa: F811``);
or a module makes its own with ``upstream = upstream_fixture()`` (one server per module, no noqa).
Tests that inspect ``requests()`` should pick their records by a unique marker in the prompt (or
``clear()`` first).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
# Seconds the fake upstream may take to import and bind on a loaded CI machine.
START_TIMEOUT_S = 30.0
# Seconds it gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 5.0


class FakeUpstream:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    def start(self) -> Self:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.fake_upstream", "--port", "0"], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=None, start_new_session=True)
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + START_TIMEOUT_S
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"fake upstream did not start (output so far: {buf!r})")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    continue
                buf += chunk
        line = buf.split(b"\n", 1)[0].decode()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"fake upstream printed {line!r} instead of 'PORT <n>'")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def requests(self) -> list[dict[str, Any]]:
        r = httpx.get(self.base_url + "/_requests", timeout=10.0)
        r.raise_for_status()
        out: list[dict[str, Any]] = r.json()
        return out

    def clear(self) -> None:
        httpx.post(self.base_url + "/_requests/clear", timeout=10.0).raise_for_status()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def header(record: dict[str, Any], name: str) -> str | None:
    lname = name.lower()
    return next((v for k, v in record["headers"].items() if k.lower() == lname), None)


def upstream_fixture(scope: Literal["module", "session"] = "module") -> Any:
    """A pytest fixture that runs one fake upstream for the module (or the session)."""

    def upstream() -> Iterator[FakeUpstream]:
        with FakeUpstream() as up:
            yield up

    return pytest.fixture(scope=scope, name="upstream")(upstream)


upstream = upstream_fixture("session")
