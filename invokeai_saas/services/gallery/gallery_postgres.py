"""PostgreSQL implementation of ``GalleryServiceABC`` (stock: ``SqliteGalleryService``).

The gallery is one stream of images and videos: a ``UNION ALL`` of the two tables with the same filters
on each half, exactly as stock builds it. Three SQLite behaviours have to be reproduced on purpose,
because PostgreSQL would otherwise answer differently:

- **Time ties.** SQLite keeps ``created_at`` as millisecond text, so two items created in the same
  millisecond tie and stock's ``kind``/``name`` tie-breakers decide their order. PostgreSQL keeps
  microseconds; ordering on the raw column would silently replace stock's tie-breakers. Every ordering
  here uses ``date_trunc('milliseconds', created_at)`` — the instant stock's text shows.
- **Text order.** SQLite compares names byte-wise; PostgreSQL uses the database collation (which may be
  a linguistic one in production). Name tie-breakers are ``COLLATE "C"``, SQLite's byte order for UTF-8.
- **LIKE.** Stock's search is ``metadata LIKE '%term%' OR created_at LIKE '%term%'`` with the term
  lower-cased in Python: SQLite's ``LIKE`` folds ASCII letters only, treats ``%``/``_`` in the term as
  wildcards and has no escape character. Here: ``translate()`` folds ASCII ``A-Z`` of the column (not
  ``ILIKE``, which folds every script), ``ESCAPE ''`` turns off PostgreSQL's default backslash escape,
  and ``created_at`` is matched against the same ``YYYY-MM-DD HH:MM:SS.fff`` UTC text stock stores.

Every method runs a single statement, so a page and its total come from one snapshot.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from invokeai.app.services.gallery.gallery_base import GalleryServiceABC
from invokeai.app.services.gallery.gallery_common import (
    BoardMediaSummary,
    GalleryItem,
    GalleryItemKind,
    GalleryItemNames,
    GalleryItemNamesResult,
    GalleryItemRef,
)
from invokeai.app.services.image_records.image_records_common import ImageCategory, ResourceOrigin
from invokeai.app.services.invoker import Invoker
from invokeai.app.services.shared.pagination import OffsetPaginatedResults
from invokeai.app.services.shared.sqlite.sqlite_common import SQLiteDirection
from invokeai.app.services.virtual_boards.virtual_boards_common import VirtualSubBoardDTO
from sqlalchemy import (
    Date,
    Engine,
    Float,
    Integer,
    Row,
    Select,
    Table,
    Text,
    case,
    cast,
    exists,
    false,
    func,
    literal_column,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression
from sqlalchemy.sql.selectable import FromClause

from invokeai_saas.db.convert import stock_ms
from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.tables import board_images, board_videos, images, videos

_ASCII_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ASCII_LOWER = "abcdefghijklmnopqrstuvwxyz"
# ``DATE(created_at) = ?`` in SQLite only ever equals a string of exactly this shape.
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# SQL literals rather than bound parameters: PostgreSQL matches GROUP BY / DISTINCT ON expressions against
# the select list textually, and two bound copies of 'UTC' ($1, $2) would not match.
_UTC = literal_column("'UTC'", Text)
_MILLISECONDS = literal_column("'milliseconds'", Text)
_STOCK_MS_FORMAT = literal_column("'YYYY-MM-DD HH24:MI:SS.MS'", Text)


@dataclass(frozen=True)
class _Media:
    """One half of the union: the table, its board link table and its column names."""

    kind: str
    table: Table
    join_table: Table
    name_col: str
    category_col: str
    origin_col: str

    @property
    def name(self) -> ColumnElement[Any]:
        return self.table.c[self.name_col]


_IMAGES = _Media("image", images, board_images, "image_name", "image_category", "image_origin")
_VIDEOS = _Media("video", videos, board_videos, "video_name", "video_category", "video_origin")


def _created_ms(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """The instant stock's millisecond text denotes (see the module docstring on time ties)."""
    return func.date_trunc(_MILLISECONDS, column)


