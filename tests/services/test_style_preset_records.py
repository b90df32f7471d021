"""StylePresetRecordsStorage: stock SQLite vs PostgreSQL, same behaviour.

Services are started as InvokeAI starts them, so the default presets shipped with InvokeAI are in the table
before each test (both backends).
"""

from __future__ import annotations

import json
import logging
import threading
from types import SimpleNamespace
from typing import Any, cast

import pytest
from invokeai.app.services.invoker import Invoker
from invokeai.app.services.style_preset_records.style_preset_records_base import StylePresetRecordsStorageBase
from invokeai.app.services.style_preset_records.style_preset_records_common import (
    PresetData,
    PresetType,
    StylePresetChanges,
    StylePresetNotFoundError,
    StylePresetRecordDTO,
    StylePresetWithoutId,
)
from invokeai.app.services.style_preset_records.style_preset_records_sqlite import SqliteStylePresetRecordsStorage

from invokeai_saas.services.style_preset_records.style_preset_records_postgres import (
    DEFAULT_STYLE_PRESETS_FILE,
    PostgresStylePresetRecordsStorage,
)
from tests.services.conftest import Backend
from tests.support.sql_counter import count_statements

USER = PresetType.User
DEFAULT = PresetType.Default


def fake_invoker() -> Invoker:
    return cast(Invoker, SimpleNamespace(services=SimpleNamespace(logger=logging.getLogger("style-presets"))))


def build_service(backend: Backend) -> StylePresetRecordsStorageBase:
    if backend.is_postgres:
        return PostgresStylePresetRecordsStorage(backend.engine)
    return SqliteStylePresetRecordsStorage(backend.db)


def start(service: StylePresetRecordsStorageBase) -> None:
    service.start(fake_invoker())  # type: ignore[attr-defined]  # start() is not on the ABC


@pytest.fixture()
def service(backend: Backend) -> StylePresetRecordsStorageBase:
    svc = build_service(backend)
    start(svc)
    return svc


def shipped_defaults() -> list[StylePresetWithoutId]:
    return [StylePresetWithoutId.model_validate(p) for p in json.loads(DEFAULT_STYLE_PRESETS_FILE.read_text())]


def sqlite_lower_key(name: str) -> bytes:
    """SQLite's ``ORDER BY LOWER(name)``: ASCII letters folded, then byte order."""
    return "".join(c.lower() if c.isascii() else c for c in name).encode()


def preset(
    name: str, positive: str = "{prompt}, nice", negative: str = "ugly", is_public: bool = False
) -> StylePresetWithoutId:
    return StylePresetWithoutId(
        name=name,
        preset_data=PresetData(positive_prompt=positive, negative_prompt=negative),
        type=USER,
        is_public=is_public,
    )


def expected(record: StylePresetWithoutId, preset_id: str, user_id: str) -> StylePresetRecordDTO:
    return StylePresetRecordDTO(**record.model_dump(), id=preset_id, user_id=user_id)


def content(records: list[StylePresetRecordDTO]) -> list[dict[str, Any]]:
    """Records without their (random) ids."""
    return [r.model_dump(exclude={"id"}) for r in records]


def defaults_as_stored() -> list[dict[str, Any]]:
    rows = [expected(p, "x", "system") for p in shipped_defaults()]
    return content(sorted(rows, key=lambda r: sqlite_lower_key(r.name)))


# -- default presets ----------------------------------------------------------------------------------------------


def test_start_syncs_the_shipped_default_presets(service: StylePresetRecordsStorageBase) -> None:
    listed = service.get_many(is_admin=True)
    assert len(listed) == 18
    assert content(listed) == defaults_as_stored()
    assert content(service.get_many()) == defaults_as_stored()  # defaults are visible to everyone
    assert content(service.get_many(type=DEFAULT, user_id="alice")) == defaults_as_stored()
    assert service.get_many(type=USER, is_admin=True) == []
    for record in listed:
        assert service.get(record.id) == record


def test_restart_restores_the_defaults_and_keeps_user_presets(
    backend: Backend, service: StylePresetRecordsStorageBase
) -> None:
    before = service.get_many(is_admin=True)
    mine = service.create(preset(before[0].name), user_id="alice")  # a user preset named like a default
    edited = service.update(before[1].id, StylePresetChanges(name="Edited default", type=None))
    service.delete(before[2].id)

    start(build_service(backend))  # another process starting
    after = service.get_many(type=DEFAULT, is_admin=True)
    assert content(after) == defaults_as_stored()
    assert service.get(mine.id) == mine
    with pytest.raises(StylePresetNotFoundError):
        service.get(edited.id)

    if backend.is_postgres:
        # Unchanged defaults keep their ids (stock hands out new ids at every start; see the docstring).
        assert {r.id for r in after} >= {r.id for r in before} - {before[1].id, before[2].id}
        start(build_service(backend))
        assert service.get_many(type=DEFAULT, is_admin=True) == after
    else:
        assert not {r.id for r in after} & {r.id for r in before}


@pytest.mark.postgres_only
def test_processes_starting_together_sync_once(backend: Backend) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def boot() -> None:
        try:
            barrier.wait()
            start(build_service(backend))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=boot) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert content(build_service(backend).get_many(is_admin=True)) == defaults_as_stored()


# -- create / get / update / delete -------------------------------------------------------------------------------


