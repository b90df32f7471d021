"""WorkflowRecordsStorage: stock SQLite vs PostgreSQL, same behaviour.

Every service is started the way InvokeAI starts it, so the default workflows shipped with InvokeAI are synced
into the library before each test (both backends), and listings include them unless filtered out.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest
from invokeai.app.services.invoker import Invoker
from invokeai.app.services.shared.sqlite.sqlite_common import SQLiteDirection
from invokeai.app.services.workflow_records.workflow_records_base import WorkflowRecordsStorageBase
from invokeai.app.services.workflow_records.workflow_records_common import (
    ExposedField,
    Workflow,
    WorkflowCategory,
    WorkflowMeta,
    WorkflowNotFoundError,
    WorkflowRecordDTO,
    WorkflowRecordListItemDTO,
    WorkflowRecordOrderBy,
    WorkflowValidator,
    WorkflowWithoutID,
)
from invokeai.app.services.workflow_records.workflow_records_sqlite import SqliteWorkflowRecordsStorage
from sqlalchemy import text

from invokeai_saas.services.workflow_records.workflow_records_postgres import (
    DEFAULT_WORKFLOWS_DIR,
    PostgresWorkflowRecordsStorage,
)
from tests.services.conftest import Backend
from tests.support.sql_counter import count_statements

USER = WorkflowCategory.User
DEFAULT = WorkflowCategory.Default
ASC = SQLiteDirection.Ascending
DESC = SQLiteDirection.Descending
STOCK_MS = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$")


# -- fixtures and helpers ---------------------------------------------------------------------------------------


def fake_invoker() -> Invoker:
    """start() only needs the logger from the invoker's services."""
    return cast(Invoker, SimpleNamespace(services=SimpleNamespace(logger=logging.getLogger("workflow-records"))))


def build_service(backend: Backend) -> WorkflowRecordsStorageBase:
    if backend.is_postgres:
        return PostgresWorkflowRecordsStorage(backend.engine)
    return SqliteWorkflowRecordsStorage(backend.db)


def start(service: WorkflowRecordsStorageBase) -> None:
    service.start(fake_invoker())  # type: ignore[attr-defined]  # start() is not on the ABC


@pytest.fixture()
def service(backend: Backend) -> WorkflowRecordsStorageBase:
    svc = build_service(backend)
    start(svc)
    return svc


def shipped_defaults() -> list[Workflow]:
    return [WorkflowValidator.validate_json(p.read_bytes()) for p in DEFAULT_WORKFLOWS_DIR.glob("*.json")]


def make_workflow(
    name: str,
    *,
    description: str = "",
    tags: str = "",
    category: WorkflowCategory = USER,
    nodes: list[dict[str, Any]] | None = None,
) -> WorkflowWithoutID:
    if nodes is None:
        nodes = [
            {
                "id": "n1",
                "type": "invocation",
                "position": {"x": 12.5, "y": -40.25},
                "data": {"id": "n1", "type": "string", "inputs": {"value": {"name": "value", "value": name}}},
            }
        ]
    return WorkflowWithoutID(
        name=name,
        author="tester",
        description=description,
        version="1.0.0",
        contact="me@example.com",
        tags=tags,
        notes="",
        exposedFields=[ExposedField(nodeId="n1", fieldName="value")],
        meta=WorkflowMeta(version="3.0.0", category=category),
        nodes=nodes,
        edges=[],
        form={"elements": {}, "rootElementId": "root"},
    )


def create(
    service: WorkflowRecordsStorageBase, name: str, user_id: str = "alice", is_public: bool = False, **kwargs: Any
) -> WorkflowRecordDTO:
    record = service.create(make_workflow(name, **kwargs), user_id=user_id, is_public=is_public)
    time.sleep(0.002)  # stock keeps millisecond times: distinct times make time orderings well defined
    return record


