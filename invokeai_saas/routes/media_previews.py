"""The small preview images served from S3: model covers, style preset images, workflow thumbnails.

Stock (InvokeAI 6.14.2) answers each with a ``FileResponse`` on a local path, ``media_type="image/png"``
(the stored files are WEBP; browsers sniff), ``Content-Disposition: inline; filename="{id}.png"`` and
``Cache-Control: max-age=31536000`` (the listed URLs carry a random cache buster). These replacements
keep those headers and stock's access rules, with one deliberate change:

- ``GET /api/v2/models/i/{key}/image`` — unauthenticated, as stock: model covers are shared by every
  user (admins install models for everyone) and live under the shared key prefix.
- ``GET /api/v1/style_presets/i/{style_preset_id}/image`` — stock's read rule (admin, default,
  public or own preset) but authenticated with ``CurrentMediaUserOrDefault``: stock demands a Bearer
  token, which the studio's ``<img src>`` cannot send, so multi-user stock shows no preset images.
  The media cookie is scoped to ``/api/v1`` and therefore reaches this route. Default presets keep
  their packaged PNGs (never in S3), exactly as stock's ``get_path`` picks them.
- ``GET /api/v1/workflows/i/{workflow_id}/thumbnail`` — unauthenticated, as stock ("intentionally
  unauthenticated": browsers load it with ``<img src>``; workflow ids are random UUIDs). The route
  still reads the workflow record first, as stock's ``get_path`` does, so a deleted workflow's thumbnail
  is a 404 even while its object waits in the delete journal. Default workflows have no thumbnail
  unless the package ships one (6.14.2 does not).
"""

from __future__ import annotations

from pathlib import Path as FilePath

from fastapi import APIRouter, HTTPException, Path, Response
from fastapi.responses import FileResponse
from invokeai.app.api.auth_dependencies import CurrentMediaUserOrDefault
from invokeai.app.api.dependencies import ApiDependencies
from invokeai.app.api.routers.style_presets import _assert_preset_read, _load_record_or_404
from invokeai.app.services.style_preset_images import style_preset_images_disk
from invokeai.app.services.style_preset_records.style_preset_records_common import PresetType
from invokeai.app.services.workflow_records.workflow_records_common import WorkflowCategory
from invokeai.app.services.workflow_thumbnails import workflow_thumbnails_disk

from invokeai_saas.routes.media_delivery import deliver, file_response_disposition, find_object
from invokeai_saas.storage import kinds

IMAGE_MAX_AGE = 31536000  # stock's value in model_manager.py, style_presets.py and workflows.py
PREVIEW_MEDIA_TYPE = "image/png"  # what stock declares for these WEBP files
DEFAULT_PRESET_IMAGES = FilePath(style_preset_images_disk.__file__).parent / "default_style_preset_images"
DEFAULT_WORKFLOW_THUMBNAILS = FilePath(workflow_thumbnails_disk.__file__).parent / "default_workflow_thumbnails"

_PREVIEW_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"description": "Bad request"},
}

s3_model_images_router = APIRouter(prefix="/v2/models", tags=["model_manager"])
s3_style_preset_images_router = APIRouter(prefix="/v1/style_presets", tags=["style_presets"])
s3_workflow_thumbnails_router = APIRouter(prefix="/v1/workflows", tags=["workflows"])


def _preview_headers(media_id: str) -> dict[str, str]:
    return {
        "Cache-Control": f"max-age={IMAGE_MAX_AGE}",
        "Content-Disposition": file_response_disposition("inline", media_id + ".png"),
    }


def _packaged_file(folder: FilePath, filename: str, media_id: str) -> FileResponse:
    """A file shipped inside InvokeAI's wheel, served as stock serves it; a name that leaves the folder (a
    renamed default preset) or a file that is not there is a 404."""
    path = (folder / filename).resolve()
    if path.parent != folder.resolve() or not path.is_file():
        raise HTTPException(status_code=404)
    response = FileResponse(
        path, media_type=PREVIEW_MEDIA_TYPE, filename=media_id + ".png", content_disposition_type="inline"
    )
    response.headers["Cache-Control"] = f"max-age={IMAGE_MAX_AGE}"
    return response


@s3_model_images_router.get(
    "/i/{key}/image",
    operation_id="get_model_image",
    responses={
        200: {"description": "The model image was fetched successfully"},
        **_PREVIEW_RESPONSES,
        404: {"description": "The model image could not be found"},
    },
    status_code=200,
)
def get_model_image(
    key: str = Path(description="The name of model image file to get"),  # noqa: B008
) -> Response:
    """Gets an image file that previews the model"""
    return deliver(find_object(kinds.MODEL_IMAGE, key), PREVIEW_MEDIA_TYPE, _preview_headers(key))


@s3_style_preset_images_router.get(
    "/i/{style_preset_id}/image",
    operation_id="get_style_preset_image",
    responses={
        200: {"description": "The style preset image was fetched successfully"},
        **_PREVIEW_RESPONSES,
        404: {"description": "The style preset image could not be found"},
    },
    status_code=200,
)
def get_style_preset_image(
    current_user: CurrentMediaUserOrDefault,
    style_preset_id: str = Path(description="The id of the style preset image to get"),  # noqa: B008
) -> Response:
    """Gets an image file that previews the model"""
    record = _load_record_or_404(style_preset_id)
    _assert_preset_read(record, current_user)
    if record.type is PresetType.Default:
        return _packaged_file(DEFAULT_PRESET_IMAGES, record.name + ".png", style_preset_id)
    obj = find_object(kinds.STYLE_PRESET_IMAGE, style_preset_id)
    return deliver(obj, PREVIEW_MEDIA_TYPE, _preview_headers(style_preset_id))


@s3_workflow_thumbnails_router.get(
    "/i/{workflow_id}/thumbnail",
    operation_id="get_workflow_thumbnail",
    responses={
        200: {"description": "The workflow thumbnail was fetched successfully"},
        **_PREVIEW_RESPONSES,
        404: {"description": "The workflow thumbnail could not be found"},
    },
    status_code=200,
)
def get_workflow_thumbnail(
    workflow_id: str = Path(description="The id of the workflow thumbnail to get"),  # noqa: B008
) -> Response:
    """Gets a workflow's thumbnail image.

    This endpoint is intentionally unauthenticated because browsers load images
    via <img src> tags which cannot send Bearer tokens. Workflow IDs are UUIDs,
    providing security through unguessability.
    """
    try:
        workflow = ApiDependencies.invoker.services.workflow_records.get(workflow_id).workflow
    except Exception:
        raise HTTPException(status_code=404) from None
    if workflow.meta.category is WorkflowCategory.Default:
        return _packaged_file(DEFAULT_WORKFLOW_THUMBNAILS, workflow_id + ".png", workflow_id)
    obj = find_object(kinds.WORKFLOW_THUMBNAIL, workflow_id)
    return deliver(obj, PREVIEW_MEDIA_TYPE, _preview_headers(workflow_id))
