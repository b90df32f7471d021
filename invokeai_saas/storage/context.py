"""The object storage of this process: one store, one index, one key layout, shared by the S3 storages, the
media routes and the cleanup pass. The s3 plugin builds it when an object store is configured."""

from __future__ import annotations

from dataclasses import dataclass

from invokeai_saas.config import SaasSettings
from invokeai_saas.storage.keys import KeyLayout
from invokeai_saas.storage.object_index import StorageObjectIndex
from invokeai_saas.storage.object_store import S3ObjectStore


@dataclass(frozen=True)
class ObjectStorage:
    store: S3ObjectStore
    index: StorageObjectIndex
    layout: KeyLayout
    settings: SaasSettings


_current: ObjectStorage | None = None


def set_object_storage(storage: ObjectStorage | None) -> None:
    global _current
    _current = storage


def get_object_storage() -> ObjectStorage:
    if _current is None:
        raise RuntimeError("object storage is not configured in this process")
    return _current


def object_storage_configured() -> bool:
    return _current is not None