def as_list_item(record: WorkflowRecordDTO) -> WorkflowRecordListItemDTO:
    """What a listing must say about a record: the same fields, read from the same row."""
    return WorkflowRecordListItemDTO(
        workflow_id=record.workflow_id,
        name=record.name,
        created_at=record.created_at,
        updated_at=record.updated_at,
        opened_at=record.opened_at,
        user_id=record.user_id,
        is_public=record.is_public,
        description=record.workflow.description,
        category=record.workflow.meta.category,
        tags=record.workflow.tags,
    )


def listed(
    service: WorkflowRecordsStorageBase,
    order_by: WorkflowRecordOrderBy = WorkflowRecordOrderBy.Name,
    direction: SQLiteDirection = ASC,
    categories: list[WorkflowCategory] | None = None,
    **kwargs: Any,
) -> list[WorkflowRecordListItemDTO]:
    return service.get_many(order_by=order_by, direction=direction, categories=categories, **kwargs).items


def ids(items: list[WorkflowRecordListItemDTO]) -> list[str]:
    return [item.workflow_id for item in items]


def user_ids(service: WorkflowRecordsStorageBase, **kwargs: Any) -> list[str]:
    return ids(listed(service, categories=[USER], **kwargs))


def raw(backend: Backend, sqlite_sql: str, pg_sql: str, params: dict[str, Any] | None = None) -> None:
    """Write rows behind the service's back (to tamper with the library before a restart)."""
    if backend.is_postgres:
        with backend.engine.begin() as conn:
            conn.execute(text(pg_sql), params or {})
    else:
        with backend.db.transaction() as cursor:
            cursor.execute(sqlite_sql, params or {})


def bytewise(names: list[str]) -> list[str]:
    return sorted(names, key=lambda n: n.encode())


# -- default workflows ------------------------------------------------------------------------------------------


def test_start_syncs_the_shipped_default_workflows(service: WorkflowRecordsStorageBase) -> None:
    defaults = {w.id: w for w in shipped_defaults()}
    page = service.get_many(order_by=WorkflowRecordOrderBy.Name, direction=ASC, categories=[DEFAULT])
    assert page.total == len(defaults) == 26 and page.pages == 1 and page.per_page == 26 and page.page == 0
    assert [i.name for i in page.items] == bytewise([w.name for w in defaults.values()])
    for item in page.items:
        record = service.get(item.workflow_id)
        assert record.workflow == defaults[item.workflow_id]  # what stock's DTO parsing makes of the file
        assert json.loads(record.workflow.model_dump_json()) == json.loads(defaults[item.workflow_id].model_dump_json())
        assert STOCK_MS.match(str(record.created_at)) and record.created_at == record.updated_at
        assert record.model_copy(update={"created_at": "t", "updated_at": "t"}) == WorkflowRecordDTO(
            workflow_id=item.workflow_id,
            name=defaults[item.workflow_id].name,
            created_at="t",
            updated_at="t",
            opened_at=None,
            user_id="system",
            is_public=False,
            workflow=defaults[item.workflow_id],
        )
        assert item == as_list_item(record)


def test_restart_is_idempotent_and_repairs_the_defaults(backend: Backend, service: WorkflowRecordsStorageBase) -> None:
    before = listed(service, categories=[DEFAULT])
    time.sleep(0.002)
    start(build_service(backend))  # a second process starting: nothing to do
    assert listed(service, categories=[DEFAULT]) == before  # timestamps included: nothing was rewritten

    shipped = sorted(shipped_defaults(), key=lambda w: w.id)
    tampered, removed, untouched = shipped[0], shipped[1], shipped[2]
    raw(
        backend,
        "UPDATE workflow_library SET workflow = json_set(workflow, '$.name', 'Tampered') WHERE workflow_id = :id",
        "UPDATE workflow_library SET workflow = jsonb_set(workflow, '{name}', '\"Tampered\"') WHERE workflow_id = :id",
        {"id": tampered.id},
    )
    raw(
        backend,
        "DELETE FROM workflow_library WHERE workflow_id = :id",
        "DELETE FROM workflow_library WHERE workflow_id = :id",
        {"id": removed.id},
    )
    obsolete = Workflow(**make_workflow("Obsolete", category=DEFAULT).model_dump(), id="default_obsolete")
    raw(
        backend,
        "INSERT INTO workflow_library (workflow_id, workflow) VALUES (:id, :doc)",
        "INSERT INTO workflow_library (workflow_id, workflow) VALUES (:id, CAST(:doc AS jsonb))",
        {"id": obsolete.id, "doc": obsolete.model_dump_json()},
    )
    assert service.get(tampered.id).name == "Tampered"
    untouched_before = service.get(untouched.id)

    start(build_service(backend))
    assert service.get(tampered.id).workflow == tampered
    assert service.get(tampered.id).updated_at > untouched_before.updated_at  # rewritten
    assert service.get(removed.id).workflow == removed
    with pytest.raises(WorkflowNotFoundError):
        service.get(obsolete.id)
    assert service.get(untouched.id) == untouched_before
    assert sorted(ids(listed(service, categories=[DEFAULT]))) == [w.id for w in shipped]


