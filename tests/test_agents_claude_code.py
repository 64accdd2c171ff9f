"""Claude Code (the real CLI from npm, in print mode) against a running flowbase.

flowbase serves ``tests/agent_workflows/claude_code.yaml`` (the offline mock model, scripted) on
``/v1/messages``; Claude Code talks to it as it would to Anthropic: ``POST /v1/messages?beta=true``,
streamed, with ``x-api-key``, ``anthropic-version: 2023-06-01``, its ``anthropic-beta`` list and
``X-Claude-Code-Session-Id``. The tests check what the user sees (exit code, printed answer) and
what flowbase recorded (runs, their session, the tool-call spans).
"""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path

import pytest

from tests.support_agents import (
    CLI_TIMEOUT_S,
    INSTALL_TIMEOUT_S,
    agent_fixtures,
    claude_code,
    runs_of,
    spans_of,
    thinking_answered,
    thinking_sent_back,
    tool_arguments,
)
from tests.support_host import Flowbase

MODEL = "fb-claude-agent"
API_KEY = "fb-test-claude-key"
# The first test may install the CLIs (npm) before running two CLI turns (seconds).
pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT_S + 3 * CLI_TIMEOUT_S)
agents, fb, workdir = agent_fixtures()


def test_claude_code_prints_the_answer_of_a_flowbase_workflow_to_a_plain_prompt(
        fb: Flowbase, workdir: Path, tmp_path: Path) -> None:
    word = f"word-{secrets.token_hex(4)}"
    session = str(uuid.uuid4())

    run = claude_code(f"Repeat after me: {word}", base_url=fb.url, model=MODEL, home=tmp_path / "home",
                      cwd=workdir, api_key=API_KEY, args=["--session-id", session])

    assert run.ok, run.explain(fb, MODEL)
    assert run.stdout.strip() == f"flowbase says {word}", run.explain(fb, MODEL)
    # One request, one run: a retried request (Claude Code retries a failed stream) would show here.
    runs = runs_of(fb, MODEL, session)
    assert [(r["status"], r["protocol"], r["stream"]) for r in runs] == [("ok", "messages", True)], \
        run.explain(fb, MODEL)


def test_claude_code_reads_a_file_with_its_read_tool_and_answers_with_what_the_file_holds(
        fb: Flowbase, workdir: Path, tmp_path: Path) -> None:
    secret = f"FB-SECRET-{secrets.token_hex(6)}"
    note = workdir / "note.txt"
    note.write_text(f"The launch code is {secret}.\n")
    session = str(uuid.uuid4())

    # The secret is only in the file: the answer can hold it only if the Read result made it back.
    run = claude_code(f"Open {note} and tell me its secret.", base_url=fb.url, model=MODEL,
                      home=tmp_path / "home", cwd=workdir, api_key=API_KEY,
                      args=["--session-id", session, "--allowedTools", "Read"])

    assert run.ok, run.explain(fb, MODEL)
    assert run.stdout.strip() == f"The secret is {secret}.", run.explain(fb, MODEL)
    # Two requests of one session (X-Claude-Code-Session-Id): the tool call, then its result.
    runs = runs_of(fb, MODEL, session)
    assert [(r["status"], r["protocol"]) for r in runs] == [("ok", "messages"), ("ok", "messages")], \
        run.explain(fb, MODEL)
    asked, answered = runs
    [call] = spans_of(asked, "tool_call")
    assert (call["name"], call["input"]["direction"]) == ("Read", "call_to_client")
    assert tool_arguments(call) == {"file_path": str(note)}
    [result] = spans_of(answered, "tool_call")
    assert (result["name"], result["status"], result["input"]["direction"]) == ("Read", "ok", "result_from_client")
    assert result["input"]["tool_call_id"] == call["input"]["tool_call_id"]
    assert secret in result["output"]
    # The signed thinking block of the first answer came back byte-exact with the tool result.
    [(thought, signature)] = thinking_answered(asked)
    assert str(note) in thought and signature
    assert thinking_sent_back(answered) == [(thought, signature)]
    session_view = fb.get(f"/api/sessions/{session}")
    assert session_view.status_code == 200, session_view.text
    assert [r["id"] for r in session_view.json()["runs"]] == [asked["id"], answered["id"]]
