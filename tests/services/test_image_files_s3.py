"""``S3ImageFileStorage`` against real SeaweedFS and PostgreSQL, with real image records, and byte for byte against
stock's ``DiskImageFileStorage`` (the executable specification of what an image file is)."""

from __future__ import annotations

import io
import random
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from invokeai.app.services.config.config_default import InvokeAIAppConfig
from invokeai.app.services.image_files.image_files_common import (
    ImageFileDeleteException,
    ImageFileNotFoundException,
    ImageFileSaveException,
)
from invokeai.app.services.image_files.image_files_disk import DiskImageFileStorage, _should_use_png_rle
from invokeai.app.services.image_records.image_records_common import (
    ImageCategory,
    ImageRecordNotFoundException,
    ResourceOrigin,
)
from invokeai.app.services.invoker import Invoker
from PIL import Image, ImageDraw
from PIL.Image import Image as PILImageType
from sqlalchemy import Engine

from invokeai_saas.devstack import SeaweedS3Server
from invokeai_saas.services.image_files.image_files_s3 import S3ImageFileStorage
from invokeai_saas.services.image_records.image_records_postgres import PostgresImageRecordStorage
from invokeai_saas.storage import kinds
from invokeai_saas.storage.context import ObjectStorage
from invokeai_saas.storage.object_store import ObjectStoreUnavailable, S3ObjectStore
from tests.conftest import object_storage_settings
from tests.support.sql_counter import count_statements

OWNER = "user-a"
OTHER = "user-b"
METADATA = '{"seed": 42, "positive_prompt": "a lighthouse at dusk"}'
WORKFLOW = '{"name": "lighthouse", "nodes": [], "edges": []}'
GRAPH = '{"id": "graph-1", "nodes": {}, "edges": []}'
TEXT_KEYS = ["invokeai_metadata", "invokeai_workflow", "invokeai_graph"]

ImageFactory = Callable[[], PILImageType]


# --- images: each factory builds a fresh object, because save() rewrites the caller's image.info ------------------


def noise_rgb(width: int = 512, height: int = 512) -> PILImageType:
    return Image.frombytes("RGB", (width, height), random.Random(7).randbytes(width * height * 3))


def drawn_rgb() -> PILImageType:
    image = Image.linear_gradient("L").resize((320, 200)).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.ellipse((40, 30, 200, 170), fill=(200, 40, 90))
    draw.rectangle((220, 60, 300, 180), fill=(20, 160, 220))
    return image


def palette_with_transparency() -> PILImageType:
    """Palette transparency lives in ``image.info``: the thumbnail must be made before ``info`` is replaced."""
    image = Image.new("P", (300, 180), 0)
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12))
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 140, 160), fill=1)
    draw.ellipse((150, 30, 280, 150), fill=2)
    image.info["transparency"] = 0
    return image


def rgba() -> PILImageType:
    image = Image.new("RGBA", (256, 384), (0, 0, 0, 0))
    ImageDraw.Draw(image).polygon([(10, 370), (128, 10), (246, 370)], fill=(250, 200, 30, 180))
    return image


IMAGES: dict[str, ImageFactory] = {
    "rgb": drawn_rgb,
    "palette_transparency": palette_with_transparency,
    "rgba": rgba,
}


# --- services ------------------------------------------------------------------------------------------------------


def make_invoker(records: PostgresImageRecordStorage, **config: Any) -> Invoker:
    services = SimpleNamespace(image_records=records, configuration=InvokeAIAppConfig(**config))
    return cast(Invoker, SimpleNamespace(services=services))


def s3_storage(
    object_storage: ObjectStorage, records: PostgresImageRecordStorage, cache_dir: Path, **config: Any
) -> S3ImageFileStorage:
    storage = S3ImageFileStorage(object_storage, cache_dir)
    storage.start(make_invoker(records, **config))
    return storage


