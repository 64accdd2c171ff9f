"""The web UI as a user sees it: the real host serves web/, headless Chromium renders the pages
from the real management API after real requests, and the rendered DOM must show those runs.

Needs /usr/bin/chromium (Debian package ``chromium``; the install command is in web/README.md).
"""

from __future__ import annotations

import posixpath
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support_host import Flowbase

CHROMIUM = Path("/usr/bin/chromium")
# How long one headless page render may take (seconds): a cold Chromium start on a loaded 2-core machine.
BROWSER_TIMEOUT_S = 120.0
# Virtual time Chromium grants a page before dumping its DOM (milliseconds). Virtual time does not
# advance while fetches are pending, so this bounds the page's own timers, not the host's speed.
VIRTUAL_TIME_MS = 10_000
# How long the recorder may take to make a finished run visible in the store (seconds): it batches
# writes off the request path.
RECORD_TIMEOUT_S = 30.0

SESSION = "web-ui-session-1"
# Markup in a prompt must reach the page as text: if the UI ever used innerHTML this would become
# an element with id "injected" and rename the page.
MARKUP = '<b id="injected">bold</b><img src=x onerror="document.title=\'pwned\'">'
FIRST_QUESTION = f"first question {MARKUP}"
SECOND_QUESTION = "second question, after the answer"
IMPORT = re.compile(r'^import .* from "(\.{1,2}/[^"]+)";', re.MULTILINE)
CONSOLE_LINE = re.compile(r":CONSOLE[^\]]*\] (.*)")


@dataclass
class Page:
    dom: str
    console: list[str]


def render(url: str) -> Page:
    """Load ``url`` in headless Chromium; return the DOM after the page settled and its console."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Chromium as web/README.md says")
    profile = tempfile.mkdtemp(prefix="flowbase-chromium-")
    try:
        proc = subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--enable-logging=stderr", "--v=0", f"--virtual-time-budget={VIRTUAL_TIME_MS}", "--dump-dom", url],
            capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    console = [m.group(1) for m in CONSOLE_LINE.finditer(proc.stderr)]
    return Page(proc.stdout, console)


def assert_clean(page: Page) -> None:
    """No script error, no failed load (a missing module 404s), no API error box on the page."""
    bad = [line for line in page.console if "Uncaught" in line or "Failed to load" in line or "Error" in line]
    assert not bad, bad
    assert "This view failed" not in page.dom
    assert 'class="error-box"' not in page.dom, page.dom


def chat(fb: Flowbase, messages: list[dict[str, str]]) -> dict[str, Any]:
    r = fb.post("/v1/chat/completions", json={"model": "flowbase-demo", "user": SESSION, "messages": messages})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def runs_of(fb: Flowbase) -> list[dict[str, Any]]:
    body = fb.get("/api/runs").json()
    runs: list[dict[str, Any]] = body["runs"] if isinstance(body, dict) else body
    return runs


@dataclass
class Served:
    fb: Flowbase
    runs: list[dict[str, Any]]  # oldest first


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    fb = Flowbase(data_dir=tmp_path_factory.mktemp("web") / "d").start()
    try:
        first = [{"role": "user", "content": FIRST_QUESTION}]
        answer = chat(fb, first)["choices"][0]["message"].get("content") or ""
        chat(fb, [*first, {"role": "assistant", "content": answer}, {"role": "user", "content": SECOND_QUESTION}])
        deadline = time.monotonic() + RECORD_TIMEOUT_S
        while len(runs := runs_of(fb)) < 2:
            assert time.monotonic() < deadline, f"runs were not recorded: {runs}\n{fb.log()}"
            time.sleep(0.1)
        yield Served(fb, list(reversed(runs)))
    finally:
        fb.stop()


def test_host_serves_the_page_and_every_module_it_imports(served: Served) -> None:
    index = served.fb.get("/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert 'src="/ui/app.js"' in index.text
    # Follow the static import graph from app.js: every module must be served as JavaScript.
    pending, seen = ["app.js"], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        r = served.fb.get(f"/ui/{name}")
        assert r.status_code == 200, name
        assert "javascript" in r.headers["content-type"], (name, r.headers["content-type"])
        base = posixpath.dirname(name)
        for spec in IMPORT.findall(r.text):
            pending.append(posixpath.normpath(posixpath.join(base, spec)))
    assert {"app.js", "lib/dom.js", "views/run_detail.js"} <= seen
    assert served.fb.get("/ui/style.css").status_code == 200


def test_runs_page_lists_the_recorded_runs(served: Served) -> None:
    page = render(f"{served.fb.url}/#/runs")
    assert_clean(page)
    for run in served.runs:
        assert run["id"] in page.dom
    assert "flowbase-demo" in page.dom


def test_runs_page_filters_go_to_the_api(served: Served) -> None:
    none = render(f"{served.fb.url}/#/runs?status=error")
    assert_clean(none)
    assert "No runs match these filters." in none.dom
    assert not any(run["id"] in none.dom for run in served.runs)
    ok = render(f"{served.fb.url}/#/runs?status=ok&session_id={SESSION}")
    assert_clean(ok)
    assert all(run["id"] in ok.dom for run in served.runs)


def test_run_detail_shows_every_span_and_the_prompt_as_text(served: Served) -> None:
    run = served.runs[0]
    spans = served.fb.run(run["id"])["spans"]
    assert spans, "the run recorded no spans"
    page = render(f"{served.fb.url}/#/runs/{run['id']}")
    assert_clean(page)
    names = re.findall(r'<span class="span-name">([^<]*)</span>', page.dom)
    assert sorted(names) == sorted(s["name"] for s in spans)
    assert "Token bill" in page.dom
    # The root span is selected first: its input (the client's messages) is on the page, as text.
    assert "first question &lt;b id=\"injected\"&gt;bold&lt;/b&gt;" in page.dom
    assert 'id="injected"' not in page.dom.replace('&lt;b id="injected"', "")
    assert "<title>flowbase</title>" in page.dom


def test_selecting_a_span_by_link_shows_that_span(served: Served) -> None:
    run = served.runs[0]
    node = next(s for s in served.fb.run(run["id"])["spans"] if s["kind"] == "node")
    page = render(f"{served.fb.url}/#/runs/{run['id']}?span={node['id']}")
    assert_clean(page)
    detail = page.dom[page.dom.index('class="panel span-detail"'):]
    assert node["id"] in detail
    assert re.search(r'class="wf-row [^"]*selected"[^>]*data-span-id="' + re.escape(node["id"]), page.dom)


def test_session_replay_steps_to_the_second_run_with_earlier_messages_folded(served: Served) -> None:
    assert all(r["session_id"] == SESSION for r in served.runs)
    page = render(f"{served.fb.url}/#/sessions/{SESSION}?step=2")
    assert_clean(page)
    assert "run 2 of 2" in page.dom
    assert SECOND_QUESTION in page.dom
    assert "1 earlier message (sent in previous runs)" in page.dom
    listing = render(f"{served.fb.url}/#/sessions")
    assert_clean(listing)
    assert SESSION in listing.dom


def test_workflows_and_stats_pages_show_the_demo_model(served: Served) -> None:
    workflows = render(f"{served.fb.url}/#/workflows")
    assert_clean(workflows)
    assert "flowbase-demo" in workflows.dom
    stats = render(f"{served.fb.url}/#/stats")
    assert_clean(stats)
    assert "flowbase-demo" in stats.dom
    assert re.search(r'<div class="field-value big">2</div>', stats.dom), "total runs should read 2"
