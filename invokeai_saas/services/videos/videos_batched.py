"""``VideoService`` with a bounded number of queries per list page (see ``images_batched``: stock looks
up each video's board with its own query)."""

from __future__ import annotations

from typing import Any

from invokeai.app.services.image_records.image_records_common import ImageCategory, ResourceOrigin
from invokeai.app.services.invoker import Invoker
from invokeai.app.services.shared.pagination import OffsetPaginatedResults
from invokeai.app.services.shared.sqlite.sqlite_common import SQLiteDirection
from invokeai.app.services.videos.videos_common import VideoDTO, video_record_to_dto
from invokeai.app.services.videos.videos_default import VideoService


class BatchedVideoService(VideoService):
    def start(self, invoker: Invoker) -> None:
        self._services_invoker = invoker
        super().start(invoker)

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
    ) -> OffsetPaginatedResults[VideoDTO]:
        services: Any = self._services_invoker.services
        try:
            results = services.video_records.get_many(
                offset,
                limit,
                starred_first,
                order_dir,
                video_origin,
                categories,
                is_intermediate,
                board_id,
                search_term,
                user_id,
                is_admin,
            )
            boards = services.board_video_records.get_boards_for_videos([r.video_name for r in results.items])
            video_dtos = [
                video_record_to_dto(
                    video_record=r,
                    video_url=services.urls.get_video_url(r.video_name),
                    thumbnail_url=services.urls.get_video_url(r.video_name, thumbnail=True),
                    board_id=boards.get(r.video_name),
                )
                for r in results.items
            ]
            return OffsetPaginatedResults[VideoDTO](
                items=video_dtos, offset=results.offset, limit=results.limit, total=results.total
            )
        except Exception as e:
            services.logger.error("Problem getting paginated video DTOs")
            raise e
