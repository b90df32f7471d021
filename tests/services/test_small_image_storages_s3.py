"""The S3 storages of model images, style preset images and workflow thumbnails, against real SeaweedFS and
PostgreSQL, side by side with stock's disk storages (the executable specification): the same WEBP bytes, the same
URLs and exceptions, keys under each owner's prefix, and exact storage usage in the object index."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from invokeai.app.services.invoker import Invoker
from invokeai.app.services.model_images.model_images_common import (
    ModelImageFileDeleteException,
    ModelImageFileNotFoundException,
    ModelImageFileSaveException,
)
from invokeai.app.services.model_images.model_images_default import ModelImageFileStorageDisk
from invokeai.app.services.shared.sqlite.sqlite_common import SQLiteDirection
from invokeai.app.services.style_preset_images.style_preset_images_common import (
    StylePresetImageFileNotFoundException,
    StylePresetImageFileSaveException,
)
from invokeai.app.services.style_preset_images.style_preset_images_disk import StylePresetImageFileStorageDisk
from invokeai.app.services.style_preset_records.style_preset_records_common import (
    PresetData,
    PresetType,
    StylePresetNotFoundError,
    StylePresetRecordDTO,
    StylePresetWithoutId,
)
from invokeai.app.services.urls.urls_default import LocalUrlService
from invokeai.app.services.workflow_records.workflow_records_common import (
    WorkflowCategory,
    WorkflowMeta,
    WorkflowNotFoundError,
    WorkflowRecordDTO,
    WorkflowRecordOrderBy,
    WorkflowWithoutID,
)
from invokeai.app.services.workflow_thumbnails.workflow_thumbnails_common import (
    WorkflowThumbnailFileNotFoundException,
    WorkflowThumbnailFileSaveException,
)
from invokeai.app.services.workflow_thumbnails.workflow_thumbnails_disk import WorkflowThumbnailFileStorageDisk
from PIL import Image
from sqlalchemy import Engine

from invokeai_saas.devstack import SeaweedS3Server
from invokeai_saas.services.model_images.model_images_s3 import S3ModelImageFileStorage
from invokeai_saas.services.style_preset_images.style_preset_images_s3 import S3StylePresetImageFileStorage
from invokeai_saas.services.style_preset_records.style_preset_records_postgres import (
    PostgresStylePresetRecordsStorage,
)
from invokeai_saas.services.workflow_records.workflow_records_postgres import PostgresWorkflowRecordsStorage
from invokeai_saas.services.workflow_thumbnails.workflow_thumbnails_s3 import S3WorkflowThumbnailFileStorage
from invokeai_saas.storage import kinds
from invokeai_saas.storage.context import ObjectStorage
from invokeai_saas.storage.keys import InvalidObjectName
from invokeai_saas.storage.object_store import ObjectStoreUnavailable, S3ObjectStore
from invokeai_saas.storage.small_images import WEBP
from tests.conftest import object_storage_settings
from tests.support.sql_counter import count_statements

MODEL_KEY = "0b9c3f0e5f1d4c7a9e2b6d8f1a3c5e70"


# -- fixtures and helpers ---------------------------------------------------------------------------------------


@pytest.fixture()
def invoker(pg_engine: Engine) -> Invoker:
    """The services these storages consult, real ones: PostgreSQL preset and workflow records (started as
    InvokeAI starts them, so the shipped defaults are in the tables) and stock's URL service."""
    services = SimpleNamespace(
        logger=logging.getLogger("small-image-storages"),
        urls=LocalUrlService(),
        style_preset_records=PostgresStylePresetRecordsStorage(pg_engine),
        workflow_records=PostgresWorkflowRecordsStorage(pg_engine),
    )
    invoker = cast(Invoker, SimpleNamespace(services=services))
    services.style_preset_records.start(invoker)
    services.workflow_records.start(invoker)
    return invoker


def started(service: Any, invoker: Invoker) -> Any:
    service.start(invoker)
    return service


@pytest.fixture()
def model_images(object_storage: ObjectStorage, invoker: Invoker, tmp_path: Path) -> S3ModelImageFileStorage:
    return started(S3ModelImageFileStorage(object_storage, tmp_path / "cache"), invoker)


