"""What the benchmark measures: the fake upstreams, flowbase, and the LiteLLM proxy, each as a :class:`Target`.

Contract:
- :func:`start_upstream` runs ``bench/upstream.py`` in its own process and returns an :class:`Upstream`.
- A :class:`Target` knows its base URL, the model name clients send, the headers they send, and (for
  gateways) the root process whose tree is measured. ``direct`` is the upstream itself.
- :func:`start_flowbase` serves a one-node proxy workflow (the file from the foundation issue, exactly as
  written, resolving ``${UPSTREAM_BASE_URL}``), plus a second one on the paced upstream for the soak;
  ``tracing=False`` sets ``FLOWBASE_TRACING=0``.
- :func:`ensure_litellm` creates ``bench/.venv-litellm`` with ``pip install 'litellm[proxy]'`` once
  (a stamp file records success); :func:`start_litellm` runs it offline on the same upstream.
Both gateways authenticate clients with the same bearer key (LiteLLM refuses to start without a master
key; flowbase gets it through ``FLOWBASE_API_KEYS``), so both do the same work per request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Service, ServiceError, free_port

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
LITELLM_VENV = BENCH_DIR / ".venv-litellm"
MODEL = "gpt-proxy"
PACED_MODEL = "gpt-proxy-paced"
UPSTREAM_MODEL = "small"
# A start-up slower than this is a failure (seconds). LiteLLM imports for ~10 s per process on this
# machine, and its two workers start after the parent has imported; flowbase spawns its runner.
START_TIMEOUT_S = 180.0
# The fake upstream is a small Python process; it listens within a second or two (seconds).
UPSTREAM_START_TIMEOUT_S = 30.0
# One readiness probe or /stats read on 127.0.0.1 (seconds); a probe that times out is simply retried.
PROBE_TIMEOUT_S = 2.0
# pip resolving and downloading litellm[proxy] (~150 packages) on a slow mirror (seconds).
PIP_TIMEOUT_S = 1800


def _proxy_workflow(name: str, model: str, base_url_var: str) -> str:
    """A one-node workflow publishing ``model`` that passes requests to the upstream at ``${base_url_var}``."""
    return f"""\
version: 1
name: {name}
model: {model}
providers:
  upstream:
    type: openai
    base_url: ${{{base_url_var}}}
    api_key: ${{UPSTREAM_API_KEY}}
nodes:
  - id: answer
    type: llm
    provider: upstream
    model: {UPSTREAM_MODEL}
"""


# The proxy workflow of the foundation issue, exactly as written; tests load the same text.
PROXY_WORKFLOW = _proxy_workflow("proxy", MODEL, "UPSTREAM_BASE_URL")
PACED_WORKFLOW = _proxy_workflow("proxy-paced", PACED_MODEL, "UPSTREAM_PACED_BASE_URL")

LITELLM_CONFIG = """\
model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{upstream_model}
      api_base: {api_base}
      api_key: os.environ/UPSTREAM_API_KEY
litellm_settings:
  num_retries: 0
  request_timeout: 600
  set_verbose: false
  telemetry: false
router_settings:
  num_retries: 0
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
  disable_spend_logs: true
