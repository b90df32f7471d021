"""``GET``/``HEAD /api/v1/videos/i/{video_name}/full`` and ``GET .../thumbnail`` served from S3.

Stock (InvokeAI 6.14.2, ``routers/videos.py``) checks read access with ``_assert_video_read_access``
(404 gone / 403 denied), then serves the local file with HTTP Range support so ``<video>`` can seek.
These replacements keep that contract byte for byte in stream mode: the size comes from the object
index, ``Range`` is parsed by stock's own ``_parse_range_header`` (single range; 416 with
``Content-Range: bytes */size`` when unsatisfiable), and a 206 carries at most one
``RANGE_CHUNK_SIZE`` (1 MiB) read with ``S3 GET Range`` — clients ask again for the rest, as with
stock. In redirect mode a GET goes to the presigned URL (S3 honours ``Range`` itself); HEAD is
always answered here.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi import Path as PathParam
from invokeai.app.api.auth_dependencies import CurrentMediaUserOrDefault
from invokeai.app.api.dependencies import ApiDependencies
from invokeai.app.api.routers.videos import (
    RANGE_CHUNK_SIZE,
    _assert_video_read_access,
    _get_video_cache_control,
    _parse_range_header,
)
from invokeai.app.services.auth.token_service import TokenData

from invokeai_saas.routes.media_delivery import (
    deliver,
    find_object,
    head_object,
    object_storage,
    redirect_enabled,
    redirect_to_object,
    stream_object,
)
from invokeai_saas.storage import kinds
from invokeai_saas.storage.object_index import IndexedObject
from invokeai_saas.storage.object_store import ObjectNotFound

s3_videos_router = APIRouter(prefix="/v1/videos", tags=["videos"])  # the stock router's own prefix

VIDEO_MEDIA_TYPE = "video/mp4"


def _readable_video(video_name: str, current_user: TokenData, kind: str) -> IndexedObject:
    """Stock's check, then the index row. Stock reaches the record through ``videos.get_path`` even for an
    admin (whom the check lets through without a query): a deleted video stays a 404 for admins too."""
    _assert_video_read_access(video_name, current_user)
    if current_user.is_admin and not ApiDependencies.invoker.services.video_records.exists(video_name):
        raise HTTPException(status_code=404)
    return find_object(kind, video_name)


def _common_headers(video_name: str) -> dict[str, str]:
    return {
        "Accept-Ranges": "bytes",
        "Cache-Control": _get_video_cache_control(),
        "Content-Disposition": f'inline; filename="{video_name}"',
    }


def _ranged(obj: IndexedObject, range_header: str, headers: dict[str, str]) -> Response:
    parsed = _parse_range_header(range_header, obj.bytes)
    if parsed is None:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{obj.bytes}"})
    start, end = parsed
    try:
        part = object_storage().store.get_range(obj.object_key, start, min(end, start + RANGE_CHUNK_SIZE - 1))
    except ObjectNotFound:
        raise HTTPException(status_code=404) from None
    return Response(
        part.data,
        status_code=206,
        media_type=VIDEO_MEDIA_TYPE,
        headers={
            **headers,
            "Content-Range": f"bytes {start}-{part.end}/{obj.bytes}",
            "Content-Length": str(len(part.data)),
        },
    )


_FULL_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "Return the full video file", "content": {"video/mp4": {}}},
    206: {"description": "Return a byte-range of the video file", "content": {"video/mp4": {}}},
    404: {"description": "Video not found"},
}


@s3_videos_router.get(
    "/i/{video_name}/full", operation_id="get_video_full", response_class=Response, responses=_FULL_RESPONSES
)
def get_video_full(
    request: Request,
    current_user: CurrentMediaUserOrDefault,
    video_name: str = PathParam(description="The name of video file to get"),  # noqa: B008
) -> Response:
    """Serves the video file with HTTP Range support so HTML5 <video> seek/scrub works.

    Browser media requests authenticate with the path-scoped HttpOnly cookie set at login.
    """
    obj = _readable_video(video_name, current_user, kinds.VIDEO)
    headers = _common_headers(video_name)
    if redirect_enabled():
        return redirect_to_object(obj, VIDEO_MEDIA_TYPE, headers)
    range_header = request.headers.get("range")
    if range_header is None:
        return stream_object(obj, VIDEO_MEDIA_TYPE, headers)
    return _ranged(obj, range_header, headers)


@s3_videos_router.head(
    "/i/{video_name}/full",
    operation_id="get_video_full_head",
    response_class=Response,
    responses={
        200: {"description": "Return the full video file", "content": {"video/mp4": {}}},
        404: {"description": "Video not found"},
    },
)
def get_video_full_head(
    request: Request,
    current_user: CurrentMediaUserOrDefault,
    video_name: str = PathParam(description="The name of video file to get"),  # noqa: B008
) -> Response:
    """Serves the video file with HTTP Range support so HTML5 <video> seek/scrub works.

    Browser media requests authenticate with the path-scoped HttpOnly cookie set at login.
    """
    obj = _readable_video(video_name, current_user, kinds.VIDEO)
    return head_object(obj, VIDEO_MEDIA_TYPE, _common_headers(video_name))


@s3_videos_router.get(
    "/i/{video_name}/thumbnail",
    operation_id="get_video_thumbnail",
    response_class=Response,
    responses={
        200: {"description": "Return the video thumbnail", "content": {"image/webp": {}}},
        404: {"description": "Video not found"},
    },
)
def get_video_thumbnail(
    current_user: CurrentMediaUserOrDefault,
    video_name: str = PathParam(description="The name of thumbnail file to get"),  # noqa: B008
) -> Response:
    """Returns the first-frame WebP thumbnail of an authorized video."""
    obj = _readable_video(video_name, current_user, kinds.VIDEO_THUMBNAIL)
    return deliver(obj, "image/webp", {"Cache-Control": _get_video_cache_control()})
