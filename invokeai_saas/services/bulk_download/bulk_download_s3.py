"""Bulk downloads whose archives live in S3 and whose owners live in the object index.

Stock's ``BulkDownloadService`` (InvokeAI 6.14.2) zips local image files into a process-local temp
directory and remembers each archive's owner in a dict. Behind several API processes both break: the
image files are not local, and the download request (sent after the ``bulk_download_complete`` event)
may reach another process, where stock's ``get_owner`` answers None — which its route reads as "anyone
may fetch it". Here the archive is built in a local temp file from the image objects (stock's layout:
``{category}/{image_name}``, stored uncompressed), uploaded to ``bulk_downloads/{user_id}/...`` and
indexed as kind ``bulk_download`` with the requesting user as owner, so every process agrees on who may
fetch it. Events, item ids and names are stock's (``handler`` is stock's).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from zipfile import ZipFile

from invokeai.app.services.bulk_download.bulk_download_common import (
    BulkDownloadException,
    BulkDownloadTargetException,
)
from invokeai.app.services.bulk_download.bulk_download_default import BulkDownloadService
from invokeai.app.services.images.images_common import ImageDTO
from invokeai.app.util.misc import uuid_string

from invokeai_saas.storage import kinds
from invokeai_saas.storage.context import ObjectStorage
from invokeai_saas.storage.object_index import IndexedObject
from invokeai_saas.storage.object_store import ObjectNotFound, ObjectStoreUnavailable

ZIP_CONTENT_TYPE = "application/zip"


class S3BulkDownloadService(BulkDownloadService):
    def __init__(self, storage: ObjectStorage) -> None:
        super().__init__()  # stock's temp directory: where archives are built before the upload
        self._storage = storage

    def handler(
        self,
        image_names: list[str] | None,
        board_id: str | None,
        bulk_download_item_id: str | None,
        user_id: str = "system",
    ) -> None:
        """Stock's handler (events, errors, logging). Stock records the requester in ``_download_owners``
        before building the archive; ``_create_zip_file`` reads it from there to name the owner in the
        index, and the entry is dropped afterwards because the index is the owner record that counts."""
        item_id = bulk_download_item_id or uuid_string()
        try:
            super().handler(image_names, board_id, item_id, user_id)
        finally:
            self._download_owners.pop(item_id + ".zip", None)

    def _create_zip_file(self, image_dtos: list[ImageDTO], bulk_download_item_id: str) -> str:
        name = bulk_download_item_id + ".zip"
        owner = self._download_owners.get(name, "system")
        # Local and object names come from a fresh uuid: item names hold board names (spaces, any letters).
        local = self._bulk_downloads_folder / (uuid_string() + ".zip")
        try:
            self._write_archive(local, image_dtos)
            self._upload(local, name, owner)
        except ObjectStoreUnavailable as error:
            raise BulkDownloadException("Object storage is temporarily unavailable; try the download again.") from error
        finally:
            local.unlink(missing_ok=True)
        return name

    def _write_archive(self, path: Path, image_dtos: list[ImageDTO]) -> None:
        store = self._storage.store
        objects = self._storage.index.find_many(kinds.IMAGE, [dto.image_name for dto in image_dtos])
        with ZipFile(path, "w") as zip_file:
            for dto in image_dtos:
                found = objects.get(dto.image_name)
                if found is None:
                    raise BulkDownloadException(f"Image {dto.image_name} has no stored file")
                arcname = str(PurePosixPath(dto.image_category.value) / dto.image_name)
                try:
                    with zip_file.open(arcname, "w") as entry:
                        for chunk in store.iter_chunks(found.object_key):
                            entry.write(chunk)
                except ObjectNotFound:
                    raise BulkDownloadException(f"Image {dto.image_name} has no stored file") from None

    def _upload(self, path: Path, name: str, owner: str) -> None:
        key = self._storage.layout.bulk_download(owner, uuid_string() + ".zip")
        self._storage.store.put_file(key, path, ZIP_CONTENT_TYPE)
        try:
            self._storage.index.put(key, owner, kinds.BULK_DOWNLOAD, name, path.stat().st_size, ZIP_CONTENT_TYPE)
        except Exception:
            self._storage.store.delete(key)  # unindexed, nobody could fetch or account for it
            raise

    def find_archive(self, bulk_download_item_name: str) -> IndexedObject:
        """The archive's index row (key, owner, size); ``BulkDownloadTargetException`` when there is none."""
        if not bulk_download_item_name.endswith(".zip"):
            raise BulkDownloadTargetException()
        found = self._storage.index.find(kinds.BULK_DOWNLOAD, bulk_download_item_name)
        if found is None:
            raise BulkDownloadTargetException()
        return found

    def get_owner(self, bulk_download_item_name: str) -> str | None:
        found = self._storage.index.find(kinds.BULK_DOWNLOAD, bulk_download_item_name)
        return found.user_id if found is not None else None

    def _local_copy(self, archive: IndexedObject) -> Path:
        return self._bulk_downloads_folder / PurePosixPath(archive.object_key).name

    def get_path(self, bulk_download_item_name: str) -> str:
        """A local copy, for callers that need a file (stock's route answers with a ``FileResponse``); the S3
        media route streams the object instead and never calls this."""
        archive = self.find_archive(bulk_download_item_name)
        path = self._local_copy(archive)
        if not path.exists():
            partial = path.with_suffix(".part")
            try:
                self._storage.store.download_file(archive.object_key, partial)
            except ObjectNotFound:
                partial.unlink(missing_ok=True)
                raise BulkDownloadTargetException() from None
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            partial.replace(path)
        return str(path)

    def delete(self, bulk_download_item_name: str) -> None:
        archive = self.find_archive(bulk_download_item_name)
        self._storage.store.delete(archive.object_key)
        self._storage.index.forget([archive.object_key])
        self._local_copy(archive).unlink(missing_ok=True)
        self._download_owners.pop(bulk_download_item_name, None)
