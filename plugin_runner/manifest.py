"""Plugin manifests: one YAML file per plugin package under ``manifests/``.

    id: openai_compat                 # unique package id
    version: 0.1.0
    module: plugins.openai_compat     # imported by the runner; must implement register_node_types
    description: …
    limits: {timeout_s: 600, memory_mb: 1024}   # sandbox limits for the runner process hosting it
    runner: shared                    # optional: which runner process hosts the package (see below)
    sys_path: ..                      # optional: folder (relative to this file) put on the runner's
                                      # sys.path before importing `module` (plugins not pip-installed)
    node_types:
      openai.chat:
        description: …
        provider_type: openai         # set on model nodes: the `type:` of a workflow provider
        timeout_s: 600                # default deadline of one invocation (seconds)
        config_schema: {JSON Schema}  # validated by the host when a workflow loads
        input_schema: {JSON Schema}   # validated by the runner before run()
        output_schema: {JSON Schema}  # validated by the runner after run()

``runner`` groups packages into processes: packages with the same value share one plugin runner
process (default ``shared``: every package in one process, which keeps flowbase's memory small). A
package that needs isolation (heavy dependencies, a crash-prone native library, its own memory
limit) names its own value, e.g. ``runner: ocr``; a crash then takes down only that group.

Both the host (to validate workflows at load) and the runner (to validate inputs/outputs) read
manifests through this module, so the format has one definition.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import yaml


class ManifestError(Exception):
    """A manifest is unreadable or invalid; the message names the file."""


class Limits(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    timeout_s: float = 600.0
    memory_mb: int | None = None


class NodeTypeSpec(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    description: str = ""
    provider_type: str | None = None
    timeout_s: float | None = None
    config_schema: dict[str, Any] = {}
    input_schema: dict[str, Any] = {}
    output_schema: dict[str, Any] = {}


class Manifest(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    id: str
    version: str
    module: str
    node_types: dict[str, NodeTypeSpec]
    description: str = ""
    limits: Limits = msgspec.field(default_factory=Limits)
    runner: str = "shared"
    sys_path: str | None = None
    path: str = ""


def default_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "manifests"


def load_manifest(path: Path) -> Manifest:
    try:
        raw = yaml.safe_load(path.read_text())
        m = msgspec.convert(raw, Manifest)
    except (OSError, yaml.YAMLError, msgspec.ValidationError) as exc:
        raise ManifestError(f"{path}: {exc}") from exc
    m.path = str(path)
    return m


def load_manifests(dirs: list[Path] | None = None) -> list[Manifest]:
    """All manifests in ``dirs`` (default: the built-in ``manifests/``); duplicate package ids or
    node type names are an error naming both files."""
    out: list[Manifest] = []
    seen_types: dict[str, str] = {}
    seen_ids: dict[str, str] = {}
    for d in dirs or [default_dir()]:
        for path in sorted(Path(d).glob("*.y*ml")):
            m = load_manifest(path)
            if m.id in seen_ids:
                raise ManifestError(f"{path}: package id {m.id!r} already declared in {seen_ids[m.id]}")
            seen_ids[m.id] = str(path)
            for name in m.node_types:
                if name in seen_types:
                    raise ManifestError(f"{path}: node type {name!r} already declared in {seen_types[name]}")
                seen_types[name] = str(path)
            out.append(m)
    return out
