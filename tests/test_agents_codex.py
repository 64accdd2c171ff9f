"""Codex CLI (the real CLI from npm, ``codex exec``) against a running flowbase.

flowbase serves ``tests/agent_workflows/codex.yaml`` (the offline mock model, scripted) on
``/v1/responses``; Codex reaches it as a custom model provider (``$CODEX_HOME/config.toml``,
``wire_api = "responses"``) and sends streamed Responses requests with ``Authorization: Bearer``
and ``session-id``. The tests check what the user sees (exit code, printed answer) and what
flowbase recorded (runs, their session, the tool-call spans).
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest

from tests.support_agents import (
    CLI_TIMEOUT_S,
    INSTALL_TIMEOUT_S,
    CliRun,
    agent_fixtures,
    codex_exec,
    runs_of,
    spans_of,
    thinking_answered,
    thinking_sent_back,
    tool_arguments,
)
from tests.support_host import Flowbase

MODEL = "fb-codex-agent"
API_KEY = "fb-test-codex-key"
# The first test may install the CLIs (npm) before running two CLI turns (seconds).
pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT_S + 3 * CLI_TIMEOUT_S)
agents, fb, workdir = agent_fixtures()
# Codex prints its banner to stderr, with the session (thread) id it sends as `session-id`.
_SESSION_LINE = re.compile(r"^session id: (\S+)$", re.MULTILINE)


def _session(run: CliRun, fb: Flowbase) -> str:
    found = _SESSION_LINE.search(run.stderr)
    assert found, run.explain(fb, MODEL)
    return found.group(1)


def test_codex_exec_prints_the_answer_of_a_flowbase_workflow_to_a_plain_prompt(
        fb: Flowbase, workdir: Path, tmp_path: Path) -> None:
    word = f"word-{secrets.token_hex(4)}"

    run = codex_exec(f"Repeat after me: {word}", base_url=fb.url, model=MODEL, home=tmp_path / "home",
                     cwd=workdir, api_key=API_KEY)

    assert run.ok, run.explain(fb, MODEL)
    assert run.stdout.strip() == f"flowbase says {word}", run.explain(fb, MODEL)
    # One request, one run, filed under the session Codex announced (its `session-id` header).
    runs = runs_of(fb, MODEL, _session(run, fb))
    assert [(r["status"], r["protocol"], r["stream"]) for r in runs] == [("ok", "responses", True)], \
        run.explain(fb, MODEL)


def test_codex_exec_runs_the_command_the_model_asks_for_and_answers_with_its_output(
        fb: Flowbase, workdir: Path, tmp_path: Path) -> None:
    secret = f"FB-SECRET-{secrets.token_hex(6)}"
    note = workdir / "note.txt"
    note.write_text(f"The launch code is {secret}.\n")

    # The secret is only in the file: the answer can hold it only if the command's output made it back.
    run = codex_exec(f"Show me what {note} contains.", base_url=fb.url, model=MODEL, home=tmp_path / "home",
                     cwd=workdir, api_key=API_KEY)

    assert run.ok, run.explain(fb, MODEL)
    assert run.stdout.strip() == f"The file contains {secret}.", run.explain(fb, MODEL)
    # Two requests of one session: the exec_command call, then its output.
    runs = runs_of(fb, MODEL, _session(run, fb))
    assert [(r["status"], r["protocol"]) for r in runs] == [("ok", "responses"), ("ok", "responses")], \
        run.explain(fb, MODEL)
    asked, answered = runs
    [call] = spans_of(asked, "tool_call")
    assert (call["name"], call["input"]["direction"]) == ("exec_command", "call_to_client")
    assert tool_arguments(call) == {"cmd": f"cat {note}"}
    [result] = spans_of(answered, "tool_call")
    assert (result["name"], result["status"], result["input"]["direction"]) == (
        "exec_command", "ok", "result_from_client")
    assert result["input"]["tool_call_id"] == call["input"]["tool_call_id"]
    assert secret in result["output"]
    # The first answer's reasoning item (summary + encrypted_content, flowbase's thinking block and
    # its signature) came back byte-exact with the tool output.
    [(thought, signature)] = thinking_answered(asked)
    assert str(note) in thought and signature
    assert thinking_sent_back(answered) == [(thought, signature)]


def test_codex_that_tries_a_websocket_first_falls_back_to_http_and_gets_its_answer(
        fb: Flowbase, workdir: Path, tmp_path: Path) -> None:
    word = f"word-{secrets.token_hex(4)}"

    # supports_websockets: Codex first asks to upgrade GET /v1/responses; flowbase must refuse with
    # a status Codex treats as "no WebSocket here" (it falls back on 403/404/405/426, not on 400).
    run = codex_exec(f"Repeat after me: {word}", base_url=fb.url, model=MODEL, home=tmp_path / "home",
                     cwd=workdir, api_key=API_KEY, websockets=True)

    assert run.ok, run.explain(fb, MODEL)
    assert "Responses WebSocket" in run.stderr, run.explain(fb, MODEL)  # the attempt happened
    assert run.stdout.strip() == f"flowbase says {word}", run.explain(fb, MODEL)
    assert [r["status"] for r in runs_of(fb, MODEL, _session(run, fb))] == ["ok"], run.explain(fb, MODEL)