@pytest.mark.postgres_only
def test_processes_starting_together_sync_once(backend: Backend) -> None:
    """Several API processes start at once against one database: the defaults end up there exactly once."""
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
    service = build_service(backend)
    assert sorted(ids(listed(service, categories=[DEFAULT]))) == sorted(w.id for w in shipped_defaults())


# -- create / get -----------------------------------------------------------------------------------------------


def test_create_and_get_return_the_whole_record(service: WorkflowRecordsStorageBase) -> None:
    workflow = make_workflow("My workflow", description="does things", tags="a, b")
    record = service.create(workflow, user_id="alice", is_public=True)
    assert STOCK_MS.match(str(record.created_at)) and record.created_at == record.updated_at
    expected = WorkflowRecordDTO(
        workflow_id=record.workflow_id,
        name="My workflow",
        created_at=record.created_at,
        updated_at=record.created_at,
        opened_at=None,
        user_id="alice",
        is_public=True,
        workflow=Workflow(**workflow.model_dump(), id=record.workflow_id),
    )
    assert record == expected
    assert service.get(record.workflow_id) == expected
    assert listed(service, categories=[USER]) == [as_list_item(expected)]

    owned_by_default = service.create(make_workflow("No owner given"))
    assert owned_by_default.user_id == "system" and owned_by_default.is_public is False
    assert owned_by_default.workflow_id != record.workflow_id


def test_create_refuses_default_workflows_and_get_refuses_unknown_ids(service: WorkflowRecordsStorageBase) -> None:
    with pytest.raises(ValueError, match="Default workflows cannot be created"):
        service.create(make_workflow("sneaky", category=DEFAULT), user_id="alice")
    with pytest.raises(WorkflowNotFoundError):
        service.get("no-such-workflow")
    assert listed(service, categories=[USER]) == []


def test_document_survives_the_round_trip(service: WorkflowRecordsStorageBase) -> None:
    """The document comes back parsed exactly as stock parses it: same values, same JSON types."""
    nodes: list[dict[str, Any]] = [
        {
            "id": "n1",
            "type": "invocation",
            "position": {"x": 0.1, "y": -1234.5678, "z": 1e-07, "w": 3.0, "big": 123456789012345678},
            "data": {
                "label": 'Ünïcödé ✓ 🎨 "quoted" back\\slash\nnewline\ttab',
                "flags": [True, False, None],
                "nested": {"deep": {"deeper": [1, 2.5, "three", {"four": []}]}, "empty": {}},
                "b_key": 1,
                "a_key": 2,
                "": "empty key",
            },
        },
        {"id": "n2", "type": "notes", "data": {"notes": "x" * 10_000}},
    ]
    workflow = make_workflow("Round trip", nodes=nodes, tags="ü, ß")
    record = service.create(workflow, user_id="alice")
    expected = Workflow(**workflow.model_dump(), id=record.workflow_id)
    for got in (record.workflow, service.get(record.workflow_id).workflow):
        assert got == expected
        assert json.loads(got.model_dump_json()) == json.loads(expected.model_dump_json())
        assert _json_types(got.model_dump()) == _json_types(expected.model_dump())


