"""``S3VideoService.create``: the video's objects are in the bucket before its record exists, and a failed
record save takes them away again."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from invokeai.app.services.config.config_default import InvokeAIAppConfig
from invokeai.app.services.image_records.image_records_common import ImageCategory, ResourceOrigin
from invokeai.app.services.names.names_default import SimpleNameService
from invokeai.app.services.urls.urls_default import LocalUrlService
from invokeai.app.services.video_records.video_records_common import VideoRecordSaveException
from PIL import Image
from sqlalchemy import Engine

from invokeai_saas.services.board_video_records.board_video_records_postgres import PostgresBoardVideoRecordStorage
from invokeai_saas.services.video_files.video_files_s3 import S3VideoFileStorage
from invokeai_saas.services.video_records.video_records_postgres import PostgresVideoRecordStorage
from invokeai_saas.services.videos.videos_s3 import S3VideoService
from invokeai_saas.storage import kinds
from invokeai_saas.storage.context import ObjectStorage


class RecordsThatSeeTheBucket(PostgresVideoRecordStorage):
    def __init__(self, engine: Engine, storage: ObjectStorage, fail: bool = False) -> None:
        super().__init__(engine)
        self.storage = storage
        self.fail = fail
        self.objects_present_at_save: list[bool] = []

    def save(self, *args: Any, **kwargs: Any) -> Any:
        name, owner = kwargs["video_name"], kwargs.get("user_id") or "system"
        layout = self.storage.layout
        keys = (layout.video(owner, name), layout.video_thumbnail(owner, name), layout.video_sidecar(owner, name))
        self.objects_present_at_save.append(all(self.storage.store.exists(key) for key in keys))
        if self.fail:
            raise VideoRecordSaveException("refused by the test")
        return super().save(*args, **kwargs)


def build(storage: ObjectStorage, engine: Engine, records: PostgresVideoRecordStorage, tmp_path: Path) -> Any:
    files = S3VideoFileStorage(storage, tmp_path / "cache")
    services = SimpleNamespace(
        names=SimpleNameService(),
        configuration=InvokeAIAppConfig(),
        video_files=files,
        video_records=records,
        board_video_records=PostgresBoardVideoRecordStorage(engine),
        urls=LocalUrlService(),
        logger=logging.getLogger("test-videos-s3"),
    )
    invoker = SimpleNamespace(services=services)
    for service in (files, records, services.board_video_records):
        if hasattr(service, "start"):
            service.start(invoker)  # type: ignore[arg-type]
    videos = S3VideoService()
    videos.start(invoker)  # type: ignore[arg-type]
    return videos, services


def create(videos: S3VideoService, source: Path) -> Any:
    return videos.create(
        source_path=source,
        width=32,
        height=24,
        duration=1.0,
        fps=24.0,
        video_origin=ResourceOrigin.EXTERNAL,
        video_category=ImageCategory.GENERAL,
        metadata='{"seed": 1}',
        user_id="alice",
        first_frame=Image.new("RGB", (32, 24), (9, 9, 9)),
    )


def test_objects_are_written_before_the_record(
    object_storage: ObjectStorage, pg_engine: Engine, tmp_path: Path
) -> None:
    records = RecordsThatSeeTheBucket(pg_engine, object_storage)
    videos, services = build(object_storage, pg_engine, records, tmp_path)
    source = tmp_path / "upload.mp4"
    source.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"v" * 4000)
    dto = create(videos, source)
    assert records.objects_present_at_save == [True]
    assert not source.exists()  # consumed, as stock's move
    assert services.video_records.get_user_id(dto.video_name) == "alice"
    found = object_storage.index.find(kinds.VIDEO, dto.video_name)
    assert found is not None and found.bytes == 4012 and found.user_id == "alice"


def test_a_refused_record_takes_its_objects_away(
    object_storage: ObjectStorage, pg_engine: Engine, tmp_path: Path
) -> None:
    records = RecordsThatSeeTheBucket(pg_engine, object_storage, fail=True)
    videos, _ = build(object_storage, pg_engine, records, tmp_path)
    source = tmp_path / "upload.mp4"
    source.write_bytes(b"v" * 100)
    with pytest.raises(VideoRecordSaveException):
        create(videos, source)
    assert records.objects_present_at_save == [True]
    assert object_storage.index.objects_of_user("alice") == []