def disk_storage(records: PostgresImageRecordStorage, folder: Path, **config: Any) -> DiskImageFileStorage:
    storage = DiskImageFileStorage(folder)
    storage.start(make_invoker(records, **config))
    return storage


def dead_storage(object_storage: ObjectStorage, seaweed: SeaweedS3Server) -> ObjectStorage:
    """The same index and layout, but S3 at an endpoint nothing listens on."""
    settings = object_storage_settings(
        seaweed, s3_endpoint_url="http://127.0.0.1:1", s3_prefix=object_storage.settings.s3_prefix
    )
    return ObjectStorage(
        store=S3ObjectStore(settings), index=object_storage.index, layout=object_storage.layout, settings=settings
    )


@pytest.fixture()
def records(pg_engine: Engine) -> PostgresImageRecordStorage:
    return PostgresImageRecordStorage(pg_engine)


@pytest.fixture()
def storage(object_storage: ObjectStorage, records: PostgresImageRecordStorage, tmp_path: Path) -> S3ImageFileStorage:
    return s3_storage(object_storage, records, tmp_path / "cache")


def add_record(records: PostgresImageRecordStorage, image_name: str, user_id: str = OWNER) -> str:
    records.save(
        image_name=image_name,
        image_origin=ResourceOrigin.INTERNAL,
        image_category=ImageCategory.GENERAL,
        width=64,
        height=64,
        has_workflow=True,
        user_id=user_id,
    )
    return image_name


def save_image(
    storage: S3ImageFileStorage,
    records: PostgresImageRecordStorage,
    image_name: str,
    user_id: str = OWNER,
    make: ImageFactory = drawn_rgb,
) -> str:
    add_record(records, image_name, user_id)
    storage.save(make(), image_name, metadata=METADATA, workflow=WORKFLOW, graph=GRAPH)
    return image_name


def object_bytes(object_storage: ObjectStorage, user_id: str, image_name: str) -> tuple[bytes, bytes]:
    layout, store = object_storage.layout, object_storage.store
    return (
        store.get_bytes(layout.image(user_id, image_name)),
        store.get_bytes(layout.image_thumbnail(user_id, image_name)),
    )


def keys_of(object_storage: ObjectStorage, user_id: str, image_name: str) -> list[str]:
    return [
        object_storage.layout.image(user_id, image_name),
        object_storage.layout.image_thumbnail(user_id, image_name),
    ]


def stored(object_storage: ObjectStorage, user_id: str, image_name: str) -> list[bool]:
    return [object_storage.store.exists(key) for key in keys_of(object_storage, user_id, image_name)]


def causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def pending_keys(object_storage: ObjectStorage) -> set[str]:
    return {key for key, _ in object_storage.index.pending()}


# --- saving: the same bytes as stock ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_save_writes_the_bytes_stock_writes(
    kind: str,
    storage: S3ImageFileStorage,
    object_storage: ObjectStorage,
    records: PostgresImageRecordStorage,
    tmp_path: Path,
) -> None:
    disk = disk_storage(records, tmp_path / "outputs" / "images")
    name = add_record(records, f"{kind}.png")
    make = IMAGES[kind]
    disk.save(make(), name, metadata=METADATA, workflow=WORKFLOW, graph=GRAPH)
    storage.save(make(), name, metadata=METADATA, workflow=WORKFLOW, graph=GRAPH)

    png, webp = object_bytes(object_storage, OWNER, name)
    assert png == disk.get_path(name).read_bytes()
    assert webp == disk.get_path(name, thumbnail=True).read_bytes()
    with Image.open(io.BytesIO(png)) as reopened:
        assert reopened.format == "PNG"
        assert list(reopened.text) == TEXT_KEYS
        assert reopened.text == {"invokeai_metadata": METADATA, "invokeai_workflow": WORKFLOW, "invokeai_graph": GRAPH}
    with Image.open(io.BytesIO(webp)) as thumbnail:
        assert thumbnail.format == "WEBP"
        assert max(thumbnail.size) == 256
        assert thumbnail.mode == ("RGB" if kind == "rgb" else "RGBA")

    index = object_storage.index
    full, small = index.find(kinds.IMAGE, name), index.find(kinds.IMAGE_THUMBNAIL, name)
    assert full is not None and small is not None
    assert (full.object_key, full.user_id, full.bytes, full.content_type) == (
        object_storage.layout.image(OWNER, name),
        OWNER,
        len(png),
        "image/png",
    )
    assert (small.object_key, small.user_id, small.bytes, small.content_type) == (
        object_storage.layout.image_thumbnail(OWNER, name),
        OWNER,
        len(webp),
        "image/webp",
    )
    assert index.usage(OWNER) == (len(png) + len(webp), 2)