@pytest.fixture()
def preset_images(object_storage: ObjectStorage, invoker: Invoker, tmp_path: Path) -> S3StylePresetImageFileStorage:
    return started(S3StylePresetImageFileStorage(object_storage, tmp_path / "cache"), invoker)


@pytest.fixture()
def thumbnails(object_storage: ObjectStorage, invoker: Invoker, tmp_path: Path) -> S3WorkflowThumbnailFileStorage:
    return started(S3WorkflowThumbnailFileStorage(object_storage, tmp_path / "cache"), invoker)


def picture(width: int = 640, height: int = 480, mode: str = "RGBA", seed: int = 1) -> Image.Image:
    """A deterministic image with detail (so sizes differ between seeds) and, in RGBA, transparency."""
    image = Image.effect_mandelbrot((width, height), (-2.0 + seed * 0.05, -1.2, 1.0, 1.2), 60).convert(mode)
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").resize((width, height)))
    return image


def flat_picture() -> Image.Image:
    return Image.new("RGB", (300, 200), (40, 90, 200))


def causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def create_preset(invoker: Invoker, user_id: str, name: str = "mine") -> StylePresetRecordDTO:
    preset = StylePresetWithoutId(
        name=name, preset_data=PresetData(positive_prompt="a", negative_prompt="b"), type=PresetType.User
    )
    return invoker.services.style_preset_records.create(preset, user_id=user_id)


def default_preset(invoker: Invoker) -> StylePresetRecordDTO:
    presets = invoker.services.style_preset_records.get_many(type=PresetType.Default)
    return next(p for p in presets if p.name == "Anime")


def create_workflow(invoker: Invoker, user_id: str, name: str = "flow") -> WorkflowRecordDTO:
    workflow = WorkflowWithoutID(
        name=name,
        author="tester",
        description="",
        version="1.0.0",
        contact="",
        tags="",
        notes="",
        exposedFields=[],
        meta=WorkflowMeta(version="3.0.0", category=WorkflowCategory.User),
        nodes=[],
        edges=[],
        form={"elements": {}, "rootElementId": "root"},
    )
    return invoker.services.workflow_records.create(workflow, user_id=user_id)


def default_workflow(invoker: Invoker) -> WorkflowRecordDTO:
    page = invoker.services.workflow_records.get_many(
        WorkflowRecordOrderBy.Name, SQLiteDirection.Ascending, [WorkflowCategory.Default], page=0, per_page=1
    )
    return invoker.services.workflow_records.get(page.items[0].workflow_id)


@pytest.fixture()
def dead_storage(object_storage: ObjectStorage, seaweed: SeaweedS3Server) -> Iterator[ObjectStorage]:
    """The same index and layout, with S3 unreachable."""
    settings = object_storage_settings(seaweed, s3_endpoint_url="http://127.0.0.1:1")
    yield ObjectStorage(
        store=S3ObjectStore(settings), index=object_storage.index, layout=object_storage.layout, settings=settings
    )


# -- model images -----------------------------------------------------------------------------------------------


def test_model_image_bytes_equal_stock_disk(
    model_images: S3ModelImageFileStorage, object_storage: ObjectStorage, invoker: Invoker, tmp_path: Path
) -> None:
    stock = started(ModelImageFileStorageDisk(tmp_path / "stock"), invoker)
    for image in (picture(), picture(mode="RGB"), picture(100, 60, mode="P")):
        stock.save(image, MODEL_KEY)
        model_images.save(image, MODEL_KEY)
        expected = stock.get_path(MODEL_KEY).read_bytes()
        key = object_storage.layout.model_image(MODEL_KEY)
        assert object_storage.store.get_bytes(key) == expected
        assert model_images.get_path(MODEL_KEY).read_bytes() == expected
        assert model_images.get(MODEL_KEY).size == stock.get(MODEL_KEY).size
        row = object_storage.index.find(kinds.MODEL_IMAGE, MODEL_KEY)
        assert row is not None
        assert (row.object_key, row.user_id, row.bytes, row.content_type) == (key, "system", len(expected), WEBP)
        assert key == f"{object_storage.layout.prefix}shared/model_images/{MODEL_KEY}.webp"
        assert object_storage.index.usage("system") == (len(expected), 1)


