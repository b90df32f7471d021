"""``POST /api/v1/images/images_by_names`` in a bounded number of queries.

The studio's gallery fetches every page through this route. Stock checks access and builds the DTO
one image at a time (about four queries per name, up to 1,000 names a request). This replacement
keeps stock's contract — same path, operation id, body, response, input order, silent skipping of
missing or unreadable images, same access rule — and reads all names with one statement.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException
from invokeai.app.api.auth_dependencies import CurrentUserOrDefault
from invokeai.app.api.dependencies import ApiDependencies
from invokeai.app.services.images.images_common import ImageDTO, image_record_to_dto
from pydantic import StringConstraints

MAX_IMAGE_BATCH_SIZE = 1000  # stock's limit for this route
ImageName = Annotated[str, StringConstraints(max_length=255)]

images_by_names_router = APIRouter(prefix="/v1/images", tags=["images"])  # the stock router's own prefix


@images_by_names_router.post(
    "/images_by_names",
    operation_id="get_images_by_names",
    responses={200: {"model": list[ImageDTO]}},
)
def get_images_by_names(
    current_user: CurrentUserOrDefault,
    image_names: Annotated[
        list[ImageName],
        Body(
            embed=True,
            description="Object containing list of image names to fetch DTOs for",
            max_length=MAX_IMAGE_BATCH_SIZE,
        ),
    ],
) -> list[ImageDTO]:
    """Gets image DTOs for the specified image names. Maintains order of input names."""
    services: Any = ApiDependencies.invoker.services
    try:
        readable = services.image_records.get_readable_records(
            list(dict.fromkeys(image_names)), current_user.user_id, current_user.is_admin
        )
    except Exception:
        raise HTTPException(status_code=500, detail="Failed to get image DTOs") from None
    dtos: list[ImageDTO] = []
    for name in image_names:
        found = readable.get(name)
        if found is None:
            continue
        record, board_id = found
        dtos.append(
            image_record_to_dto(
                image_record=record,
                image_url=services.urls.get_image_url(name),
                thumbnail_url=services.urls.get_image_url(name, True),
                board_id=board_id,
            )
        )
    return dtos
