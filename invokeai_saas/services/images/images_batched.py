"""``ImageService`` with a bounded number of queries per list page.

Stock's ``get_many`` asks the board-image records for the board of each image, one query per row: a
50-image gallery page costs 51 queries, which on a networked database is tens of milliseconds. This
subclass asks once for the whole page (``get_boards_for_images`` of the PostgreSQL board-image
records) and otherwise is stock's code path: same records, same DTO builder, same errors.
"""

from __future__ import annotations

from typing import Any

from invokeai.app.services.image_records.image_records_common import ImageCategory, ResourceOrigin
from invokeai.app.services.images.images_common import ImageDTO, image_record_to_dto
from invokeai.app.services.images.images_default import ImageService
from invokeai.app.services.invoker import Invoker
from invokeai.app.services.shared.pagination import OffsetPaginatedResults
from invokeai.app.services.shared.sqlite.sqlite_common import SQLiteDirection


class BatchedImageService(ImageService):
    def start(self, invoker: Invoker) -> None:
        self._services_invoker = invoker
        super().start(invoker)

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
    ) -> OffsetPaginatedResults[ImageDTO]:
        services: Any = self._services_invoker.services
        try:
            results = services.image_records.get_many(
                offset,
                limit,
                starred_first,
                order_dir,
                image_origin,
                categories,
                is_intermediate,
                board_id,
                search_term,
                user_id,
                is_admin,
            )
            boards = services.board_image_records.get_boards_for_images([r.image_name for r in results.items])
            image_dtos = [
                image_record_to_dto(
                    image_record=r,
                    image_url=services.urls.get_image_url(r.image_name),
                    thumbnail_url=services.urls.get_image_url(r.image_name, True),
                    board_id=boards.get(r.image_name),
                )
                for r in results.items
            ]
            return OffsetPaginatedResults[ImageDTO](
                items=image_dtos, offset=results.offset, limit=results.limit, total=results.total
            )
        except Exception as e:
            services.logger.error("Problem getting paginated image DTOs")
            raise e