def test_model_image_url_none_until_saved_and_overwrite_follows_new_size(
    model_images: S3ModelImageFileStorage, object_storage: ObjectStorage
) -> None:
    assert model_images.get_url(MODEL_KEY) is None
    model_images.save(picture(seed=3), MODEL_KEY)
    url = model_images.get_url(MODEL_KEY)
    assert url is not None and url.startswith(f"api/v2/models/i/{MODEL_KEY}/image?")
    big = object_storage.index.usage("system")
    model_images.save(flat_picture(), MODEL_KEY)
    small = object_storage.store.size(object_storage.layout.model_image(MODEL_KEY))
    assert small < big[0]
    assert object_storage.index.usage("system") == (small, 1)
    urls = model_images.get_urls([MODEL_KEY, "ffffffffffffffffffffffffffffffff", "../escape", ""])
    assert urls[MODEL_KEY] is not None
    assert urls["ffffffffffffffffffffffffffffffff"] is None and urls["../escape"] is None and urls[""] is None


def test_a_model_list_costs_one_index_query_and_sees_other_processes_covers(
    model_images: S3ModelImageFileStorage,
    object_storage: ObjectStorage,
    invoker: Invoker,
    pg_engine: Engine,
    tmp_path: Path,
) -> None:
    """Stock's model list asks ``get_url`` per model: the answers come from one snapshot of the existing covers.
    This process's own saves and deletes show at once; another process's once its snapshot is renewed."""
    keys = [f"{i:032x}" for i in range(30)]
    for key in keys[:3]:
        model_images.save(picture(seed=1), key)
    with count_statements(pg_engine) as log:
        urls = [model_images.get_url(key) for key in keys]
    assert log.count == 1
    assert [url is not None for url in urls] == [True] * 3 + [False] * 27

    # A snapshot long enough that the save below (an S3 write, slow on a loaded machine) ends within it.
    other_process = started(S3ModelImageFileStorage(object_storage, tmp_path / "other", 3.0), invoker)
    assert other_process.get_url(keys[3]) is None
    model_images.save(picture(seed=2), keys[3])
    assert model_images.get_url(keys[3]) is not None  # its own save: at once
    assert other_process.get_url(keys[3]) is None  # the other process's snapshot is still the old one
    deadline = time.monotonic() + 30
    while other_process.get_url(keys[3]) is None:  # renewed once the snapshot is 3 s old
        assert time.monotonic() < deadline, "the other process never renewed its snapshot"
        time.sleep(0.1)
    model_images.delete(keys[0])
    assert model_images.get_url(keys[0]) is None


def test_model_image_missing_behaves_as_stock(
    model_images: S3ModelImageFileStorage, object_storage: ObjectStorage, invoker: Invoker, tmp_path: Path
) -> None:
    stock = started(ModelImageFileStorageDisk(tmp_path / "stock"), invoker)
    for storage in (stock, model_images):
        with pytest.raises(ModelImageFileNotFoundException):
            storage.get(MODEL_KEY)
        assert not storage.get_path(MODEL_KEY).exists()  # a path all the same: the upload route validates with it
        with pytest.raises(ModelImageFileDeleteException) as deleted:
            storage.delete(MODEL_KEY)
        assert isinstance(deleted.value.__cause__, ModelImageFileNotFoundException)  # the route's 404


def test_model_image_delete_removes_object_row_and_usage(
    model_images: S3ModelImageFileStorage, object_storage: ObjectStorage
) -> None:
    model_images.save(picture(), MODEL_KEY)
    path = model_images.get_path(MODEL_KEY)
    assert path.exists()
    model_images.delete(MODEL_KEY)
    assert not object_storage.store.exists(object_storage.layout.model_image(MODEL_KEY))
    assert object_storage.index.find(kinds.MODEL_IMAGE, MODEL_KEY) is None
    assert object_storage.index.usage("system") == (0, 0)
    assert model_images.get_url(MODEL_KEY) is None
    assert not path.exists()
    with pytest.raises(ModelImageFileNotFoundException):
        model_images.get(MODEL_KEY)


