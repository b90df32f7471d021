"""``GET``/``HEAD /api/v1/images/i/{image_name}/full`` and ``GET .../thumbnail`` served from S3.

Stock (InvokeAI 6.14.2, ``routers/images.py``) checks read access, refuses during image-move
maintenance (409), then opens ``images.get_path(name)`` on the local disk. These replacements keep
the check, the statuses and the headers, and read the object the index names for this image (see
``media_delivery``). Stock reads the record through ``get_path``, so an admin — whom the access check
waves through without a query — still gets a 404 for a deleted image; the admin branch keeps that by
asking the records whether the image exists (a deleted image's object may wait in the delete journal).
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Path, Response
from invokeai.app.api.auth_dependencies import CurrentMediaUserOrDefault
from invokeai.app.api.dependencies import ApiDependencies
from invokeai.app.api.routers._access import assert_image_read_access
from invokeai.app.api.routers.image_move_maintenance import assert_image_move_maintenance_inactive
from invokeai.app.api.routers.images import _get_image_cache_control
from invokeai.app.services.auth.token_service import TokenData

from invokeai_saas.routes.media_delivery import deliver, find_object, head_object
from invokeai_saas.storage import kinds
from invokeai_saas.storage.object_index import IndexedObject

s3_images_router = APIRouter(prefix="/v1/images", tags=["images"])  # the stock router's own prefix

_FULL_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "Return the full-resolution image", "content": {"image/png": {}}},
    404: {"description": "Image not found"},
}


def _readable_image(image_name: str, current_user: TokenData, kind: str) -> IndexedObject:
    """Stock's checks in stock's order, then the index row of this image's object."""
    assert_image_read_access(image_name, current_user)
    assert_image_move_maintenance_inactive()
    if current_user.is_admin and not ApiDependencies.invoker.services.image_records.exists(image_name):
        raise HTTPException(status_code=404)
    return find_object(kind, image_name)


def _full_headers(image_name: str) -> dict[str, str]:
    return {"Cache-Control": _get_image_cache_control(), "Content-Disposition": f'inline; filename="{image_name}"'}


@s3_images_router.get(
    "/i/{image_name}/full", operation_id="get_image_full", response_class=Response, responses=_FULL_RESPONSES
)
def get_image_full(
    current_user: CurrentMediaUserOrDefault,
    image_name: str = Path(description="The name of full-resolution image file to get"),  # noqa: B008
) -> Response:
    """Gets a full-resolution image file.

    Browser media requests authenticate with the path-scoped HttpOnly cookie set at login.
    Returns 409 while image storage maintenance is active.
    """
    obj = _readable_image(image_name, current_user, kinds.IMAGE)
    return deliver(obj, "image/png", _full_headers(image_name))


@s3_images_router.head(
    "/i/{image_name}/full", operation_id="get_image_full_head", response_class=Response, responses=_FULL_RESPONSES
)
def get_image_full_head(
    current_user: CurrentMediaUserOrDefault,
    image_name: str = Path(description="The name of full-resolution image file to get"),  # noqa: B008
) -> Response:
    """Gets a full-resolution image file.

    Browser media requests authenticate with the path-scoped HttpOnly cookie set at login.
    Returns 409 while image storage maintenance is active.
    """
    obj = _readable_image(image_name, current_user, kinds.IMAGE)
    return head_object(obj, "image/png", _full_headers(image_name))


@s3_images_router.get(
    "/i/{image_name}/thumbnail",
    operation_id="get_image_thumbnail",
    response_class=Response,
    responses={
        200: {"description": "Return the image thumbnail", "content": {"image/webp": {}}},
        404: {"description": "Image not found"},
    },
)
def get_image_thumbnail(
    current_user: CurrentMediaUserOrDefault,
    image_name: str = Path(description="The name of thumbnail image file to get"),  # noqa: B008
) -> Response:
    """Gets a thumbnail image file.

    Browser media requests authenticate with the path-scoped HttpOnly cookie set at login.
    Returns 409 while image storage maintenance is active.
    """
    obj = _readable_image(image_name, current_user, kinds.IMAGE_THUMBNAIL)
    return deliver(obj, "image/webp", {"Cache-Control": _get_image_cache_control()})
