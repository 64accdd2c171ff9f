"""Helpers for end-to-end tests: the real gateway serving workflows whose upstream is the fake one.

- ``one_llm_workflow(model, provider_type, base_url, upstream_model, provider=, api_key=)``: the text of
  a workflow published as ``model`` whose one node, ``answer``, sends the request to ``upstream_model``
  through a provider of ``provider_type`` at ``base_url`` (``${VAR}`` references are resolved by the host).
- ``serve_workflows(tmp_path_factory, {file stem: workflow text}, env)``: a started ``Flowbase`` serving
  those files with ``env`` added to its environment (a context manager; the gateway stops on exit).
- ``spans(run, kind)``: the spans of one kind in a run as ``/api/runs/{id}`` returns it.
- ``assert_engine_order(run)``: the run's spans (stored in recorded order) are in the order the engine
  promises the recorder (``RunRow.engine_order``): unique ids, one root first, every other span after its
  parent and after the whole subtree of each earlier sibling.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.support_host import Flowbase


def one_llm_workflow(model: str, provider_type: str, base_url: str, upstream_model: str, *,
                     provider: str = "upstream", api_key: str = "${UPSTREAM_KEY}") -> str:
    return f"""
version: 1
name: {model}
model: {model}
providers:
  {provider}: {{type: {provider_type}, base_url: "{base_url}", api_key: "{api_key}"}}
nodes:
  - {{id: answer, type: llm, provider: {provider}, model: {upstream_model}}}
"""


@contextmanager
def serve_workflows(tmp_path_factory: pytest.TempPathFactory, workflows: dict[str, str],
                    env: dict[str, str]) -> Iterator[Flowbase]:
    wf = tmp_path_factory.mktemp("workflows")
    for name, text in workflows.items():
        (wf / f"{name}.yaml").write_text(text)
    with Flowbase(data_dir=tmp_path_factory.mktemp("data"), workflows=wf, env=env) as server:
        yield server


def spans(run: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [s for s in run["spans"] if s["kind"] == kind]


def assert_engine_order(run: dict[str, Any]) -> None:
    ids = [s["id"] for s in run["spans"]]
    assert len(set(ids)) == len(ids), ids
    root, *rest = run["spans"]
    assert root["kind"] == "workflow" and root.get("parent_id") is None
    chain = [root["id"]]  # the last span's ancestors and itself
    for s in rest:
        parent = s.get("parent_id")
        assert parent in chain, (s["id"], parent, chain)
        del chain[chain.index(parent) + 1:]
        chain.append(s["id"])