@pytest.mark.parametrize("bad_key", ["../escape", "a/b", "..", "", "bad\nkey", "legacy:key"])
def test_model_image_invalid_keys_refused_with_stock_exceptions(
    model_images: S3ModelImageFileStorage, object_storage: ObjectStorage, bad_key: str
) -> None:
    with pytest.raises(ModelImageFileNotFoundException):
        model_images.get_path(bad_key)
    with pytest.raises(ModelImageFileNotFoundException):
        model_images.get(bad_key)
    with pytest.raises(ModelImageFileSaveException) as saved:
        model_images.save(picture(), bad_key)
    assert isinstance(saved.value.__cause__, ModelImageFileNotFoundException)
    assert str(saved.value) == "Model image file not saved"  # stock's message, nothing of the key
    with pytest.raises(ModelImageFileDeleteException) as deleted:
        model_images.delete(bad_key)
    assert isinstance(deleted.value.__cause__, ModelImageFileNotFoundException)
    assert model_images.get_url(bad_key) is None
    assert object_storage.index.usage("system") == (0, 0)


def test_model_image_local_copy_follows_other_processes(
    model_images: S3ModelImageFileStorage, object_storage: ObjectStorage, invoker: Invoker, tmp_path: Path
) -> None:
    """Another API process (its own storage object, its own cache) rewrites and then deletes the cover: this
    process's local copy follows, never serving the old bytes."""
    other = started(S3ModelImageFileStorage(object_storage, tmp_path / "other-cache"), invoker)
    model_images.save(picture(seed=1), MODEL_KEY)
    first = model_images.get_path(MODEL_KEY).read_bytes()
    other.save(picture(seed=7), MODEL_KEY)
    second = model_images.get_path(MODEL_KEY).read_bytes()
    assert second != first
    assert second == object_storage.store.get_bytes(object_storage.layout.model_image(MODEL_KEY))
    other.delete(MODEL_KEY)
    assert not model_images.get_path(MODEL_KEY).exists()
    assert not any(p.name.endswith(".part") for p in (tmp_path / "cache").rglob("*"))


# -- style preset images ----------------------------------------------------------------------------------------


def test_preset_images_equal_stock_and_live_under_each_owner(
    preset_images: S3StylePresetImageFileStorage, object_storage: ObjectStorage, invoker: Invoker, tmp_path: Path
) -> None:
    stock = started(StylePresetImageFileStorageDisk(tmp_path / "stock"), invoker)
    alice = create_preset(invoker, "alice")
    bob = create_preset(invoker, "bob")
    sizes: dict[str, int] = {}
    for record, image in ((alice, picture(seed=2)), (bob, picture(mode="RGB", seed=4))):
        stock.save(record.id, image)
        preset_images.save(record.id, image)
        expected = stock.get_path(record.id).read_bytes()
        key = f"{object_storage.layout.prefix}users/{record.user_id}/style_presets/{record.id}.webp"
        assert object_storage.store.get_bytes(key) == expected
        assert preset_images.get_path(record.id).read_bytes() == expected
        assert preset_images.get(record.id).size == stock.get(record.id).size
        row = object_storage.index.find(kinds.STYLE_PRESET_IMAGE, record.id)
        assert row is not None and (row.object_key, row.user_id, row.bytes) == (key, record.user_id, len(expected))
        sizes[record.user_id] = len(expected)
    assert object_storage.index.usage("alice") == (sizes["alice"], 1)
    assert object_storage.index.usage("bob") == (sizes["bob"], 1)

    preset_images.save(alice.id, flat_picture())
    stock.save(alice.id, flat_picture())
    assert object_storage.index.usage("alice") == (stock.get_path(alice.id).stat().st_size, 1)
    assert object_storage.index.usage("bob") == (sizes["bob"], 1)


def test_preset_urls_from_the_index_and_packaged_defaults(
    preset_images: S3StylePresetImageFileStorage, pg_engine: Engine, invoker: Invoker, tmp_path: Path
) -> None:
    stock = started(StylePresetImageFileStorageDisk(tmp_path / "stock"), invoker)
    default = default_preset(invoker)
    mine = create_preset(invoker, "alice")
    assert preset_images.get_path(default.id) == stock.get_path(default.id)
    assert preset_images.get_path(default.id).exists()
    assert preset_images.get(default.id).size == stock.get(default.id).size
    assert preset_images.get_url(mine.id) is None
    preset_images.save(mine.id, picture())
    for record in (default, mine):
        url = preset_images.get_url(record.id)
        assert url is not None and url.startswith(f"api/v1/style_presets/i/{record.id}/image?")
    others = [create_preset(invoker, "bob", f"p{i}") for i in range(5)]
    records = [default, mine, *others]
    with count_statements(pg_engine) as log:
        urls = preset_images.get_urls_for_records(records)
    assert log.count == 1
    assert [urls[r.id] is not None for r in records] == [True, True, False, False, False, False, False]
    with pytest.raises(StylePresetNotFoundError):
        preset_images.get_url("no-such-preset")