def _json_types(value: Any) -> Any:
    """The value with every leaf replaced by its type, so 1 and 1.0 differ."""
    if isinstance(value, dict):
        return {k: _json_types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_types(v) for v in value]
    return type(value).__name__


# -- update / delete / is_public / opened_at --------------------------------------------------------------------


def test_update(service: WorkflowRecordsStorageBase) -> None:
    record = create(service, "Before", description="old", tags="old")
    changed = record.workflow.model_copy(update={"name": "After", "description": "new", "tags": "new, tags"})

    # Someone else's workflow: left alone, the unchanged record comes back (stock).
    assert service.update(changed, user_id="bob") == record
    time.sleep(0.002)

    updated = service.update(changed, user_id="alice")
    assert updated.updated_at > record.updated_at and STOCK_MS.match(str(updated.updated_at))
    assert updated == record.model_copy(update={"name": "After", "workflow": changed, "updated_at": updated.updated_at})
    assert service.get(record.workflow_id) == updated
    item = listed(service, categories=[USER])[0]
    assert (item.name, item.description, item.tags) == ("After", "new", "new, tags")  # generated columns follow

    time.sleep(0.002)
    unscoped = service.update(changed.model_copy(update={"name": "Admin edit"}))
    assert unscoped.name == "Admin edit" and unscoped.updated_at > updated.updated_at

    with pytest.raises(WorkflowNotFoundError):
        service.update(changed.model_copy(update={"id": "missing"}))
    with pytest.raises(ValueError, match="cannot be updated"):
        service.update(changed.model_copy(update={"meta": WorkflowMeta(version="3.0.0", category=DEFAULT)}))

    # A 'user' document aimed at a default workflow's id does not touch it (the row's category is 'default').
    default = service.get(shipped_defaults()[0].id)
    assert service.update(changed.model_copy(update={"id": default.workflow_id})) == default


def test_delete(service: WorkflowRecordsStorageBase) -> None:
    mine = create(service, "mine")
    other = create(service, "other")
    with pytest.raises(WorkflowNotFoundError):
        service.delete("missing")
    with pytest.raises(ValueError, match="cannot be deleted"):
        service.delete(shipped_defaults()[0].id)
    with pytest.raises(ValueError, match="cannot be deleted"):
        service.delete(shipped_defaults()[0].id, user_id="system")
    service.delete(mine.workflow_id, user_id="bob")  # not bob's: silently kept, as stock
    assert service.get(mine.workflow_id) == mine
    service.delete(mine.workflow_id, user_id="alice")
    with pytest.raises(WorkflowNotFoundError):
        service.get(mine.workflow_id)
    service.delete(other.workflow_id)  # unscoped (admin)
    assert listed(service, categories=[USER]) == []
    assert len(listed(service, categories=[DEFAULT])) == 26


def test_update_is_public_manages_the_shared_tag(service: WorkflowRecordsStorageBase) -> None:
    record = create(service, "wf", tags="a,b ,  ,c")
    time.sleep(0.002)
    public = service.update_is_public(record.workflow_id, True, user_id="alice")
    assert public.is_public is True and public.workflow.tags == "a, b, c, shared"
    assert public.updated_at > record.updated_at
    assert public == record.model_copy(
        update={
            "is_public": True,
            "updated_at": public.updated_at,
            "workflow": record.workflow.model_copy(update={"tags": "a, b, c, shared"}),
        }
    )
    assert service.get(record.workflow_id) == public
    assert listed(service, categories=[USER])[0] == as_list_item(public)

    again = service.update_is_public(record.workflow_id, True)
    assert again.workflow.tags == "a, b, c, shared" and again.is_public is True

    private = service.update_is_public(record.workflow_id, False, user_id="alice")
    assert private.is_public is False and private.workflow.tags == "a, b, c"

    empty = create(service, "no tags", tags="")
    assert service.update_is_public(empty.workflow_id, True).workflow.tags == "shared"
    assert service.update_is_public(empty.workflow_id, False).workflow.tags == ""

    # Not the owner: nothing changes and the current record comes back.
    current = service.get(record.workflow_id)
    assert service.update_is_public(record.workflow_id, True, user_id="bob") == current
    # Default workflows are never changed.
    default = service.get(shipped_defaults()[0].id)
    assert service.update_is_public(default.workflow_id, True) == default
    with pytest.raises(WorkflowNotFoundError):
        service.update_is_public("missing", True)