def _created_text(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """``created_at`` as the ``YYYY-MM-DD HH:MM:SS.fff`` UTC text SQLite stores (``MS`` truncates)."""
    return func.to_char(func.timezone(_UTC, column), _STOCK_MS_FORMAT)


def _utc_date(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """SQLite's ``DATE(created_at)``: the UTC calendar day."""
    return cast(func.timezone(_UTC, column), Date)


def _sqlite_like(column: ColumnElement[Any], pattern: str) -> ColumnElement[bool]:
    """SQLite's default ``LIKE``: ASCII-only case folding, ``%``/``_`` wildcards, no escape character.

    ``pattern`` is already lower-cased by the caller (as stock does), so folding the column is enough.
    """
    return func.translate(column, _ASCII_UPPER, _ASCII_LOWER).like(pattern, escape="")


def _by_name(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """SQLite's byte-wise text order, whatever the database collation."""
    return column.collate("C")


def _directed(expression: ColumnElement[Any], descending: bool) -> UnaryExpression[Any]:
    return expression.desc() if descending else expression.asc()


def _order_by(items: FromClause, starred_first: bool, order_dir: SQLiteDirection) -> list[UnaryExpression[Any]]:
    """Stock's ``[starred DESC,] created_at <dir>, kind <dir>, name <dir>``.

    ``NULLS LAST`` on ``starred DESC`` is SQLite's placement of NULL (smallest) in a descending sort;
    PostgreSQL would put NULL first.
    """
    descending = order_dir == SQLiteDirection.Descending
    keys: list[UnaryExpression[Any]] = []
    if starred_first:
        keys.append(items.c.starred.desc().nulls_last())
    keys.append(_directed(_created_ms(items.c.created_at), descending))
    keys.append(_directed(items.c.kind, descending))
    keys.append(_directed(_by_name(items.c.name), descending))
    return keys


def _created_date_condition(column: ColumnElement[Any], created_date: str) -> ColumnElement[bool]:
    """``DATE(created_at) = :created_date`` as an index-friendly UTC range.

    SQLite's ``DATE()`` yields exactly ``YYYY-MM-DD`` for a valid day, so any other string matches nothing
    (no error, unlike a PostgreSQL ``::date`` cast of the parameter).
    """
    if not _ISO_DATE.fullmatch(created_date):
        return false()
    try:
        day = date.fromisoformat(created_date)
    except ValueError:
        return false()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    if day == date.max:
        return column >= start
    return (column >= start) & (column < start + timedelta(days=1))


@dataclass(frozen=True)
class _Filters:
    """The filter arguments every gallery query shares."""

    origin: ResourceOrigin | None
    categories: list[ImageCategory] | None
    is_intermediate: bool | None
    board_id: str | None
    search_term: str | None
    user_id: str | None
    is_admin: bool
    created_date: str | None


class PostgresGalleryService(GalleryServiceABC):
    """Implements the polymorphic gallery via ``UNION ALL`` across ``images`` and ``videos``."""

    _invoker: Invoker

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self._reads = autocommit_reads(engine)

    def start(self, invoker: Invoker) -> None:
        self._invoker = invoker

    def list_items(
        self,
        offset: int = 0,
        limit: int = 10,
        starred_first: bool = True,
        order_dir: SQLiteDirection = SQLiteDirection.Descending,
        origin: ResourceOrigin | None = None,
        categories: list[ImageCategory] | None = None,
        is_intermediate: bool | None = None,
        board_id: str | None = None,
        search_term: str | None = None,
        user_id: str | None = None,
        is_admin: bool = False,
    ) -> OffsetPaginatedResults[GalleryItem]:
        filters = _Filters(origin, categories, is_intermediate, board_id, search_term, user_id, is_admin, None)
        halves = [self._build_half(media, filters, names_only=False) for media in (_IMAGES, _VIDEOS)]
        items = union_all(*(half for half, _ in halves)).subquery("items")
        page_query = select(items).order_by(*_order_by(items, starred_first, order_dir))
        # SQLite semantics for out-of-range values (routes clamp them, but the service accepts any int):
        # a negative LIMIT means "no limit", a negative OFFSET means 0.
        if limit >= 0:
            page_query = page_query.limit(limit)
        if offset > 0:
            page_query = page_query.offset(offset)
        page = page_query.subquery("page")
        # The total rides along with the page in one statement (one snapshot); the outer join keeps it
        # when the page is empty.
        total = select(
            sum((count.scalar_subquery() for _, count in halves), start=literal_column("0", Integer)).label("total")
        ).subquery("totals")
        statement = (
            select(total.c.total, page)
            .select_from(total.outerjoin(page, true()))
            .order_by(*_order_by(page, starred_first, order_dir))
        )
        with self._reads.connect() as conn:
            rows = conn.execute(statement).all()

        urls = self._invoker.services.urls
        return OffsetPaginatedResults[GalleryItem](
            items=[self._row_to_item(row, urls) for row in rows if row.name is not None],
            offset=offset,
            limit=limit,
            total=int(rows[0].total),
        )

    def list_item_names(
        self,
        starred_first: bool = True,
        order_dir: SQLiteDirection = SQLiteDirection.Descending,
        origin: ResourceOrigin | None = None,
        categories: list[ImageCategory] | None = None,
        is_intermediate: bool | None = None,
        board_id: str | None = None,
        search_term: str | None = None,
        user_id: str | None = None,
        is_admin: bool = False,
        created_date: str | None = None,
    ) -> GalleryItemNamesResult:
        filters = _Filters(origin, categories, is_intermediate, board_id, search_term, user_id, is_admin, created_date)
        rows, starred_count = self._query_name_rows(starred_first, order_dir, filters)
        refs = [GalleryItemRef(kind=GalleryItemKind(row.kind), name=row.name) for row in rows]
        return GalleryItemNamesResult(items=refs, starred_count=starred_count, total_count=len(refs))

    def get_item_names(
        self,
        starred_first: bool = True,
        order_dir: SQLiteDirection = SQLiteDirection.Descending,
        origin: ResourceOrigin | None = None,
        categories: list[ImageCategory] | None = None,
        is_intermediate: bool | None = None,
        board_id: str | None = None,
        search_term: str | None = None,
        user_id: str | None = None,
        is_admin: bool = False,
        created_date: str | None = None,
    ) -> GalleryItemNames:
        filters = _Filters(origin, categories, is_intermediate, board_id, search_term, user_id, is_admin, created_date)
        rows, starred_count = self._query_name_rows(starred_first, order_dir, filters)
        names = [row.name for row in rows]
        return GalleryItemNames(item_names=names, starred_count=starred_count, total_count=len(names))

    def get_dates(
        self,
        user_id: str | None = None,
        is_admin: bool = False,
    ) -> list[VirtualSubBoardDTO]:
        halves = []
        for media in (_IMAGES, _VIDEOS):
            table = media.table
            half = select(
                table.c.created_at.label("created_at"),
                literal_column(f"'{media.kind}'", Text).label("kind"),
                media.name.label("name"),
                table.c[media.category_col].label("category"),
            ).where(table.c.is_intermediate == false())
            if user_id is not None and not is_admin:
                half = half.where(table.c.user_id == user_id)
            halves.append(half)
        union = union_all(*halves).cte("media")
        day = _utc_date(union.c.created_at)

        is_image = union.c.kind == "image"
        counts = (
            select(
                day.label("day"),
                func.count().filter(is_image & (union.c.category == "general")).label("image_count"),
                func.count().filter(is_image & (union.c.category != "general")).label("asset_count"),
                func.count().filter(union.c.kind == "video").label("video_count"),
            )
            .group_by(day)
            .cte("counts")
        )
        # The newest item of each day is its cover; kind/name tie-breakers keep the choice stable, as stock's.
        covers = (
            select(day.label("day"), union.c.kind, union.c.name)
            .ext(distinct_on(day))
            .order_by(day, _created_ms(union.c.created_at).desc(), union.c.kind.desc(), _by_name(union.c.name).desc())
            .cte("covers")
        )
        statement = (
            select(counts, covers.c.kind, covers.c.name)
            .select_from(counts.join(covers, covers.c.day == counts.c.day))
            .order_by(counts.c.day.desc())
        )
        with self._reads.connect() as conn:
            rows = conn.execute(statement).all()

        boards: list[VirtualSubBoardDTO] = []
        for row in rows:
            iso = row.day.isoformat()
            boards.append(
                VirtualSubBoardDTO(
                    virtual_board_id=f"by_date:{iso}",
                    board_name=iso,
                    date=iso,
                    image_count=row.image_count,
                    asset_count=row.asset_count,
                    video_count=row.video_count,
                    cover_image_name=row.name if row.kind == "image" else None,
                    cover_video_name=row.name if row.kind == "video" else None,
                )
            )
        return boards

    def get_board_media_summaries(self, board_ids: list[str]) -> dict[str, BoardMediaSummary]:
        summaries = {board_id: BoardMediaSummary() for board_id in board_ids}
        if not board_ids:
            return summaries

        halves = []
        for media in (_IMAGES, _VIDEOS):
            table, link = media.table, media.join_table
            halves.append(
                select(
                    link.c.board_id.label("board_id"),
                    literal_column(f"'{media.kind}'", Text).label("kind"),
                    media.name.label("name"),
                    table.c[media.category_col].label("category"),
                    table.c.starred.label("starred"),
                    table.c.created_at.label("created_at"),
                )
                .select_from(link.join(table, link.c[media.name_col] == media.name))
                .where(table.c.is_intermediate == false(), link.c.board_id.in_(board_ids))
            )
        media_rows = union_all(*halves).subquery("media")
        ranked = select(
            media_rows,
            func.row_number()
            .over(
                partition_by=media_rows.c.board_id,
                order_by=[
                    media_rows.c.starred.desc().nulls_last(),
                    _created_ms(media_rows.c.created_at).desc(),
                    media_rows.c.kind.desc(),
                    _by_name(media_rows.c.name).desc(),
                ],
            )
            .label("rank"),
        ).subquery("ranked")
        is_image = ranked.c.kind == "image"
        is_cover = ranked.c.rank == 1
        statement = select(
            ranked.c.board_id,
            func.count().filter(is_image & (ranked.c.category == "general")).label("image_count"),
            func.count().filter(is_image & (ranked.c.category != "general")).label("asset_count"),
            func.count().filter(ranked.c.kind == "video").label("video_count"),
            func.max(case((is_cover & is_image, ranked.c.name))).label("cover_image_name"),
            func.max(case((is_cover & (ranked.c.kind == "video"), ranked.c.name))).label("cover_video_name"),
        ).group_by(ranked.c.board_id)
        with self._reads.connect() as conn:
            rows = conn.execute(statement).all()
        for row in rows:
            summaries[row.board_id] = BoardMediaSummary(
                cover_image_name=row.cover_image_name,
                cover_video_name=row.cover_video_name,
                image_count=row.image_count,
                video_count=row.video_count,
                asset_count=row.asset_count,
            )
        return summaries

    def _query_name_rows(
        self, starred_first: bool, order_dir: SQLiteDirection, filters: _Filters
    ) -> tuple[Sequence[Row[Any]], int]:
        """The ordered ``(kind, name, starred)`` rows both name-list shapes share, plus the starred count."""
        halves = [self._build_half(media, filters, names_only=True)[0] for media in (_IMAGES, _VIDEOS)]
        items = union_all(*halves).subquery("items")
        statement = select(items.c.kind, items.c.name, items.c.starred).order_by(
            *_order_by(items, starred_first, order_dir)
        )
        with self._reads.connect() as conn:
            rows = conn.execute(statement).all()
        starred_count = sum(1 for row in rows if row.starred) if starred_first else 0
        return rows, starred_count

    @staticmethod
    def _build_half(media: _Media, filters: _Filters, names_only: bool) -> tuple[Select[Any], Select[Any]]:
        """One half of the union and its ``COUNT(*)``, with stock's joins and filters.

        Columns: ``kind``, ``name``, ``starred``, ``created_at`` and, unless ``names_only``, ``width``,
        ``height``, ``category``, ``is_intermediate``, ``board_id``, ``duration``, ``fps`` (NULL for images).
        """
        table, link = media.table, media.join_table
        board_id = filters.board_id
        from_clause: FromClause
        board_id_expr: ColumnElement[Any]
        if board_id == "none" or (board_id is None and names_only):
            from_clause = table
            board_id_expr = cast(null(), Text)
        elif board_id is not None:
            from_clause = link.join(table, link.c[media.name_col] == media.name)
            board_id_expr = link.c.board_id
        else:
            # board_images/board_videos key on the media name, so the outer join never duplicates rows.
            from_clause = table.outerjoin(link, link.c[media.name_col] == media.name)
            board_id_expr = link.c.board_id

        columns: list[ColumnElement[Any]] = [
            literal_column(f"'{media.kind}'", Text).label("kind"),
            media.name.label("name"),
            table.c.starred.label("starred"),
            table.c.created_at.label("created_at"),
        ]
        if not names_only:
            is_video = media is _VIDEOS
            columns += [
                table.c.width.label("width"),
                table.c.height.label("height"),
                table.c[media.category_col].label("category"),
                table.c.is_intermediate.label("is_intermediate"),
                board_id_expr.label("board_id"),
                (table.c.duration if is_video else cast(null(), Float)).label("duration"),
                (table.c.fps if is_video else cast(null(), Float)).label("fps"),
            ]

        conditions: list[ColumnElement[bool]] = []
        if filters.origin is not None:
            conditions.append(table.c[media.origin_col] == filters.origin.value)
        if filters.categories is not None:
            conditions.append(table.c[media.category_col].in_([c.value for c in set(filters.categories)]))
        if filters.is_intermediate is not None:
            conditions.append(table.c.is_intermediate == filters.is_intermediate)
        if filters.created_date is not None:
            conditions.append(_created_date_condition(table.c.created_at, filters.created_date))
        owner_only = filters.user_id is not None and not filters.is_admin
        if board_id == "none":
            conditions.append(~exists().where(link.c[media.name_col] == media.name))
            if owner_only:
                conditions.append(table.c.user_id == filters.user_id)
        elif board_id is not None:
            # Stock does not scope an explicit board by owner: board access is checked by the router.
            conditions.append(link.c.board_id == board_id)
        elif owner_only:
            conditions.append(table.c.user_id == filters.user_id)
        if filters.search_term:
            pattern = f"%{filters.search_term.lower()}%"
            conditions.append(
                or_(
                    _sqlite_like(table.c.metadata, pattern),
                    _created_text(table.c.created_at).like(pattern, escape=""),
                )
            )

        half = select(*columns).select_from(from_clause).where(*conditions)
        count = select(func.count()).select_from(from_clause).where(*conditions)
        return half, count

    @staticmethod
    def _row_to_item(row: Row[Any], urls: Any) -> GalleryItem:
        kind = GalleryItemKind(row.kind)
        name = row.name
        if kind == GalleryItemKind.IMAGE:
            full_url = urls.get_image_url(name)
            thumbnail_url = urls.get_image_url(name, thumbnail=True)
            duration = None
            fps = None
        else:
            full_url = urls.get_video_url(name)
            thumbnail_url = urls.get_video_url(name, thumbnail=True)
            duration = row.duration
            fps = row.fps
        return GalleryItem(
            kind=kind,
            name=name,
            full_url=full_url,
            thumbnail_url=thumbnail_url,
            width=row.width,
            height=row.height,
            category=ImageCategory(row.category),
            starred=bool(row.starred),
            is_intermediate=bool(row.is_intermediate),
            board_id=row.board_id,
            created_at=stock_ms(row.created_at),
            duration=duration,
            fps=fps,
        )
