"""PostgreSQL implementation of ``VideoRecordStorageBase`` (stock: ``SqliteVideoRecordStorage``).

The video gallery mirrors the image gallery (see ``image_records_postgres``): each list is one or two
statements whatever the page or library size, with equality filters on ``videos``, board membership probed
through ``board_videos``' primary key with ``EXISTS``/``NOT EXISTS`` (stock's ``LEFT JOIN`` on that primary
key selects the same rows), and stock's own order — ``starred DESC``, ``created_at``, ``video_name`` — on bare
columns so an index — ``(user_id, video_category, is_intermediate, starred DESC NULLS LAST, created_at DESC,
video_name DESC)``, which the schema does not have yet — can serve it without a sort.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from invokeai.app.invocations.fields import MetadataField, MetadataFieldValidator
from invokeai.app.services.image_records.image_records_common import ImageCategory, ResourceOrigin
from invokeai.app.services.invoker import Invoker
from invokeai.app.services.shared.pagination import OffsetPaginatedResults
from invokeai.app.services.shared.sqlite.sqlite_common import SQLiteDirection
from invokeai.app.services.video_records.video_records_base import VideoRecordStorageBase
from invokeai.app.services.video_records.video_records_common import (
    VideoNamesResult,
    VideoRecord,
    VideoRecordChanges,
    VideoRecordDeleteException,
    VideoRecordNotFoundException,
    VideoRecordSaveException,
    deserialize_video_record,
)
from sqlalchemy import (
    ColumnElement,
    Engine,
    Row,
    UnaryExpression,
    any_,
    asc,
    delete,
    desc,
    exists,
    false,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError

from invokeai_saas.db.convert import stock_ms
from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.tables import board_videos, videos
from invokeai_saas.services.image_records.media_sql import (
    created_at_result,
    search_pattern,
    sqlite_like,
    sqlite_limit,
    sqlite_offset,
    stock_ms_text,
    text_array,
)

# The columns of stock's VIDEO_DTO_COLS, in its order.
_DTO_COLUMNS = (
    videos.c.video_name,
    videos.c.video_origin,
    videos.c.video_category,
    videos.c.width,
    videos.c.height,
    videos.c.duration,
    videos.c.fps,
    videos.c.session_id,
    videos.c.node_id,
    videos.c.has_workflow,
    videos.c.is_intermediate,
    videos.c.created_at,
    videos.c.updated_at,
    videos.c.deleted_at,
    videos.c.starred,
    videos.c.video_subfolder,
)


def _to_record(row: Row[Any]) -> VideoRecord:
    """Stock's DTO from a row: the timestamps as the millisecond text SQLite stores (and stock hands out)."""
    values = dict(row._mapping)
    for key in ("created_at", "updated_at", "deleted_at"):
        values[key] = stock_ms(values[key])
    return deserialize_video_record(values)


def _order_by(starred_first: bool, order_dir: SQLiteDirection) -> list[UnaryExpression[Any]]:
    """Stock's order. ``NULLS LAST`` reproduces SQLite, where NULL sorts lowest, for a ``starred`` saved as
    ``None``."""
    direction = asc if order_dir == SQLiteDirection.Ascending else desc
    keys: list[UnaryExpression[Any]] = []
    if starred_first:
        keys.append(videos.c.starred.desc().nulls_last())
    keys += [direction(videos.c.created_at), direction(videos.c.video_name)]
    return keys


def _conditions(
    *,
    video_origin: ResourceOrigin | None,
    categories: list[ImageCategory] | None,
    is_intermediate: bool | None,
    board_id: str | None,
    search_term: str | None,
    user_id: str | None,
    is_admin: bool,
) -> list[ColumnElement[bool]]:
    """The filters ``get_many`` and ``get_video_names`` share, as stock builds them.

    ``board_id="none"`` means videos on no board, limited to the caller's own unless admin; a real board id
    means that board's videos whoever owns them (the router checks board access); no board means the caller's
    own videos unless admin. One requested category is bound as ``=`` (not ``IN``) so an index led by
    ``(user_id, video_category, ...)`` still returns rows in sort order.
    """
    conditions: list[ColumnElement[bool]] = []
    if video_origin is not None:
        conditions.append(videos.c.video_origin == video_origin.value)
    if categories is not None:
        values = sorted({ImageCategory(c).value for c in categories})
        if len(values) == 1:
            conditions.append(videos.c.video_category == values[0])
        else:
            conditions.append(videos.c.video_category == any_(text_array(values)))
    if is_intermediate is not None:
        conditions.append(videos.c.is_intermediate == is_intermediate)
    on_board = board_videos.c.video_name == videos.c.video_name
    owner = [videos.c.user_id == user_id] if user_id is not None and not is_admin else []
    if board_id == "none":
        conditions += [~exists().where(on_board), *owner]
    elif board_id is not None:
        conditions.append(exists().where(on_board, board_videos.c.board_id == board_id))
    else:
        conditions += owner
    if search_term:
        pattern = search_pattern(search_term)
        conditions.append(
            or_(sqlite_like(videos.c.metadata, pattern), sqlite_like(stock_ms_text(videos.c.created_at), pattern))
        )
    return conditions


