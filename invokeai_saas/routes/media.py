"""The stock media routes that saas mode answers from S3 (for the s3 plugin's ``saas_route_overrides``).

Each replacement keeps stock's path, method, operation id, parameters and auth dependency, runs stock's
access check first, and only then reads the object the index names for that media: see
``media_delivery`` for streaming versus presigned redirects, and each module for its routes.
"""

from __future__ import annotations

from fastapi import APIRouter


def s3_media_route_overrides() -> list[APIRouter]:
    """Imported on call: the route modules import InvokeAI's routers, which only an API process has loaded."""
    from invokeai_saas.routes.media_bulk_download import s3_bulk_download_router
    from invokeai_saas.routes.media_images import s3_images_router
    from invokeai_saas.routes.media_previews import (
        s3_model_images_router,
        s3_style_preset_images_router,
        s3_workflow_thumbnails_router,
    )
    from invokeai_saas.routes.media_videos import s3_videos_router

    return [
        s3_images_router,
        s3_videos_router,
        s3_model_images_router,
        s3_style_preset_images_router,
        s3_workflow_thumbnails_router,
        s3_bulk_download_router,
    ]