def test_update_opened_at(service: WorkflowRecordsStorageBase) -> None:
    record = create(service, "wf")
    service.update_opened_at(record.workflow_id, user_id="bob")  # not bob's
    assert service.get(record.workflow_id) == record
    service.update_opened_at(record.workflow_id, user_id="alice")
    opened = service.get(record.workflow_id)
    assert opened.opened_at is not None and STOCK_MS.match(str(opened.opened_at))
    assert opened.opened_at > record.created_at and opened.updated_at > record.updated_at
    assert opened == record.model_copy(update={"opened_at": opened.opened_at, "updated_at": opened.updated_at})
    time.sleep(0.002)
    service.update_opened_at(record.workflow_id)
    assert service.get(record.workflow_id).opened_at > opened.opened_at  # type: ignore[operator]

    default_id = shipped_defaults()[0].id
    service.update_opened_at(default_id, user_id="alice")  # scoped: defaults belong to 'system'
    assert service.get(default_id).opened_at is None
    service.update_opened_at(default_id)
    assert service.get(default_id).opened_at is not None
    service.update_opened_at("missing")  # no error, as stock


# -- get_many ---------------------------------------------------------------------------------------------------


@pytest.fixture()
def library(service: WorkflowRecordsStorageBase) -> dict[str, str]:
    """Six user workflows with distinct names, creation, update and opening times; name -> id."""
    names = ["beta", "Alpha", "alpha", "_under", "Ünicode", "Gamma"]
    made = {name: create(service, name).workflow_id for name in names}
    for name in ["alpha", "Gamma", "beta"]:  # update order
        wf = service.get(made[name]).workflow
        service.update(wf.model_copy(update={"notes": "edited"}))
        time.sleep(0.002)
    for name in ["Gamma", "_under"]:  # opening order
        service.update_opened_at(made[name])
        time.sleep(0.002)
    return made


def test_get_many_orderings(service: WorkflowRecordsStorageBase, library: dict[str, str]) -> None:
    def expect(names: list[str]) -> list[WorkflowRecordListItemDTO]:
        return [as_list_item(service.get(library[n])) for n in names]

    by_name = bytewise(list(library))  # SQLite's BINARY collation: upper case first, then '_', then letters
    assert by_name == ["Alpha", "Gamma", "_under", "alpha", "beta", "Ünicode"]
    created = ["beta", "Alpha", "alpha", "_under", "Ünicode", "Gamma"]
    updated = ["Alpha", "Ünicode", "alpha", "beta", "Gamma", "_under"]  # opening a workflow updates it too
    opened = ["Alpha", "alpha", "beta", "Ünicode", "Gamma", "_under"]  # never opened (NULL) first

    cases = {
        WorkflowRecordOrderBy.Name: by_name,
        WorkflowRecordOrderBy.CreatedAt: created,
        WorkflowRecordOrderBy.UpdatedAt: updated,
    }
    for order_by, names in cases.items():
        assert listed(service, order_by, ASC, [USER]) == expect(names), order_by
        assert listed(service, order_by, DESC, [USER]) == expect(names[::-1]), order_by

    asc = ids(listed(service, WorkflowRecordOrderBy.OpenedAt, ASC, [USER]))
    assert set(asc[:4]) == {library[n] for n in opened[:4]}  # NULLs first, in an order stock leaves open
    assert asc[4:] == [library["Gamma"], library["_under"]]
    desc = ids(listed(service, WorkflowRecordOrderBy.OpenedAt, DESC, [USER]))
    assert desc[:2] == [library["_under"], library["Gamma"]] and set(desc[2:]) == set(asc[:4])


