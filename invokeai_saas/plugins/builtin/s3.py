"""The s3 plugin: active when ``s3_bucket`` is set. Saas mode then also needs ``database_url`` (the object index
lives in PostgreSQL) and the flat image subfolder strategy; activation refuses to start otherwise.

Swaps every file storage stock builds for its S3 implementation (images with thumbnails, videos, model images,
style-preset images, workflow thumbnails, bulk-download archives), replaces the media routes with ones that
check access and then stream or redirect, answers 503 wherever an object-store outage is behind an error, runs
the storage cleanup pass in the background, and provides the object-store probe (a HEAD on the bucket, signed
with the configured credentials, so bad keys show as unreachable).

Nothing user-owned is written to the API or worker machine's disk: stock callers that need a local path get
a copy in a temporary cache folder (outside the InvokeAI root), removed when the process stops.
"""

from __future__ import annotations

import shutil
import tempfile
from logging import Logger
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI

from invokeai_saas.aws import s3_client
from invokeai_saas.config import SaasSettings
from invokeai_saas.health.probes import BackendProbe
from invokeai_saas.plugins.markers import hookimpl

# Seconds between cleanup passes in each API process (they take turns through an advisory lock).
CLEANUP_INTERVAL_SECONDS = 600.0

_state: dict[str, Any] = {}


@hookimpl
def saas_swap_services(
    invokeai_config: Any, saas_config: SaasSettings, services: dict[str, Any], logger: Logger
) -> None:
    if saas_config.s3_bucket is None or saas_config.database_url is None:
        return
    from invokeai_saas.db.engine import get_engine
    from invokeai_saas.services.bulk_download.bulk_download_s3 import S3BulkDownloadService
    from invokeai_saas.services.image_files.image_files_s3 import S3ImageFileStorage
    from invokeai_saas.services.images.images_s3 import S3ImageService
    from invokeai_saas.services.model_images.model_images_s3 import S3ModelImageFileStorage
    from invokeai_saas.services.style_preset_images.style_preset_images_s3 import S3StylePresetImageFileStorage
    from invokeai_saas.services.video_files.video_files_s3 import S3VideoFileStorage
    from invokeai_saas.services.videos.videos_s3 import S3VideoService
    from invokeai_saas.services.workflow_thumbnails.workflow_thumbnails_s3 import S3WorkflowThumbnailFileStorage
    from invokeai_saas.storage.context import ObjectStorage, set_object_storage
    from invokeai_saas.storage.keys import KeyLayout
    from invokeai_saas.storage.object_index import StorageObjectIndex
    from invokeai_saas.storage.object_store import S3ObjectStore

    storage = ObjectStorage(
        store=S3ObjectStore(saas_config),
        index=StorageObjectIndex(get_engine(saas_config)),
        layout=KeyLayout(saas_config.s3_prefix),
        settings=saas_config,
    )
    set_object_storage(storage)
    cache_dir = Path(tempfile.mkdtemp(prefix="invokeai-saas-objects-"))
    _state["cache_dir"] = cache_dir
    image_files = S3ImageFileStorage(storage, cache_dir / "images")
    services.update(
        image_files=image_files,
        images=S3ImageService(),
        video_files=S3VideoFileStorage(storage, cache_dir / "videos"),
        videos=S3VideoService(),
        model_images=S3ModelImageFileStorage(storage, cache_dir),
        style_preset_image_files=S3StylePresetImageFileStorage(storage, cache_dir),
        workflow_thumbnails=S3WorkflowThumbnailFileStorage(storage, cache_dir),
        bulk_download=S3BulkDownloadService(storage),
    )
    # The image-move service was built around the disk storage (stock passes it in its constructor); with the
    # flat strategy it never moves anything, but its start-up recovery must look at the same storage.
    image_moves = services.get("image_moves")
    if image_moves is not None and hasattr(image_moves, "image_files"):
        image_moves.image_files = image_files
    logger.info("saas mode: media on S3 (bucket %s, %s mode)", saas_config.s3_bucket, saas_config.s3_serve_mode)


@hookimpl
def saas_route_overrides(saas_config: SaasSettings) -> list[APIRouter]:
    if saas_config.s3_bucket is None or saas_config.database_url is None:
        return []
    from invokeai_saas.routes.media import s3_media_route_overrides

    return s3_media_route_overrides()


@hookimpl
def saas_configure_app(saas_config: SaasSettings, app: FastAPI) -> None:
    if saas_config.s3_bucket is None:
        return
    from invokeai_saas.storage.http_errors import install_object_store_error_handlers

    install_object_store_error_handlers(app)


@hookimpl
def saas_startup(saas_config: SaasSettings, services: Any, logger: Logger) -> None:
    if saas_config.s3_bucket is None or saas_config.database_url is None:
        return
    from invokeai_saas.db.engine import get_engine
    from invokeai_saas.storage.cleanup import CleanupScheduler, StorageCleanup
    from invokeai_saas.storage.context import get_object_storage

    scheduler = CleanupScheduler(
        StorageCleanup(get_object_storage(), get_engine(saas_config)), CLEANUP_INTERVAL_SECONDS, logger
    )
    scheduler.start()
    _state["scheduler"] = scheduler


@hookimpl
def saas_shutdown(saas_config: SaasSettings, logger: Logger) -> None:
    scheduler = _state.pop("scheduler", None)
    if scheduler is not None:
        scheduler.stop()
    cache_dir = _state.pop("cache_dir", None)
    if cache_dir is not None:
        shutil.rmtree(cache_dir, ignore_errors=True)


@hookimpl
def saas_health_probes(saas_config: SaasSettings, services: Any) -> list[BackendProbe]:
    bucket = saas_config.s3_bucket
    if bucket is None:
        return []
    client = s3_client(saas_config)

    def check() -> str:
        client.head_bucket(Bucket=bucket)
        return "bucket reachable"

    return [BackendProbe("object_store", "s3", check)]