def test_save_at_level_1_uses_run_length_encoding_like_stock(
    object_storage: ObjectStorage, records: PostgresImageRecordStorage, tmp_path: Path
) -> None:
    assert _should_use_png_rle(noise_rgb())  # the image really takes stock's Z_RLE branch
    disk = disk_storage(records, tmp_path / "outputs" / "images", pil_compress_level=1)
    storage = s3_storage(object_storage, records, tmp_path / "cache", pil_compress_level=1)
    name = add_record(records, "noise.png")
    disk.save(noise_rgb(), name, metadata=METADATA)
    storage.save(noise_rgb(), name, metadata=METADATA)

    png, webp = object_bytes(object_storage, OWNER, name)
    assert png == disk.get_path(name).read_bytes()
    assert webp == disk.get_path(name, thumbnail=True).read_bytes()
    with Image.open(io.BytesIO(png)) as reopened:
        assert reopened.text == {"invokeai_metadata": METADATA}
        assert reopened.tobytes() == noise_rgb().tobytes()


def test_save_honours_the_configured_compress_level(
    object_storage: ObjectStorage, records: PostgresImageRecordStorage, tmp_path: Path
) -> None:
    disk = disk_storage(records, tmp_path / "outputs" / "images", pil_compress_level=9)
    storage = s3_storage(object_storage, records, tmp_path / "cache", pil_compress_level=9)
    default_level = s3_storage(object_storage, records, tmp_path / "cache-default")
    name = add_record(records, "level9.png")
    other = add_record(records, "level-default.png")
    disk.save(drawn_rgb(), name)
    storage.save(drawn_rgb(), name)
    default_level.save(drawn_rgb(), other)

    png, _ = object_bytes(object_storage, OWNER, name)
    default_png, _ = object_bytes(object_storage, OWNER, other)
    assert png == disk.get_path(name).read_bytes()
    assert png != default_png


def test_two_users_images_live_under_their_own_prefixes(
    storage: S3ImageFileStorage, object_storage: ObjectStorage, records: PostgresImageRecordStorage
) -> None:
    save_image(storage, records, "mine.png", OWNER)
    save_image(storage, records, "theirs.png", OTHER)

    prefix = object_storage.layout.prefix
    mine = {row.object_key for row in object_storage.index.objects_of_user(OWNER)}
    theirs = {row.object_key for row in object_storage.index.objects_of_user(OTHER)}
    assert mine == {f"{prefix}users/{OWNER}/images/mine.png", f"{prefix}users/{OWNER}/images/thumbnails/mine.webp"}
    assert theirs == {
        f"{prefix}users/{OTHER}/images/theirs.png",
        f"{prefix}users/{OTHER}/images/thumbnails/theirs.webp",
    }
    assert stored(object_storage, OWNER, "mine.png") == [True, True]
    assert stored(object_storage, OTHER, "theirs.png") == [True, True]