def test_get_many_orders_by_is_public(service: WorkflowRecordsStorageBase) -> None:
    private = create(service, "private")
    public = create(service, "public", is_public=True)
    assert user_ids(service, order_by=WorkflowRecordOrderBy.IsPublic) == [private.workflow_id, public.workflow_id]
    assert user_ids(service, order_by=WorkflowRecordOrderBy.IsPublic, direction=DESC) == [
        public.workflow_id,
        private.workflow_id,
    ]


def test_get_many_pagination(service: WorkflowRecordsStorageBase, library: dict[str, str]) -> None:
    by_name = [library[n] for n in bytewise(list(library))]

    def page(page: int, per_page: int | None) -> tuple[list[str], int, int, int, int]:
        result = service.get_many(WorkflowRecordOrderBy.Name, ASC, [USER], page=page, per_page=per_page)
        return ids(result.items), result.page, result.per_page, result.pages, result.total

    assert page(0, 4) == (by_name[:4], 0, 4, 2, 6)
    assert page(1, 4) == (by_name[4:], 1, 4, 2, 6)
    assert page(2, 4) == ([], 2, 4, 2, 6)
    assert page(1, 3) == (by_name[3:], 1, 3, 2, 6)
    assert page(0, None) == (by_name, 0, 6, 1, 6)
    assert page(3, None) == (by_name, 3, 6, 1, 6)  # no pagination: the page number is ignored
    assert page(0, 0) == (by_name, 0, 6, 1, 6)
    # SQLite reads a negative OFFSET as zero and a negative LIMIT as "no limit"; pages is stock's arithmetic.
    assert page(-1, 4) == (by_name[:4], -1, 4, 2, 6)
    assert page(0, -1) == (by_name, 0, -1, -6, 6)
    assert page(2, -2) == (by_name, 2, -2, -3, 6)
    whole = service.get_many(WorkflowRecordOrderBy.Name, ASC, None, page=0, per_page=10)
    assert whole.total == 32 and whole.pages == 4 and len(whole.items) == 10


