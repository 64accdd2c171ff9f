"""A plugin runner whose memory grew is replaced without failing anything: a fresh runner takes the
new calls, the old one finishes the calls it already had and exits (host/runner_memory.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

from support_runner import invoke, running_pool

from host.runner_memory import resident_mb
from host.runners import RunnerPool

# Quick settings for tests: the first idle moment after one call is the settled size, memory is read at
# every idle moment, and a group may be replaced again at once.
QUICK: dict[str, Any] = {"recycle_settle_calls": 1, "recycle_check_s": 0.0, "recycle_interval_s": 0.0}
# Seconds to wait for a replacement to start (a runner imports its plugins) or an old runner to exit.
SWAP_TIMEOUT_S = 30.0


async def pid_of(pool: RunnerPool, **inputs: Any) -> int:
    res = await invoke(pool, "fx.hold", inputs=inputs).result()
    return int(res.output["pid"])


async def wait_for_new_runner(pool: RunnerPool, old: int) -> int:
    async with asyncio.timeout(SWAP_TIMEOUT_S):
        while (pid := pool.processes()["shared"]) == old:
            await asyncio.sleep(0.05)
    return pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return resident_mb(pid) is not None  # not a zombie awaiting its parent


async def test_a_runner_that_grew_past_the_limit_is_replaced_and_its_call_in_flight_still_completes() -> None:
    async with running_pool(recycle_mb=20, **QUICK) as pool:
        old = await pid_of(pool)  # settles the runner's size
        await pid_of(pool, mb=60)  # grows it 60 MB; idle afterwards: the replacement starts
        grown = resident_mb(old)
        # Given to the old runner while the new one starts, and still running when it takes over.
        slow = invoke(pool, "fx.hold", inputs={"delay": 1.5})
        await asyncio.sleep(0)
        new = await wait_for_new_runner(pool, old)
        assert new != old and alive(old)
        assert await pid_of(pool) == new  # new calls go to the fresh runner
        res = await slow.result()
        assert res.output["pid"] == old  # the old one finished its call …
        async with asyncio.timeout(SWAP_TIMEOUT_S):
            while alive(old):  # … and then exited
                await asyncio.sleep(0.05)
        assert await pid_of(pool) == new
        fresh = resident_mb(new)
        assert grown is not None and fresh is not None and fresh < grown - 40
        status = next(s for s in pool.status() if s["group"] == "shared")
        assert (status["group"], status["pid"], status["replaced"], status["retiring"]) == ("shared", new, 1, [])
        assert status["rss_mb"] is not None and status["rss_mb"] < grown - 40


async def test_a_runner_that_grew_less_than_the_limit_keeps_serving() -> None:
    async with running_pool(recycle_mb=200, **QUICK) as pool:
        old = await pid_of(pool)
        await pid_of(pool, mb=30)
        await asyncio.sleep(0.5)
        assert await pid_of(pool) == old and pool.processes()["shared"] == old
        status = next(s for s in pool.status() if s["group"] == "shared")
        assert status["replaced"] == 0 and status["settled_mb"] is not None
        assert status["rss_mb"] is not None and status["rss_mb"] >= status["settled_mb"] + 25  # the 30 MB it holds


async def test_with_recycling_off_a_runner_keeps_serving_however_much_it_grew() -> None:
    async with running_pool(recycle_mb=0, **QUICK) as pool:
        old = await pid_of(pool)
        await pid_of(pool, mb=60)
        await asyncio.sleep(0.5)
        assert await pid_of(pool) == old


async def test_a_replacement_is_not_a_crash_and_the_pool_closes_cleanly_during_one() -> None:
    async with running_pool(recycle_mb=20, restart_budget=0, **QUICK) as pool:
        old = await pid_of(pool)
        await pid_of(pool, mb=60)
        new = await wait_for_new_runner(pool, old)  # with no restart budget at all
        assert await pid_of(pool) == new
        await pid_of(pool, mb=60)  # grows again: the next replacement is starting as the pool closes
    assert not alive(old) and not alive(new)


def test_flowbase_serve_refuses_a_recycle_limit_that_is_not_a_number_of_mb() -> None:
    env = {**os.environ, "FLOWBASE_RUNNER_RECYCLE_MB": "lots"}
    out = subprocess.run([sys.executable, "-m", "host.cli", "serve", "--port", "1"], env=env, check=False,
                         capture_output=True, text=True, timeout=SWAP_TIMEOUT_S)
    assert out.returncode == 2
    assert "FLOWBASE_RUNNER_RECYCLE_MB must be a number of MB, 0 or more (0 turns it off); got 'lots'" in out.stderr
