"""SystemPromptRecordsStorage: stock SQLite vs PostgreSQL, same behaviour.

Both databases start with stock's default prompts (stock's migration seeds them; ours does in 0002).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from invokeai.app.services.shared.sqlite_migrator.migrations.migration_2026_07_10_create_system_prompts import (
    DEFAULT_SYSTEM_PROMPTS,
)
from invokeai.app.services.system_prompt_records.system_prompt_records_base import SystemPromptRecordsStorageBase
from invokeai.app.services.system_prompt_records.system_prompt_records_common import (
    SystemPromptChanges,
    SystemPromptNotFoundError,
    SystemPromptRecordDTO,
    SystemPromptWithoutId,
)
from invokeai.app.services.system_prompt_records.system_prompt_records_sqlite import (
    SqliteSystemPromptRecordsStorage,
)

from invokeai_saas.services.system_prompt_records.system_prompt_records_postgres import (
    PostgresSystemPromptRecordsStorage,
)
from tests.services.conftest import Backend
from tests.support.sql_counter import count_statements


@pytest.fixture()
def service(backend: Backend) -> SystemPromptRecordsStorageBase:
    if backend.is_postgres:
        return PostgresSystemPromptRecordsStorage(backend.engine)
    return SqliteSystemPromptRecordsStorage(backend.db)


def sqlite_lower_key(name: str) -> bytes:
    """SQLite's ``ORDER BY LOWER(name)``: ASCII letters folded, then byte order."""
    return "".join(c.lower() if c.isascii() else c for c in name).encode()


def ordered(records: list[SystemPromptRecordDTO]) -> list[SystemPromptRecordDTO]:
    return sorted(records, key=lambda r: sqlite_lower_key(r.name))


def is_stock_time(value: datetime) -> bool:
    """Stock's times: naive UTC datetimes parsed from millisecond text."""
    return (
        value.tzinfo is None
        and value.microsecond % 1000 == 0
        and abs((datetime.now(UTC).replace(tzinfo=None) - value).total_seconds()) < 3600
    )


def create(
    service: SystemPromptRecordsStorageBase, name: str, user_id: str, is_public: bool = False
) -> SystemPromptRecordDTO:
    record = service.create(SystemPromptWithoutId(name=name, content=f"content of {name}"), user_id, is_public)
    time.sleep(0.002)  # distinct millisecond times
    return record


def test_the_default_prompts_are_seeded(service: SystemPromptRecordsStorageBase) -> None:
    seeded = service.get_many()
    assert len(seeded) == len(DEFAULT_SYSTEM_PROMPTS) == 8
    assert [(r.id, r.name, r.content) for r in seeded] == [
        (pid, name, content)
        for pid, name, content in sorted(DEFAULT_SYSTEM_PROMPTS, key=lambda p: sqlite_lower_key(p[1]))
    ]
    for record in seeded:
        assert record.user_id == "system" and record.is_public is True
        assert is_stock_time(record.created_at) and is_stock_time(record.updated_at)
        assert service.get(record.id) == record
    assert service.get_many(user_id="alice") == seeded  # public: everyone sees them


def test_create_and_get(service: SystemPromptRecordsStorageBase) -> None:
    prompt = SystemPromptWithoutId(name="Mine", content='Be "helpful".\nÜnïcödé \\ 🎨')
    record = service.create(prompt, "alice")
    assert is_stock_time(record.created_at) and record.created_at == record.updated_at
    assert record == SystemPromptRecordDTO(
        name="Mine",
        content=prompt.content,
        id=record.id,
        user_id="alice",
        is_public=False,
        created_at=record.created_at,
        updated_at=record.created_at,
    )
    assert service.get(record.id) == record
    shared = service.create(SystemPromptWithoutId(name="Shared", content="c"), "bob", is_public=True)
    assert shared.is_public is True and shared.user_id == "bob" and shared.id != record.id
    with pytest.raises(SystemPromptNotFoundError):
        service.get("missing")