def test_get_many_filters(service: WorkflowRecordsStorageBase) -> None:
    a = create(service, "Portrait", description="Faces and people", tags="SDXL, portrait", user_id="alice")
    b = create(service, "landscape_v2", description="mountains 100%", tags="flux", user_id="alice", is_public=True)
    c = create(service, "Bob's thing", description="back\\slash", tags="", user_id="bob")
    d = create(service, "Café", description="ÉCLAIR", tags="sdxl,ünï", user_id="bob", is_public=True)
    service.update_opened_at(a.workflow_id)
    service.update_opened_at(d.workflow_id)
    defaults = {w.id: w for w in shipped_defaults()}

    def q(**kwargs: Any) -> set[str]:
        return set(ids(listed(service, **kwargs)))

    everyone = {a.workflow_id, b.workflow_id, c.workflow_id, d.workflow_id}
    assert q(categories=[USER]) == everyone
    assert q(categories=[USER, DEFAULT]) == q() == q(categories=[]) == everyone | set(defaults)
    assert q(categories=[DEFAULT]) == set(defaults)

    # tags: any of them, ASCII case-insensitive, each stripped, matched anywhere in the tag string
    assert q(categories=[USER], tags=["sdxl"]) == {a.workflow_id, d.workflow_id}
    assert q(categories=[USER], tags=[" FLUX ", "portrait"]) == {a.workflow_id, b.workflow_id}
    assert q(categories=[USER], tags=["ÜNÏ"]) == set()  # SQLite folds ASCII letters only
    assert q(categories=[USER], tags=["ünï"]) == {d.workflow_id}
    assert q(categories=[USER], tags=[]) == everyone
    assert q(tags=["wan2.2"]) == {i for i, w in defaults.items() if "wan2.2" in w.tags.lower()}

    # query: name, description or tags; stripped; stock's LIKE keeps '%' and '_' as wildcards, '\' literal
    assert q(categories=[USER], query="PORTRAIT") == {a.workflow_id}
    assert q(categories=[USER], query="  faces  ") == {a.workflow_id}
    assert q(categories=[USER], query="flux") == {b.workflow_id}
    assert q(categories=[USER], query="   ") == everyone
    assert q(categories=[USER], query="100%") == {b.workflow_id}
    assert q(categories=[USER], query="lands_ape") == {b.workflow_id}
    assert q(categories=[USER], query="o%t") == {a.workflow_id, b.workflow_id, c.workflow_id}
    assert q(categories=[USER], query="back\\slash") == {c.workflow_id}
    assert q(categories=[USER], query="café") == {d.workflow_id}
    assert q(categories=[USER], query="CAFÉ") == set()  # 'É' is not folded
    assert q(categories=[USER], query="éclair") == set()
    assert q(categories=[USER], query="ÉCLAIR") == {d.workflow_id}

    # opened or not
    assert q(categories=[USER], has_been_opened=True) == {a.workflow_id, d.workflow_id}
    assert q(categories=[USER], has_been_opened=False) == {b.workflow_id, c.workflow_id}
    assert q(has_been_opened=False) == {b.workflow_id, c.workflow_id} | set(defaults)

    # owner scope always includes the defaults; is_public narrows
    assert q(user_id="alice") == {a.workflow_id, b.workflow_id} | set(defaults)
    assert q(user_id="bob", categories=[USER]) == {c.workflow_id, d.workflow_id}
    assert q(user_id="nobody") == set(defaults)
    assert q(is_public=True) == {b.workflow_id, d.workflow_id}
    assert q(is_public=False) == {a.workflow_id, c.workflow_id} | set(defaults)
    assert q(user_id="alice", is_public=True) == {b.workflow_id}
    assert q(categories=[USER], tags=["sdxl"], query="caf", has_been_opened=True, user_id="bob") == {d.workflow_id}

    result = service.get_many(WorkflowRecordOrderBy.Name, ASC, [USER], per_page=1, tags=["sdxl"])
    assert (result.total, result.pages, len(result.items)) == (2, 2, 1)


# -- counts and tags --------------------------------------------------------------------------------------------


def test_counts_by_category(service: WorkflowRecordsStorageBase) -> None:
    a = create(service, "a", user_id="alice")
    create(service, "b", user_id="alice", is_public=True)
    create(service, "c", user_id="bob")
    service.update_opened_at(a.workflow_id)
    service.update_opened_at(shipped_defaults()[0].id)

    assert service.counts_by_category([USER, DEFAULT]) == {"user": 3, "default": 26}
    assert service.counts_by_category([DEFAULT]) == {"default": 26}
    assert service.counts_by_category([]) == {}
    assert service.counts_by_category([USER, DEFAULT], has_been_opened=True) == {"user": 1, "default": 1}
    assert service.counts_by_category([USER, DEFAULT], has_been_opened=False) == {"user": 2, "default": 25}
    assert service.counts_by_category([USER, DEFAULT], user_id="alice") == {"user": 2, "default": 26}
    assert service.counts_by_category([USER], user_id="nobody") == {"user": 0}
    assert service.counts_by_category([USER, DEFAULT], is_public=True) == {"user": 1, "default": 0}
    assert service.counts_by_category([USER, DEFAULT], is_public=False) == {"user": 2, "default": 26}
    assert service.counts_by_category([USER], user_id="bob", is_public=False, has_been_opened=False) == {"user": 1}


