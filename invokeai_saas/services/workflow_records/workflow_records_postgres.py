"""PostgreSQL implementation of ``WorkflowRecordsStorageBase`` (stock: ``SqliteWorkflowRecordsStorage``).

The workflow document lives in a ``jsonb`` column with stored generated columns (``category``, ``name``,
``description``, ``tags``) extracted from it, as stock's SQLite table has virtual ones. Documents are written as
the text stock writes (``model_dump_json()``) and read back as text through the very parser stock uses
(``WorkflowRecordDTO.from_dict``), so the DTOs are built the same way; only the key order inside the document can
differ (``jsonb`` keeps its own order), which no parsed value depends on.

SQLite semantics reproduced on purpose:

- ``LIKE`` in SQLite is case-insensitive for ASCII letters only, and stock does not escape ``%``/``_`` in the
  caller's search text (they stay wildcards) nor declares an escape character (a backslash is literal). Here:
  ``ILIKE`` under the ``"C"`` collation (which folds ASCII only) with ``ESCAPE ''``.
- ``ORDER BY name`` compares bytes (SQLite's ``BINARY`` collation): ``COLLATE "C"``, whatever the database's
  default collation.
- SQLite sorts ``NULL`` before every value, so ``opened_at ASC`` puts never-opened workflows first and ``DESC``
  last; PostgreSQL does the opposite unless told (``NULLS FIRST`` / ``NULLS LAST``).
- A negative ``LIMIT`` means "no limit" and a negative ``OFFSET`` means zero in SQLite; PostgreSQL refuses both.
- Times are handed out as stock's millisecond text (``stock_ms``).

Ties in the requested order are left undefined by stock; they are broken here by ``created_at`` then
``workflow_id`` in the requested direction (what SQLite's index scans give in practice: insertion order), which
also keeps pages stable between requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import invokeai.app.services.workflow_records as stock_workflow_records
from invokeai.app.services.invoker import Invoker
from invokeai.app.services.shared.pagination import PaginatedResults
from invokeai.app.services.shared.sqlite.sqlite_common import SQLiteDirection
from invokeai.app.services.workflow_records.workflow_records_base import WorkflowRecordsStorageBase
from invokeai.app.services.workflow_records.workflow_records_common import (
    WORKFLOW_LIBRARY_DEFAULT_USER_ID,
    Workflow,
    WorkflowCategory,
    WorkflowNotFoundError,
    WorkflowRecordDTO,
    WorkflowRecordListItemDTO,
    WorkflowRecordListItemDTOValidator,
    WorkflowRecordOrderBy,
    WorkflowValidator,
    WorkflowWithoutID,
)
from invokeai.app.util.misc import uuid_string
from pydantic import ValidationError
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Row,
    Text,
    UnaryExpression,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB

from invokeai_saas.db.convert import stock_ms
from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.tables import workflow_library

DEFAULT_WORKFLOWS_DIR = Path(stock_workflow_records.__file__).parent / "default_workflows"
"""The default workflows shipped with InvokeAI, synced into the library at start as stock does."""

# Serialises the default-workflow sync of processes starting at the same time (transaction-scoped advisory lock).
_SYNC_LOCK_NAME = "invokeai_saas:workflow_library:sync_default_workflows"

_wl = workflow_library

_RECORD_COLUMNS = (
    _wl.c.workflow_id,
    cast(_wl.c.workflow, Text).label("workflow"),
    _wl.c.name,
    _wl.c.created_at,
    _wl.c.updated_at,
    _wl.c.opened_at,
    _wl.c.user_id,
    _wl.c.is_public,
)

_LIST_ITEM_COLUMNS = (
    _wl.c.workflow_id,
    _wl.c.category,
    _wl.c.name,
    _wl.c.description,
    _wl.c.created_at,
    _wl.c.updated_at,
    _wl.c.opened_at,
    _wl.c.tags,
    _wl.c.user_id,
    _wl.c.is_public,
)

_ORDER_COLUMNS: dict[WorkflowRecordOrderBy, ColumnElement[Any]] = {
    WorkflowRecordOrderBy.CreatedAt: _wl.c.created_at,
    WorkflowRecordOrderBy.UpdatedAt: _wl.c.updated_at,
    WorkflowRecordOrderBy.OpenedAt: _wl.c.opened_at,
    WorkflowRecordOrderBy.Name: _wl.c.name.collate("C"),
    WorkflowRecordOrderBy.IsPublic: _wl.c.is_public,
}


def _jsonb(document: str) -> ColumnElement[Any]:
    """The JSON text stock would store, as ``jsonb`` (a str bound to a JSONB column would be encoded again)."""
    return cast(literal(document, Text), JSONB)


def _sqlite_like(column: ColumnElement[Any], pattern: str) -> ColumnElement[bool]:
    """SQLite's default ``LIKE``: ASCII-only case folding, ``%``/``_`` wildcards, no escape character."""
    return column.collate("C").ilike(pattern, escape="")


