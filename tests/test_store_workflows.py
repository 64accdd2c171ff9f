"""Workflow versions in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from host.store.base import StoreError
from host.store.db import Store, sqlite_url
from host.store.schema import SCHEMA_VERSION, meta

pytest_plugins = ["support_store_fixtures"]

SOURCE = "version: 1\nname: wf\nmodel: m\nproviders:\n  up: {type: openai, api_key: ${KEY}}\n"
DEF_A = {"version": 1, "name": "wf", "model": "m", "providers": {"up": {"type": "openai", "api_key": "${KEY}"}}}
DEF_B = {**DEF_A, "nodes": [{"id": "answer", "type": "llm"}]}


async def test_saving_the_same_definition_again_keeps_the_current_version(store: Store) -> None:
    assert await store.save_workflow("wf", "m", SOURCE, DEF_A) == 1
    assert await store.save_workflow("wf", "m", SOURCE, DEF_A) == 1
    assert [v["version"] for v in await store.list_versions("wf")] == [1]


async def test_key_order_does_not_make_a_definition_different(store: Store) -> None:
    await store.save_workflow("wf", "m", SOURCE, DEF_A)
    reordered = dict(reversed(list(DEF_A.items())))
    assert await store.save_workflow("wf", "m", SOURCE, reordered) == 1


async def test_a_changed_definition_makes_a_new_version_and_keeps_the_old_one(store: Store) -> None:
    await store.save_workflow("wf", "m", SOURCE, DEF_A)
    assert await store.save_workflow("wf", "m", SOURCE + "nodes: []\n", DEF_B) == 2
    wf = await store.get_workflow("wf")
    assert wf is not None
    assert (wf["current_version"], wf["definition"], wf["source_text"]) == (2, DEF_B, SOURCE + "nodes: []\n")
    versions = await store.list_versions("wf")
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["digest"] != versions[1]["digest"]
    old = await store.get_version("wf", 1)
    assert old is not None and old["definition"] == DEF_A and old["source_text"] == SOURCE


async def test_going_back_to_an_earlier_definition_is_a_new_version(store: Store) -> None:
    await store.save_workflow("wf", "m", SOURCE, DEF_A)
    await store.save_workflow("wf", "m", SOURCE, DEF_B)
    assert await store.save_workflow("wf", "m", SOURCE, DEF_A) == 3
    v1, v3 = await store.get_version("wf", 1), await store.get_version("wf", 3)
    assert v1 is not None and v3 is not None and v1["digest"] == v3["digest"]


async def test_the_stored_source_keeps_variable_references_as_written(store: Store) -> None:
    await store.save_workflow("wf", "m", SOURCE, DEF_A)
    wf = await store.get_workflow("wf")
    assert wf is not None and "${KEY}" in wf["source_text"]
    assert wf["definition"]["providers"]["up"]["api_key"] == "${KEY}"


async def test_workflows_are_listed_by_name_with_model_and_current_version(store: Store) -> None:
    await store.save_workflow("zeta", "m-z", "z", {"n": "z"})
    await store.save_workflow("alpha", "m-a", "a", {"n": "a"})
    await store.save_workflow("alpha", "m-a", "a2", {"n": "a2"})
    listed = await store.list_workflows()
    assert [(w["name"], w["model"], w["current_version"]) for w in listed] == [("alpha", "m-a", 2), ("zeta", "m-z", 1)]
    assert all(w["updated_at"].endswith("Z") for w in listed)


async def test_a_model_name_moves_to_the_workflow_that_now_publishes_it(store: Store) -> None:
    await store.save_workflow("old", "shared", "o", {"n": "old"})
    await store.save_workflow("new", "shared", "n", {"n": "new"})
    models = {w["name"]: w["model"] for w in await store.list_workflows()}
    assert models == {"old": None, "new": "shared"}
    # Saved again (unchanged) it takes the model back, without a new version.
    assert await store.save_workflow("old", "shared", "o", {"n": "old"}) == 1
    assert {w["name"]: w["model"] for w in await store.list_workflows()} == {"old": "shared", "new": None}


async def test_unknown_workflows_and_versions_read_as_missing(store: Store) -> None:
    await store.save_workflow("wf", "m", SOURCE, DEF_A)
    assert await store.get_workflow("nope") is None
    assert await store.list_versions("nope") == []
    assert await store.get_version("wf", 7) is None


async def test_the_schema_version_is_recorded_and_a_newer_database_is_refused(store: Store, store_url: str) -> None:
    assert await store.schema_version() == SCHEMA_VERSION
    async with store.write() as conn:
        await conn.execute(update(meta).where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION + 1)))
    try:
        with pytest.raises(StoreError, match="newer"):
            await Store.open(store_url)
    finally:
        async with store.write() as conn:
            await conn.execute(update(meta).where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))


async def test_a_reopened_sqlite_store_keeps_its_workflows(tmp_path: Path) -> None:
    first = await Store.open(sqlite_url(tmp_path))
    await first.save_workflow("wf", "m", SOURCE, DEF_A)
    await first.close()
    again = await Store.open(sqlite_url(tmp_path))
    try:
        assert await again.save_workflow("wf", "m", SOURCE, DEF_A) == 1
        assert (tmp_path / "flowbase.db").exists()
    finally:
        await again.close()


async def test_an_unsupported_database_url_is_refused() -> None:
    with pytest.raises(StoreError, match="unsupported"):
        await Store.open("mysql+aiomysql://localhost/flowbase")
