"""Plugin runner start-up: broken plugins fail loudly, naming their manifest; the runner process
itself exits on EOF and can trace hook calls."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from support_runner import FIXTURES, MANIFESTS, running_pool

from host.runners import RunnerStartError
from plugin_runner.framing import MAX_FRAME

# Seconds to wait for a runner subprocess started directly by a test (imports on a loaded machine).
PROC_TIMEOUT_S = 60.0


async def test_a_plugin_whose_import_fails_stops_start_with_a_message_naming_its_manifest() -> None:
    with pytest.raises(RunnerStartError) as info:
        async with running_pool(FIXTURES / "broken_import"):
            pass
    msg = str(info.value)
    assert "plugin runner (packages fx_broken_import) exited with code 2 before it was ready" in msg
    assert str(FIXTURES / "broken_import" / "fx_broken_import.yaml") in msg
    assert "No module named 'fx_dependency_that_is_not_installed'" in msg


async def test_a_plugin_registering_an_unlisted_node_type_stops_start() -> None:
    with pytest.raises(RunnerStartError) as info:
        async with running_pool(FIXTURES / "unlisted"):
            pass
    msg = str(info.value)
    assert str(FIXTURES / "unlisted" / "fx_unlisted.yaml") in msg
    assert "registers node type 'fx.sneaky', which its manifest does not list (listed: fx.listed)" in msg


async def test_a_manifest_node_type_the_plugin_never_registers_stops_start() -> None:
    with pytest.raises(RunnerStartError) as info:
        async with running_pool(FIXTURES / "unregistered"):
            pass
    msg = str(info.value)
    assert str(FIXTURES / "unregistered" / "fx_unregistered.yaml") in msg
    assert "manifest lists node type(s) 'fx.ghost' that the module never registers" in msg


async def test_one_broken_group_fails_start_even_when_the_others_load() -> None:
    with pytest.raises(RunnerStartError, match="fx_broken_import"):
        async with running_pool(MANIFESTS, FIXTURES / "broken_import"):
            pass


def _spawn(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], socket.socket]:
    host, child = socket.socketpair()
    proc = subprocess.Popen([sys.executable, "-m", "plugin_runner", "--fd", str(child.fileno()), *args],
                            pass_fds=[child.fileno()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    child.close()
    return proc, host


def test_the_runner_process_exits_with_code_2_when_a_plugin_cannot_load() -> None:
    proc, host = _spawn("--manifests", str(FIXTURES / "broken_import"))
    with host:
        out, err = proc.communicate(timeout=PROC_TIMEOUT_S)
    assert proc.returncode == 2
    assert out == b""
    assert b"flowbase plugin runner: cannot start: plugin package 'fx_broken_import'" in err


def test_the_runner_says_hello_then_exits_cleanly_on_eof_and_never_writes_to_stdout() -> None:
    env = {**os.environ, "FLOWBASE_TRACE_HOOKS": "1"}
    proc, host = _spawn("--manifests", str(MANIFESTS), "--packages", "fx_isolated", env=env)
    with host:
        head = host.recv(4, socket.MSG_WAITALL)
        n = int.from_bytes(head, "big")
        assert 0 < n < MAX_FRAME
        body = host.recv(n, socket.MSG_WAITALL)
        assert b"hello" in body and b"fx.iso_pid" in body and b"fx.echo" not in body
        host.shutdown(socket.SHUT_WR)  # EOF for the runner
        out, err = proc.communicate(timeout=PROC_TIMEOUT_S)
    assert proc.returncode == 0
    assert out == b""
    assert b"register_node_types" in err  # FLOWBASE_TRACE_HOOKS=1 traced the hook call


def test_the_runner_refuses_a_package_missing_from_its_manifests() -> None:
    proc, host = _spawn("--manifests", str(MANIFESTS), "--packages", "fx_basic,fx_nowhere")
    with host:
        _, err = proc.communicate(timeout=PROC_TIMEOUT_S)
    assert proc.returncode == 2
    assert b"no manifest for package(s) fx_nowhere" in err
