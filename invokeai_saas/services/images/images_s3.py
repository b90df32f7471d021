"""``ImageService`` for S3 media: the objects are written before the record, so no record ever names an image
whose bytes are not in the bucket.

Stock's ``create`` saves the record, links it to its board and only then writes the files; on a local disk the
gap is microseconds, against S3 it is an upload (tens of milliseconds, or a timeout when S3 is down), during
which every gallery list shows an image whose URLs answer 404. Here the upload comes first (the owner is
known from the arguments); if the record cannot be saved, the objects are deleted again, and if even that
fails the cleanup pass removes them once they are older than its grace period (they have no record). Every
other step — validation, naming, the subfolder strategy, the mutation lock, the board link, the DTO and the
change event — is stock's.
"""

from __future__ import annotations

from typing import Any

from invokeai.app.services.image_files.image_files_common import ImageFileSaveException
from invokeai.app.services.image_files.image_subfolder_strategy import create_subfolder_strategy
from invokeai.app.services.image_records.image_records_common import (
    ImageCategory,
    ImageRecordSaveException,
    InvalidImageCategoryException,
    InvalidOriginException,
    ResourceOrigin,
)
from invokeai.app.services.images.images_common import ImageDTO
from PIL.Image import Image as PILImageType

from invokeai_saas.services.images.images_batched import BatchedImageService

# Who owns an image saved without a user (single-user paths): what the record storage stores for ``None``.
SYSTEM_OWNER = "system"


class S3ImageService(BatchedImageService):
    def create(
        self,
        image: PILImageType,
        image_origin: ResourceOrigin,
        image_category: ImageCategory,
        node_id: str | None = None,
        session_id: str | None = None,
        board_id: str | None = None,
        is_intermediate: bool | None = False,
        metadata: str | None = None,
        workflow: str | None = None,
        graph: str | None = None,
        user_id: str | None = None,
    ) -> ImageDTO:
        if image_origin not in ResourceOrigin:
            raise InvalidOriginException
        if image_category not in ImageCategory:
            raise InvalidImageCategoryException
        services: Any = self._services_invoker.services
        image_name = services.names.create_image_name()
        strategy = create_subfolder_strategy(services.configuration.image_subfolder_strategy)
        image_subfolder = strategy.get_subfolder(image_name, image_category, is_intermediate or False)
        width, height = image.size
        try:
            with self._image_mutation_lock():
                services.image_files.save_for_owner(
                    user_id or SYSTEM_OWNER, image, image_name, metadata=metadata, workflow=workflow, graph=graph
                )
                try:
                    services.image_records.save(
                        image_name=image_name,
                        image_origin=image_origin,
                        image_category=image_category,
                        width=width,
                        height=height,
                        has_workflow=workflow is not None or graph is not None,
                        is_intermediate=is_intermediate,
                        node_id=node_id,
                        metadata=metadata,
                        session_id=session_id,
                        user_id=user_id,
                        image_subfolder=image_subfolder,
                    )
                except Exception:
                    self._discard_objects(image_name)
                    raise
                if board_id is not None:
                    try:
                        services.board_image_records.add_image_to_board(board_id=board_id, image_name=image_name)
                    except Exception as e:
                        services.logger.warning(f"Failed to add image to board {board_id}: {str(e)}")
            image_dto = self.get_dto(image_name)
            self._on_changed(image_dto)
            return image_dto
        except ImageRecordSaveException:
            services.logger.error("Failed to save image record")
            raise
        except ImageFileSaveException:
            services.logger.error("Failed to save image file")
            raise
        except Exception as e:
            services.logger.error(f"Problem saving image record and file: {str(e)}")
            raise e

    def _discard_objects(self, image_name: str) -> None:
        services: Any = self._services_invoker.services
        discard_objects(services.image_files, services.logger, image_name, "an image")


def discard_objects(files: Any, logger: Any, media_name: str, what: str) -> None:
    """Delete the objects written for media whose record could not be saved (images and videos alike); if even
    that fails, the cleanup pass removes them later, since they have no record."""
    try:
        files.delete(media_name)
    except Exception as e:
        logger.warning(f"Could not remove the objects of {what} whose record failed: {str(e)}")
