"""The kinds of object in the index (``storage_objects.kind``): storages write them, routes and the cleanup
pass read them. ``name`` is always the media's own name in InvokeAI (image/video file name, preset id,
workflow id, model key, archive name), so ``(kind, name)`` finds the one object."""

from __future__ import annotations

IMAGE = "image"
IMAGE_THUMBNAIL = "image_thumbnail"
VIDEO = "video"
VIDEO_THUMBNAIL = "video_thumbnail"
VIDEO_SIDECAR = "video_sidecar"
STYLE_PRESET_IMAGE = "style_preset_image"
WORKFLOW_THUMBNAIL = "workflow_thumbnail"
MODEL_IMAGE = "model_image"
BULK_DOWNLOAD = "bulk_download"

# The record each kind belongs to (table, name column): the cleanup pass deletes an object whose record is gone.
# Bulk-download archives belong to no record: they are temporary by nature and expire on their own schedule.
RECORD_OF_KIND: dict[str, tuple[str, str]] = {
    IMAGE: ("images", "image_name"),
    IMAGE_THUMBNAIL: ("images", "image_name"),
    VIDEO: ("videos", "video_name"),
    VIDEO_THUMBNAIL: ("videos", "video_name"),
    VIDEO_SIDECAR: ("videos", "video_name"),
    STYLE_PRESET_IMAGE: ("style_presets", "id"),
    WORKFLOW_THUMBNAIL: ("workflow_library", "workflow_id"),
    MODEL_IMAGE: ("models", "id"),
}
