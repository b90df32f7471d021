"""PostgreSQL implementation of ``BoardRecordStorageBase`` (stock: ``SqliteBoardRecordStorage``).

Boards are visible to their owner, to users they are shared with (``shared_boards``), to everyone when their
``board_visibility`` is ``shared`` or ``public``, and to admins always. Stock decides visibility from
``board_visibility`` only: the legacy ``is_public`` column is not consulted (migration 29 folded it into
``board_visibility``), and neither is it here.

Timestamps are handed out as the text stock's SQLite hands out. ``created_at`` is a millisecond default
(``STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW')``); ``updated_at`` starts as the same millisecond text but stock's
``tg_boards_updated_at`` trigger rewrites it with ``current_timestamp`` — *second* precision — on every update.
To reproduce that, :meth:`PostgresBoardRecordStorage.save` writes one instant into both columns, and a row
whose ``updated_at`` still equals ``created_at`` has never been updated (the ``updated_at`` trigger stamps a
later ``clock_timestamp()`` on every update, the ``ON DELETE SET NULL`` of a cover image included).
"""

from __future__ import annotations

from typing import Any

from invokeai.app.services.board_records.board_records_base import BoardRecordStorageBase
from invokeai.app.services.board_records.board_records_common import (
    BoardChanges,
    BoardRecord,
    BoardRecordDeleteException,
    BoardRecordNotFoundException,
    BoardRecordOrderBy,
    BoardRecordSaveException,
    deserialize_board_record,
)
from invokeai.app.services.shared.pagination import OffsetPaginatedResults
from invokeai.app.services.shared.sqlite.sqlite_common import SQLiteDirection
from invokeai.app.util.misc import uuid_string
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Row,
    Select,
    bindparam,
    delete,
    exists,
    false,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError

from invokeai_saas.db.convert import stock_ms, stock_seconds
from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.prepared import PreparedRead
from invokeai_saas.db.tables import boards, shared_boards

# Visibilities that make a board readable by every user (stock's ``IN ('shared', 'public')``).
_VISIBLE_TO_ALL = ("shared", "public")


def _stock_values(row: Row[Any]) -> dict[str, Any]:
    """A ``boards`` row as the dict stock builds from ``SELECT *`` (timestamps as SQLite's text)."""
    values = row._asdict()
    created_at = values["created_at"]
    updated_at = values["updated_at"]
    values["created_at"] = stock_ms(created_at)
    # Never updated: the insert's millisecond default. Updated: stock's trigger wrote ``current_timestamp``.
    values["updated_at"] = stock_ms(updated_at) if updated_at == created_at else stock_seconds(updated_at)
    values["deleted_at"] = stock_ms(values["deleted_at"])
    return values


def _name_key(ordered_by_lower: bool) -> ColumnElement[Any]:
    """Stock orders names with SQLite's BINARY collation (code point order), and ``get_all`` by ``LOWER()``,
    which in SQLite folds ASCII letters only. ``COLLATE "C"`` gives code point order for UTF-8 text, and
    ``lower()`` under the C collation folds ASCII only, so both orders match stock whatever the database's
    default collation."""
    name = boards.c.board_name.collate("C")
    return func.lower(name).collate("C") if ordered_by_lower else name


def _ordered(statement: Select[Any], order_by: BoardRecordOrderBy, direction: SQLiteDirection, lower: bool) -> Any:
    """Apply stock's ordering. Stock leaves ties in an undefined order; the board id breaks them here so that
    pages never overlap or skip a board."""
    key = boards.c.created_at if order_by == BoardRecordOrderBy.CreatedAt else _name_key(lower)
    if direction == SQLiteDirection.Descending:
        return statement.order_by(key.desc(), boards.c.board_id.desc())
    return statement.order_by(key.asc(), boards.c.board_id.asc())


def _visibility_filter(user_id: str, is_admin: bool, include_archived: bool) -> list[ColumnElement[bool]]:
    """Stock's ``WHERE``: admins see every board; others their own, those shared with them, and the
    ``shared``/``public`` ones. ``EXISTS`` replaces stock's ``LEFT JOIN shared_boards`` + ``DISTINCT``."""
    conditions: list[ColumnElement[bool]] = []
    if not is_admin:
        shared_with_user = exists().where(
            shared_boards.c.board_id == boards.c.board_id, shared_boards.c.user_id == user_id
        )
        conditions.append(
            or_(boards.c.user_id == user_id, shared_with_user, boards.c.board_visibility.in_(_VISIBLE_TO_ALL))
        )
    if not include_archived:
        # ``archived = 0`` in stock: a NULL ``archived`` is excluded as well.
        conditions.append(boards.c.archived == false())
    return conditions


# Read on every board route and access check: a prepared read (see ``invokeai_saas.db.prepared``).
_GET_BOARD = PreparedRead(select(boards).where(boards.c.board_id == bindparam("board_id")))


