"""PostgreSQL implementation of ``ImageRecordStorageBase`` (stock: ``SqliteImageRecordStorage``).

The gallery reads here are the product's hottest path, so every list is one or two statements whatever the
page or library size, each shaped for an ordered index scan: the owner, category and intermediate filters are
equalities on ``images`` (a single requested category is bound as ``=``, not ``IN``, so the planner can walk
an index in ``ORDER BY`` order), board membership is an ``EXISTS``/``NOT EXISTS`` probe of ``board_images``'
primary key rather than a join, and the sort keys are bare columns. An index on
``(user_id, image_category, is_intermediate, starred DESC NULLS LAST, created_at DESC, image_name DESC)``
turns a page into the first rows of one index range and the name list into an index-only scan (the suite's
plan test proves both); until the schema has it, the planner reads the caller's rows through
``ix_images_user_category_created`` and sorts them.

Differences from stock, all refinements of what stock leaves undefined or gets wrong:

- Rows whose ``starred``/``created_at`` tie are ordered by ``image_name`` (same direction as ``created_at``),
  so offset pages never overlap or skip rows; stock's order among ties is whatever SQLite's plan yields.
- ``get_image_dates`` picks each date's cover among the images the caller may see (see its docstring).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from invokeai.app.invocations.fields import MetadataField, MetadataFieldValidator
from invokeai.app.services.image_records.image_records_base import ImageRecordStorageBase
from invokeai.app.services.image_records.image_records_common import (
    ImageCategory,
    ImageNamesResult,
    ImageRecord,
    ImageRecordChanges,
    ImageRecordDeleteException,
    ImageRecordNotFoundException,
    ImageRecordSaveException,
    ResourceOrigin,
    deserialize_image_record,
)
from invokeai.app.services.invoker import Invoker
from invokeai.app.services.shared.pagination import OffsetPaginatedResults
from invokeai.app.services.shared.sqlite.sqlite_common import SQLiteDirection
from invokeai.app.services.virtual_boards.virtual_boards_common import VirtualSubBoardDTO
from sqlalchemy import (
    ColumnElement,
    Engine,
    Row,
    UnaryExpression,
    any_,
    asc,
    bindparam,
    delete,
    desc,
    exists,
    false,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import distinct_on, insert
from sqlalchemy.exc import DBAPIError

from invokeai_saas.db.convert import stock_ms
from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.prepared import PreparedRead
from invokeai_saas.db.tables import board_images, boards, images
from invokeai_saas.services.image_records.media_sql import (
    created_at_result,
    search_pattern,
    sqlite_like,
    sqlite_limit,
    sqlite_offset,
    stock_date_range,
    stock_ms_text,
    text_array,
)

# The columns of stock's IMAGE_DTO_COLS, in its order.
_DTO_COLUMNS = (
    images.c.image_name,
    images.c.image_origin,
    images.c.image_category,
    images.c.width,
    images.c.height,
    images.c.session_id,
    images.c.node_id,
    images.c.has_workflow,
    images.c.is_intermediate,
    images.c.created_at,
    images.c.updated_at,
    images.c.deleted_at,
    images.c.starred,
    images.c.image_subfolder,
)

# Per-image reads on every image route (DTO, access checks): prepared (see ``invokeai_saas.db.prepared``).
_GET_IMAGE = PreparedRead(select(*_DTO_COLUMNS).where(images.c.image_name == bindparam("image_name")))
_GET_IMAGE_OWNER = PreparedRead(select(images.c.user_id).where(images.c.image_name == bindparam("image_name")))

# Stock deletes intermediates in chunks of this many names; it shapes the result for repeated names.
_STOCK_DELETE_CHUNK = 500


class _DtoRow:
    """Just the DTO columns of a wider row, shaped like a Row for ``_to_record``."""

    def __init__(self, mapping: Any) -> None:
        self._values = {column.name: mapping[column.name] for column in _DTO_COLUMNS}

    def _asdict(self) -> dict[str, Any]:
        return dict(self._values)


def _to_record(row: Any) -> ImageRecord:
    """Stock's DTO from a row (SQLAlchemy ``Row``, prepared-read named tuple or ``_DtoRow``): the timestamps as
    the millisecond text SQLite stores (and stock hands out)."""
    values = row._asdict()
    for key in ("created_at", "updated_at", "deleted_at"):
        values[key] = stock_ms(values[key])
    return deserialize_image_record(values)


def _board_condition(board_id: str | None, user_id: str | None, is_admin: bool) -> list[ColumnElement[bool]]:
    """Stock's board / ownership scoping.

    ``"none"`` means images on no board, limited to the caller's own unless admin; a real board id means that
    board's images whoever owns them (board access is checked by the router); no board means the caller's own
    images unless admin. Stock joins ``board_images`` (``LEFT JOIN`` in ``get_many``, ``EXISTS`` in
    ``get_image_names``); ``board_images.image_name`` is its primary key, so both equal these probes.
    """
    on_board = board_images.c.image_name == images.c.image_name
    owner = [images.c.user_id == user_id] if user_id is not None and not is_admin else []
    if board_id == "none":
        return [~exists().where(on_board), *owner]
    if board_id is not None:
        return [exists().where(on_board, board_images.c.board_id == board_id)]
    return owner


def _category_condition(categories: list[ImageCategory]) -> ColumnElement[bool]:
    """``image_category IN (...)``; one category is bound as ``=`` so an index on
    ``(user_id, image_category, ...)`` still yields rows in sort order (an ``IN`` list on a leading index
    column does not, on PostgreSQL 15)."""
    values = sorted({ImageCategory(c).value for c in categories})
    if len(values) == 1:
        return images.c.image_category == values[0]
    return images.c.image_category == any_(text_array(values))


def _search_condition(search_term: str) -> ColumnElement[bool]:
    pattern = search_pattern(search_term)
    return or_(sqlite_like(images.c.metadata, pattern), sqlite_like(stock_ms_text(images.c.created_at), pattern))


def _order_by(starred_first: bool, order_dir: SQLiteDirection) -> list[UnaryExpression[Any]]:
    """Stock's order (``starred DESC`` first if asked, then ``created_at``), ``image_name`` breaking ties.

    ``NULLS LAST`` reproduces SQLite, where NULL sorts lowest, for a ``starred`` saved as ``None``."""
    direction = asc if order_dir == SQLiteDirection.Ascending else desc
    keys: list[UnaryExpression[Any]] = []
    if starred_first:
        keys.append(images.c.starred.desc().nulls_last())
    keys += [direction(images.c.created_at), direction(images.c.image_name)]
    return keys


def _names_result(rows: list[Row[Any]], starred_first: bool) -> ImageNamesResult:
    """Stock counts the starred matches with a second query over the same conditions; the names query
    already returns every match, so counting its starred rows gives the same number from one snapshot."""
    starred_count = sum(1 for row in rows if row.starred) if starred_first else 0
    return ImageNamesResult(
        image_names=[row.image_name for row in rows], starred_count=starred_count, total_count=len(rows)
    )


class PostgresImageRecordStorage(ImageRecordStorageBase):
    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self._reads = autocommit_reads(engine)

    def start(self, invoker: Invoker) -> None:
        self._invoker = invoker

    def get(self, image_name: str) -> ImageRecord:
        # As stock: a storage error propagates; only a positively absent row is "not found".
        row = _GET_IMAGE.first(self._engine, image_name=image_name)
        if row is None:
            raise ImageRecordNotFoundException
        return _to_record(row)

    def get_readable_records(
        self, image_names: list[str], user_id: str, is_admin: bool
    ) -> dict[str, tuple[ImageRecord, str | None]]:
        """Records and board ids of the named images this user may view, in one statement.

        The rule is stock's ``assert_image_read_access``: admins see everything, users see their own images
        and images on shared or public boards. Used by the batched ``images_by_names`` route, which stock
        answers with four queries per image.
        """
        if not image_names:
            return {}
        statement = (
            select(
                *_DTO_COLUMNS, images.c.user_id.label("owner_id"), board_images.c.board_id, boards.c.board_visibility
            )
            .select_from(
                images.outerjoin(board_images, board_images.c.image_name == images.c.image_name).outerjoin(
                    boards, boards.c.board_id == board_images.c.board_id
                )
            )
            .where(images.c.image_name == any_(text_array(image_names)))
        )
        readable: dict[str, tuple[ImageRecord, str | None]] = {}
        with self._reads.connect() as conn:
            for row in conn.execute(statement):
                values = row._mapping
                allowed = (
                    is_admin or values["owner_id"] == user_id or values["board_visibility"] in ("shared", "public")
                )
                if allowed:
                    record = _to_record(_DtoRow(values))
                    readable[record.image_name] = (record, values["board_id"])
        return readable

    def get_user_id(self, image_name: str) -> str | None:
        return _GET_IMAGE_OWNER.scalar(self._engine, image_name=image_name)

    def exists(self, image_name: str) -> bool:
        with self._reads.connect() as conn:
            return (
                conn.execute(select(images.c.image_name).where(images.c.image_name == image_name)).first() is not None
            )

    def get_metadata(self, image_name: str) -> MetadataField | None:
        with self._reads.connect() as conn:
            row = conn.execute(select(images.c.metadata).where(images.c.image_name == image_name)).first()
        if row is None:
            raise ImageRecordNotFoundException
        return MetadataFieldValidator.validate_json(row.metadata) if row.metadata is not None else None

    def update(self, image_name: str, changes: ImageRecordChanges) -> None:
        """Stock runs one ``UPDATE`` per changed field; one statement sets them all atomically. No statement
        when nothing changes, so ``updated_at`` (the trigger's) moves exactly when stock's does."""
        values: dict[str, Any] = {}
        if changes.image_category is not None:
            values["image_category"] = ImageCategory(changes.image_category).value
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
                conn.execute(update(images).where(images.c.image_name == image_name).values(**values))
        except DBAPIError as e:
            raise ImageRecordSaveException from e

    def get_many(
        self,
        offset: int = 0,
        limit: int = 10,
        starred_first: bool = True,
        order_dir: SQLiteDirection = SQLiteDirection.Descending,
        image_origin: ResourceOrigin | None = None,
        categories: list[ImageCategory] | None = None,
        is_intermediate: bool | None = None,
        board_id: str | None = None,
        search_term: str | None = None,
        user_id: str | None = None,
        is_admin: bool = False,
    ) -> OffsetPaginatedResults[ImageRecord]:
        """One page and the total: two statements, read in one REPEATABLE READ snapshot so the total always
        counts the rows the page was cut from (the page alone can be empty past the end, so a window count
        on it cannot replace the second statement)."""
        conditions = self._conditions(
            image_origin=image_origin,
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
        total = select(func.count()).select_from(images).where(*conditions)
        with self._reads.connect() as conn:
            conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            rows = conn.execute(page).all()
            count = conn.execute(total).scalar_one()
        return OffsetPaginatedResults(items=[_to_record(r) for r in rows], offset=offset, limit=limit, total=count)

    def delete(self, image_name: str) -> None:
        try:
            with self._engine.begin() as conn:
                conn.execute(delete(images).where(images.c.image_name == image_name))
        except DBAPIError as e:
            raise ImageRecordDeleteException from e

    def delete_many(self, image_names: list[str]) -> None:
        if not image_names:
            return  # stock's DELETE ... IN () removes nothing
        try:
            with self._engine.begin() as conn:
                conn.execute(delete(images).where(images.c.image_name == any_(text_array(image_names))))
        except DBAPIError as e:
            raise ImageRecordDeleteException from e

    def get_intermediates_count(self, user_id: str | None = None) -> int:
        statement = select(func.count()).select_from(images).where(images.c.is_intermediate == true())
        if user_id is not None:
            statement = statement.where(images.c.user_id == user_id)
        with self._reads.connect() as conn:
            return cast(int, conn.execute(statement).scalar_one())

    def get_intermediates(self) -> list[tuple[str, str]]:
        with self._reads.connect() as conn:
            rows = conn.execute(
                select(images.c.image_name, images.c.image_subfolder).where(images.c.is_intermediate == true())
            ).all()
        return [(row.image_name, row.image_subfolder) for row in rows]

    def delete_intermediates_by_names(self, image_names: list[str]) -> list[str]:
        """One conditional ``DELETE ... RETURNING``: the ``is_intermediate`` predicate is evaluated on the row
        itself (re-checked after any concurrent promotion commits), so a promoted image keeps its record, and
        ``RETURNING`` names exactly the rows this call removed — no before/after reads to race with.

        The result lists the removed names in the caller's order. Stock works in chunks of 500 names and
        reports a repeated name once per chunk it appears in that removed it (so twice within one chunk, but
        not again in a later chunk); that shape is reproduced.
        """
        if not image_names:
            return []
        try:
            with self._engine.begin() as conn:
                removed = set(
                    conn.execute(
                        delete(images)
                        .where(images.c.image_name == any_(text_array(image_names)), images.c.is_intermediate == true())
                        .returning(images.c.image_name)
                    ).scalars()
                )
        except DBAPIError as e:
            raise ImageRecordDeleteException from e
        deleted: list[str] = []
        reported: set[str] = set()
        for start in range(0, len(image_names), _STOCK_DELETE_CHUNK):
            chunk = image_names[start : start + _STOCK_DELETE_CHUNK]
            hits = [name for name in chunk if name in removed and name not in reported]
            deleted.extend(hits)
            reported.update(hits)
        return deleted

    def save(
        self,
        image_name: str,
        image_origin: ResourceOrigin,
        image_category: ImageCategory,
        width: int,
        height: int,
        has_workflow: bool,
        is_intermediate: bool | None = False,
        starred: bool | None = False,
        session_id: str | None = None,
        node_id: str | None = None,
        metadata: str | None = None,
        user_id: str | None = None,
        image_subfolder: str = "",
    ) -> datetime:
        """Stock's ``INSERT OR IGNORE`` then a read of ``created_at``: an existing record is left untouched and
        its own ``created_at`` returned. ``created_at`` and ``updated_at`` share one ``statement_timestamp()``
        so a new record's two times are equal, as SQLite's per-statement ``'NOW'`` makes them; the result is
        the naive UTC datetime of the millisecond text, as stock parses it."""
        statement = (
            insert(images)
            .values(
                image_name=image_name,
                image_origin=image_origin.value,
                image_category=image_category.value,
                width=width,
                height=height,
                node_id=node_id,
                session_id=session_id,
                metadata=metadata,
                is_intermediate=is_intermediate,
                starred=starred,
                has_workflow=has_workflow,
                user_id=user_id or "system",
                image_subfolder=image_subfolder,
                created_at=func.statement_timestamp(),
                updated_at=func.statement_timestamp(),
            )
            .on_conflict_do_nothing(index_elements=[images.c.image_name])
            .returning(images.c.created_at)
        )
        try:
            with self._engine.begin() as conn:
                created_at = conn.execute(statement).scalar_one_or_none()
                if created_at is None:
                    # The name was taken; read committed sees the existing row (a fresh statement snapshot).
                    created_at = conn.execute(
                        select(images.c.created_at).where(images.c.image_name == image_name)
                    ).scalar_one_or_none()
        except DBAPIError as e:
            raise ImageRecordSaveException from e
        if created_at is None:
            raise ImageRecordSaveException  # the conflicting row was deleted between the two statements
        return created_at_result(created_at)

    def get_most_recent_image_for_board(self, board_id: str) -> ImageRecord | None:
        statement = (
            select(*_DTO_COLUMNS)
            .join(board_images, board_images.c.image_name == images.c.image_name)
            .where(board_images.c.board_id == board_id, images.c.is_intermediate == false())
            .order_by(*_order_by(True, SQLiteDirection.Descending))
            .limit(1)
        )
        with self._reads.connect() as conn:
            row = conn.execute(statement).first()
        return None if row is None else _to_record(row)

    def get_image_names(
        self,
        starred_first: bool = True,
        order_dir: SQLiteDirection = SQLiteDirection.Descending,
        image_origin: ResourceOrigin | None = None,
        categories: list[ImageCategory] | None = None,
        is_intermediate: bool | None = None,
        board_id: str | None = None,
        search_term: str | None = None,
        user_id: str | None = None,
        is_admin: bool = False,
    ) -> ImageNamesResult:
        """Every matching name in gallery order, in one statement reading only indexable columns."""
        conditions = self._conditions(
            image_origin=image_origin,
            categories=categories,
            is_intermediate=is_intermediate,
            board_id=board_id,
            search_term=search_term,
            user_id=user_id,
            is_admin=is_admin,
        )
        statement = (
            select(images.c.image_name, images.c.starred)
            .where(*conditions)
            .order_by(*_order_by(starred_first, order_dir))
        )
        with self._reads.connect() as conn:
            rows = list(conn.execute(statement).all())
        return _names_result(rows, starred_first)

    def get_image_dates(self, user_id: str | None = None, is_admin: bool = False) -> list[VirtualSubBoardDTO]:
        """Per UTC date of ``created_at`` (newest date first): the caller's non-intermediate general images,
        other-category assets, and the newest of them as the cover — in one statement.

        Stock bug, fixed: stock's cover subquery omits the owner filter, so a non-admin's date can be given
        another user's newest image as its cover — a name the caller is not allowed to read (its thumbnail
        then fails to load) and a leak of that user's activity. Here the cover is chosen among the same images
        the counts describe; for an admin (or no user) that is every image, i.e. stock's answer. Ties on
        ``created_at`` are broken by ``image_name`` descending, as the gallery service's own date query does.
        """
        day = func.to_char(func.timezone("UTC", images.c.created_at), "YYYY-MM-DD")
        visible = select(day.label("date"), images.c.image_name, images.c.image_category, images.c.created_at).where(
            images.c.is_intermediate == false()
        )
        if user_id is not None and not is_admin:
            visible = visible.where(images.c.user_id == user_id)
        dated = visible.cte("dated")
        counts = (
            select(
                dated.c.date,
                func.count().filter(dated.c.image_category == ImageCategory.GENERAL.value).label("image_count"),
                func.count().filter(dated.c.image_category != ImageCategory.GENERAL.value).label("asset_count"),
            )
            .group_by(dated.c.date)
            .subquery("counts")
        )
        covers = (
            select(dated.c.date, dated.c.image_name)
            .ext(distinct_on(dated.c.date))
            .order_by(dated.c.date, dated.c.created_at.desc(), dated.c.image_name.desc())
            .subquery("covers")
        )
        statement = (
            select(counts.c.date, counts.c.image_count, counts.c.asset_count, covers.c.image_name)
            .join(covers, covers.c.date == counts.c.date)
            .order_by(counts.c.date.desc())
        )
        with self._reads.connect() as conn:
            rows = conn.execute(statement).all()
        return [
            VirtualSubBoardDTO(
                virtual_board_id=f"by_date:{row.date}",
                board_name=row.date,
                date=row.date,
                image_count=row.image_count,
                asset_count=row.asset_count,
                cover_image_name=row.image_name,
            )
            for row in rows
        ]

    def get_image_names_by_date(
        self,
        date: str,
        starred_first: bool = True,
        order_dir: SQLiteDirection = SQLiteDirection.Descending,
        categories: list[ImageCategory] | None = None,
        search_term: str | None = None,
        user_id: str | None = None,
        is_admin: bool = False,
    ) -> ImageNamesResult:
        """Stock's ``DATE(created_at) = :date`` as a ``created_at`` range (index-friendly); a ``date`` that
        ``DATE()`` can never produce matches nothing, answered without a query."""
        bounds = stock_date_range(date)
        if bounds is None:
            return ImageNamesResult(image_names=[], starred_count=0, total_count=0)
        start, end = bounds
        conditions: list[ColumnElement[bool]] = [images.c.created_at >= start, images.c.is_intermediate == false()]
        if end is not None:
            conditions.append(images.c.created_at < end)
        if categories is not None:
            conditions.append(_category_condition(categories))
        if user_id is not None and not is_admin:
            conditions.append(images.c.user_id == user_id)
        if search_term:
            conditions.append(_search_condition(search_term))
        statement = (
            select(images.c.image_name, images.c.starred)
            .where(*conditions)
            .order_by(*_order_by(starred_first, order_dir))
        )
        with self._reads.connect() as conn:
            rows = list(conn.execute(statement).all())
        return _names_result(rows, starred_first)

    @staticmethod
    def _conditions(
        *,
        image_origin: ResourceOrigin | None,
        categories: list[ImageCategory] | None,
        is_intermediate: bool | None,
        board_id: str | None,
        search_term: str | None,
        user_id: str | None,
        is_admin: bool,
    ) -> list[ColumnElement[bool]]:
        """The filters ``get_many`` and ``get_image_names`` share, as stock builds them."""
        conditions: list[ColumnElement[bool]] = []
        if image_origin is not None:
            conditions.append(images.c.image_origin == image_origin.value)
        if categories is not None:
            conditions.append(_category_condition(categories))
        if is_intermediate is not None:
            conditions.append(images.c.is_intermediate == is_intermediate)
        conditions += _board_condition(board_id, user_id, is_admin)
        if search_term:
            conditions.append(_search_condition(search_term))
        return conditions