def test_create_and_get(service: StylePresetRecordsStorageBase) -> None:
    new = preset("Mine", positive='{prompt} "quoted" ünï \\ \n', negative="")
    record = service.create(new, user_id="alice")
    assert record == expected(new, record.id, "alice")
    assert service.get(record.id) == record
    public = service.create(preset("Shared", is_public=True), user_id="bob")
    assert public == expected(preset("Shared", is_public=True), public.id, "bob")
    assert public.id != record.id
    with pytest.raises(StylePresetNotFoundError):
        service.get("missing")


def test_create_many(service: StylePresetRecordsStorageBase) -> None:
    batch = [preset("b"), preset("a", is_public=True), preset("c", negative="n")]
    assert service.create_many(batch, user_id="alice") is None
    service.create_many([], user_id="alice")
    mine = service.get_many(type=USER, user_id="alice")
    assert [r.model_dump(exclude={"id"}) for r in mine] == [
        expected(p, "x", "alice").model_dump(exclude={"id"}) for p in (batch[1], batch[0], batch[2])
    ]
    assert len({r.id for r in mine}) == 3
    for record in mine:
        assert service.get(record.id) == record


def test_update(service: StylePresetRecordsStorageBase) -> None:
    record = service.create(preset("Old"), user_id="alice")
    renamed = service.update(record.id, StylePresetChanges(name="New", type=None))
    assert renamed == record.model_copy(update={"name": "New"})
    data = PresetData(positive_prompt="p2", negative_prompt="n2")
    redone = service.update(record.id, StylePresetChanges(preset_data=data, type=None))
    assert redone == renamed.model_copy(update={"preset_data": data})
    shared = service.update(record.id, StylePresetChanges(is_public=True, type=None))
    assert shared == redone.model_copy(update={"is_public": True})
    # type is not changeable (stock ignores it); nothing to change returns the record as it is
    assert service.update(record.id, StylePresetChanges(type=DEFAULT)) == shared
    everything = service.update(
        record.id,
        StylePresetChanges(
            name="All", preset_data=PresetData(positive_prompt="x", negative_prompt="y"), is_public=False, type=None
        ),
    )
    assert everything == record.model_copy(
        update={"name": "All", "preset_data": PresetData(positive_prompt="x", negative_prompt="y")}
    )
    assert service.get(record.id) == everything
    with pytest.raises(StylePresetNotFoundError):
        service.update("missing", StylePresetChanges(name="x", type=None))
    with pytest.raises(StylePresetNotFoundError):
        service.update("missing", StylePresetChanges(type=None))


def test_delete(service: StylePresetRecordsStorageBase) -> None:
    record = service.create(preset("Doomed"), user_id="alice")
    service.delete(record.id)
    with pytest.raises(StylePresetNotFoundError):
        service.get(record.id)
    service.delete(record.id)  # already gone: no error, as stock
    service.delete("missing")
    assert len(service.get_many(is_admin=True)) == 18


# -- get_many -------------------------------------------------------------------------------------------------------


def test_get_many_visibility_type_and_order(service: StylePresetRecordsStorageBase) -> None:
    names = {
        "alice": ["banana", "Apple", "_under", "Éclair"],
        "bob": ["cherry", "éclair", "Zebra"],
    }
    public = {"Apple", "Zebra"}
    made: dict[str, StylePresetRecordDTO] = {}
    for owner, owned in names.items():
        for name in owned:
            made[name] = service.create(preset(name, is_public=name in public), user_id=owner)
    defaults = service.get_many(type=DEFAULT, is_admin=True)

    def ordered(records: list[StylePresetRecordDTO]) -> list[StylePresetRecordDTO]:
        return sorted(records, key=lambda r: sqlite_lower_key(r.name))

    assert [r.name for r in ordered(list(made.values()))] == [
        "_under", "Apple", "banana", "cherry", "Zebra", "Éclair", "éclair"
    ]  # fmt: skip
    everything = ordered(list(made.values()) + defaults)
    assert service.get_many(is_admin=True) == everything
    assert service.get_many(is_admin=True, user_id="alice") == everything
    assert service.get_many(type=USER, is_admin=True) == ordered(list(made.values()))
    assert service.get_many(type=DEFAULT, is_admin=True) == ordered(defaults)

    alice_sees = ordered([made[n] for n in names["alice"]] + [made["Zebra"]] + defaults)
    assert service.get_many(user_id="alice") == alice_sees
    assert service.get_many(type=USER, user_id="alice") == ordered([made[n] for n in names["alice"]] + [made["Zebra"]])
    assert service.get_many(type=DEFAULT, user_id="alice") == ordered(defaults)
    bob_sees = ordered([made[n] for n in names["bob"]] + [made["Apple"]] + defaults)
    assert service.get_many(user_id="bob") == bob_sees
    anonymous = ordered([made["Apple"], made["Zebra"]] + defaults)
    assert service.get_many() == anonymous
    assert service.get_many(user_id="carol") == anonymous
    assert service.get_many(type=USER) == ordered([made["Apple"], made["Zebra"]])


@pytest.mark.postgres_only
def test_list_methods_run_a_bounded_number_of_statements(
    backend: Backend, service: StylePresetRecordsStorageBase
) -> None:
    counts: dict[str, list[int]] = {"create_many": [], "get_many": []}
    for size in (2, 40):
        with count_statements(backend.engine) as log:
            service.create_many([preset(f"p{size}-{i}") for i in range(size)], user_id="alice")
        counts["create_many"].append(log.count)
        with count_statements(backend.engine) as log:
            assert len(service.get_many(user_id="alice")) == 18 + (2 if size == 2 else 42)
        counts["get_many"].append(log.count)
    assert counts == {"create_many": [1, 1], "get_many": [1, 1]}
