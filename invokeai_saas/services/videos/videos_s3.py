"""``VideoService`` for S3 media: the objects are uploaded before the record is saved, so no record ever
names a video whose bytes are not in the bucket (see ``images_s3`` for the reasoning; a video upload takes
far longer than an image's, so stock's record-first order would show a broken tile for seconds).

If the record cannot be saved, the objects are deleted again (and if that fails too, the cleanup pass takes
them once older than its grace period: they have no record). Validation, naming, the subfolder strategy, the
best-effort board link, the DTO and the change event are stock's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from invokeai.app.services.image_files.image_subfolder_strategy import create_subfolder_strategy
from invokeai.app.services.image_records.image_records_common import (
    ImageCategory,
    InvalidImageCategoryException,
    InvalidOriginException,
    ResourceOrigin,
)
from invokeai.app.services.video_files.video_files_common import VideoFileSaveException
from invokeai.app.services.video_records.video_records_common import VideoRecordSaveException
from invokeai.app.services.videos.videos_common import VideoDTO
from PIL import Image

from invokeai_saas.services.images.images_s3 import SYSTEM_OWNER, discard_objects
from invokeai_saas.services.videos.videos_batched import BatchedVideoService


class S3VideoService(BatchedVideoService):
    def create(
        self,
        source_path: Path,
        width: int,
        height: int,
        duration: float,
        fps: float | None,
        video_origin: ResourceOrigin,
        video_category: ImageCategory,
        node_id: str | None = None,
        session_id: str | None = None,
        board_id: str | None = None,
        is_intermediate: bool | None = False,
        metadata: str | None = None,
        workflow: str | None = None,
        graph: str | None = None,
        user_id: str | None = None,
        first_frame: Image.Image | None = None,
    ) -> VideoDTO:
        if video_origin not in ResourceOrigin:
            raise InvalidOriginException
        if video_category not in ImageCategory:
            raise InvalidImageCategoryException
        services: Any = self._services_invoker.services
        video_name = services.names.create_video_name()
        strategy = create_subfolder_strategy(services.configuration.image_subfolder_strategy)
        video_subfolder = strategy.get_subfolder(video_name, video_category, is_intermediate or False)
        try:
            services.video_files.save_for_owner(
                user_id or SYSTEM_OWNER,
                source_path,
                video_name,
                metadata=metadata,
                workflow=workflow,
                graph=graph,
                first_frame=first_frame,
            )
        except VideoFileSaveException:
            services.logger.error("Failed to save video file")
            raise
        try:
            services.video_records.save(
                video_name=video_name,
                video_origin=video_origin,
                video_category=video_category,
                width=width,
                height=height,
                duration=duration,
                fps=fps,
                has_workflow=workflow is not None or graph is not None,
                is_intermediate=is_intermediate,
                node_id=node_id,
                metadata=metadata,
                session_id=session_id,
                user_id=user_id,
                video_subfolder=video_subfolder,
            )
        except Exception as e:
            self._discard_objects(video_name)
            if isinstance(e, VideoRecordSaveException):
                services.logger.error("Failed to save video record")
            else:
                services.logger.error(f"Problem saving video record and file: {str(e)}")
            raise
        if board_id is not None:  # best-effort, as stock: a vanished board must not destroy a new video
            try:
                services.board_video_records.add_video_to_board(board_id=board_id, video_name=video_name)
            except Exception as e:
                services.logger.warning(f"Failed to add video to board {board_id}: {str(e)}")
        video_dto = self.get_dto(video_name)
        self._on_changed(video_dto)
        return video_dto

    def _discard_objects(self, video_name: str) -> None:
        services: Any = self._services_invoker.services
        discard_objects(services.video_files, services.logger, video_name, "a video")
