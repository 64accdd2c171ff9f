"""The house rules from DESIGN.md that a machine can check: who may import whom, and small files."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("host", "plugin_runner", "plugin_sdk", "plugins")
# Floors, from the ground up; a module may import its own floor or lower ones, never higher.
FLOORS = [
    ("plugin_sdk",),
    ("plugin_runner", "plugins", "host.protocols", "host.store", "host.tracing", "host.redact", "host.config"),
    ("host.runners", "host.runner_call", "host.runner_memory"),
    ("host.engine",),
    ("host.api",),
    ("host.app", "host.serving"),
    ("host.cli",),
]
# Line count a module must stay under (DESIGN.md: "well under ~800 lines").
MAX_LINES = 800


def floor_of(module: str) -> int:
    if module in ("host", "plugins"):  # the bare package __init__ files hold nothing
        return 0
    best = -1
    for i, names in enumerate(FLOORS):
        if any(module == n or module.startswith(n + ".") for n in names):
            best = i
    assert best >= 0, f"{module} is on no floor: add it to FLOORS"
    return best


def modules() -> list[tuple[str, Path]]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(p for p in rel.parts if p != "__init__")
            out.append((name, path))
    return out


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {m for m in found if m.split(".")[0] in PACKAGES}


@pytest.mark.parametrize(("name", "path"), modules(), ids=[m[0] for m in modules()])
def test_no_module_imports_a_floor_above_its_own(name: str, path: Path) -> None:
    mine = floor_of(name)
    for target in imports(path):
        if name.startswith("plugins.") or name == "plugins":
            assert target.startswith(("plugin_sdk", name.split(".")[0] + "." + name.split(".")[1])) \
                or target == "plugins", f"plugin module {name} imports {target}: plugins import only plugin_sdk"
            continue
        if name.startswith("host"):
            assert not target.startswith("plugins"), f"{name} imports the plugin {target}"
        if name.startswith(("plugin_sdk", "plugin_runner")):
            assert not target.startswith("host"), f"{name} imports {target} from the host"
        assert floor_of(target) <= mine, f"{name} (floor {mine}) imports {target} (floor {floor_of(target)})"


@pytest.mark.parametrize(("name", "path"), modules(), ids=[m[0] for m in modules()])
def test_every_module_is_small_and_states_its_contract(name: str, path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) < MAX_LINES, f"{name} has grown past {MAX_LINES} lines: split it"
    if text.strip() and path.name != "__init__.py":
        assert ast.get_docstring(ast.parse(text)), f"{name} has no module docstring stating its contract"
