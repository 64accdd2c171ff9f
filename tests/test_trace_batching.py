"""How long finished runs wait to be written together (``FLOWBASE_TRACE_BATCH_S``), seen from the database
file itself: a read through the API never waits for the batch, and stopping the host writes it."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support_host import ROOT, Flowbase

# Long enough that nothing but a flush can write the batch while the test looks (seconds).
LONG_BATCH_S = "60"
# How long the runs are left waiting before the database is looked at (seconds): several times the
# default batch time, so a host that ignored the setting would have written them by then.
LOOK_AFTER_S = 2.0


def stored_run_ids(db: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM runs")}


def ask_demo(fb: Flowbase, text: str) -> str:
    """One request to the built-in demo model; the id of its run."""
    r = httpx.post(fb.url + "/v1/chat/completions", timeout=30,
                   json={"model": "flowbase-demo", "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    return r.headers["x-flowbase-run-id"]


def test_finished_runs_wait_for_the_configured_batch_time_and_an_api_read_writes_them_at_once(
        tmp_path: Path) -> None:
    with Flowbase(data_dir=tmp_path, env={"FLOWBASE_TRACE_BATCH_S": LONG_BATCH_S}) as fb:
        ids = [ask_demo(fb, f"hello {i}") for i in range(3)]
        time.sleep(LOOK_AFTER_S)
        assert not set(ids) & stored_run_ids(tmp_path / "flowbase.db")
        assert fb.run(ids[1])["status"] == "ok"  # the API flushes the batch before it reads
        assert set(ids) <= stored_run_ids(tmp_path / "flowbase.db")


def test_runs_still_gathering_when_the_host_is_stopped_are_written_before_it_exits(tmp_path: Path) -> None:
    with Flowbase(data_dir=tmp_path, env={"FLOWBASE_TRACE_BATCH_S": LONG_BATCH_S}) as fb:
        ids = [ask_demo(fb, f"bye {i}") for i in range(3)]
        assert not set(ids) & stored_run_ids(tmp_path / "flowbase.db")
    # Leaving the block stopped the host with SIGTERM, as a service manager would (uvicorn shuts down
    # gracefully, then exits by the signal it caught).
    assert set(ids) <= stored_run_ids(tmp_path / "flowbase.db")


def test_flowbase_serve_refuses_a_trace_batch_time_that_is_not_a_number_of_seconds() -> None:
    env = {**os.environ, "FLOWBASE_TRACE_BATCH_S": "soon"}
    out = subprocess.run([sys.executable, "-m", "host.cli", "serve", "--port", "1"], cwd=ROOT, env=env, check=False,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "FLOWBASE_TRACE_BATCH_S must be a number of seconds, 0 or more; got 'soon'" in out.stderr
