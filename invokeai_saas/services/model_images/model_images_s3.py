"""Model cover images in S3 (stock: ``ModelImageFileStorageDisk``).

Models are installed for everyone, so their covers are shared objects (``shared/model_images/{key}.webp``)
accounted to the ``system`` user. The index answers "has this model a cover?" for the model list without an S3
request per model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from invokeai.app.services.invoker import Invoker
from invokeai.app.services.model_images.model_images_base import ModelImageFileStorageBase
from invokeai.app.services.model_images.model_images_common import (
    ModelImageFileDeleteException,
    ModelImageFileNotFoundException,
    ModelImageFileSaveException,
)
from invokeai.app.util.misc import uuid_string
from invokeai.app.util.path_safety import is_contained_filename
from PIL.Image import Image as PILImageType

from invokeai_saas.storage import kinds
from invokeai_saas.storage.context import ObjectStorage
from invokeai_saas.storage.keys import InvalidObjectName
from invokeai_saas.storage.object_store import ObjectNotFound
from invokeai_saas.storage.small_images import delete_indexed, materialise, open_image, put_indexed, thumbnail_webp

# Stock's model list asks ``get_url`` once per model. Covers are shared and few (at most one per installed model),
# so the names of those that exist are read in one query and reused for this long: a cover another process saves
# or deletes shows in this one's lists within this time, and this process's own saves and deletes show at once.
COVER_SNAPSHOT_SECONDS = 2.0

MODEL_IMAGES_OWNER = "system"
"""Whose usage the shared covers count against: no tenant owns a model."""


class S3ModelImageFileStorage(ModelImageFileStorageBase):
    """Stock's behaviour and exceptions, with the bytes in S3.

    URLs keep stock's random cache buster. The cover's URL is the same for every version of the image, and the
    index row only records the size, which two different covers can share: a buster derived from it could keep
    serving the old cover from the browser cache after an update. Stock's random query string is always correct;
    a cover is one small request.
    """

    def __init__(
        self, storage: ObjectStorage, cache_dir: Path, cover_snapshot_seconds: float = COVER_SNAPSHOT_SECONDS
    ) -> None:
        self._storage = storage
        self._cache_dir = cache_dir / "model_images"
        self._snapshot_seconds = cover_snapshot_seconds
        self._covers: tuple[float, frozenset[str]] | None = None
        self._covers_lock = threading.Lock()

    def _cover_names(self) -> frozenset[str]:
        with self._covers_lock:
            if self._covers is not None and time.monotonic() - self._covers[0] < self._snapshot_seconds:
                return self._covers[1]
        taken = time.monotonic()
        names = frozenset(self._storage.index.names_of_kind(kinds.MODEL_IMAGE))
        with self._covers_lock:
            self._covers = (taken, names)
        return names

    def _forget_covers(self) -> None:
        with self._covers_lock:
            self._covers = None

    def start(self, invoker: Invoker) -> None:
        self._invoker = invoker

    def _object_key(self, model_key: str) -> str:
        """Stock's containment check plus the key layout's stricter one; either failure is stock's not-found."""
        if not is_contained_filename(model_key):
            raise ModelImageFileNotFoundException(f"Invalid model key {model_key!r}")
        try:
            return self._storage.layout.model_image(model_key)
        except InvalidObjectName as e:
            raise ModelImageFileNotFoundException(f"Invalid model key {model_key!r}") from e

    def get(self, model_key: str) -> PILImageType:
        try:
            data = self._storage.store.get_bytes(self._object_key(model_key))
        except ObjectNotFound as e:
            raise ModelImageFileNotFoundException from e
        return open_image(data)

    def save(self, image: PILImageType, model_key: str) -> None:
        try:
            key = self._object_key(model_key)
            put_indexed(self._storage, key, MODEL_IMAGES_OWNER, kinds.MODEL_IMAGE, model_key, thumbnail_webp(image))
        except Exception as e:
            raise ModelImageFileSaveException from e
        finally:
            self._forget_covers()

    def get_path(self, model_key: str) -> Path:
        """A local copy for stock's route. Like stock, a model without a cover still gets a path (of no file):
        the upload route calls this only to validate the key."""
        key = self._object_key(model_key)
        return materialise(self._storage, key, self._cache_dir / (model_key + ".webp"))

    def get_url(self, model_key: str) -> str | None:
        """From the snapshot of existing covers: a model list costs one index query, not one per model."""
        try:
            self._object_key(model_key)
        except ModelImageFileNotFoundException:
            return None
        if model_key not in self._cover_names():
            return None
        return f"{self._invoker.services.urls.get_model_image_url(model_key)}?{uuid_string()}"

    def get_urls(self, model_keys: Sequence[str]) -> dict[str, str | None]:
        """``get_url`` for a whole model list with one index query. Bad keys get ``None`` as in stock, where one
        bad key must not take the list down."""
        valid: list[str] = []
        for model_key in model_keys:
            try:
                self._object_key(model_key)
            except ModelImageFileNotFoundException:
                continue
            valid.append(model_key)
        present = self._storage.index.find_many(kinds.MODEL_IMAGE, valid)
        urls = self._invoker.services.urls
        return {
            model_key: f"{urls.get_model_image_url(model_key)}?{uuid_string()}" if model_key in present else None
            for model_key in model_keys
        }

    def delete(self, model_key: str) -> None:
        """As stock: a missing cover is a ``ModelImageFileDeleteException`` caused by a
        ``ModelImageFileNotFoundException`` (the delete route answers 404 on that cause)."""
        try:
            key = self._object_key(model_key)
            if self._storage.index.find(kinds.MODEL_IMAGE, model_key) is None:
                raise ModelImageFileNotFoundException
            delete_indexed(self._storage, key)
            (self._cache_dir / (model_key + ".webp")).unlink(missing_ok=True)
        except Exception as e:
            raise ModelImageFileDeleteException from e
        finally:
            self._forget_covers()
