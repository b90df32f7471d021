"""``BoardService`` whose single-board DTO costs two queries instead of six.

Stock's ``get_dto``/``update`` build a board's DTO from its record, two cover look-ups (most recent image,
most recent video) and three counts (images, assets, videos): six statements, and ``get_dto`` runs on every
gallery page of a board (``assert_board_read_access`` calls it), so on a networked database it is the
largest part of the hottest read. Stock's own list path (``_to_dtos``) already gets the same cover and
counts for a page of boards from one ``gallery.get_board_media_summaries`` statement; this subclass uses
that for one board too. Everything else is stock's code.
"""

from __future__ import annotations

from typing import Any

from invokeai.app.services.board_records.board_records_common import BoardChanges, BoardRecord
from invokeai.app.services.boards.boards_common import BoardDTO, board_record_to_dto
from invokeai.app.services.boards.boards_default import BoardService
from invokeai.app.services.invoker import Invoker


class SummarizedBoardService(BoardService):
    def start(self, invoker: Invoker) -> None:
        self._services_invoker = invoker
        super().start(invoker)

    def _summarized_dto(self, board_record: BoardRecord) -> BoardDTO:
        services: Any = self._services_invoker.services
        summary = services.gallery.get_board_media_summaries([board_record.board_id])[board_record.board_id]
        return board_record_to_dto(
            board_record,
            summary.cover_image_name,
            summary.image_count,
            summary.asset_count,
            cover_video_name=summary.cover_video_name,
            video_count=summary.video_count,
        )

    def get_dto(self, board_id: str) -> BoardDTO:
        return self._summarized_dto(self._services_invoker.services.board_records.get(board_id))

    def update(self, board_id: str, changes: BoardChanges) -> BoardDTO:
        return self._summarized_dto(self._services_invoker.services.board_records.update(board_id, changes))
