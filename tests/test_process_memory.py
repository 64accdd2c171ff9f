"""Memory of the long-running processes: the host runs on glibc's allocator and hands a burst's freed
memory back to the system; plugin runners keep CPython's allocator; a user's own choice wins."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from support_host import Flowbase

from plugin_runner import heap

pytestmark = pytest.mark.skipif(not heap.can_trim(), reason="needs glibc's malloc_trim")

# Seconds for the burst script below (imports plus a few hundred MB of small objects on a loaded machine).
SCRIPT_TIMEOUT_S = 120.0


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _allocators(fb: Flowbase) -> tuple[str | None, list[str | None]]:
    assert fb.proc is not None
    httpx.get(fb.url + "/v1/models", timeout=10).raise_for_status()
    runners = _children(fb.proc.pid)
    assert runners, "the host has no plugin runner process"
    return _environ(fb.proc.pid).get("PYTHONMALLOC"), [_environ(p).get("PYTHONMALLOC") for p in runners]


def test_the_host_and_its_runners_run_on_cpythons_allocator_by_default(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONMALLOC"}
    fb = Flowbase(data_dir=tmp_path / "data")
    fb.env = {**env, "FLOWBASE_LOG_LEVEL": "warning"}
    with fb:
        host, runners = _allocators(fb)
    assert host is None
    assert runners == [None] * len(runners)


def test_a_users_own_allocator_choice_applies_to_the_host_and_its_runners(tmp_path: Path) -> None:
    with Flowbase(data_dir=tmp_path / "data", env={"PYTHONMALLOC": "pymalloc"}) as fb:
        host, runners = _allocators(fb)
    assert host == "pymalloc"
    assert runners == ["pymalloc"] * len(runners)


BURST = textwrap.dedent("""
    import asyncio, sys
    from plugin_runner import heap

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    async def main(give_back):
        if give_back:
            asyncio.create_task(heap.give_back(interval_s=0.05, threshold=2**20))
        await asyncio.sleep(0.1)
        burst = [{"id": i, "text": str(i) * 4} for i in range(400_000)]
        survivors = burst[::64]  # a few objects of the burst live on, as pooled connections do
        before = rss_mb()
        del burst
        await asyncio.sleep(0.5)
        print(before, rss_mb(), len(survivors))

    asyncio.run(main(sys.argv[1] == "on"))
""")


def _burst(give_back: bool) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", BURST, "on" if give_back else "off"], check=True, text=True,
                         capture_output=True, timeout=SCRIPT_TIMEOUT_S, env={**os.environ, "PYTHONMALLOC": "malloc"})
    peak, after, _ = out.stdout.split()
    return float(peak), float(after)


def test_memory_a_burst_freed_goes_back_to_the_system_only_with_give_back_running() -> None:
    peak_on, after_on = _burst(give_back=True)
    peak_off, after_off = _burst(give_back=False)
    # The burst is over 100 MB of small objects; without trimming glibc keeps nearly all of it.
    assert after_off > peak_off * 0.8
    assert after_on < peak_on * 0.5


def _trims(monkeypatch: pytest.MonkeyPatch, rss_mb: list[float], retry_s: float = 3600.0) -> list[int]:
    """Run give_back over a scripted series of resident-memory readings (MB); the readings after which
    it trimmed. A trim is followed by a reading of what it left."""
    looks = iter(rss_mb)
    seen: list[int] = []
    trims: list[int] = []
    mb = 2**20

    def reading() -> int:
        try:
            value = next(looks)
        except StopIteration:
            raise asyncio.CancelledError from None
        seen.append(1)
        return int(value * mb)

    monkeypatch.setattr(heap, "resident", reading)
    monkeypatch.setattr(heap, "trim", lambda: trims.append(len(seen)))

    async def main() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await heap.give_back(interval_s=0, threshold=4 * mb, retry_s=retry_s)

    asyncio.run(main())
    return trims


def test_memory_is_trimmed_once_a_burst_stops_growing_not_while_it_grows(monkeypatch: pytest.MonkeyPatch) -> None:
    # start 100; the burst grows memory for three looks, then it stays; the trim brings it back to 102.
    assert _trims(monkeypatch, [100, 100, 110, 120, 130, 130, 102, 102, 102]) == [6]


def test_memory_still_in_use_after_a_trim_is_not_trimmed_again_on_every_look(monkeypatch: pytest.MonkeyPatch) -> None:
    # The growth is live memory: the trim gives nothing back, and the next looks leave it alone.
    assert _trims(monkeypatch, [100, 120, 120, 120, 120, 120, 120, 120]) == [3]


def test_memory_that_stays_high_is_tried_again_after_the_retry_period(monkeypatch: pytest.MonkeyPatch) -> None:
    # Retry period zero: the look after a fruitless trim tries again; once memory is back, no more.
    assert _trims(monkeypatch, [100, 120, 120, 120, 120, 101, 101, 101], retry_s=0) == [3, 5]