def test_counts_by_tag(service: WorkflowRecordsStorageBase) -> None:
    a = create(service, "a", tags="SDXL, portrait", user_id="alice")
    create(service, "b", tags="sdxl, shared", user_id="alice", is_public=True)
    create(service, "c", tags="flux", user_id="bob")
    service.update_opened_at(a.workflow_id)
    defaults = shipped_defaults()

    def in_defaults(tag: str) -> int:
        return sum(tag.lower() in w.tags.lower() for w in defaults)

    assert service.counts_by_tag([]) == {}
    assert service.counts_by_tag(["sdxl", " Flux ", "nothing", "%"]) == {
        "sdxl": 2 + in_defaults("sdxl"),
        " Flux ": 1 + in_defaults("flux"),
        "nothing": 0,
        "%": 3 + len(defaults),  # stock's LIKE: '%' matches every non-NULL tag string
    }
    assert service.counts_by_tag(["sdxl", "flux"], categories=[USER]) == {"sdxl": 2, "flux": 1}
    assert service.counts_by_tag(["sdxl"], categories=[DEFAULT]) == {"sdxl": in_defaults("sdxl")}
    assert service.counts_by_tag(["sdxl", "flux"], has_been_opened=True) == {"sdxl": 1, "flux": 0}
    assert service.counts_by_tag(["sdxl", "flux"], user_id="bob", categories=[USER]) == {"sdxl": 0, "flux": 1}
    assert service.counts_by_tag(["sdxl"], user_id="alice") == {"sdxl": 2 + in_defaults("sdxl")}
    assert service.counts_by_tag(["sdxl", "shared"], is_public=True) == {"sdxl": 1, "shared": 1}
    assert service.counts_by_tag(["sdxl"], is_public=False, categories=[USER]) == {"sdxl": 1}


def test_get_all_tags(service: WorkflowRecordsStorageBase) -> None:
    create(service, "a", tags=" zeta ,Alpha,, beta ", user_id="alice")
    create(service, "b", tags="beta, ünï", user_id="alice", is_public=True)
    create(service, "c", tags="", user_id="bob")
    create(service, "d", tags="Zeta", user_id="bob")
    default_tags = {t.strip() for w in shipped_defaults() for t in w.tags.split(",") if t.strip()}

    assert service.get_all_tags(categories=[USER]) == ["Alpha", "Zeta", "beta", "zeta", "ünï"]
    assert service.get_all_tags() == sorted(default_tags | {"Alpha", "Zeta", "beta", "zeta", "ünï"})
    assert service.get_all_tags(categories=[DEFAULT]) == sorted(default_tags)
    assert service.get_all_tags(categories=[USER], user_id="bob") == ["Zeta"]
    assert service.get_all_tags(user_id="nobody") == sorted(default_tags)
    assert service.get_all_tags(is_public=True) == ["beta", "ünï"]
    assert service.get_all_tags(categories=[USER], is_public=False) == ["Alpha", "Zeta", "beta", "zeta"]


# -- statement counts -------------------------------------------------------------------------------------------


@pytest.mark.postgres_only
def test_list_methods_run_a_bounded_number_of_statements(backend: Backend, service: WorkflowRecordsStorageBase) -> None:
    for i in range(12):
        service.create(make_workflow(f"wf {i}", tags=f"t{i}, common"), user_id="alice")
    counts: dict[str, list[int]] = {}
    for per_page in (2, 30):
        with count_statements(backend.engine) as log:
            result = service.get_many(
                WorkflowRecordOrderBy.Name, ASC, None, per_page=per_page, tags=["common", "t1"], query="wf"
            )
        assert len(result.items) == min(per_page, 12)
        counts.setdefault("get_many", []).append(log.count)
    for tags in (["common"], [f"t{i}" for i in range(12)]):
        with count_statements(backend.engine) as log:
            service.counts_by_tag(tags, categories=[USER, DEFAULT], user_id="alice")
        counts.setdefault("counts_by_tag", []).append(log.count)
    for categories in ([USER], [USER, DEFAULT]):
        with count_statements(backend.engine) as log:
            service.counts_by_category(categories, has_been_opened=False)
        counts.setdefault("counts_by_category", []).append(log.count)
    for categories in ([USER], None):
        with count_statements(backend.engine) as log:
            service.get_all_tags(categories=categories)
        counts.setdefault("get_all_tags", []).append(log.count)
    assert counts == {"get_many": [2, 2], "counts_by_tag": [1, 1], "counts_by_category": [1, 1], "get_all_tags": [1, 1]}
