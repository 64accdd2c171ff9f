"""Drives the real agent CLIs — Claude Code and Codex CLI from the npm registry — against flowbase.

Contract:
- ``ensure_agents()`` installs both CLIs at their pinned versions (``tests/install_agents.sh``, into
  the gitignored ``tests/.agents/``) unless they are already there, once per test session, and
  returns their paths. A failed install raises ``AgentInstallError`` (the tests fail, they do not
  skip: the issue's acceptance is that they run on a fresh machine with Node.js and npm).
- ``claude_code(...)`` runs ``claude -p PROMPT`` and ``codex_exec(...)`` runs
  ``codex exec --skip-git-repo-check PROMPT``, each with stdin closed, a hard timeout, its own
  HOME / config dir under the given folder, and an environment built from scratch (nothing of the
  test process's environment leaks in: no real API keys, no proxies), pointed at a flowbase URL on
  127.0.0.1. Both return a ``CliRun`` (exit code, stdout, stderr, whether it timed out), whose
  ``explain(fb)`` is the failure message: the command, its output and flowbase's log.
- ``agent_fixtures()`` makes a test module's fixtures (``agents, fb, workdir = agent_fixtures()``):
  ``agents`` installs the CLIs, ``fb`` is one gateway for the module serving ``tests/agent_workflows``
  (each test finds its own runs by the CLI's session id), ``workdir`` an empty project folder per test.
- ``tool_arguments(span)`` is a tool_call span's arguments as a dict (recorded as JSON text or as is).
- ``runs_of(fb, model, session_id)`` lists flowbase's recorded runs of one client session, oldest
  first, with spans; ``recorded(fb, model)`` summarises all runs of a model for failure messages;
  ``thinking_answered(run)`` / ``thinking_sent_back(run)`` read the thinking blocks (text,
  signature) a run's model call answered with / received back in the client's assistant turns.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support_host import ROOT, Flowbase

AGENTS_DIR = ROOT / "tests" / ".agents"
INSTALL_SCRIPT = ROOT / "tests" / "install_agents.sh"
WORKFLOWS = ROOT / "tests" / "agent_workflows"
# One `npm install` of both CLIs (about 800 MB unpacked, native binaries included) on a slow link
# (seconds).
INSTALL_TIMEOUT_S = 900.0
# One CLI invocation, start to exit (seconds): a turn or two against the local mock takes a few
# seconds; the bound only stops a CLI that hangs (e.g. waiting on a stream that never ends).
CLI_TIMEOUT_S = 120.0
# After SIGTERM to a timed-out CLI's process group, how long to wait before SIGKILL (seconds).
KILL_GRACE_S = 5.0
# Characters of each output stream quoted in a failure message.
QUOTE_CHARS = 20_000


class AgentInstallError(RuntimeError):
    """The pinned CLIs could not be installed (npm missing, registry unreachable, bad binary)."""


@dataclass(frozen=True)
class AgentClis:
    claude: Path
    codex: Path
    versions: str


@functools.cache
def ensure_agents() -> AgentClis:
    """Both CLIs, installed at their pinned versions (the script is a quick no-op when they are)."""
    try:
        done = subprocess.run(["bash", str(INSTALL_SCRIPT)], check=False, cwd=ROOT, capture_output=True, text=True,
                              timeout=INSTALL_TIMEOUT_S, env={**os.environ, "FLOWBASE_AGENTS_DIR": str(AGENTS_DIR)})
    except subprocess.TimeoutExpired as exc:
        raise AgentInstallError(f"{INSTALL_SCRIPT} did not finish within {INSTALL_TIMEOUT_S}s") from exc
    if done.returncode != 0:
        raise AgentInstallError(f"{INSTALL_SCRIPT} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    bin_dir = AGENTS_DIR / "node_modules" / ".bin"
    return AgentClis(claude=bin_dir / "claude", codex=bin_dir / "codex", versions=done.stdout.strip())


@dataclass
class CliRun:
    argv: list[str]
    cwd: Path
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    timeout_s: float = CLI_TIMEOUT_S

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def explain(self, fb: Flowbase | None = None, model: str | None = None) -> str:
        """What a failing test prints: the command, how it ended, its output, flowbase's log and
        (given ``model``) the runs flowbase recorded for that model."""
        ended = f"timed out after {self.timeout_s}s" if self.timed_out else f"exited with {self.returncode}"
        parts = [f"$ {' '.join(self.argv)}   (in {self.cwd}) {ended}",
                 f"--- stdout ---\n{self.stdout[-QUOTE_CHARS:]}", f"--- stderr ---\n{self.stderr[-QUOTE_CHARS:]}"]
        if fb is not None:
            parts.append(f"--- flowbase log ---\n{fb.log()[-QUOTE_CHARS:]}")
            if model is not None:
                parts.append(recorded(fb, model))
        return "\n".join(parts)


def base_env(home: Path) -> dict[str, str]:
    """A clean environment: only what a CLI needs to start, with its own HOME."""
    node = shutil.which("node")
    path = [str(Path(node).parent)] if node else []
    path += ["/usr/local/bin", "/usr/bin", "/bin"]
    home.mkdir(parents=True, exist_ok=True)
    return {"PATH": os.pathsep.join(dict.fromkeys(path)), "HOME": str(home), "LANG": "C.UTF-8",
            "TERM": "dumb", "NO_COLOR": "1", "TMPDIR": os.environ.get("TMPDIR", "/tmp")}


def run_cli(argv: list[str], *, env: dict[str, str], cwd: Path, timeout: float = CLI_TIMEOUT_S) -> CliRun:
    """Run a CLI with stdin closed; on timeout stop its whole process group (it spawns children)."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return CliRun(argv, cwd, proc.returncode, out, err, timed_out=False, timeout_s=timeout)
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        out, err = proc.communicate()
        return CliRun(argv, cwd, proc.returncode, out, err, timed_out=True, timeout_s=timeout)


