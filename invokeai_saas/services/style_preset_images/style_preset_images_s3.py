"""Style preset images in S3 (stock: ``StylePresetImageFileStorageDisk``).

A user's preset image lives under its owner's prefix (``users/{owner}/style_presets/{id}.webp``), the owner
read from the preset record. The default presets keep serving the PNGs InvokeAI ships: they are part of the
installation, identical for every tenant, and never copied to S3 or deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from invokeai.app.services.invoker import Invoker
from invokeai.app.services.style_preset_images import style_preset_images_disk
from invokeai.app.services.style_preset_images.style_preset_images_base import StylePresetImageFileStorageBase
from invokeai.app.services.style_preset_images.style_preset_images_common import (
    StylePresetImageFileDeleteException,
    StylePresetImageFileNotFoundException,
    StylePresetImageFileSaveException,
)
from invokeai.app.services.style_preset_records.style_preset_records_common import PresetType, StylePresetRecordDTO
from invokeai.app.util.misc import uuid_string
from invokeai.app.util.path_safety import is_contained_filename
from PIL import Image
from PIL.Image import Image as PILImageType

from invokeai_saas.storage import kinds
from invokeai_saas.storage.context import ObjectStorage
from invokeai_saas.storage.object_store import ObjectNotFound
from invokeai_saas.storage.small_images import delete_indexed, materialise, open_image, put_indexed, thumbnail_webp

DEFAULT_STYLE_PRESET_IMAGES_DIR = Path(style_preset_images_disk.__file__).parent / "default_style_preset_images"


def packaged_image_path(record: StylePresetRecordDTO) -> Path | None:
    """Stock's packaged image path for a default preset (``{name}.png``). ``None`` for a name that would leave
    the folder: admins can create default presets with any name, and stock would join it unchecked."""
    if not is_contained_filename(record.name + ".png"):
        return None
    return DEFAULT_STYLE_PRESET_IMAGES_DIR / (record.name + ".png")


class S3StylePresetImageFileStorage(StylePresetImageFileStorageBase):
    """Stock's behaviour and exceptions, with user images in S3.

    URLs keep stock's random cache buster: the URL is the same for every version of the image and the index only
    knows its size, which an updated image can share with the old one.
    """

    def __init__(self, storage: ObjectStorage, cache_dir: Path) -> None:
        self._storage = storage
        self._cache_dir = cache_dir / "style_preset_images"

    def start(self, invoker: Invoker) -> None:
        self._invoker = invoker

    def _record(self, style_preset_id: str) -> StylePresetRecordDTO:
        return self._invoker.services.style_preset_records.get(style_preset_id)

    def _object_key(self, record: StylePresetRecordDTO) -> str:
        return self._storage.layout.style_preset_image(record.user_id, record.id)

    def get(self, style_preset_id: str) -> PILImageType:
        record = self._record(style_preset_id)
        if record.type is PresetType.Default:
            path = packaged_image_path(record)
            if path is None or not path.exists():
                raise StylePresetImageFileNotFoundException
            return Image.open(path)
        try:
            return open_image(self._storage.store.get_bytes(self._object_key(record)))
        except ObjectNotFound as e:
            raise StylePresetImageFileNotFoundException from e

    def save(self, style_preset_id: str, image: PILImageType) -> None:
        """As stock, this writes the preset's own image even for a default preset (whose served image stays the
        packaged one); the owner comes from the record, which the routes create before the image."""
        try:
            record = self._record(style_preset_id)
            data = thumbnail_webp(image)
            put_indexed(
                self._storage, self._object_key(record), record.user_id, kinds.STYLE_PRESET_IMAGE, record.id, data
            )
        except Exception as e:
            raise StylePresetImageFileSaveException from e

    def get_path(self, style_preset_id: str) -> Path:
        """The packaged PNG for a default preset, else a local copy of the object (a path of no file when the
        preset has no image, as stock)."""
        record = self._record(style_preset_id)
        if record.type is PresetType.Default:
            path = packaged_image_path(record)
            if path is None:
                raise StylePresetImageFileNotFoundException
            return path
        return materialise(self._storage, self._object_key(record), self._cache_dir / (record.id + ".webp"))

    def get_url(self, style_preset_id: str) -> str | None:
        return self.get_urls_for_records([self._record(style_preset_id)])[style_preset_id]

    def get_urls_for_records(self, records: Sequence[StylePresetRecordDTO]) -> dict[str, str | None]:
        """``get_url`` for presets already read (the preset list), with one index query for the whole list."""
        present = self._storage.index.find_many(
            kinds.STYLE_PRESET_IMAGE, [r.id for r in records if r.type is not PresetType.Default]
        )
        urls: dict[str, str | None] = {}
        for record in records:
            if record.type is PresetType.Default:
                path = packaged_image_path(record)
                has_image = path is not None and path.exists()
            else:
                has_image = record.id in present
            url = self._invoker.services.urls.get_style_preset_image_url(record.id)
            urls[record.id] = f"{url}?{uuid_string()}" if has_image else None
        return urls

    def delete(self, style_preset_id: str) -> None:
        """Deletes the preset's object; without one, ``StylePresetImageFileNotFoundException`` (which the routes
        ignore), as stock. The packaged PNGs of default presets belong to the installation and are never deleted
        (stock would unlink them from the installed package)."""
        try:
            record = self._record(style_preset_id)
            found = self._storage.index.find(kinds.STYLE_PRESET_IMAGE, record.id)
            if found is None:
                raise StylePresetImageFileNotFoundException
            delete_indexed(self._storage, found.object_key)
            (self._cache_dir / (record.id + ".webp")).unlink(missing_ok=True)
        except StylePresetImageFileNotFoundException as e:
            raise StylePresetImageFileNotFoundException from e
        except Exception as e:
            raise StylePresetImageFileDeleteException from e