class PostgresBoardRecordStorage(BoardRecordStorageBase):
    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self._reads = autocommit_reads(engine)

    def delete(self, board_id: str) -> None:
        """Board images/videos memberships and shares go with the board (``ON DELETE CASCADE``); the images
        themselves stay. Deleting a board that does not exist is not an error, as in stock."""
        try:
            with self._engine.begin() as conn:
                conn.execute(delete(boards).where(boards.c.board_id == board_id))
        except Exception as e:
            raise BoardRecordDeleteException from e

    def save(self, board_name: str, user_id: str) -> BoardRecord:
        """Create a board owned by ``user_id``.

        ``created_at`` and ``updated_at`` get the same instant (stock's ``'NOW'`` is fixed within a statement),
        which is also how :func:`_stock_values` recognises a never-updated board. A missing ``board_name``
        yields ``BoardRecordNotFoundException`` as in stock, whose ``INSERT OR IGNORE`` silently drops a row
        that breaks ``NOT NULL`` and whose follow-up read then finds nothing."""
        if board_name is None:
            raise BoardRecordNotFoundException
        statement = (
            insert(boards)
            .values(
                board_id=uuid_string(),
                board_name=board_name,
                user_id=user_id,
                created_at=func.statement_timestamp(),
                updated_at=func.statement_timestamp(),
            )
            .returning(*boards.c)
        )
        try:
            with self._engine.begin() as conn:
                row = conn.execute(statement).one()
        except DBAPIError as e:
            raise BoardRecordSaveException from e
        return BoardRecord(**_stock_values(row))

    def get(self, board_id: str) -> BoardRecord:
        """Database errors propagate untranslated, as in stock: only a missing row means "not found" (callers
        treat not-found as a benign skip, which a failing database must not become)."""
        row = _GET_BOARD.first(self._engine, board_id=board_id)
        if row is None:
            raise BoardRecordNotFoundException
        return BoardRecord(**_stock_values(row))

    def update(self, board_id: str, changes: BoardChanges) -> BoardRecord:
        """Apply every given change in one statement (stock runs one ``UPDATE`` per field in one transaction).
        A database error (a cover image that does not exist) raises ``BoardRecordSaveException`` and changes
        nothing; an unknown board raises ``BoardRecordNotFoundException``."""
        values: dict[str, Any] = {}
        if changes.board_name is not None:
            values["board_name"] = changes.board_name
        if changes.cover_image_name is not None:
            values["cover_image_name"] = changes.cover_image_name
        if changes.archived is not None:
            values["archived"] = changes.archived
        if changes.board_visibility is not None:
            values["board_visibility"] = changes.board_visibility.value
        with self._engine.begin() as conn:
            if values:
                try:
                    row = conn.execute(
                        update(boards).where(boards.c.board_id == board_id).values(**values).returning(*boards.c)
                    ).one_or_none()
                except DBAPIError as e:
                    raise BoardRecordSaveException from e
            else:
                row = self._get_row(conn, board_id)
        if row is None:
            raise BoardRecordNotFoundException
        return BoardRecord(**_stock_values(row))

    def get_many(
        self,
        user_id: str,
        is_admin: bool,
        order_by: BoardRecordOrderBy,
        direction: SQLiteDirection,
        offset: int = 0,
        limit: int = 10,
        include_archived: bool = False,
    ) -> OffsetPaginatedResults[BoardRecord]:
        """One page of the visible boards plus their total: two statements in one ``REPEATABLE READ``
        snapshot, so the total always describes the data the page came from (stock gets the same from its
        process-wide lock).

        Ordered by ``board_name`` in code point order (stock's plain ``ORDER BY board_name``, unlike
        ``get_all``'s ``LOWER()``). As in SQLite, a negative ``limit`` means no limit and a negative
        ``offset`` means zero; the result echoes both as given."""
        conditions = _visibility_filter(user_id, is_admin, include_archived)
        page = _ordered(select(boards).where(*conditions), order_by, direction, lower=False)
        page = page.limit(limit if limit >= 0 else None).offset(max(offset, 0))
        total = select(func.count()).select_from(boards).where(*conditions)
        with self._reads.connect() as conn:
            conn.execution_options(isolation_level="REPEATABLE READ")
            rows = conn.execute(page).all()
            count = conn.execute(total).scalar_one()
        items = [deserialize_board_record(_stock_values(row)) for row in rows]
        return OffsetPaginatedResults[BoardRecord](items=items, offset=offset, limit=limit, total=count)

    def get_all(
        self,
        user_id: str,
        is_admin: bool,
        order_by: BoardRecordOrderBy,
        direction: SQLiteDirection,
        include_archived: bool = False,
    ) -> list[BoardRecord]:
        """Every visible board; by name means case-insensitively for ASCII letters (stock's ``LOWER()``)."""
        conditions = _visibility_filter(user_id, is_admin, include_archived)
        statement = _ordered(select(boards).where(*conditions), order_by, direction, lower=True)
        with self._reads.connect() as conn:
            rows = conn.execute(statement).all()
        return [deserialize_board_record(_stock_values(row)) for row in rows]

    @staticmethod
    def _get_row(conn: Connection, board_id: str) -> Row[Any] | None:
        return conn.execute(select(boards).where(boards.c.board_id == board_id)).one_or_none()