def test_preset_missing_and_delete_semantics(
    preset_images: S3StylePresetImageFileStorage, object_storage: ObjectStorage, invoker: Invoker, tmp_path: Path
) -> None:
    stock = started(StylePresetImageFileStorageDisk(tmp_path / "stock"), invoker)
    mine = create_preset(invoker, "alice")
    for storage in (stock, preset_images):
        with pytest.raises(StylePresetImageFileNotFoundException):
            storage.get(mine.id)
        with pytest.raises(StylePresetImageFileNotFoundException):
            storage.delete(mine.id)
        assert not storage.get_path(mine.id).exists()
        with pytest.raises(StylePresetNotFoundError):
            storage.get_path("../../etc/passwd")

    preset_images.save(mine.id, picture())
    path = preset_images.get_path(mine.id)
    preset_images.delete(mine.id)
    key = object_storage.layout.style_preset_image("alice", mine.id)
    assert not object_storage.store.exists(key)
    assert object_storage.index.find(kinds.STYLE_PRESET_IMAGE, mine.id) is None
    assert object_storage.index.usage("alice") == (0, 0)
    assert not path.exists()
    with pytest.raises(StylePresetImageFileNotFoundException):
        preset_images.delete(mine.id)

    default = default_preset(invoker)
    with pytest.raises(StylePresetImageFileNotFoundException):
        preset_images.delete(default.id)
    assert preset_images.get_path(default.id).exists()  # the packaged PNG is never deleted


# -- workflow thumbnails ----------------------------------------------------------------------------------------


def test_workflow_thumbnails_equal_stock_and_live_under_each_owner(
    thumbnails: S3WorkflowThumbnailFileStorage, object_storage: ObjectStorage, invoker: Invoker, tmp_path: Path
) -> None:
    stock = started(WorkflowThumbnailFileStorageDisk(tmp_path / "stock"), invoker)
    for user_id, image in (("alice", picture(seed=5)), ("bob", picture(90, 400, mode="RGB"))):
        record = create_workflow(invoker, user_id)
        stock.save(record.workflow_id, image)
        thumbnails.save(record.workflow_id, image)
        expected = stock.get_path(record.workflow_id).read_bytes()
        key = f"{object_storage.layout.prefix}users/{user_id}/workflow_thumbnails/{record.workflow_id}.webp"
        assert object_storage.store.get_bytes(key) == expected
        assert thumbnails.get_path(record.workflow_id).read_bytes() == expected
        assert thumbnails.get(record.workflow_id).size == stock.get(record.workflow_id).size
        assert object_storage.index.usage(user_id) == (len(expected), 1)
        thumbnails.save(record.workflow_id, flat_picture())
        stock.save(record.workflow_id, flat_picture())
        assert object_storage.index.usage(user_id) == (stock.get_path(record.workflow_id).stat().st_size, 1)


def test_workflow_urls_from_records_and_the_index(
    thumbnails: S3WorkflowThumbnailFileStorage, pg_engine: Engine, invoker: Invoker, tmp_path: Path
) -> None:
    stock = started(WorkflowThumbnailFileStorageDisk(tmp_path / "stock"), invoker)
    default = default_workflow(invoker)
    mine = create_workflow(invoker, "alice")
    assert thumbnails.get_path(default.workflow_id) == stock.get_path(default.workflow_id)
    assert thumbnails.get_url(default.workflow_id) is stock.get_url(default.workflow_id) is None
    assert thumbnails.get_url(mine.workflow_id) is None
    thumbnails.save(mine.workflow_id, picture())
    base = f"api/v1/workflows/i/{mine.workflow_id}/thumbnail"
    assert thumbnails.get_url(mine.workflow_id, with_hash=False) == base
    assert str(thumbnails.get_url(mine.workflow_id)).startswith(base + "?")
    with count_statements(pg_engine) as log:
        assert thumbnails.get_url_for_record(mine, with_hash=False) == base
    assert log.count == 1  # the index, not the workflow record
    page = [default, mine, *(create_workflow(invoker, "bob", f"w{i}") for i in range(6))]
    with count_statements(pg_engine) as log:
        urls = thumbnails.get_urls_for_records(page, with_hash=False)
    assert log.count == 1
    assert urls == {r.workflow_id: base if r.workflow_id == mine.workflow_id else None for r in page}
    with pytest.raises(WorkflowNotFoundError):
        thumbnails.get_url("no-such-workflow")