"""


@dataclass
class Target:
    name: str
    base_url: str
    model: str
    headers: dict[str, str] = field(default_factory=dict)
    service: Service | None = None
    info: dict[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1].split("/", 1)[0])

    @property
    def url(self) -> str:
        return self.base_url + "/v1/chat/completions"

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()


def _http_ok(url: str, headers: dict[str, str] | None = None, must_contain: tuple[str, ...] = ()) -> bool:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=PROBE_TIMEOUT_S) as resp:
            body = resp.read().decode(errors="replace")
            return resp.status == 200 and all(s in body for s in must_contain)
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class Upstream:
    service: Service
    port: int
    chunks: int
    delay_ms: float

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=PROBE_TIMEOUT_S) as resp:
            data: dict[str, int] = json.loads(resp.read())
            return data


def start_upstream(log_dir: Path, *, chunks: int, delay_ms: float, label: str) -> Upstream:
    port = free_port()
    cmd = [sys.executable, "-m", "bench.upstream", "--port", str(port), "--chunks", str(chunks),
           "--chunk-delay-ms", str(delay_ms)]
    svc = Service(f"upstream-{label}", cmd, log_path=log_dir / f"upstream-{label}.log", cwd=ROOT)
    svc.start(lambda: _http_ok(f"http://127.0.0.1:{port}/stats"), timeout_s=UPSTREAM_START_TIMEOUT_S)
    return Upstream(svc, port, chunks, delay_ms)


def direct_target(upstream: Upstream) -> Target:
    return Target("direct", f"http://127.0.0.1:{upstream.port}", UPSTREAM_MODEL)


def flowbase_command() -> list[str]:
    script = Path(sys.executable).parent / "flowbase"
    return [str(script)] if script.exists() else [sys.executable, "-m", "host.cli"]


def start_flowbase(work: Path, *, name: str, tracing: bool, upstream: Upstream, paced: Upstream | None,
                   api_key: str) -> Target:
    wf_dir = work / f"{name}-workflows"
    wf_dir.mkdir(parents=True, exist_ok=True)
    (wf_dir / "proxy.yaml").write_text(PROXY_WORKFLOW)
    env = {**os.environ,
           "UPSTREAM_BASE_URL": upstream.base_url,
           "UPSTREAM_API_KEY": "sk-upstream-bench",
           "FLOWBASE_API_KEYS": api_key,
           "FLOWBASE_LOG_LEVEL": "warning"}
    models: tuple[str, ...] = (MODEL,)
    if paced is not None:
        (wf_dir / "proxy-paced.yaml").write_text(PACED_WORKFLOW)
        env["UPSTREAM_PACED_BASE_URL"] = paced.base_url
        models = (MODEL, PACED_MODEL)
    env.pop("FLOWBASE_TRACING", None)
    if not tracing:
        env["FLOWBASE_TRACING"] = "0"
    port = free_port()
    cmd = [*flowbase_command(), "serve", "--host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(work / f"{name}-data"), "--workflows", str(wf_dir)]
    svc = Service(name, cmd, log_path=work / f"{name}.log", env=env, cwd=ROOT)
    headers = {"Authorization": f"Bearer {api_key}"}
    svc.start(lambda: _http_ok(f"http://127.0.0.1:{port}/v1/models", headers, tuple(f'"{m}"' for m in models)),
              timeout_s=START_TIMEOUT_S)
    return Target(name, f"http://127.0.0.1:{port}", MODEL, headers=headers, service=svc,
                  info={"tracing": "on" if tracing else "off"})


def litellm_python() -> Path:
    return LITELLM_VENV / "bin" / "python"


def ensure_litellm(spec: str, log: Path) -> str:
    """Create the LiteLLM venv if needed; return the installed LiteLLM version."""
    stamp = LITELLM_VENV / ".bench-installed"
    if not (stamp.exists() and stamp.read_text() == spec and litellm_python().exists()):
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            if not litellm_python().exists():
                subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True, stdout=out, stderr=out)
            pip = [str(litellm_python()), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            subprocess.run([*pip, spec], check=True, stdout=out, stderr=out, timeout=PIP_TIMEOUT_S)
        stamp.write_text(spec)
    done = subprocess.run([str(litellm_python()), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                          check=False, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    return done.stdout.strip() or "unknown"


def litellm_env(api_key: str) -> dict[str, str]:
    """Offline and quiet: local cost map (no fetch from GitHub), no telemetry, no database."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONPATH")}
    env.update({
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_MASTER_KEY": api_key,
        "UPSTREAM_API_KEY": "sk-upstream-bench",
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "DISABLE_SCHEMA_UPDATE": "True",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def start_litellm(work: Path, *, upstream: Upstream, api_key: str, workers: int) -> Target:
    config = work / "litellm-config.yaml"
    config.write_text(LITELLM_CONFIG.format(model=MODEL, upstream_model=UPSTREAM_MODEL,
                                            api_base=upstream.base_url))
    port = free_port()
    cmd = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1",
           "--port", str(port), "--num_workers", str(workers)]
    svc = Service("litellm", cmd, log_path=work / "litellm.log", env=litellm_env(api_key), cwd=work)
    headers = {"Authorization": f"Bearer {api_key}"}
    try:
        svc.start(lambda: _http_ok(f"http://127.0.0.1:{port}/health/liveliness"), timeout_s=START_TIMEOUT_S,
                  poll_s=0.5)
    except ServiceError:
        svc.stop()
        raise
    return Target("litellm", f"http://127.0.0.1:{port}", MODEL, headers=headers, service=svc,
                  info={"workers": str(workers)})