def _record(row: Row[Any]) -> WorkflowRecordDTO:
    """Build the DTO exactly as stock does: its own ``from_dict`` over the row, times as stock's text."""
    data = dict(row._mapping)
    data["created_at"] = stock_ms(data["created_at"])
    data["updated_at"] = stock_ms(data["updated_at"])
    data["opened_at"] = stock_ms(data["opened_at"])
    return WorkflowRecordDTO.from_dict(data)


def _list_item(row: Row[Any]) -> WorkflowRecordListItemDTO:
    data = dict(row._mapping)
    data["created_at"] = stock_ms(data["created_at"])
    data["updated_at"] = stock_ms(data["updated_at"])
    data["opened_at"] = stock_ms(data["opened_at"])
    return WorkflowRecordListItemDTOValidator.validate_python(data)


def _scope(
    categories: Sequence[WorkflowCategory] | None,
    has_been_opened: bool | None,
    user_id: str | None,
    is_public: bool | None,
) -> list[ColumnElement[bool]]:
    """The filters every listing/counting method shares, with stock's semantics for each argument."""
    conditions: list[ColumnElement[bool]] = []
    if categories:
        assert all(c in WorkflowCategory for c in categories)
        conditions.append(_wl.c.category.in_([c.value for c in categories]))
    if has_been_opened:
        conditions.append(_wl.c.opened_at.is_not(None))
    elif has_been_opened is False:
        conditions.append(_wl.c.opened_at.is_(None))
    if user_id is not None:
        # Scope to the given user but always include default workflows.
        conditions.append(or_(_wl.c.user_id == user_id, _wl.c.category == WorkflowCategory.Default.value))
    if is_public is True:
        conditions.append(_wl.c.is_public.is_(True))
    elif is_public is False:
        conditions.append(_wl.c.is_public.is_(False))
    return conditions


def _owned_user_workflow(workflow_id: str, user_id: str | None) -> list[ColumnElement[bool]]:
    """Stock's write scope: only ``user`` workflows, and only the caller's when ``user_id`` is given."""
    conditions = [_wl.c.workflow_id == workflow_id, _wl.c.category == WorkflowCategory.User.value]
    if user_id is not None:
        conditions.append(_wl.c.user_id == user_id)
    return conditions


