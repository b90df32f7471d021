"""PostgreSQL implementation of ``SystemPromptRecordsStorageBase`` (stock: ``SqliteSystemPromptRecordsStorage``).

The default prompts are seeded by migration ``0002`` with stock's ids, as stock's own migration seeds them.
Times reach the DTO as stock's millisecond text parsed by stock's validator, so ``created_at``/``updated_at`` are
the same naive UTC datetimes, truncated to milliseconds, that stock hands out. Listings sort by ``LOWER(name)``
as SQLite computes it (ASCII letters folded only, then byte order); ties, undefined in stock, fall back to
creation order.
"""

from __future__ import annotations

from typing import Any

from invokeai.app.services.system_prompt_records.system_prompt_records_base import SystemPromptRecordsStorageBase
from invokeai.app.services.system_prompt_records.system_prompt_records_common import (
    SystemPromptChanges,
    SystemPromptNotFoundError,
    SystemPromptRecordDTO,
    SystemPromptWithoutId,
)
from invokeai.app.util.misc import uuid_string
from sqlalchemy import ColumnElement, Engine, Row, delete, func, insert, select, update

from invokeai_saas.db.convert import stock_ms
from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.tables import system_prompts

_sp = system_prompts

_DTO_COLUMNS = (
    _sp.c.id,
    _sp.c.name,
    _sp.c.content,
    _sp.c.user_id,
    _sp.c.is_public,
    _sp.c.created_at,
    _sp.c.updated_at,
)


def _dto(row: Row[Any]) -> SystemPromptRecordDTO:
    data = dict(row._mapping)
    data["created_at"] = stock_ms(data["created_at"])
    data["updated_at"] = stock_ms(data["updated_at"])
    return SystemPromptRecordDTO.from_dict(data)


def _not_found(system_prompt_id: str) -> SystemPromptNotFoundError:
    return SystemPromptNotFoundError(f"System prompt with id {system_prompt_id} not found")


def _scoped(system_prompt_id: str, user_id: str | None) -> list[ColumnElement[bool]]:
    conditions = [_sp.c.id == system_prompt_id]
    if user_id is not None:
        conditions.append(_sp.c.user_id == user_id)
    return conditions


class PostgresSystemPromptRecordsStorage(SystemPromptRecordsStorageBase):
    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self._reads = autocommit_reads(engine)

    def get(self, system_prompt_id: str) -> SystemPromptRecordDTO:
        with self._reads.connect() as conn:
            row = conn.execute(select(*_DTO_COLUMNS).where(_sp.c.id == system_prompt_id)).one_or_none()
        if row is None:
            raise _not_found(system_prompt_id)
        return _dto(row)

    def create(
        self,
        system_prompt: SystemPromptWithoutId,
        user_id: str,
        is_public: bool = False,
    ) -> SystemPromptRecordDTO:
        # One clock reading for both times: a new prompt's created_at equals its updated_at, as in SQLite.
        now = func.statement_timestamp()
        statement = (
            insert(_sp)
            .values(
                id=uuid_string(),
                name=system_prompt.name,
                content=system_prompt.content,
                user_id=user_id,
                is_public=is_public,
                created_at=now,
                updated_at=now,
            )
            .returning(*_DTO_COLUMNS)
        )
        with self._engine.begin() as conn:
            row = conn.execute(statement).one()
        return _dto(row)

    def update(
        self,
        system_prompt_id: str,
        changes: SystemPromptChanges,
        user_id: str | None = None,
    ) -> SystemPromptRecordDTO:
        """Raises ``SystemPromptNotFoundError`` when the id is missing or (scoped) not the caller's, even when
        there is nothing to change, as stock; all changed fields are written by one UPDATE."""
        values: dict[str, Any] = {}
        if changes.name is not None:
            values["name"] = changes.name
        if changes.content is not None:
            values["content"] = changes.content
        if changes.is_public is not None:
            values["is_public"] = changes.is_public
        if values:
            statement = update(_sp).where(*_scoped(system_prompt_id, user_id)).values(**values).returning(*_DTO_COLUMNS)
        else:
            statement = select(*_DTO_COLUMNS).where(*_scoped(system_prompt_id, user_id))
        with self._engine.begin() as conn:
            row = conn.execute(statement).one_or_none()
        if row is None:
            raise _not_found(system_prompt_id)
        return _dto(row)

    def delete(self, system_prompt_id: str, user_id: str | None = None) -> None:
        """Raises ``SystemPromptNotFoundError`` when nothing was deleted (missing, or not the caller's)."""
        with self._engine.begin() as conn:
            deleted = conn.execute(
                delete(_sp).where(*_scoped(system_prompt_id, user_id)).returning(_sp.c.id)
            ).one_or_none()
        if deleted is None:
            raise _not_found(system_prompt_id)

    def get_many(self, user_id: str | None = None) -> list[SystemPromptRecordDTO]:
        statement = select(*_DTO_COLUMNS).order_by(func.lower(_sp.c.name.collate("C")), _sp.c.created_at, _sp.c.id)
        if user_id is not None:
            statement = statement.where((_sp.c.user_id == user_id) | _sp.c.is_public.is_(True))
        with self._reads.connect() as conn:
            return [_dto(row) for row in conn.execute(statement)]
