"""RunnerPool when runners die, hang or block: crashes, deadlines, respawns, restart budget."""

from __future__ import annotations

import asyncio
import os

import pytest
from support_runner import invoke, running_pool

from host import runners
from plugin_sdk.errors import NodeTimeout, RunnerCrashed


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_runner_that_dies_mid_request_fails_that_request_and_the_next_one_works() -> None:
    async with running_pool() as pool:
        old_pid = pool.processes()["shared"]
        bystander = invoke(pool, "fx.hang", node_id="bystander")
        with pytest.raises(RunnerCrashed) as info:
            await invoke(pool, "fx.exit", node_id="quitter", inputs={"code": 3}).result()
        assert info.value.message == (
            "plugin runner (packages fx_basic) exited with code 3 while running node 'quitter'")
        assert info.value.status == 502
        # Every call in flight on that runner fails the same way, each naming its own node.
        with pytest.raises(RunnerCrashed, match="while running node 'bystander'"):
            await bystander.result()
        res = await invoke(pool, "fx.echo", inputs={"text": "again"}).result()
        assert res.output["text"] == "again"
        assert res.output["pid"] != old_pid
        # The isolated group was not affected.
        assert (await invoke(pool, "fx.iso_pid").result()).output["pid"] == pool.processes()["isolated"]


async def test_calls_made_while_the_runner_respawns_wait_for_it_and_succeed() -> None:
    async with running_pool() as pool:
        with pytest.raises(RunnerCrashed):
            await invoke(pool, "fx.exit").result()
        calls = [invoke(pool, "fx.delay_echo", node_id=f"n{i}", inputs={"n": i, "delay": 0}) for i in range(20)]
        results = await asyncio.gather(*(c.result() for c in calls))
        assert [r.output["n"] for r in results] == list(range(20))


async def test_an_async_hang_past_its_deadline_times_out_and_the_runner_keeps_serving() -> None:
    async with running_pool() as pool:
        pid = pool.processes()["shared"]
        with pytest.raises(NodeTimeout) as info:
            await invoke(pool, "fx.hang", node_id="sleeper", timeout_s=0.2).result()
        assert info.value.message == "node 'sleeper' exceeded its 0.2 s deadline and was cancelled"
        assert (info.value.status, info.value.kind) == (504, "timeout")
        # The runner's own deadline fired, so the spans recorded before the hang came back.
        assert [s.name for s in info.value.spans] == ["fx-hang-started"]  # type: ignore[attr-defined]
        res = await invoke(pool, "fx.echo", inputs={"text": "still here"}).result()
        assert res.output == {"text": "still here", "pid": pid}


async def test_a_sync_blocking_plugin_times_out_and_its_runner_is_killed_and_respawned() -> None:
    async with running_pool() as pool:
        old_pid = pool.processes()["shared"]
        with pytest.raises(NodeTimeout, match="node 'blocker' exceeded its 0.2 s deadline and was cancelled"):
            await invoke(pool, "fx.block", node_id="blocker", inputs={"seconds": 120}, timeout_s=0.2).result()
        # No Pong comes from a blocked loop: the host kills the process group and respawns.
        res = await invoke(pool, "fx.echo", inputs={"text": "fresh"}).result()
        assert res.output["text"] == "fresh"
        assert res.output["pid"] != old_pid
        assert _gone(old_pid)


async def test_an_exhausted_restart_budget_fails_calls_fast_with_a_clear_error() -> None:
    async with running_pool(restart_budget=1, restart_window_s=600.0) as pool:
        with pytest.raises(RunnerCrashed, match="exited with code 3"):
            await invoke(pool, "fx.exit", node_id="first").result()
        # One restart is within budget.
        assert (await invoke(pool, "fx.echo", inputs={"text": "x"}).result()).output["text"] == "x"
        with pytest.raises(RunnerCrashed, match="exited with code 3"):
            await invoke(pool, "fx.exit", node_id="second").result()
        with pytest.raises(RunnerCrashed) as info:
            await invoke(pool, "fx.echo", inputs={"text": "x"}).result()
        assert "plugin runner (packages fx_basic) crashed 2 times within 600 s; not restarting it for another" \
            in info.value.message
        assert "shared" not in pool.processes()
        # Other groups keep serving.
        assert (await invoke(pool, "fx.iso_pid").result()).output["pid"] == pool.processes()["isolated"]


async def test_the_runner_restarts_once_the_restart_window_has_passed() -> None:
    async with running_pool(restart_budget=1, restart_window_s=3.0) as pool:
        for _ in range(2):
            with pytest.raises(RunnerCrashed, match="exited with code 3"):
                await invoke(pool, "fx.exit").result()
        with pytest.raises(RunnerCrashed, match="not restarting it"):
            await invoke(pool, "fx.echo", inputs={"text": "x"}).result()
        await asyncio.sleep(3.1)
        assert (await invoke(pool, "fx.echo", inputs={"text": "back"}).result()).output["text"] == "back"


async def test_a_zero_restart_budget_never_restarts_and_says_so() -> None:
    async with running_pool(restart_budget=0) as pool:
        with pytest.raises(RunnerCrashed, match="exited with code 3"):
            await invoke(pool, "fx.exit").result()
        with pytest.raises(RunnerCrashed, match=r"restarts are disabled \(restart_budget=0\)"):
            await invoke(pool, "fx.echo", inputs={"text": "x"}).result()


async def test_close_is_bounded_even_when_a_plugin_blocks_the_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runners, "SHUTDOWN_WAIT_S", 0.5)
    async with running_pool() as pool:
        pid = pool.processes()["shared"]
        # No deadline: nothing but close() will stop it.
        blocked = invoke(pool, "fx.block", node_id="stuck", inputs={"seconds": 120}, timeout_s=0)
    assert _gone(pid)
    with pytest.raises(RunnerCrashed, match="was shut down while running node 'stuck'"):
        await blocked.result()