class PostgresVideoRecordStorage(VideoRecordStorageBase):
    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self._reads = autocommit_reads(engine)

    def start(self, invoker: Invoker) -> None:
        self._invoker = invoker

    def get(self, video_name: str) -> VideoRecord:
        # As stock: a storage error propagates; only a positively absent row is "not found".
        with self._reads.connect() as conn:
            row = conn.execute(select(*_DTO_COLUMNS).where(videos.c.video_name == video_name)).first()
        if row is None:
            raise VideoRecordNotFoundException
        return _to_record(row)

    def get_user_id(self, video_name: str) -> str | None:
        with self._reads.connect() as conn:
            return conn.execute(select(videos.c.user_id).where(videos.c.video_name == video_name)).scalar_one_or_none()

    def get_most_recent_video_for_board(self, board_id: str) -> VideoRecord | None:
        statement = (
            select(*_DTO_COLUMNS)
            .join(board_videos, board_videos.c.video_name == videos.c.video_name)
            .where(board_videos.c.board_id == board_id, videos.c.is_intermediate == false())
            .order_by(*_order_by(True, SQLiteDirection.Descending))
            .limit(1)
        )
        with self._reads.connect() as conn:
            row = conn.execute(statement).first()
        return None if row is None else _to_record(row)

    def exists(self, video_name: str) -> bool:
        with self._reads.connect() as conn:
            return (
                conn.execute(select(videos.c.video_name).where(videos.c.video_name == video_name)).first() is not None
            )

    def get_metadata(self, video_name: str) -> MetadataField | None:
        """Unlike images, stock reports a storage error reading video metadata as "not found"; kept."""
        try:
            with self._reads.connect() as conn:
                row = conn.execute(select(videos.c.metadata).where(videos.c.video_name == video_name)).first()
        except DBAPIError as e:
            raise VideoRecordNotFoundException from e
        if row is None:
            raise VideoRecordNotFoundException
        return MetadataFieldValidator.validate_json(row.metadata) if row.metadata is not None else None

    def update(self, video_name: str, changes: VideoRecordChanges) -> None:
        """Stock runs one ``UPDATE`` per changed field; one statement sets them all atomically. No statement
        when nothing changes, so ``updated_at`` (the trigger's) moves exactly when stock's does."""
        values: dict[str, Any] = {}
        if changes.video_category is not None:
            values["video_category"] = ImageCategory(changes.video_category).value
        if changes.session_id is not None:
            values["session_id"] = changes.session_id
        if changes.is_intermediate is not None:
            values["is_intermediate"] = changes.is_intermediate
        if changes.starred is not None:
            values["starred"] = changes.starred
        if not values:
            return
        try:
            with self._engine.begin() as conn:
                conn.execute(update(videos).where(videos.c.video_name == video_name).values(**values))
        except DBAPIError as e:
            raise VideoRecordSaveException from e

    def get_many(
        self,
        offset: int = 0,
        limit: int = 10,
        starred_first: bool = True,
        order_dir: SQLiteDirection = SQLiteDirection.Descending,
        video_origin: ResourceOrigin | None = None,
        categories: list[ImageCategory] | None = None,
        is_intermediate: bool | None = None,
        board_id: str | None = None,
        search_term: str | None = None,
        user_id: str | None = None,
        is_admin: bool = False,
    ) -> OffsetPaginatedResults[VideoRecord]:
        """One page and the total: two statements in one REPEATABLE READ snapshot, so the total counts the
        rows the page was cut from."""
        conditions = _conditions(
            video_origin=video_origin,
            categories=categories,
            is_intermediate=is_intermediate,
            board_id=board_id,
            search_term=search_term,
            user_id=user_id,
            is_admin=is_admin,
        )
        page = (
            select(*_DTO_COLUMNS)
            .where(*conditions)
            .order_by(*_order_by(starred_first, order_dir))
            .limit(sqlite_limit(limit))
            .offset(sqlite_offset(offset))
        )
        total = select(func.count()).select_from(videos).where(*conditions)
        with self._reads.connect() as conn:
            conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            rows = conn.execute(page).all()
            count = conn.execute(total).scalar_one()
        return OffsetPaginatedResults(items=[_to_record(r) for r in rows], offset=offset, limit=limit, total=count)

    def delete(self, video_name: str) -> None:
        try:
            with self._engine.begin() as conn:
                conn.execute(delete(videos).where(videos.c.video_name == video_name))
        except DBAPIError as e:
            raise VideoRecordDeleteException from e

    def delete_many(self, video_names: list[str]) -> None:
        if not video_names:
            return  # stock's DELETE ... IN () removes nothing
        try:
            with self._engine.begin() as conn:
                conn.execute(delete(videos).where(videos.c.video_name == any_(text_array(video_names))))
        except DBAPIError as e:
            raise VideoRecordDeleteException from e

    def save(
        self,
        video_name: str,
        video_origin: ResourceOrigin,
        video_category: ImageCategory,
        width: int,
        height: int,
        duration: float,
        fps: float | None,
        has_workflow: bool,
        is_intermediate: bool | None = False,
        starred: bool | None = False,
        session_id: str | None = None,
        node_id: str | None = None,
        metadata: str | None = None,
        user_id: str | None = None,
        video_subfolder: str = "",
    ) -> datetime:
        """Stock's ``INSERT OR IGNORE`` then a read of ``created_at``: an existing record is left untouched and
        its own ``created_at`` returned. ``created_at`` and ``updated_at`` share one ``statement_timestamp()``
        so a new record's two times are equal, as SQLite's per-statement ``'NOW'`` makes them."""
        statement = (
            insert(videos)
            .values(
                video_name=video_name,
                video_origin=video_origin.value,
                video_category=video_category.value,
                width=width,
                height=height,
                duration=float(duration),
                fps=float(fps) if fps is not None else None,
                node_id=node_id,
                session_id=session_id,
                metadata=metadata,
                is_intermediate=is_intermediate,
                starred=starred,
                has_workflow=has_workflow,
                user_id=user_id or "system",
                video_subfolder=video_subfolder,
                created_at=func.statement_timestamp(),
                updated_at=func.statement_timestamp(),
            )
            .on_conflict_do_nothing(index_elements=[videos.c.video_name])
            .returning(videos.c.created_at)
        )
        try:
            with self._engine.begin() as conn:
                created_at = conn.execute(statement).scalar_one_or_none()
                if created_at is None:
                    # The name was taken; read committed sees the existing row (a fresh statement snapshot).
                    created_at = conn.execute(
                        select(videos.c.created_at).where(videos.c.video_name == video_name)
                    ).scalar_one_or_none()
        except DBAPIError as e:
            raise VideoRecordSaveException from e
        if created_at is None:
            raise VideoRecordSaveException  # the conflicting row was deleted between the two statements
        return created_at_result(created_at)

    def get_video_names(
        self,
        starred_first: bool = True,
        order_dir: SQLiteDirection = SQLiteDirection.Descending,
        video_origin: ResourceOrigin | None = None,
        categories: list[ImageCategory] | None = None,
        is_intermediate: bool | None = None,
        board_id: str | None = None,
        search_term: str | None = None,
        user_id: str | None = None,
        is_admin: bool = False,
    ) -> VideoNamesResult:
        """Every matching name in gallery order, in one statement reading only indexable columns. Stock counts
        the starred matches with a second query over the same conditions; counting the starred rows of this
        one gives the same number from one snapshot."""
        conditions = _conditions(
            video_origin=video_origin,
            categories=categories,
            is_intermediate=is_intermediate,
            board_id=board_id,
            search_term=search_term,
            user_id=user_id,
            is_admin=is_admin,
        )
        statement = (
            select(videos.c.video_name, videos.c.starred)
            .where(*conditions)
            .order_by(*_order_by(starred_first, order_dir))
        )
        with self._reads.connect() as conn:
            rows = conn.execute(statement).all()
        starred_count = sum(1 for row in rows if row.starred) if starred_first else 0
        return VideoNamesResult(
            video_names=[row.video_name for row in rows], starred_count=starred_count, total_count=len(rows)
        )
