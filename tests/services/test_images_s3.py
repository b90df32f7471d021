"""``S3ImageService.create``: the objects are in the bucket before the record exists, a failed record save
takes its objects away again, and an outage fails the create without leaving a record behind."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from invokeai.app.services.config.config_default import InvokeAIAppConfig
from invokeai.app.services.image_files.image_files_common import ImageFileSaveException
from invokeai.app.services.image_records.image_records_common import (
    ImageCategory,
    ImageRecordSaveException,
    ResourceOrigin,
)
from invokeai.app.services.names.names_default import SimpleNameService
from invokeai.app.services.urls.urls_default import LocalUrlService
from PIL import Image
from sqlalchemy import Engine

from invokeai_saas.devstack import SeaweedS3Server
from invokeai_saas.services.board_image_records.board_image_records_postgres import PostgresBoardImageRecordStorage
from invokeai_saas.services.image_files.image_files_s3 import S3ImageFileStorage
from invokeai_saas.services.image_records.image_records_postgres import PostgresImageRecordStorage
from invokeai_saas.services.images.images_s3 import S3ImageService
from invokeai_saas.storage import kinds
from invokeai_saas.storage.context import ObjectStorage
from invokeai_saas.storage.object_store import ObjectStoreUnavailable, S3ObjectStore
from tests.conftest import object_storage_settings


class RecordsThatSeeTheBucket(PostgresImageRecordStorage):
    """The real record storage, noting at each save whether both objects were already in the bucket."""

    def __init__(self, engine: Engine, storage: ObjectStorage, fail: bool = False) -> None:
        super().__init__(engine)
        self.storage = storage
        self.fail = fail
        self.objects_present_at_save: list[bool] = []

    def save(self, image_name: str, *args: Any, **kwargs: Any) -> Any:
        user_id = kwargs.get("user_id") or "system"
        layout = self.storage.layout
        keys = (layout.image(user_id, image_name), layout.image_thumbnail(user_id, image_name))
        self.objects_present_at_save.append(all(self.storage.store.exists(key) for key in keys))
        if self.fail:
            raise ImageRecordSaveException("refused by the test")
        return super().save(image_name, *args, **kwargs)


def build(storage: ObjectStorage, engine: Engine, records: PostgresImageRecordStorage, tmp_path: Path) -> Any:
    files = S3ImageFileStorage(storage, tmp_path / "cache")
    services = SimpleNamespace(
        names=SimpleNameService(),
        configuration=InvokeAIAppConfig(),
        image_files=files,
        image_records=records,
        board_image_records=PostgresBoardImageRecordStorage(engine),
        urls=LocalUrlService(),
        logger=logging.getLogger("test-images-s3"),
    )
    invoker = SimpleNamespace(services=services)
    for service in (files, records, services.board_image_records):
        if hasattr(service, "start"):
            service.start(invoker)  # type: ignore[arg-type]
    images = S3ImageService()
    images.start(invoker)  # type: ignore[arg-type]
    return images, services


def test_objects_are_written_before_the_record(
    object_storage: ObjectStorage, pg_engine: Engine, tmp_path: Path
) -> None:
    records = RecordsThatSeeTheBucket(pg_engine, object_storage)
    images, services = build(object_storage, pg_engine, records, tmp_path)
    dto = images.create(
        Image.new("RGB", (40, 30), (1, 2, 3)), ResourceOrigin.EXTERNAL, ImageCategory.USER, user_id="alice"
    )
    assert records.objects_present_at_save == [True]
    assert (dto.width, dto.height, dto.image_category) == (40, 30, ImageCategory.USER)
    assert services.image_records.get_user_id(dto.image_name) == "alice"
    assert object_storage.index.find(kinds.IMAGE, dto.image_name).user_id == "alice"  # type: ignore[union-attr]
    assert services.image_files.get(dto.image_name).size == (40, 30)


def test_a_refused_record_takes_its_objects_away(
    object_storage: ObjectStorage, pg_engine: Engine, tmp_path: Path
) -> None:
    records = RecordsThatSeeTheBucket(pg_engine, object_storage, fail=True)
    images, _ = build(object_storage, pg_engine, records, tmp_path)
    with pytest.raises(ImageRecordSaveException):
        images.create(Image.new("RGB", (8, 8)), ResourceOrigin.EXTERNAL, ImageCategory.USER, user_id="alice")
    assert records.objects_present_at_save == [True]
    assert object_storage.index.objects_of_user("alice") == []
    assert object_storage.index.usage("alice") == (0, 0)


def test_an_outage_fails_the_create_and_leaves_no_record(
    object_storage: ObjectStorage, pg_engine: Engine, seaweed: SeaweedS3Server, tmp_path: Path
) -> None:
    settings = object_storage_settings(seaweed, s3_endpoint_url="http://127.0.0.1:1")
    dead = ObjectStorage(S3ObjectStore(settings), object_storage.index, object_storage.layout, settings)
    records = RecordsThatSeeTheBucket(pg_engine, dead)
    images, services = build(dead, pg_engine, records, tmp_path)
    with pytest.raises(ImageFileSaveException) as failure:
        images.create(Image.new("RGB", (8, 8)), ResourceOrigin.EXTERNAL, ImageCategory.USER, user_id="alice")
    chain, error = [], failure.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    assert any(isinstance(e, ObjectStoreUnavailable) for e in chain)
    assert records.objects_present_at_save == []  # the record was never attempted
    assert services.image_records.get_many(user_id="alice").total == 0