def test_save_without_a_record_is_refused_and_writes_nothing(
    storage: S3ImageFileStorage, object_storage: ObjectStorage
) -> None:
    with pytest.raises(ImageFileSaveException) as raised:
        storage.save(drawn_rgb(), "orphan.png", metadata=METADATA)

    assert isinstance(raised.value.__cause__, ImageRecordNotFoundException)
    assert object_storage.index.find(kinds.IMAGE, "orphan.png") is None
    assert object_storage.index.find(kinds.IMAGE_THUMBNAIL, "orphan.png") is None


def test_save_while_s3_is_down_fails_cleanly(
    object_storage: ObjectStorage,
    records: PostgresImageRecordStorage,
    seaweed: SeaweedS3Server,
    tmp_path: Path,
) -> None:
    storage = s3_storage(dead_storage(object_storage, seaweed), records, tmp_path / "cache")
    name = add_record(records, "outage.png")

    with pytest.raises(ImageFileSaveException) as raised:
        storage.save(drawn_rgb(), name, metadata=METADATA)

    assert str(raised.value) == "Image file not saved"
    assert any(isinstance(error, ObjectStoreUnavailable) for error in causes(raised.value))
    assert object_storage.index.objects_of_user(OWNER) == []
    assert object_storage.index.usage(OWNER) == (0, 0)
    assert stored(object_storage, OWNER, name) == [False, False]
    # The failed put may still have landed, and S3 could not delete it either: the key is journalled for the
    # cleanup pass, which deletes it once stock's ImageService has removed the record.
    assert pending_keys(object_storage) == {object_storage.layout.image_thumbnail(OWNER, name)}
    with pytest.raises(ImageFileNotFoundException):
        storage.get(name)


# --- reading -----------------------------------------------------------------------------------------------------


def test_get_and_the_embedded_workflow_and_graph(
    storage: S3ImageFileStorage,
    object_storage: ObjectStorage,
    records: PostgresImageRecordStorage,
    tmp_path: Path,
) -> None:
    save_image(storage, records, "full.png")
    add_record(records, "bare.png")
    storage.save(drawn_rgb(), "bare.png")

    assert storage.get("full.png").tobytes() == drawn_rgb().tobytes()
    # A second instance (another process) has empty caches and reads S3.
    fresh = s3_storage(object_storage, records, tmp_path / "other-cache")
    image = fresh.get("full.png")
    assert image.tobytes() == drawn_rgb().tobytes()
    assert image.info["invokeai_metadata"] == METADATA
    assert fresh.get("full.png") is image  # decoded once, then served from memory
    assert fresh.get_workflow("full.png") == WORKFLOW
    assert fresh.get_graph("full.png") == GRAPH
    assert fresh.get_workflow("bare.png") is None
    assert fresh.get_graph("bare.png") is None


def test_missing_images_are_not_found(
    storage: S3ImageFileStorage,
    object_storage: ObjectStorage,
    records: PostgresImageRecordStorage,
    tmp_path: Path,
) -> None:
    for call in (storage.get, storage.get_workflow, storage.get_graph):
        with pytest.raises(ImageFileNotFoundException):
            call("never-saved.png")

    # The index still names it but the object is gone (removed behind the storage's back).
    save_image(storage, records, "vanished.png")
    object_storage.store.delete(object_storage.layout.image(OWNER, "vanished.png"))
    fresh = s3_storage(object_storage, records, tmp_path / "other-cache")
    with pytest.raises(ImageFileNotFoundException):
        fresh.get("vanished.png")
    path = fresh.get_path("vanished.png")
    assert path == fresh.image_root / "vanished.png"
    assert not path.exists()
    assert fresh.validate_path(str(path)) is False


