"""``S3BulkDownloadService`` against SeaweedFS and PostgreSQL: the archive holds the stored image bytes in
stock's layout, lives in S3 under the requester's name, and its owner is known to every process."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zipfile import ZipFile

import pytest
from invokeai.app.services.bulk_download.bulk_download_common import BulkDownloadTargetException
from invokeai.app.services.events.events_base import EventServiceBase
from invokeai.app.services.events.events_common import (
    BulkDownloadCompleteEvent,
    BulkDownloadErrorEvent,
    BulkDownloadStartedEvent,
    EventBase,
)
from invokeai.app.services.image_records.image_records_common import ImageCategory, ResourceOrigin
from invokeai.app.services.images.images_default import ImageService
from invokeai.app.services.urls.urls_default import LocalUrlService
from PIL import Image
from sqlalchemy import Engine

from invokeai_saas.devstack import SeaweedS3Server
from invokeai_saas.services.board_image_records.board_image_records_postgres import PostgresBoardImageRecordStorage
from invokeai_saas.services.board_records.board_records_postgres import PostgresBoardRecordStorage
from invokeai_saas.services.bulk_download.bulk_download_s3 import S3BulkDownloadService
from invokeai_saas.services.image_records.image_records_postgres import PostgresImageRecordStorage
from invokeai_saas.storage import kinds
from invokeai_saas.storage.context import ObjectStorage
from invokeai_saas.storage.object_store import S3ObjectStore
from tests.conftest import object_storage_settings
from tests.services.conftest import Backend
from tests.services.helpers import add_user


class RecordedEvents(EventServiceBase):
    """Stock's event service with its ``dispatch`` keeping the events it was given."""

    def __init__(self) -> None:
        self.events: list[EventBase] = []

    def dispatch(self, event: EventBase) -> None:
        self.events.append(event)


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buffer, format="PNG")
    return buffer.getvalue()


class Env:
    """Postgres record services, stock's ``ImageService`` and the object storage, as one API process has them."""

    def __init__(self, engine: Engine, storage: ObjectStorage) -> None:
        self.engine = engine
        self.storage = storage
        self.events = RecordedEvents()
        image_records = PostgresImageRecordStorage(engine)
        self.board_records = PostgresBoardRecordStorage(engine)
        images = ImageService()
        self.services = SimpleNamespace(
            image_records=image_records,
            board_records=self.board_records,
            board_image_records=PostgresBoardImageRecordStorage(engine),
            images=images,
            urls=LocalUrlService(),
            events=self.events,
            logger=SimpleNamespace(error=lambda *a, **k: None, warning=lambda *a, **k: None),
        )
        self.invoker: Any = SimpleNamespace(services=self.services)
        image_records.start(self.invoker)
        images.start(self.invoker)

    def service(self, storage: ObjectStorage | None = None) -> S3BulkDownloadService:
        """A new service instance: what another API process would have."""
        service = S3BulkDownloadService(storage or self.storage)
        service.start(self.invoker)
        return service

    def add_image(self, user_id: str, category: ImageCategory, data: bytes, stored: bool = True) -> str:
        """A record and its objects, written the way the S3 image storage writes them."""
        name = f"{uuid.uuid4()}.png"
        self.services.image_records.save(
            image_name=name,
            image_origin=ResourceOrigin.EXTERNAL,
            image_category=category,
            width=16,
            height=16,
            has_workflow=False,
            user_id=user_id,
        )
        if stored:
            key = self.storage.layout.image(user_id, name)
            self.storage.store.put_bytes(key, data, "image/png")
            self.storage.index.put(key, user_id, kinds.IMAGE, name, len(data), "image/png")
        return name


@pytest.fixture()
def env(pg_engine: Engine, object_storage: ObjectStorage) -> Env:
    backend = Backend("postgres", pg_engine)
    add_user(backend, "alice")
    add_user(backend, "bob")
    return Env(pg_engine, object_storage)


def _event_names(events: RecordedEvents) -> list[str]:
    return [type(e).__name__ for e in events.events]


