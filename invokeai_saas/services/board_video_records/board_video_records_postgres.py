"""PostgreSQL implementation of ``BoardVideoRecordStorageBase`` (stock: ``SqliteBoardVideoRecordStorage``).

A video is on at most one board: ``board_videos`` is keyed by ``video_name``, so adding a video that is
already on a board moves it (an upsert), and a video on no board has no row at all.
"""

from __future__ import annotations

from invokeai.app.services.board_video_records.board_video_records_base import BoardVideoRecordStorageBase
from invokeai.app.services.image_records.image_records_common import ImageCategory
from sqlalchemy import Engine, any_, delete, exists, false, func, select
from sqlalchemy.dialects.postgresql import insert

from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.tables import board_videos, videos
from invokeai_saas.services.image_records.media_sql import text_array


class PostgresBoardVideoRecordStorage(BoardVideoRecordStorageBase):
    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self._reads = autocommit_reads(engine)

    def add_video_to_board(self, board_id: str, video_name: str) -> None:
        """Put the video on the board, moving it off any board it was on. An unknown board or video violates
        a foreign key and raises ``sqlalchemy.exc.IntegrityError`` (stock lets ``sqlite3.IntegrityError``
        through untranslated; every caller catches ``Exception``)."""
        statement = insert(board_videos).values(board_id=board_id, video_name=video_name)
        statement = statement.on_conflict_do_update(
            index_elements=[board_videos.c.video_name], set_={"board_id": statement.excluded.board_id}
        )
        with self._engine.begin() as conn:
            conn.execute(statement)

    def remove_video_from_board(self, video_name: str) -> None:
        """Take the video off whatever board it is on (unlike images, stock's video removal is not scoped to
        a board and reports nothing)."""
        with self._engine.begin() as conn:
            conn.execute(delete(board_videos).where(board_videos.c.video_name == video_name))

    def get_all_board_video_names_for_board(
        self,
        board_id: str,
        categories: list[ImageCategory] | None,
        is_intermediate: bool | None,
        user_id: str | None = None,
    ) -> list[str]:
        """Names of the board's videos, or with ``board_id == "none"`` of the videos on no board, filtered by
        category, intermediate flag and owner (``user_id=None``: everyone's).

        Stock has no ``ORDER BY``, so its order is whatever SQLite's plan yields (for a board, the order the
        videos joined it; for ``"none"``, by name). Here the order is always defined: a board's videos in the
        order they joined it, videos on no board by name."""
        statement = select(videos.c.video_name)
        if board_id == "none":
            on_a_board = exists().where(board_videos.c.video_name == videos.c.video_name)
            statement = statement.where(~on_a_board).order_by(videos.c.video_name)
        else:
            statement = (
                statement.join(board_videos, board_videos.c.video_name == videos.c.video_name)
                .where(board_videos.c.board_id == board_id)
                .order_by(board_videos.c.created_at, videos.c.video_name)
            )
        if categories is not None:
            # An empty list matches nothing, like stock's ``IN ( )``.
            statement = statement.where(videos.c.video_category.in_([c.value for c in set(categories)]))
        if is_intermediate is not None:
            statement = statement.where(videos.c.is_intermediate == is_intermediate)
        if user_id is not None:
            statement = statement.where(videos.c.user_id == user_id)
        with self._reads.connect() as conn:
            return list(conn.execute(statement).scalars())

    def get_board_for_video(self, video_name: str) -> str | None:
        with self._reads.connect() as conn:
            return conn.execute(
                select(board_videos.c.board_id).where(board_videos.c.video_name == video_name)
            ).scalar_one_or_none()

    def get_boards_for_videos(self, video_names: list[str]) -> dict[str, str]:
        """The board of each video that has one, in one statement (see ``get_boards_for_images``)."""
        if not video_names:
            return {}
        with self._reads.connect() as conn:
            rows = conn.execute(
                select(board_videos.c.video_name, board_videos.c.board_id).where(
                    board_videos.c.video_name == any_(text_array(video_names))
                )
            )
            return {name: board for name, board in rows}

    def get_video_count_for_board(self, board_id: str) -> int:
        """Non-intermediate videos of the board, whatever their category."""
        statement = (
            select(func.count())
            .select_from(board_videos.join(videos, board_videos.c.video_name == videos.c.video_name))
            .where(board_videos.c.board_id == board_id, videos.c.is_intermediate == false())
        )
        with self._reads.connect() as conn:
            return conn.execute(statement).scalar_one()
