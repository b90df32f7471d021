"""Workflow thumbnails in S3 (stock: ``WorkflowThumbnailFileStorageDisk``).

A thumbnail lives under its workflow owner's prefix (``users/{owner}/workflow_thumbnails/{id}.webp``), the
owner read from the workflow record. Default workflows keep stock's packaged thumbnails (InvokeAI 6.14.2 ships
none, so they have no thumbnail, as in stock). ``get_url_for_record`` (used by the overlay's workflow list) and
``get_urls_for_records`` answer from the records already read and the object index, never from S3.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from invokeai.app.services.invoker import Invoker
from invokeai.app.services.workflow_records.workflow_records_common import WorkflowCategory, WorkflowRecordDTO
from invokeai.app.services.workflow_thumbnails.workflow_thumbnails_base import WorkflowThumbnailServiceBase
from invokeai.app.services.workflow_thumbnails.workflow_thumbnails_common import (
    WorkflowThumbnailFileDeleteException,
    WorkflowThumbnailFileNotFoundException,
    WorkflowThumbnailFileSaveException,
)
from invokeai.app.util.misc import uuid_string
from PIL import Image
from PIL.Image import Image as PILImageType

from invokeai_saas.services.workflow_thumbnails.workflow_thumbnails_record_aware import DEFAULT_THUMBNAILS_DIR
from invokeai_saas.storage import kinds
from invokeai_saas.storage.context import ObjectStorage
from invokeai_saas.storage.object_store import ObjectNotFound
from invokeai_saas.storage.small_images import delete_indexed, materialise, open_image, put_indexed, thumbnail_webp


def _is_default(record: WorkflowRecordDTO) -> bool:
    return record.workflow.meta.category is WorkflowCategory.Default


class S3WorkflowThumbnailFileStorage(WorkflowThumbnailServiceBase):
    """Stock's behaviour and exceptions, with user thumbnails in S3.

    URLs keep stock's random cache buster (when ``with_hash``): the URL is the same for every version of the
    thumbnail and the index only knows its size, which a new thumbnail can share with the old one.
    """

    def __init__(self, storage: ObjectStorage, cache_dir: Path) -> None:
        self._storage = storage
        self._cache_dir = cache_dir / "workflow_thumbnails"

    def start(self, invoker: Invoker) -> None:
        self._invoker = invoker

    def _record(self, workflow_id: str) -> WorkflowRecordDTO:
        return self._invoker.services.workflow_records.get(workflow_id)

    def _object_key(self, record: WorkflowRecordDTO) -> str:
        return self._storage.layout.workflow_thumbnail(record.user_id, record.workflow_id)

    def get(self, workflow_id: str) -> PILImageType:
        record = self._record(workflow_id)
        if _is_default(record):
            try:
                return Image.open(DEFAULT_THUMBNAILS_DIR / (record.workflow_id + ".png"))
            except FileNotFoundError as e:
                raise WorkflowThumbnailFileNotFoundException from e
        try:
            return open_image(self._storage.store.get_bytes(self._object_key(record)))
        except ObjectNotFound as e:
            raise WorkflowThumbnailFileNotFoundException from e

    def save(self, workflow_id: str, image: PILImageType) -> None:
        """As stock, a default workflow's id gets its own thumbnail too (never served: its packaged one is)."""
        try:
            record = self._record(workflow_id)
            data = thumbnail_webp(image)
            put_indexed(
                self._storage,
                self._object_key(record),
                record.user_id,
                kinds.WORKFLOW_THUMBNAIL,
                record.workflow_id,
                data,
            )
        except Exception as e:
            raise WorkflowThumbnailFileSaveException from e

    def get_path(self, workflow_id: str, with_hash: bool = True) -> Path:
        """The packaged PNG for a default workflow, else a local copy of the object (a path of no file when the
        workflow has no thumbnail, as stock)."""
        record = self._record(workflow_id)
        if _is_default(record):
            return DEFAULT_THUMBNAILS_DIR / (record.workflow_id + ".png")
        key = self._object_key(record)
        return materialise(self._storage, key, self._cache_dir / (record.workflow_id + ".webp"))

    def get_url(self, workflow_id: str, with_hash: bool = True) -> str | None:
        return self.get_url_for_record(self._record(workflow_id), with_hash)

    def get_url_for_record(self, record: WorkflowRecordDTO, with_hash: bool = True) -> str | None:
        return self.get_urls_for_records([record], with_hash)[record.workflow_id]

    def get_urls_for_records(
        self, records: Sequence[WorkflowRecordDTO], with_hash: bool = True
    ) -> dict[str, str | None]:
        """``get_url`` for a page of workflows already read, with one index query for the whole page."""
        present = self._storage.index.find_many(
            kinds.WORKFLOW_THUMBNAIL, [r.workflow_id for r in records if not _is_default(r)]
        )
        urls: dict[str, str | None] = {}
        for record in records:
            if _is_default(record):
                has_thumbnail = (DEFAULT_THUMBNAILS_DIR / (record.workflow_id + ".png")).exists()
            else:
                has_thumbnail = record.workflow_id in present
            if not has_thumbnail:
                urls[record.workflow_id] = None
                continue
            url = self._invoker.services.urls.get_workflow_thumbnail_url(record.workflow_id)
            urls[record.workflow_id] = f"{url}?{uuid_string()}" if with_hash else url
        return urls

    def delete(self, workflow_id: str) -> None:
        """Deletes the workflow's object; without one, ``WorkflowThumbnailFileNotFoundException`` as stock. The
        packaged thumbnails of default workflows belong to the installation and are never deleted."""
        try:
            record = self._record(workflow_id)
            found = self._storage.index.find(kinds.WORKFLOW_THUMBNAIL, record.workflow_id)
            if found is None:
                raise WorkflowThumbnailFileNotFoundException
            delete_indexed(self._storage, found.object_key)
            (self._cache_dir / (record.workflow_id + ".webp")).unlink(missing_ok=True)
        except WorkflowThumbnailFileNotFoundException as e:
            raise WorkflowThumbnailFileNotFoundException from e
        except Exception as e:
            raise WorkflowThumbnailFileDeleteException from e
