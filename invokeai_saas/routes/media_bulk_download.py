"""``GET /api/v1/images/download/{bulk_download_item_name}`` streamed from S3.

Stock (InvokeAI 6.14.2) answers with a ``FileResponse`` on its temp directory, refuses other users'
archives with 403 (admins allowed), answers 404 for anything else that goes wrong, and deletes the
archive once it has been sent: one download per archive. The same here, with the owner read from the
object index (``S3BulkDownloadService``), so the check holds whichever API process serves the fetch.
Unlike stock, an archive without a known owner is a 404, never "anyone may fetch it".

Always streamed, never redirected, whatever ``s3_serve_mode`` says: the studio fetches it with an
``Authorization: Bearer`` header, and that header must not travel along a redirect to S3 (SigV4
query auth plus a foreign Authorization header is refused, and the token must not leave the API).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, BackgroundTasks, HTTPException, Path, Response
from invokeai.app.api.auth_dependencies import CurrentUserOrDefault
from invokeai.app.api.dependencies import ApiDependencies
from invokeai.app.api.routers.images import IMAGE_MAX_AGE

from invokeai_saas.routes.media_delivery import file_response_disposition, stream_object
from invokeai_saas.services.bulk_download.bulk_download_s3 import ZIP_CONTENT_TYPE

logger = logging.getLogger(__name__)

s3_bulk_download_router = APIRouter(prefix="/v1/images", tags=["images"])  # the stock router's own prefix


def _delete_served_archive(service: Any, bulk_download_item_name: str) -> None:
    """After the response: a failed delete (S3 down) leaves the archive to the bucket's lifecycle rule for
    ``bulk_downloads/``; it must not turn a served download into an error in the log's eyes only."""
    try:
        service.delete(bulk_download_item_name)
    except Exception as error:
        logger.warning("Could not delete served bulk download archive: %s", type(error).__name__)


@s3_bulk_download_router.api_route(
    "/download/{bulk_download_item_name}",
    methods=["GET"],
    operation_id="get_bulk_download_item",
    response_class=Response,
    responses={
        200: {"description": "Return the complete bulk download item", "content": {"application/zip": {}}},
        404: {"description": "Image not found"},
    },
)
def get_bulk_download_item(
    current_user: CurrentUserOrDefault,
    background_tasks: BackgroundTasks,
    bulk_download_item_name: str = Path(  # noqa: B008
        description="The bulk_download_item_name of the bulk download item to get"
    ),
) -> Response:
    """Gets a bulk download zip file.

    Requires authentication.  The caller must be the user who initiated the
    download (tracked by the bulk download service) or an admin.
    """
    service = ApiDependencies.invoker.services.bulk_download
    try:
        archive = service.find_archive(bulk_download_item_name)
        if archive.user_id != current_user.user_id and not current_user.is_admin:
            raise HTTPException(status_code=403, detail="Not authorized to access this download")
        response = stream_object(
            archive,
            ZIP_CONTENT_TYPE,
            {
                "Content-Disposition": file_response_disposition("inline", bulk_download_item_name),
                "Cache-Control": f"max-age={IMAGE_MAX_AGE}",
            },
        )
    except HTTPException:
        raise
    except Exception as error:  # as stock: anything else is a 404 (an S3 outage in the chain becomes a 503)
        raise HTTPException(status_code=404) from error
    background_tasks.add_task(_delete_served_archive, service, bulk_download_item_name)
    return response
