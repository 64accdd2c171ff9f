"""The published models: workflow files loaded from a folder, kept current as the files change.

A file that fails to load is reported (``errors``, the log, ``/api/workflows``) and, if an earlier
version of it loaded, that version keeps serving: a typo never takes a model offline. Each
successful load is saved to the store, which gives it a version number when its definition changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import watchfiles

from host.engine.workflow import Workflow, WorkflowError, load_workflow
from host.redact import REDACTOR
from plugin_runner.manifest import NodeTypeSpec

log = logging.getLogger("flowbase.workflows")
SaveFn = Callable[[Workflow], Awaitable[int]]
PATTERNS = ("*.yaml", "*.yml")


class Registry:
    def __init__(self, node_types: Mapping[str, NodeTypeSpec], save: SaveFn | None = None) -> None:
        self.node_types = node_types
        self.save = save
        self.by_model: dict[str, Workflow] = {}
        self.by_path: dict[str, Workflow] = {}
        self.errors: dict[str, str] = {}
        self._lock = asyncio.Lock()

    def get(self, model: str) -> Workflow | None:
        return self.by_model.get(model)

    def models(self) -> list[Workflow]:
        return sorted(self.by_model.values(), key=lambda w: w.model)

    async def load_dir(self, folder: Path) -> None:
        for path in sorted(p for pat in PATTERNS for p in folder.glob(pat)):
            await self.load_file(path)

    async def load_file(self, path: Path) -> Workflow | None:
        key = str(path.resolve())
        try:
            text = path.read_text()
        except OSError as exc:
            return self._failed(key, f"{key}: cannot read: {exc.strerror}")
        return await self.load_text(text, key)

    async def load_text(self, text: str, key: str) -> Workflow | None:
        async with self._lock:
            try:
                wf = load_workflow(text, key, self.node_types)
            except WorkflowError as exc:
                return self._failed(key, REDACTOR.redact(str(exc)))
            other = self.by_model.get(wf.model)
            if other is not None and other.path != key:
                return self._failed(key, f"{key}: model '{wf.model}' is already published by {other.path}")
            REDACTOR.add(wf.secrets)
            if self.save is not None:
                wf.version = await self.save(wf)
            old = self.by_path.get(key)
            if old is not None and old.model != wf.model:
                self.by_model.pop(old.model, None)
            self.by_path[key] = wf
            self.by_model[wf.model] = wf
            self.errors.pop(key, None)
            log.info("workflow %s loaded: model %s, version %s", key, wf.model, wf.version)
            return wf

    def _failed(self, key: str, message: str) -> Workflow | None:
        self.errors[key] = message
        kept = self.by_path.get(key)
        log.error("%s%s", message, f" (still serving version {kept.version})" if kept else "")
        return None  # the caller returns this: "nothing new loaded"

    def remove(self, key: str) -> None:
        wf = self.by_path.pop(key, None)
        self.errors.pop(key, None)
        if wf is not None and self.by_model.get(wf.model) is wf:
            del self.by_model[wf.model]
            log.info("workflow %s removed: model %s no longer served", key, wf.model)

    async def watch(self, folder: Path, stop: asyncio.Event | None = None) -> None:
        """Reload changed files until ``stop`` is set (runs as a background task)."""
        def only_yaml(_change: watchfiles.Change, path: str) -> bool:
            return path.endswith((".yaml", ".yml"))

        async for changes in watchfiles.awatch(folder, watch_filter=only_yaml, stop_event=stop, recursive=False):
            for change, raw in sorted(changes, key=lambda c: c[1]):
                path = Path(raw).resolve()
                if change == watchfiles.Change.deleted or not path.exists():
                    self.remove(str(path))
                else:
                    await self.load_file(path)