def test_names_are_checked_like_stock(
    storage: S3ImageFileStorage, records: PostgresImageRecordStorage, tmp_path: Path
) -> None:
    disk = disk_storage(records, tmp_path / "outputs" / "images")
    bad_calls: list[tuple[str, dict[str, Any]]] = [
        ("../escape.png", {}),
        ("nested/escape.png", {}),
        ("..", {}),
        ("ok.png", {"image_subfolder": "../up"}),
        ("ok.png", {"image_subfolder": "/abs"}),
        ("ok.png", {"image_subfolder": "a\\b"}),
        ("ok.png", {"image_subfolder": "a//b"}),
    ]
    for name, kwargs in bad_calls:
        with pytest.raises(ValueError) as expected:
            disk.get_path(name, **kwargs)
        for call in (storage.get_path, storage.get, storage.stage_delete):
            with pytest.raises(ValueError) as raised:
                call(name, **kwargs)
            assert str(raised.value) == str(expected.value)
        with pytest.raises(ValueError) as raised:
            storage.begin_delete([("fine.png", ""), (name, kwargs.get("image_subfolder", ""))])
        assert str(raised.value) == str(expected.value)
    with pytest.raises(ValueError, match="potential directory traversal"):
        storage.get_path("../escape.png", thumbnail=True)
    with pytest.raises(ImageFileSaveException) as failed:
        storage.save(drawn_rgb(), "../escape.png")
    assert isinstance(failed.value.__cause__, ValueError)


# --- local paths for stock callers ---------------------------------------------------------------------------------


def test_get_path_materialises_the_objects(
    storage: S3ImageFileStorage,
    object_storage: ObjectStorage,
    records: PostgresImageRecordStorage,
    tmp_path: Path,
) -> None:
    name = save_image(storage, records, "local.png")
    png, webp = object_bytes(object_storage, OWNER, name)

    path = storage.get_path(name, image_subfolder="2026/12/03")  # subfolders are validated, then ignored
    thumbnail_path = storage.get_path(name, thumbnail=True)
    assert path == storage.image_root / name and path.read_bytes() == png
    assert thumbnail_path == storage.thumbnail_root / "local.webp" and thumbnail_path.read_bytes() == webp
    assert storage.validate_path(str(path)) and storage.validate_path(str(thumbnail_path))

    # A pruned copy is still valid (the object exists) and comes back on the next get_path.
    path.unlink()
    thumbnail_path.unlink()
    assert storage.validate_path(str(path)) and storage.validate_path(str(thumbnail_path))
    assert storage.get_path(name).read_bytes() == png

    # Another process answers from the index and S3 without a local copy.
    fresh = s3_storage(object_storage, records, tmp_path / "other-cache")
    assert fresh.validate_path(str(fresh.image_root / name))
    assert not fresh.validate_path(str(fresh.image_root / "unknown.png"))
    assert not fresh.validate_path(str(tmp_path / "elsewhere.png"))


def test_stock_callers_work_with_the_local_paths(
    storage: S3ImageFileStorage, object_storage: ObjectStorage, records: PostgresImageRecordStorage, tmp_path: Path
) -> None:
    """Bulk download zips ``get_path`` files; recall parameters calls ``validate_path`` on what ``get_path`` gave."""
    first = save_image(storage, records, "first.png")
    second = save_image(storage, records, "second.png", make=rgba)
    archive = tmp_path / "bulk.zip"
    with zipfile.ZipFile(archive, "w") as zip_file:
        for name in (first, second):
            zip_file.write(storage.get_path(name), arcname=Path("general") / name)
    with zipfile.ZipFile(archive) as zip_file:
        assert zip_file.read(f"general/{first}") == object_bytes(object_storage, OWNER, first)[0]
        assert zip_file.read(f"general/{second}") == object_bytes(object_storage, OWNER, second)[0]

    assert storage.validate_path(str(storage.get_path(first)))
    assert not storage.validate_path(str(storage.get_path("missing.png")))