def _stop_group(proc: subprocess.Popen[str]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=KILL_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def claude_code(prompt: str, *, base_url: str, model: str, home: Path, cwd: Path, api_key: str,
                args: list[str] | None = None) -> CliRun:
    """``claude -p PROMPT`` (print mode) against ``base_url``, every model alias set to ``model``."""
    clis = ensure_agents()
    config_dir = home / ".claude"
    config_dir.mkdir(parents=True, exist_ok=True)
    env = base_env(home) | {
        "CLAUDE_CONFIG_DIR": str(config_dir),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": api_key,
        # Offline: no telemetry, error reporting, update checks or other calls to Anthropic's hosts.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_BUG_COMMAND": "1",
        # Whatever model Claude Code picks for a request (main, small/fast, subagent), it is ours.
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_SMALL_FAST_MODEL": model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": model,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": model,
        "CLAUDE_CODE_SUBAGENT_MODEL": model,
    }
    argv = [str(clis.claude), "-p", prompt, "--model", model, *(args or [])]
    return run_cli(argv, env=env, cwd=cwd)


def write_codex_config(codex_home: Path, *, base_url: str, model: str, websockets: bool = False) -> Path:
    """``$CODEX_HOME/config.toml`` with flowbase as a custom Responses-API provider."""
    codex_home.mkdir(parents=True, exist_ok=True)
    lines = [
        f'model = "{model}"',
        'model_provider = "flowbase"',
        'approval_policy = "never"',
        "",
        # No usage analytics sent to OpenAI from a test run (the network is closed anyway).
        "[analytics]",
        "enabled = false",
        "",
        "[model_providers.flowbase]",
        'name = "flowbase"',
        f'base_url = "{base_url}/v1"',
        'env_key = "FLOWBASE_API_KEY"',
        'wire_api = "responses"',
        # Fail fast instead of retrying a broken stream for minutes: a test wants the first error.
        "request_max_retries = 0",
        "stream_max_retries = 0",
        # Off by default for custom providers; on, Codex first tries a WebSocket on /v1/responses
        # and falls back to HTTP when the server refuses the upgrade.
        f"supports_websockets = {'true' if websockets else 'false'}",
    ]
    path = codex_home / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def codex_exec(prompt: str, *, base_url: str, model: str, home: Path, cwd: Path, api_key: str,
               websockets: bool = False, args: list[str] | None = None) -> CliRun:
    """``codex exec --skip-git-repo-check PROMPT`` with flowbase as its model provider.

    Codex runs its tool calls without a sandbox (``danger-full-access``): the tests' scripted
    commands are harmless, and a kernel without unprivileged user namespaces cannot run Codex's
    bubblewrap sandbox, which would turn a gateway test into a sandbox test.
    """
    clis = ensure_agents()
    codex_home = home / ".codex"
    write_codex_config(codex_home, base_url=base_url, model=model, websockets=websockets)
    env = base_env(home) | {"CODEX_HOME": str(codex_home), "FLOWBASE_API_KEY": api_key}
    argv = [str(clis.codex), "exec", "--skip-git-repo-check", "--sandbox", "danger-full-access",
            *(args or []), prompt]
    return run_cli(argv, env=env, cwd=cwd)


def agent_fixtures() -> tuple[Any, Any, Any]:
    """The ``agents``, ``fb`` and ``workdir`` fixtures of one agent-CLI test module."""

    @pytest.fixture(scope="module", name="agents")
    def agents() -> AgentClis:
        return ensure_agents()

    @pytest.fixture(scope="module", name="fb")
    def fb(tmp_path_factory: pytest.TempPathFactory, agents: AgentClis) -> Iterator[Flowbase]:
        with Flowbase(data_dir=tmp_path_factory.mktemp("flowbase"), workflows=WORKFLOWS) as gateway:
            yield gateway

    @pytest.fixture(name="workdir")
    def workdir(tmp_path: Path) -> Path:
        path = tmp_path / "project"
        path.mkdir()
        return path

    return agents, fb, workdir


def tool_arguments(span: dict[str, Any]) -> dict[str, Any]:
    raw = span["input"]["arguments"]
    parsed: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else raw
    return parsed


def runs_of(fb: Flowbase, model: str, session_id: str) -> list[dict[str, Any]]:
    """The runs flowbase recorded for ``model`` in one client session, oldest first, with spans."""
    r = fb.get("/api/runs", params={"model": model, "session_id": session_id, "limit": 100})
    assert r.status_code == 200, r.text
    listed: list[dict[str, Any]] = r.json()["runs"]
    return [fb.run(run["id"]) for run in reversed(listed)]


def recorded(fb: Flowbase, model: str) -> str:
    """Every run of ``model`` (id, status, session, error): context for a failure message."""
    try:
        r = fb.get("/api/runs", params={"model": model, "limit": 100})
    except httpx.HTTPError as exc:
        return f"GET /api/runs failed: {exc!r}"
    if r.status_code != 200:
        return f"GET /api/runs answered {r.status_code}: {r.text}"
    lines = [f"  {x['id']} {x['status']} session={x.get('session_id')} error={x.get('error')}" for x in r.json()["runs"]]
    return "\n".join([f"runs recorded for {model}:", *lines])


def spans_of(run: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [s for s in run.get("spans", []) if s.get("kind") == kind]


def model_call(run: dict[str, Any]) -> dict[str, Any]:
    """The run's one model_call span (the agent workflows have a single model node)."""
    [span] = spans_of(run, "model_call")
    return span


def thinking_answered(run: dict[str, Any]) -> list[tuple[str, str]]:
    """(text, signature) of the thinking blocks the model answered with in this run."""
    content = model_call(run)["output"]["content"]
    return [(p["text"], p["signature"]) for p in content if p["type"] == "thinking"]


def thinking_sent_back(run: dict[str, Any]) -> list[tuple[str, str]]:
    """(text, signature) of the thinking blocks the client sent back in its assistant turns."""
    messages = model_call(run)["input"]["messages"]
    return [(p["text"], p["signature"]) for m in messages if m["role"] == "assistant"
            for p in m["content"] if p["type"] == "thinking"]