def test_update(service: SystemPromptRecordsStorageBase) -> None:
    record = create(service, "Old", "alice")

    renamed = service.update(record.id, SystemPromptChanges(name="New"), user_id="alice")
    assert renamed.updated_at > record.updated_at and is_stock_time(renamed.updated_at)
    assert renamed == record.model_copy(update={"name": "New", "updated_at": renamed.updated_at})
    time.sleep(0.002)
    rewritten = service.update(record.id, SystemPromptChanges(content="new content"))
    assert rewritten == renamed.model_copy(update={"content": "new content", "updated_at": rewritten.updated_at})
    assert rewritten.updated_at > renamed.updated_at
    time.sleep(0.002)
    everything = service.update(record.id, SystemPromptChanges(name="All", content="all", is_public=True), "alice")
    assert everything == record.model_copy(
        update={"name": "All", "content": "all", "is_public": True, "updated_at": everything.updated_at}
    )
    assert service.get(record.id) == everything

    # nothing to change: the record as it is, not touched
    assert service.update(record.id, SystemPromptChanges(), user_id="alice") == everything
    assert service.get(record.id) == everything

    # someone else's prompt, or a missing one: not found, and nothing changes
    for user_id in ("bob", "system"):
        with pytest.raises(SystemPromptNotFoundError):
            service.update(record.id, SystemPromptChanges(name="Hijacked"), user_id=user_id)
        with pytest.raises(SystemPromptNotFoundError):
            service.update(record.id, SystemPromptChanges(), user_id=user_id)
    with pytest.raises(SystemPromptNotFoundError):
        service.update("missing", SystemPromptChanges(name="x"))
    with pytest.raises(SystemPromptNotFoundError):
        service.update("missing", SystemPromptChanges())
    assert service.get(record.id) == everything

    default_id = DEFAULT_SYSTEM_PROMPTS[0][0]
    with pytest.raises(SystemPromptNotFoundError):
        service.update(default_id, SystemPromptChanges(name="Mine now"), user_id="alice")
    assert service.update(default_id, SystemPromptChanges(is_public=False), user_id="system").is_public is False


def test_delete(service: SystemPromptRecordsStorageBase) -> None:
    record = create(service, "Doomed", "alice")
    with pytest.raises(SystemPromptNotFoundError):
        service.delete(record.id, user_id="bob")
    assert service.get(record.id) == record
    service.delete(record.id, user_id="alice")
    with pytest.raises(SystemPromptNotFoundError):
        service.get(record.id)
    with pytest.raises(SystemPromptNotFoundError):
        service.delete(record.id)
    with pytest.raises(SystemPromptNotFoundError):
        service.delete("missing", user_id="alice")

    other = create(service, "Other", "bob")
    service.delete(other.id)  # unscoped (admin)
    with pytest.raises(SystemPromptNotFoundError):
        service.get(other.id)
    service.delete(DEFAULT_SYSTEM_PROMPTS[0][0])
    assert len(service.get_many()) == len(DEFAULT_SYSTEM_PROMPTS) - 1


def test_get_many_visibility_and_order(service: SystemPromptRecordsStorageBase) -> None:
    seeded = service.get_many()
    made = {
        "banana": create(service, "banana", "alice"),
        "Apple": create(service, "Apple", "alice", is_public=True),
        "_under": create(service, "_under", "alice"),
        "Éclair": create(service, "Éclair", "bob"),
        "éclair": create(service, "éclair", "bob", is_public=True),
        "Zebra": create(service, "Zebra", "bob"),
        "cherry": create(service, "cherry", "system"),
    }
    assert [r.name for r in ordered(list(made.values()))] == [
        "_under", "Apple", "banana", "cherry", "Zebra", "Éclair", "éclair"
    ]  # fmt: skip
    assert service.get_many() == ordered(seeded + list(made.values()))
    alice = [made[n] for n in ("banana", "Apple", "_under", "éclair")]
    assert service.get_many(user_id="alice") == ordered(seeded + alice)
    bob = [made[n] for n in ("Apple", "Éclair", "éclair", "Zebra")]
    assert service.get_many(user_id="bob") == ordered(seeded + bob)
    assert service.get_many(user_id="system") == ordered(seeded + [made["Apple"], made["éclair"], made["cherry"]])
    assert service.get_many(user_id="nobody") == ordered(seeded + [made["Apple"], made["éclair"]])


@pytest.mark.postgres_only
def test_get_many_runs_one_statement(backend: Backend, service: SystemPromptRecordsStorageBase) -> None:
    counts = []
    for size in (1, 30):
        for i in range(size):
            service.create(SystemPromptWithoutId(name=f"p{size}-{i}", content="c"), "alice")
        for user_id in ("alice", None):
            with count_statements(backend.engine) as log:
                service.get_many(user_id=user_id)
            counts.append(log.count)
    assert counts == [1, 1, 1, 1]