def test_the_local_copies_are_bounded(
    object_storage: ObjectStorage, records: PostgresImageRecordStorage, tmp_path: Path
) -> None:
    writer = s3_storage(object_storage, records, tmp_path / "writer-cache")
    first = save_image(writer, records, "first.png", make=rgba)
    second = save_image(writer, records, "second.png", make=rgba)
    size = len(object_bytes(object_storage, OWNER, first)[0])
    storage = S3ImageFileStorage(object_storage, tmp_path / "cache", max_cache_bytes=size + size // 2)
    storage.start(make_invoker(records))

    first_path = storage.get_path(first)
    assert first_path.exists()
    second_path = storage.get_path(second)
    assert second_path.exists() and not first_path.exists()  # least recently used went first
    assert storage.get_path(first).exists() and not second_path.exists()
    assert [p.name for p in storage.image_root.iterdir()] == [first]


def test_evict_cache_paths_drops_local_and_decoded_copies(
    storage: S3ImageFileStorage, records: PostgresImageRecordStorage
) -> None:
    name = save_image(storage, records, "evict.png")
    decoded = storage.get(name)
    path = storage.get_path(name)
    thumbnail_path = storage.get_path(name, thumbnail=True)

    storage.evict_cache_paths([path, thumbnail_path])

    assert not path.exists() and not thumbnail_path.exists()
    again = storage.get(name)
    assert again is not decoded and again.tobytes() == decoded.tobytes()


# --- deleting ----------------------------------------------------------------------------------------------------


def test_delete_removes_objects_rows_and_usage(
    storage: S3ImageFileStorage, object_storage: ObjectStorage, records: PostgresImageRecordStorage
) -> None:
    name = save_image(storage, records, "gone.png")
    kept = save_image(storage, records, "kept.png")
    storage.get(name)
    path = storage.get_path(name)
    kept_usage = object_storage.index.find(kinds.IMAGE, kept), object_storage.index.find(kinds.IMAGE_THUMBNAIL, kept)

    storage.delete(name)

    assert stored(object_storage, OWNER, name) == [False, False]
    assert object_storage.index.find(kinds.IMAGE, name) is None
    assert object_storage.index.find(kinds.IMAGE_THUMBNAIL, name) is None
    assert pending_keys(object_storage) == set()
    assert not path.exists()
    with pytest.raises(ImageFileNotFoundException):
        storage.get(name)
    assert object_storage.index.usage(OWNER) == (sum(row.bytes for row in kept_usage if row is not None), 2)
    storage.delete(kept)
    assert object_storage.index.usage(OWNER) == (0, 0)
    storage.delete("never-saved.png")  # like stock: nothing there is not an error


def test_begin_then_commit_purges_only_the_deleted_records(
    storage: S3ImageFileStorage, object_storage: ObjectStorage, records: PostgresImageRecordStorage
) -> None:
    names = [save_image(storage, records, f"inter-{i}.png") for i in range(3)]
    survivor = names[2]

    token = storage.begin_delete([(name, "") for name in names] + [("never-saved.png", "")])
    assert pending_keys(object_storage) == {key for name in names for key in keys_of(object_storage, OWNER, name)}
    deleted = names[:2]  # e.g. the third was promoted from intermediate meanwhile: its record survives
    for name in deleted:
        records.delete(name)
    storage.commit_delete(token, image_names=deleted)

    for name in deleted:
        assert stored(object_storage, OWNER, name) == [False, False]
    assert stored(object_storage, OWNER, survivor) == [True, True]
    assert pending_keys(object_storage) == set()
    survivor_rows = [object_storage.index.find(kind, survivor) for kind in (kinds.IMAGE, kinds.IMAGE_THUMBNAIL)]
    assert object_storage.index.usage(OWNER) == (sum(row.bytes for row in survivor_rows if row is not None), 2)


def test_begin_delete_resolves_thousands_of_names_in_one_query(
    storage: S3ImageFileStorage,
    object_storage: ObjectStorage,
    records: PostgresImageRecordStorage,
    pg_engine: Engine,
) -> None:
    name = save_image(storage, records, "one-of-many.png")
    images = [(f"{i:05d}.png", "") for i in range(5000)] + [(name, "")]

    with count_statements(pg_engine) as log:
        token = storage.begin_delete(images)

    assert log.count == 2  # one look-up for every name, one journal insert

    assert pending_keys(object_storage) == set(keys_of(object_storage, OWNER, name))
    storage.abandon_delete(token)
    assert pending_keys(object_storage) == set()


def test_abandon_and_rollback_keep_the_objects(
    storage: S3ImageFileStorage, object_storage: ObjectStorage, records: PostgresImageRecordStorage
) -> None:
    name = save_image(storage, records, "stays.png")

    storage.abandon_delete(storage.begin_delete([(name, "")]))
    assert stored(object_storage, OWNER, name) == [True, True]
    assert pending_keys(object_storage) == set()

    staged = storage.stage_delete(name)
    assert pending_keys(object_storage) == set(keys_of(object_storage, OWNER, name))
    assert stored(object_storage, OWNER, name) == [True, True]  # staging deletes nothing
    storage.rollback_delete(staged)
    assert stored(object_storage, OWNER, name) == [True, True]
    assert pending_keys(object_storage) == set()
    assert storage.get(name).tobytes() == drawn_rgb().tobytes()


def test_rollback_purges_when_the_record_is_gone_meanwhile(
    storage: S3ImageFileStorage, object_storage: ObjectStorage, records: PostgresImageRecordStorage
) -> None:
    name = save_image(storage, records, "raced.png")
    staged = storage.stage_delete(name)
    records.delete(name)  # another request deleted the record while ours was rolling back

    storage.rollback_delete(staged)

    assert stored(object_storage, OWNER, name) == [False, False]
    assert object_storage.index.usage(OWNER) == (0, 0)
    assert pending_keys(object_storage) == set()


def test_staged_delete_then_commit(
    storage: S3ImageFileStorage, object_storage: ObjectStorage, records: PostgresImageRecordStorage
) -> None:
    name = save_image(storage, records, "board.png")
    staged = storage.stage_delete(name)
    records.delete(name)

    storage.commit_delete(staged, image_names=["ignored-for-staged-tokens.png"])

    assert stored(object_storage, OWNER, name) == [False, False]
    assert pending_keys(object_storage) == set()
    assert object_storage.index.usage(OWNER) == (0, 0)


def test_wrong_tokens_are_refused_like_stock(storage: S3ImageFileStorage, records: PostgresImageRecordStorage) -> None:
    name = save_image(storage, records, "token.png")
    staged = storage.stage_delete(name)
    pending = storage.begin_delete([(name, "")])

    for call, token, message in (
        (storage.commit_delete, object(), "Invalid staged-delete token"),
        (storage.rollback_delete, pending, "Invalid staged-delete token"),
        (storage.abandon_delete, staged, "Invalid pending-delete token"),
    ):
        with pytest.raises(ImageFileDeleteException) as raised:
            call(token)
        assert str(raised.value) == message


def test_commit_while_s3_is_down_keeps_the_journal(
    storage: S3ImageFileStorage,
    object_storage: ObjectStorage,
    records: PostgresImageRecordStorage,
    seaweed: SeaweedS3Server,
    tmp_path: Path,
) -> None:
    name = save_image(storage, records, "outage.png")
    down = s3_storage(dead_storage(object_storage, seaweed), records, tmp_path / "down-cache")

    token = down.begin_delete([(name, "")])  # the journal lives in PostgreSQL: no S3 needed
    records.delete(name)
    with pytest.raises(ImageFileDeleteException) as raised:
        down.commit_delete(token)

    assert str(raised.value) == "Failed to purge deleted image files"
    assert any(isinstance(error, ObjectStoreUnavailable) for error in causes(raised.value))
    assert pending_keys(object_storage) == set(keys_of(object_storage, OWNER, name))
    assert stored(object_storage, OWNER, name) == [True, True]

    storage.commit_delete(token)  # S3 is back: the same token finishes the job
    assert stored(object_storage, OWNER, name) == [False, False]
    assert pending_keys(object_storage) == set()