class PostgresWorkflowRecordsStorage(WorkflowRecordsStorageBase):
    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self._reads = autocommit_reads(engine)

    def start(self, invoker: Invoker) -> None:
        self._invoker = invoker
        self._sync_default_workflows()

    # -- reads ----------------------------------------------------------------------------------------------

    def get(self, workflow_id: str) -> WorkflowRecordDTO:
        with self._reads.connect() as conn:
            return self._get(conn, workflow_id)

    def get_by_ids(self, workflow_ids: list[str]) -> dict[str, WorkflowRecordDTO]:
        """The full records of the given ids that exist, in one statement: the workflow list route needs every
        listed workflow's document, which stock fetches with one ``get`` per row."""
        if not workflow_ids:
            return {}
        with self._reads.connect() as conn:
            rows = conn.execute(select(*_RECORD_COLUMNS).where(_wl.c.workflow_id.in_(workflow_ids)))
            records = [_record(row) for row in rows]
        return {record.workflow_id: record for record in records}

    @staticmethod
    def _get(conn: Connection, workflow_id: str, for_update: bool = False) -> WorkflowRecordDTO:
        statement = select(*_RECORD_COLUMNS).where(_wl.c.workflow_id == workflow_id)
        if for_update:
            statement = statement.with_for_update()
        row = conn.execute(statement).one_or_none()
        if row is None:
            raise WorkflowNotFoundError(f"Workflow with id {workflow_id} not found")
        return _record(row)

    def get_many(
        self,
        order_by: WorkflowRecordOrderBy,
        direction: SQLiteDirection,
        categories: list[WorkflowCategory] | None,
        page: int = 0,
        per_page: int | None = None,
        query: str | None = None,
        tags: list[str] | None = None,
        has_been_opened: bool | None = None,
        user_id: str | None = None,
        is_public: bool | None = None,
    ) -> PaginatedResults[WorkflowRecordListItemDTO]:
        assert order_by in WorkflowRecordOrderBy
        assert direction in SQLiteDirection
        conditions = _scope(categories, has_been_opened, user_id, is_public)
        if tags:
            # Tags are one free-form string in the document: any tag occurring in it matches.
            conditions.append(or_(*(_sqlite_like(_wl.c.tags, f"%{t.strip()}%") for t in tags)))
        stripped_query = query.strip() if query else None
        if stripped_query:
            wildcard = f"%{stripped_query}%"
            conditions.append(
                or_(
                    _sqlite_like(_wl.c.name, wildcard),
                    _sqlite_like(_wl.c.description, wildcard),
                    _sqlite_like(_wl.c.tags, wildcard),
                )
            )

        descending = SQLiteDirection(direction) is SQLiteDirection.Descending
        statement = select(*_LIST_ITEM_COLUMNS).where(*conditions).order_by(*self._ordering(order_by, descending))
        if per_page:
            # SQLite reads a negative LIMIT as "no limit" and a negative OFFSET as zero.
            if per_page > 0:
                statement = statement.limit(per_page)
            statement = statement.offset(max(page * per_page, 0))
        count_statement = select(func.count()).select_from(_wl).where(*conditions)

        with self._reads.connect() as conn:
            workflows = [_list_item(row) for row in conn.execute(statement)]
            total = conn.execute(count_statement).scalar_one()

        if per_page:
            pages = total // per_page + (total % per_page > 0)
        else:
            pages = 1  # If no pagination, there is only one page
        return PaginatedResults(
            items=workflows,
            page=page,
            per_page=per_page if per_page else total,
            pages=pages,
            total=total,
        )

    @staticmethod
    def _ordering(order_by: WorkflowRecordOrderBy, descending: bool) -> list[UnaryExpression[Any]]:
        terms: list[UnaryExpression[Any]] = []
        for column in (_ORDER_COLUMNS[order_by], _wl.c.created_at, _wl.c.workflow_id):
            # NULLs sort first ascending and last descending, as in SQLite (only opened_at can be NULL).
            terms.append(column.desc().nulls_last() if descending else column.asc().nulls_first())
        return terms

    def counts_by_tag(
        self,
        tags: list[str],
        categories: list[WorkflowCategory] | None = None,
        has_been_opened: bool | None = None,
        user_id: str | None = None,
        is_public: bool | None = None,
    ) -> dict[str, int]:
        """All tags counted in one statement (stock runs one query per tag)."""
        if not tags:
            return {}
        counts = [
            func.count().filter(_sqlite_like(_wl.c.tags, f"%{tag.strip()}%")).label(f"c{i}")
            for i, tag in enumerate(tags)
        ]
        statement = select(*counts).select_from(_wl).where(*_scope(categories, has_been_opened, user_id, is_public))
        with self._reads.connect() as conn:
            row = conn.execute(statement).one()
        return {tag: row[i] for i, tag in enumerate(tags)}

    def counts_by_category(
        self,
        categories: list[WorkflowCategory],
        has_been_opened: bool | None = None,
        user_id: str | None = None,
        is_public: bool | None = None,
    ) -> dict[str, int]:
        """All categories counted in one statement (stock runs one query per category)."""
        if not categories:
            return {}
        counts = [
            func.count().filter(_wl.c.category == category.value).label(f"c{i}")
            for i, category in enumerate(categories)
        ]
        statement = select(*counts).select_from(_wl).where(*_scope(categories, has_been_opened, user_id, is_public))
        with self._reads.connect() as conn:
            row = conn.execute(statement).one()
        return {category.value: row[i] for i, category in enumerate(categories)}

    def get_all_tags(
        self,
        categories: list[WorkflowCategory] | None = None,
        user_id: str | None = None,
        is_public: bool | None = None,
    ) -> list[str]:
        """Distinct tag strings come from the database; splitting them stays in Python so whitespace stripping is
        exactly ``str.strip`` (PostgreSQL's ``trim`` strips spaces only)."""
        conditions = [_wl.c.tags.is_not(None), _wl.c.tags != "", *_scope(categories, None, user_id, is_public)]
        statement = select(_wl.c.tags).distinct().where(*conditions)
        with self._reads.connect() as conn:
            rows = conn.execute(statement).scalars().all()
        all_tags: set[str] = set()
        for tags_value in rows:
            for tag in tags_value.split(","):
                tag_stripped = tag.strip()
                if tag_stripped:
                    all_tags.add(tag_stripped)
        return sorted(all_tags)

    # -- writes ---------------------------------------------------------------------------------------------

    def create(
        self,
        workflow: WorkflowWithoutID,
        user_id: str = WORKFLOW_LIBRARY_DEFAULT_USER_ID,
        is_public: bool = False,
    ) -> WorkflowRecordDTO:
        if workflow.meta.category is WorkflowCategory.Default:
            raise ValueError("Default workflows cannot be created via this method")
        workflow_with_id = Workflow(**workflow.model_dump(), id=uuid_string())
        # One timestamp for both columns: SQLite's defaults read the same 'NOW' within a statement, so a new
        # record's created_at equals its updated_at there; two clock_timestamp() defaults could differ.
        now = func.statement_timestamp()
        statement = (
            insert(_wl)
            .values(
                workflow_id=workflow_with_id.id,
                workflow=_jsonb(workflow_with_id.model_dump_json()),
                user_id=user_id,
                is_public=is_public,
                created_at=now,
                updated_at=now,
            )
            .returning(*_RECORD_COLUMNS)
        )
        with self._engine.begin() as conn:
            row = conn.execute(statement).one()
        return _record(row)

    def update(self, workflow: Workflow, user_id: str | None = None) -> WorkflowRecordDTO:
        """Only the owner's (or, unscoped, any) ``user`` workflow is changed; like stock, the record is returned
        whether or not the update matched, and a missing id raises ``WorkflowNotFoundError``."""
        if workflow.meta.category is WorkflowCategory.Default:
            raise ValueError("Default workflows cannot be updated")
        statement = (
            update(_wl)
            .where(*_owned_user_workflow(workflow.id, user_id))
            .values(workflow=_jsonb(workflow.model_dump_json()))
            .returning(*_RECORD_COLUMNS)
        )
        with self._engine.begin() as conn:
            row = conn.execute(statement).one_or_none()
            return _record(row) if row is not None else self._get(conn, workflow.id)

    def delete(self, workflow_id: str, user_id: str | None = None) -> None:
        """Missing id: ``WorkflowNotFoundError``; default workflow: ``ValueError``; someone else's workflow (when
        scoped): silently left alone, as stock."""
        with self._engine.begin() as conn:
            category = conn.execute(
                select(_wl.c.category).where(_wl.c.workflow_id == workflow_id).with_for_update()
            ).scalar_one_or_none()
            if category is None:
                raise WorkflowNotFoundError(f"Workflow with id {workflow_id} not found")
            if category == WorkflowCategory.Default.value:
                raise ValueError("Default workflows cannot be deleted")
            conn.execute(delete(_wl).where(*_owned_user_workflow(workflow_id, user_id)))

    def update_is_public(self, workflow_id: str, is_public: bool, user_id: str | None = None) -> WorkflowRecordDTO:
        """Sets ``is_public`` and keeps the ``shared`` tag in step with it, as stock.

        Stock reads the document, edits its tags and writes it back in two transactions; here the row is locked
        (``FOR UPDATE``) between the read and the write, so a concurrent edit of the same workflow cannot be lost.
        """
        with self._engine.begin() as conn:
            record = self._get(conn, workflow_id, for_update=True)
            workflow = record.workflow
            # Manage "shared" tag: add when public, remove when private
            tags_list = [t.strip() for t in workflow.tags.split(",") if t.strip()] if workflow.tags else []
            if is_public and "shared" not in tags_list:
                tags_list.append("shared")
            elif not is_public and "shared" in tags_list:
                tags_list.remove("shared")
            updated_workflow = workflow.model_copy(update={"tags": ", ".join(tags_list)})
            row = conn.execute(
                update(_wl)
                .where(*_owned_user_workflow(workflow_id, user_id))
                .values(workflow=_jsonb(updated_workflow.model_dump_json()), is_public=is_public)
                .returning(*_RECORD_COLUMNS)
            ).one_or_none()
        return _record(row) if row is not None else record

    def update_opened_at(self, workflow_id: str, user_id: str | None = None) -> None:
        conditions = [_wl.c.workflow_id == workflow_id]
        if user_id is not None:
            conditions.append(_wl.c.user_id == user_id)
        with self._engine.begin() as conn:
            conn.execute(update(_wl).where(*conditions).values(opened_at=func.clock_timestamp()))

    # -- default workflows ----------------------------------------------------------------------------------

    def _sync_default_workflows(self) -> None:
        """Make the library's default workflows exactly the ones shipped in ``default_workflows/``: add missing
        ones, rewrite changed ones, delete obsolete ones, leave unchanged ones alone (stock's algorithm).

        Several API processes may start at once against one database: the whole sync runs in one transaction
        under an advisory lock, so they take turns and every one after the first finds nothing to do. A stored
        default workflow stock could not parse makes stock's start fail; here it is simply rewritten.
        """
        workflows_from_file = self._load_default_workflows()
        file_ids = [w.id for w in workflows_from_file]
        logger = self._invoker.services.logger
        with self._engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(_SYNC_LOCK_NAME))))
            rows = conn.execute(
                select(_wl.c.workflow_id, _wl.c.category, _wl.c.name, cast(_wl.c.workflow, Text)).where(
                    or_(_wl.c.workflow_id.in_(file_ids), _wl.c.category == WorkflowCategory.Default.value)
                )
            ).all()
            stored = {row[0]: row[3] for row in rows}

            workflows_to_add: list[Workflow] = []
            workflows_to_update: list[Workflow] = []
            for workflow in workflows_from_file:
                if workflow.id not in stored:
                    logger.debug(f"Adding missing default workflow {workflow.name} ({workflow.id})")
                    workflows_to_add.append(workflow)
                elif self._parse_or_none(stored[workflow.id]) != workflow:
                    logger.debug(f"Updating library workflow {workflow.name} ({workflow.id})")
                    workflows_to_update.append(workflow)

            obsolete_ids: list[str] = []
            for workflow_id, category, name, _ in rows:
                if category == WorkflowCategory.Default.value and workflow_id not in file_ids:
                    logger.debug(f"Deleting obsolete default workflow {name} ({workflow_id})")
                    obsolete_ids.append(workflow_id)
            if obsolete_ids:
                conn.execute(delete(_wl).where(_wl.c.workflow_id.in_(obsolete_ids)))
            if workflows_to_add:
                now = func.statement_timestamp()
                conn.execute(
                    insert(_wl).values(
                        workflow_id=bindparam("new_id", type_=Text),
                        workflow=cast(bindparam("document", type_=Text), JSONB),
                        created_at=now,
                        updated_at=now,
                    ),
                    [{"new_id": w.id, "document": w.model_dump_json()} for w in workflows_to_add],
                )
            for workflow in workflows_to_update:
                conn.execute(
                    update(_wl)
                    .where(_wl.c.workflow_id == workflow.id)
                    .values(workflow=_jsonb(workflow.model_dump_json()))
                )

    @staticmethod
    def _load_default_workflows() -> list[Workflow]:
        workflows: list[Workflow] = []
        for path in DEFAULT_WORKFLOWS_DIR.glob("*.json"):
            workflow = WorkflowValidator.validate_json(path.read_bytes())
            assert workflow.id.startswith("default_"), (
                f'Invalid default workflow ID (must start with "default_"): {workflow.id}'
            )
            assert workflow.meta.category is WorkflowCategory.Default, (
                f"Invalid default workflow category: {workflow.meta.category}"
            )
            workflows.append(workflow)
        return workflows

    @staticmethod
    def _parse_or_none(document: str) -> Workflow | None:
        try:
            return WorkflowValidator.validate_json(document)
        except ValidationError:
            return None
