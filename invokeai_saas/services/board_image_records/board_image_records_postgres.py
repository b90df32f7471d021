"""PostgreSQL implementation of ``BoardImageRecordStorageBase`` (stock: ``SqliteBoardImageRecordStorage``).

An image is on at most one board: ``board_images`` is keyed by ``image_name``, so adding an image that is
already on a board moves it (an upsert), and an image on no board has no row at all.
"""

from __future__ import annotations

from typing import Any

from invokeai.app.services.board_image_records.board_image_records_base import BoardImageRecordStorageBase
from invokeai.app.services.image_records.image_records_common import (
    ASSETS_CATEGORIES,
    IMAGE_CATEGORIES,
    ImageCategory,
    ImageRecord,
    deserialize_image_record,
)
from invokeai.app.services.shared.pagination import OffsetPaginatedResults
from sqlalchemy import Engine, Row, any_, bindparam, delete, exists, false, func, select
from sqlalchemy.dialects.postgresql import insert

from invokeai_saas.db.convert import stock_ms
from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.prepared import PreparedRead
from invokeai_saas.db.tables import board_images, images
from invokeai_saas.services.image_records.media_sql import text_array


def _stock_image_values(row: Row[Any]) -> dict[str, Any]:
    """An ``images`` row as the dict stock builds from ``SELECT images.*`` (timestamps as SQLite's text; all
    three are millisecond values in stock, ``updated_at``'s trigger included)."""
    values = dict(row._mapping)
    for column in ("created_at", "updated_at", "deleted_at"):
        values[column] = stock_ms(values[column])
    return values


# Asked on every image route (access checks, DTOs): a prepared read (see ``invokeai_saas.db.prepared``).
_GET_BOARD_FOR_IMAGE = PreparedRead(
    select(board_images.c.board_id).where(board_images.c.image_name == bindparam("image_name"))
)


class PostgresBoardImageRecordStorage(BoardImageRecordStorageBase):
    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self._reads = autocommit_reads(engine)

    def add_image_to_board(self, board_id: str, image_name: str) -> None:
        """Put the image on the board, moving it off any board it was on. An unknown board or image violates
        a foreign key and raises ``sqlalchemy.exc.IntegrityError`` (stock lets ``sqlite3.IntegrityError``
        through untranslated; every caller catches ``Exception``)."""
        statement = insert(board_images).values(board_id=board_id, image_name=image_name)
        statement = statement.on_conflict_do_update(
            index_elements=[board_images.c.image_name], set_={"board_id": statement.excluded.board_id}
        )
        with self._engine.begin() as conn:
            conn.execute(statement)

    def remove_image_from_board(self, image_name: str, board_id: str) -> int:
        """Delete the membership only if the image is still on ``board_id``; the row count (0 or 1) tells the
        caller whether the board it authorized against was still the image's board."""
        with self._engine.begin() as conn:
            result = conn.execute(
                delete(board_images).where(board_images.c.image_name == image_name, board_images.c.board_id == board_id)
            )
            return result.rowcount

    def get_images_for_board(
        self, board_id: str, offset: int = 0, limit: int = 10
    ) -> OffsetPaginatedResults[ImageRecord]:
        """Stock's helper outside the base class (no caller in InvokeAI uses it), kept with stock's behaviour:
        it returns *every* image of the board, most recently (re)assigned first, ignoring ``offset`` and
        ``limit`` (only echoed back), and its ``total`` counts all images in the database, not the board's.
        Both statements run in one ``REPEATABLE READ`` snapshot."""
        statement = (
            select(images)
            .join(board_images, board_images.c.image_name == images.c.image_name)
            .where(board_images.c.board_id == board_id)
            .order_by(board_images.c.updated_at.desc(), images.c.image_name)
        )
        with self._reads.connect() as conn:
            conn.execution_options(isolation_level="REPEATABLE READ")
            rows = conn.execute(statement).all()
            count = conn.execute(select(func.count()).select_from(images)).scalar_one()
        items = [deserialize_image_record(_stock_image_values(row)) for row in rows]
        return OffsetPaginatedResults(items=items, offset=offset, limit=limit, total=count)

    def get_all_board_image_names_for_board(
        self,
        board_id: str,
        categories: list[ImageCategory] | None,
        is_intermediate: bool | None,
        user_id: str | None = None,
    ) -> list[str]:
        """Names of the board's images, or with ``board_id == "none"`` of the images on no board, filtered by
        category, intermediate flag and owner (``user_id=None``: everyone's).

        Stock has no ``ORDER BY``, so its order is whatever SQLite's plan yields (for a board, the order the
        images joined it; for ``"none"``, by name). Here the order is always defined: a board's images in the
        order they joined it, images on no board by name."""
        statement = select(images.c.image_name)
        if board_id == "none":
            on_a_board = exists().where(board_images.c.image_name == images.c.image_name)
            statement = statement.where(~on_a_board).order_by(images.c.image_name)
        else:
            statement = (
                statement.join(board_images, board_images.c.image_name == images.c.image_name)
                .where(board_images.c.board_id == board_id)
                .order_by(board_images.c.created_at, images.c.image_name)
            )
        if categories is not None:
            # An empty list matches nothing, like stock's ``IN ( )``.
            statement = statement.where(images.c.image_category.in_([c.value for c in set(categories)]))
        if is_intermediate is not None:
            statement = statement.where(images.c.is_intermediate == is_intermediate)
        if user_id is not None:
            statement = statement.where(images.c.user_id == user_id)
        with self._reads.connect() as conn:
            return list(conn.execute(statement).scalars())

    def get_board_for_image(self, image_name: str) -> str | None:
        return _GET_BOARD_FOR_IMAGE.scalar(self._engine, image_name=image_name)

    def get_boards_for_images(self, image_names: list[str]) -> dict[str, str]:
        """The board of each image that has one, in one statement: lets image lists build their DTOs without a
        query per image (stock's ``ImageService.get_many`` asks ``get_board_for_image`` once per row)."""
        if not image_names:
            return {}
        with self._reads.connect() as conn:
            rows = conn.execute(
                select(board_images.c.image_name, board_images.c.board_id).where(
                    board_images.c.image_name == any_(text_array(image_names))
                )
            )
            return {name: board for name, board in rows}

    def get_image_count_for_board(self, board_id: str) -> int:
        """Non-intermediate images of the board in the gallery's image categories (``general``)."""
        return self._count(board_id, IMAGE_CATEGORIES)

    def get_asset_count_for_board(self, board_id: str) -> int:
        """Non-intermediate images of the board in the asset categories (control, mask, user, other)."""
        return self._count(board_id, ASSETS_CATEGORIES)

    def _count(self, board_id: str, categories: list[ImageCategory]) -> int:
        statement = (
            select(func.count())
            .select_from(board_images.join(images, board_images.c.image_name == images.c.image_name))
            .where(
                board_images.c.board_id == board_id,
                images.c.is_intermediate == false(),
                images.c.image_category.in_([c.value for c in set(categories)]),
            )
        )
        with self._reads.connect() as conn:
            return conn.execute(statement).scalar_one()