def test_archive_holds_stored_bytes_in_stock_layout_and_owner_survives_a_new_process(env: Env) -> None:
    red, blue = _png((255, 0, 0)), _png((0, 0, 255))
    general = env.add_image("alice", ImageCategory.GENERAL, red)
    user = env.add_image("alice", ImageCategory.USER, blue)
    usage_before = env.storage.index.usage("alice")

    builder = env.service()
    item_id = builder.generate_item_id(None)
    builder.handler([general, user], None, item_id, "alice")

    name = item_id + ".zip"
    assert _event_names(env.events) == ["BulkDownloadStartedEvent", "BulkDownloadCompleteEvent"]
    started, complete = env.events.events
    assert isinstance(started, BulkDownloadStartedEvent) and isinstance(complete, BulkDownloadCompleteEvent)
    assert (complete.bulk_download_id, complete.bulk_download_item_id) == ("default", item_id)
    assert (complete.bulk_download_item_name, complete.user_id) == (name, "alice")

    other_process = env.service()
    assert other_process.get_owner(name) == "alice"
    archive = other_process.find_archive(name)
    assert archive.user_id == "alice" and archive.kind == kinds.BULK_DOWNLOAD
    assert archive.object_key.startswith(env.storage.layout.prefix + "bulk_downloads/alice/")
    data = env.storage.store.get_bytes(archive.object_key)
    assert archive.bytes == len(data) and archive.content_type == "application/zip"
    with ZipFile(io.BytesIO(data)) as zip_file:
        assert zip_file.namelist() == [f"general/{general}", f"user/{user}"]
        assert zip_file.read(f"general/{general}") == red
        assert zip_file.read(f"user/{user}") == blue
    assert env.storage.index.usage("alice") == usage_before  # temporary copies do not count against the user
    assert list(builder._bulk_downloads_folder.iterdir()) == []  # the local build file is gone

    local = Path(other_process.get_path(name))  # stock's contract: a readable local file
    assert local.read_bytes() == data

    other_process.delete(name)
    assert not env.storage.store.exists(archive.object_key)
    assert env.storage.index.find(kinds.BULK_DOWNLOAD, name) is None
    assert builder.get_owner(name) is None and not local.exists()
    assert env.storage.index.usage("alice") == usage_before


def test_board_download_names_the_archive_after_the_board(env: Env) -> None:
    board = env.board_records.save("Holiday snaps é", "bob")
    image = env.add_image("bob", ImageCategory.GENERAL, _png((0, 255, 0)))
    env.services.board_image_records.add_image_to_board(board.board_id, image)

    service = env.service()
    item_id = service.generate_item_id(board.board_id)
    assert item_id.startswith("Holiday snaps é_")
    service.handler(None, board.board_id, item_id, "bob")

    archive = env.service().find_archive(item_id + ".zip")  # the key does not carry the board's name
    assert archive.user_id == "bob" and " " not in archive.object_key
    with ZipFile(io.BytesIO(env.storage.store.get_bytes(archive.object_key))) as zip_file:
        assert zip_file.namelist() == [f"general/{image}"]


def test_missing_object_fails_the_job_with_stock_events_and_leaves_nothing(env: Env) -> None:
    stored = env.add_image("alice", ImageCategory.GENERAL, _png((1, 2, 3)))
    lost = env.add_image("alice", ImageCategory.GENERAL, b"", stored=False)
    service = env.service()
    item_id = service.generate_item_id(None)
    service.handler([stored, lost], None, item_id, "alice")

    assert _event_names(env.events) == ["BulkDownloadStartedEvent", "BulkDownloadErrorEvent"]
    error = env.events.events[1]
    assert isinstance(error, BulkDownloadErrorEvent) and error.user_id == "alice"
    assert lost in error.error and "users/" not in error.error  # names the image, never a key
    assert service.get_owner(item_id + ".zip") is None
    assert list(service._bulk_downloads_folder.iterdir()) == []


def test_unknown_archives_are_target_errors(env: Env) -> None:
    service = env.service()
    for name in ("nothing-here.zip", "../../etc/passwd", "x.txt"):
        assert service.get_owner(name) is None
        with pytest.raises(BulkDownloadTargetException):
            service.find_archive(name)
        with pytest.raises(BulkDownloadTargetException):
            service.get_path(name)
        with pytest.raises(BulkDownloadTargetException):
            service.delete(name)


def test_object_store_down_fails_the_job_with_a_clear_message(env: Env, seaweed: SeaweedS3Server) -> None:
    image = env.add_image("alice", ImageCategory.GENERAL, _png((9, 9, 9)))
    dead_settings = object_storage_settings(
        seaweed, s3_endpoint_url="http://127.0.0.1:1", s3_prefix=env.storage.settings.s3_prefix
    )
    dead = ObjectStorage(S3ObjectStore(dead_settings), env.storage.index, env.storage.layout, dead_settings)
    service = env.service(dead)
    item_id = service.generate_item_id(None)
    service.handler([image], None, item_id, "alice")

    assert _event_names(env.events) == ["BulkDownloadStartedEvent", "BulkDownloadErrorEvent"]
    error = env.events.events[1]
    assert isinstance(error, BulkDownloadErrorEvent)
    assert error.error == "Object storage is temporarily unavailable; try the download again."
    assert service.get_owner(item_id + ".zip") is None
    assert list(service._bulk_downloads_folder.iterdir()) == []
