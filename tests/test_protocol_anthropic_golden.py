"""The Anthropic Messages adapter against its golden files (tests/golden/anthropic_messages): request
wire → canonical, canonical answer → wire, canonical events → SSE, errors → bodies. Rewrite the
expected sections with FLOWBASE_UPDATE_GOLDEN=1 and review the diff."""

from __future__ import annotations

from pathlib import Path

import pytest
from support_openai_protocol import golden_cases, load, run_golden

from host.protocols import anthropic_messages

CASES = golden_cases("anthropic_messages")


def test_golden_files_cover_every_area_of_the_protocol() -> None:
    names = {p.stem for p in CASES}
    assert {"text", "tools_round_trip", "thinking", "images_and_documents", "claude_code_turn",
            "usage_cache_and_stops", "stream_error", "errors"} <= names


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_golden_file_matches_what_the_adapter_produces(path: Path) -> None:
    run_golden(path, anthropic_messages)


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_every_golden_section_has_its_expected_output_recorded(path: Path) -> None:
    case = load(path)
    for section, key in (("request", "canonical"), ("response", "wire"), ("stream", "sse")):
        if section in case:
            assert key in case[section], f"{path.name}: {section}.{key} missing (run with FLOWBASE_UPDATE_GOLDEN=1)"
    for entry in case.get("errors", []):
        assert "expected" in entry, f"{path.name}: error {entry['error']} has no expected output"