def test_workflow_missing_and_delete_semantics(
    thumbnails: S3WorkflowThumbnailFileStorage, object_storage: ObjectStorage, invoker: Invoker, tmp_path: Path
) -> None:
    stock = started(WorkflowThumbnailFileStorageDisk(tmp_path / "stock"), invoker)
    mine = create_workflow(invoker, "alice")
    default = default_workflow(invoker)
    for storage in (stock, thumbnails):
        for workflow_id in (mine.workflow_id, default.workflow_id):
            with pytest.raises(WorkflowThumbnailFileNotFoundException):
                storage.get(workflow_id)
            with pytest.raises(WorkflowThumbnailFileNotFoundException):
                storage.delete(workflow_id)
            assert not storage.get_path(workflow_id).exists()
        with pytest.raises(WorkflowNotFoundError):
            storage.get_path("../../etc/passwd")

    thumbnails.save(mine.workflow_id, picture())
    path = thumbnails.get_path(mine.workflow_id)
    thumbnails.delete(mine.workflow_id)
    assert not object_storage.store.exists(object_storage.layout.workflow_thumbnail("alice", mine.workflow_id))
    assert object_storage.index.find(kinds.WORKFLOW_THUMBNAIL, mine.workflow_id) is None
    assert object_storage.index.usage("alice") == (0, 0)
    assert thumbnails.get_url(mine.workflow_id) is None
    assert not path.exists()


def test_an_owner_that_cannot_be_a_key_prefix_is_refused(
    thumbnails: S3WorkflowThumbnailFileStorage, object_storage: ObjectStorage, invoker: Invoker
) -> None:
    record = create_workflow(invoker, "../alice")
    with pytest.raises(WorkflowThumbnailFileSaveException) as saved:
        thumbnails.save(record.workflow_id, picture())
    assert isinstance(saved.value.__cause__, InvalidObjectName)
    assert str(saved.value) == "Workflow thumbnail file cannot be saved"
    assert object_storage.index.find(kinds.WORKFLOW_THUMBNAIL, record.workflow_id) is None


# -- S3 down ----------------------------------------------------------------------------------------------------


def test_s3_down_saves_fail_with_the_outage_in_the_cause_chain(
    dead_storage: ObjectStorage, object_storage: ObjectStorage, invoker: Invoker, tmp_path: Path
) -> None:
    models = started(S3ModelImageFileStorage(dead_storage, tmp_path), invoker)
    presets = started(S3StylePresetImageFileStorage(dead_storage, tmp_path), invoker)
    workflows = started(S3WorkflowThumbnailFileStorage(dead_storage, tmp_path), invoker)
    preset = create_preset(invoker, "alice")
    workflow = create_workflow(invoker, "alice")
    saves: list[tuple[Any, type[Exception]]] = [
        (lambda: models.save(picture(), MODEL_KEY), ModelImageFileSaveException),
        (lambda: presets.save(preset.id, picture()), StylePresetImageFileSaveException),
        (lambda: workflows.save(workflow.workflow_id, picture()), WorkflowThumbnailFileSaveException),
    ]
    for save, exception in saves:
        with pytest.raises(exception) as failed:
            save()
        assert any(isinstance(e, ObjectStoreUnavailable) for e in causes(failed.value))
    assert object_storage.index.usage("system") == (0, 0)
    assert object_storage.index.usage("alice") == (0, 0)
    # Reads from the index still answer; reads that need the bytes report the outage, not "no image".
    assert presets.get_url(preset.id) is None
    with pytest.raises(ObjectStoreUnavailable):
        workflows.get(workflow.workflow_id)
