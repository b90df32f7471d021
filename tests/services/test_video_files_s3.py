"""``S3VideoFileStorage`` against a real SeaweedFS and PostgreSQL, side by side with stock's ``DiskVideoFileStorage``:
the same bytes for the video, its thumbnail and its sidecar; the source consumed; exact usage; the delete protocol
(journal at stage, delete at commit, nothing lost when S3 is down); stock's errors for bad names and missing files.

The MP4 is a real H.264 file made by the ffmpeg that ``imageio-ffmpeg`` ships, so stock's frame extraction runs on
it; tests about anything but the thumbnail pass ``first_frame`` and an arbitrary body, as stock's upload route
does once it has decoded frame 0 itself.
"""

from __future__ import annotations

import io
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import imageio_ffmpeg
import pytest
from invokeai.app.services.image_records.image_records_common import ImageCategory, ResourceOrigin
from invokeai.app.services.invoker import Invoker
from invokeai.app.services.video_files.video_files_common import (
    VideoFileDeleteException,
    VideoFileNotFoundException,
    VideoFileSaveException,
)
from invokeai.app.services.video_files.video_files_disk import DiskVideoFileStorage
from PIL import Image
from sqlalchemy import Engine, func, select

from invokeai_saas.db.tables import storage_objects
from invokeai_saas.devstack import SeaweedS3Server
from invokeai_saas.services.video_files.video_files_s3 import S3VideoFileStorage
from invokeai_saas.services.video_records.video_records_postgres import PostgresVideoRecordStorage
from invokeai_saas.storage import kinds
from invokeai_saas.storage.context import ObjectStorage
from invokeai_saas.storage.keys import InvalidObjectName
from invokeai_saas.storage.object_store import ObjectStoreUnavailable, S3ObjectStore
from tests.conftest import object_storage_settings

OWNER = "u1"
WORKFLOW = '{"name": "wf", "nodes": [], "note": "caf\u00e9 \u2603"}'
GRAPH = '{"id": "graph-1", "nodes": {}}'
METADATA = '{"seed": 7, "prompt": "a \u00e9t\u00e9 \u2014 ok"}'


@pytest.fixture(scope="session")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """One second of ffmpeg's test pattern at 64×48, 5 fps, H.264 (what stock's upload route accepts)."""
    path = tmp_path_factory.mktemp("mp4") / "pattern.mp4"
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    pattern = "testsrc=size=64x48:rate=5:duration=1"
    subprocess.run(
        [
            ffmpeg,
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            pattern,
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
        timeout=60,
    )
    return path.read_bytes()


@pytest.fixture()
def records(pg_engine: Engine) -> PostgresVideoRecordStorage:
    return PostgresVideoRecordStorage(pg_engine)


@pytest.fixture()
def invoker(records: PostgresVideoRecordStorage) -> Invoker:
    return cast(Invoker, SimpleNamespace(services=SimpleNamespace(video_records=records)))


@pytest.fixture()
def s3_videos(object_storage: ObjectStorage, invoker: Invoker, tmp_path: Path) -> S3VideoFileStorage:
    storage = S3VideoFileStorage(object_storage, tmp_path / "cache")
    storage.start(invoker)
    return storage


@pytest.fixture()
def disk_videos(invoker: Invoker, tmp_path: Path) -> DiskVideoFileStorage:
    storage = DiskVideoFileStorage(tmp_path / "disk" / "videos")
    storage.start(invoker)
    return storage


@pytest.fixture()
def dead_storage(object_storage: ObjectStorage, seaweed: SeaweedS3Server) -> Iterator[ObjectStorage]:
    """The same index and key layout, but an object store nobody answers at (S3 down)."""
    settings = object_storage_settings(
        seaweed, s3_endpoint_url="http://127.0.0.1:1", s3_prefix=object_storage.settings.s3_prefix
    )
    yield ObjectStorage(
        store=S3ObjectStore(settings), index=object_storage.index, layout=object_storage.layout, settings=settings
    )


def new_video(records: PostgresVideoRecordStorage, user_id: str = OWNER) -> str:
    """A video record, as ``VideoService.create`` saves it before handing the file to the storage."""
    name = f"{uuid.uuid4()}.mp4"
    records.save(
        video_name=name,
        video_origin=ResourceOrigin.INTERNAL,
        video_category=ImageCategory.GENERAL,
        width=64,
        height=48,
        duration=1.0,
        fps=5.0,
        has_workflow=False,
        user_id=user_id,
    )
    return name


def source(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / f"upload-{uuid.uuid4().hex}.mp4"
    path.write_bytes(data)
    return path


def frame() -> Image.Image:
    """A first frame with alpha and detail, so the thumbnail's conversion and scaling both matter."""
    image = Image.linear_gradient("L").resize((300, 200)).convert("RGBA")
    image.putpixel((5, 5), (255, 0, 0, 128))
    return image


def disk_sidecar(tmp_path: Path, video_name: str) -> Path:
    return tmp_path / "disk" / "videos" / "sidecars" / (Path(video_name).stem + ".json")


def keys(storage: ObjectStorage, video_name: str) -> tuple[str, str, str]:
    layout = storage.layout
    return (
        layout.video(OWNER, video_name),
        layout.video_thumbnail(OWNER, video_name),
        layout.video_sidecar(OWNER, video_name),
    )


def indexed_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(storage_objects)).scalar_one())


def pending_keys(storage: ObjectStorage) -> set[str]:
    return {key for key, _ in storage.index.pending()}


def caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, kind):
            return True
        current = current.__cause__ or current.__context__
    return False


# --- saving ------------------------------------------------------------------------------------------------------


def test_save_matches_disk_storage_byte_for_byte(
    s3_videos: S3VideoFileStorage,
    disk_videos: DiskVideoFileStorage,
    records: PostgresVideoRecordStorage,
    object_storage: ObjectStorage,
    mp4: bytes,
    tmp_path: Path,
) -> None:
    name = new_video(records)
    disk_source, s3_source = source(tmp_path, mp4), source(tmp_path, mp4)
    sidecar_fields = {"metadata": METADATA, "workflow": WORKFLOW, "graph": GRAPH}
    disk_videos.save(disk_source, name, **sidecar_fields)  # both extract frame 0 with stock's decoder
    s3_videos.save(s3_source, name, **sidecar_fields)
    assert not disk_source.exists() and not s3_source.exists()  # consumed, as stock's move consumes it

    store = object_storage.store
    video_key, thumbnail_key, sidecar_key = keys(object_storage, name)
    disk_thumbnail = disk_videos.get_path(name, thumbnail=True).read_bytes()
    disk_sidecar_bytes = disk_sidecar(tmp_path, name).read_bytes()
    assert store.get_bytes(video_key) == disk_videos.get_path(name).read_bytes() == mp4
    assert store.get_bytes(thumbnail_key) == disk_thumbnail
    assert Image.open(io.BytesIO(disk_thumbnail)).format == "WEBP"
    assert store.get_bytes(sidecar_key) == disk_sidecar_bytes

    expected = {
        kinds.VIDEO: (video_key, len(mp4), "video/mp4"),
        kinds.VIDEO_THUMBNAIL: (thumbnail_key, len(disk_thumbnail), "image/webp"),
        kinds.VIDEO_SIDECAR: (sidecar_key, len(disk_sidecar_bytes), "application/json"),
    }
    for kind, (key, size, content_type) in expected.items():
        row = object_storage.index.find(kind, name)
        assert row is not None
        assert (row.object_key, row.user_id, row.name, row.bytes, row.content_type) == (
            key,
            OWNER,
            name,
            size,
            content_type,
        )
    assert object_storage.index.usage(OWNER) == (len(mp4) + len(disk_thumbnail) + len(disk_sidecar_bytes), 3)

    video_path = s3_videos.get_path(name)
    thumbnail_path = s3_videos.get_path(name, thumbnail=True)
    assert video_path.read_bytes() == mp4 and thumbnail_path.read_bytes() == disk_thumbnail
    assert s3_videos.validate_path(str(video_path)) and s3_videos.validate_path(thumbnail_path)
    assert s3_videos.get_workflow(name) == disk_videos.get_workflow(name) == WORKFLOW
    assert s3_videos.get_graph(name) == disk_videos.get_graph(name) == GRAPH


def test_first_frame_thumbnail_and_metadata_only_sidecar_match_disk(
    s3_videos: S3VideoFileStorage,
    disk_videos: DiskVideoFileStorage,
    records: PostgresVideoRecordStorage,
    object_storage: ObjectStorage,
    tmp_path: Path,
) -> None:
    """With ``first_frame`` nothing decodes the body, so any bytes do; the thumbnail size is honoured."""
    name = new_video(records)
    body = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8
    disk_videos.save(source(tmp_path, body), name, thumbnail_size=64, metadata=METADATA, first_frame=frame())
    s3_videos.save(source(tmp_path, body), name, thumbnail_size=64, metadata=METADATA, first_frame=frame())

    _, thumbnail_key, sidecar_key = keys(object_storage, name)
    thumbnail = object_storage.store.get_bytes(thumbnail_key)
    assert thumbnail == disk_videos.get_path(name, thumbnail=True).read_bytes()
    assert max(Image.open(io.BytesIO(thumbnail)).size) == 64
    assert object_storage.store.get_bytes(sidecar_key) == disk_sidecar(tmp_path, name).read_bytes()
    assert s3_videos.get_workflow(name) is None and disk_videos.get_workflow(name) is None
    assert s3_videos.get_graph(name) is None and disk_videos.get_graph(name) is None
    assert s3_videos.get_path(name).read_bytes() == body


def test_undecodable_video_is_stored_without_thumbnail_or_sidecar_like_stock(
    s3_videos: S3VideoFileStorage,
    disk_videos: DiskVideoFileStorage,
    records: PostgresVideoRecordStorage,
    object_storage: ObjectStorage,
    tmp_path: Path,
) -> None:
    """A frame that cannot be extracted costs only the thumbnail; no metadata means no sidecar."""
    name = new_video(records)
    body = b"this is not a video"
    disk_videos.save(source(tmp_path, body), name)
    s3_videos.save(source(tmp_path, body), name)

    _, thumbnail_key, sidecar_key = keys(object_storage, name)
    assert not disk_videos.get_path(name, thumbnail=True).exists()
    assert not disk_sidecar(tmp_path, name).exists()
    assert not object_storage.store.exists(thumbnail_key) and not object_storage.store.exists(sidecar_key)
    assert object_storage.index.find(kinds.VIDEO_THUMBNAIL, name) is None
    assert object_storage.index.usage(OWNER) == (len(body), 1)
    thumbnail_path = s3_videos.get_path(name, thumbnail=True)
    assert not thumbnail_path.exists() and not s3_videos.validate_path(str(thumbnail_path))
    assert s3_videos.get_workflow(name) is None and disk_videos.get_workflow(name) is None


def test_save_without_a_record_writes_nothing(
    s3_videos: S3VideoFileStorage, object_storage: ObjectStorage, pg_engine: Engine, tmp_path: Path
) -> None:
    upload = source(tmp_path, b"body")
    with pytest.raises(VideoFileSaveException) as raised:
        s3_videos.save(upload, f"{uuid.uuid4()}.mp4", first_frame=frame())
    assert isinstance(raised.value.__cause__, LookupError)
    assert upload.exists()  # nothing was stored, so the caller still owns its file
    assert indexed_rows(pg_engine) == 0
    listing = object_storage.store.client.list_objects_v2(
        Bucket=object_storage.store.bucket, Prefix=object_storage.layout.prefix
    )
    assert listing["KeyCount"] == 0


def test_save_with_s3_down_raises_stock_error_and_indexes_nothing(
    dead_storage: ObjectStorage,
    invoker: Invoker,
    records: PostgresVideoRecordStorage,
    pg_engine: Engine,
    tmp_path: Path,
) -> None:
    storage = S3VideoFileStorage(dead_storage, tmp_path / "cache")
    storage.start(invoker)
    name = new_video(records)
    upload = source(tmp_path, b"body")
    with pytest.raises(VideoFileSaveException) as raised:
        storage.save(upload, name, metadata=METADATA, first_frame=frame())
    assert caused_by(raised.value, ObjectStoreUnavailable)
    assert str(raised.value) == "Video file not saved"  # stock's message, no key or endpoint in it
    assert indexed_rows(pg_engine) == 0
    assert dead_storage.index.usage(OWNER) == (0, 0)
    assert upload.exists()
    # The put may have reached S3 before the connection failed: the key is promised to the cleanup pass.
    assert pending_keys(dead_storage) == {dead_storage.layout.video(OWNER, name)}


# --- names and missing files -------------------------------------------------------------------------------------

BAD_LOCATIONS = [
    ("../x.mp4", ""),
    ("a/b.mp4", ""),
    ("x.mp4", "../up"),
    ("x.mp4", "/abs"),
    ("x.mp4", "a//b"),
    ("x.mp4", "a\\b"),
]


def test_traversal_is_refused_with_stocks_errors(
    s3_videos: S3VideoFileStorage, disk_videos: DiskVideoFileStorage, tmp_path: Path
) -> None:
    for video_name, subfolder in BAD_LOCATIONS:
        for thumbnail in (False, True):
            with pytest.raises(ValueError) as disk_error:
                disk_videos.get_path(video_name, thumbnail=thumbnail, video_subfolder=subfolder)
            with pytest.raises(ValueError) as s3_error:
                s3_videos.get_path(video_name, thumbnail=thumbnail, video_subfolder=subfolder)
            assert str(s3_error.value) == str(disk_error.value)
        for storage in (disk_videos, s3_videos):
            with pytest.raises(ValueError):
                storage.stage_delete(video_name, video_subfolder=subfolder)
            with pytest.raises(VideoFileSaveException) as save_error:
                storage.save(source(tmp_path, b"body"), video_name, video_subfolder=subfolder, first_frame=frame())
            assert isinstance(save_error.value.__cause__, ValueError)


def test_names_outside_the_object_layout_are_refused(s3_videos: S3VideoFileStorage) -> None:
    """Stock would make a file of these; no object key can hold them."""
    for name in ("a b.mp4", ".hidden.mp4"):
        with pytest.raises(InvalidObjectName):
            s3_videos.get_path(name)


def test_missing_video_behaves_like_stock(
    s3_videos: S3VideoFileStorage,
    disk_videos: DiskVideoFileStorage,
    records: PostgresVideoRecordStorage,
) -> None:
    name = new_video(records)
    for storage in (disk_videos, s3_videos):
        for thumbnail in (False, True):
            path = storage.get_path(name, thumbnail=thumbnail)
            assert not path.exists() and not storage.validate_path(str(path))
        assert storage.get_workflow(name) is None and storage.get_graph(name) is None
        storage.delete(name)
        storage.commit_delete(storage.stage_delete(name))


def test_unreadable_sidecar_is_not_found_like_stock(
    s3_videos: S3VideoFileStorage,
    disk_videos: DiskVideoFileStorage,
    records: PostgresVideoRecordStorage,
    object_storage: ObjectStorage,
    tmp_path: Path,
) -> None:
    name = new_video(records)
    for storage in (disk_videos, s3_videos):
        storage.save(source(tmp_path, b"body"), name, workflow=WORKFLOW, first_frame=frame())
    disk_sidecar(tmp_path, name).write_bytes(b"{not json")
    object_storage.store.put_bytes(keys(object_storage, name)[2], b"{not json", "application/json")
    for storage in (disk_videos, s3_videos):
        with pytest.raises(VideoFileNotFoundException):
            storage.get_workflow(name)
        with pytest.raises(VideoFileNotFoundException):
            storage.get_graph(name)


# --- the local cache ---------------------------------------------------------------------------------------------


def test_local_copies_follow_the_objects_across_processes(
    s3_videos: S3VideoFileStorage,
    object_storage: ObjectStorage,
    invoker: Invoker,
    records: PostgresVideoRecordStorage,
    tmp_path: Path,
) -> None:
    """Another process's cache (its own folder) drops its copy once the video is deleted anywhere."""
    other = S3VideoFileStorage(object_storage, tmp_path / "other-cache")
    other.start(invoker)
    name = new_video(records)
    body = b"video bytes " * 100
    s3_videos.save(source(tmp_path, body), name, first_frame=frame())

    copy = other.get_path(name)
    assert copy.read_bytes() == body
    copy.write_bytes(b"truncated")  # a damaged copy is fetched again
    assert other.get_path(name).read_bytes() == body
    copy.unlink()  # and so is an evicted one
    assert other.get_path(name).read_bytes() == body

    s3_videos.delete(name)
    assert not other.get_path(name).exists()
    assert not other.validate_path(str(copy))


def test_cache_stays_under_its_bound_least_recently_used_first(
    object_storage: ObjectStorage, invoker: Invoker, records: PostgresVideoRecordStorage, tmp_path: Path
) -> None:
    storage = S3VideoFileStorage(object_storage, tmp_path / "small-cache", max_cache_bytes=1500)
    storage.start(invoker)
    first, second = new_video(records), new_video(records)
    for name in (first, second):
        storage.save(source(tmp_path, name.encode() * 30), name, first_frame=frame())

    first_path = storage.get_path(first)
    second_path = storage.get_path(second)
    assert second_path.exists() and not first_path.exists()
    assert storage.get_path(first).read_bytes() == first.encode() * 30
    assert not second_path.exists()


# --- deleting ----------------------------------------------------------------------------------------------------


def test_stage_journals_and_commit_deletes_objects_and_index(
    s3_videos: S3VideoFileStorage,
    records: PostgresVideoRecordStorage,
    object_storage: ObjectStorage,
    tmp_path: Path,
) -> None:
    name = new_video(records)
    s3_videos.save(source(tmp_path, b"body"), name, graph=GRAPH, first_frame=frame())
    all_keys = set(keys(object_storage, name))

    token = s3_videos.stage_delete(name)
    assert pending_keys(object_storage) == all_keys
    assert all(object_storage.store.exists(key) for key in all_keys)  # staging moves nothing
    assert s3_videos.get_path(name).read_bytes() == b"body"

    records.delete(name)
    s3_videos.commit_delete(token)
    assert not any(object_storage.store.exists(key) for key in all_keys)
    assert object_storage.index.find_by_keys(list(all_keys)) == {}
    assert object_storage.index.usage(OWNER) == (0, 0)
    assert pending_keys(object_storage) == set()
    assert not s3_videos.get_path(name).exists()


def test_rollback_withdraws_the_promise_and_keeps_the_objects(
    s3_videos: S3VideoFileStorage,
    records: PostgresVideoRecordStorage,
    object_storage: ObjectStorage,
    tmp_path: Path,
) -> None:
    name = new_video(records)
    s3_videos.save(source(tmp_path, b"body"), name, workflow=WORKFLOW, first_frame=frame())
    usage = object_storage.index.usage(OWNER)

    s3_videos.rollback_delete(s3_videos.stage_delete(name))
    assert pending_keys(object_storage) == set()
    assert all(object_storage.store.exists(key) for key in keys(object_storage, name))
    assert object_storage.index.usage(OWNER) == usage
    assert s3_videos.get_workflow(name) == WORKFLOW


def test_delete_removes_video_thumbnail_and_sidecar(
    s3_videos: S3VideoFileStorage,
    records: PostgresVideoRecordStorage,
    object_storage: ObjectStorage,
    tmp_path: Path,
) -> None:
    name, kept = new_video(records), new_video(records)
    for video in (name, kept):
        s3_videos.save(source(tmp_path, b"body"), video, metadata=METADATA, first_frame=frame())
    s3_videos.delete(name)
    assert not any(object_storage.store.exists(key) for key in keys(object_storage, name))
    assert all(object_storage.store.exists(key) for key in keys(object_storage, kept))
    assert {row.name for row in object_storage.index.objects_of_user(OWNER)} == {kept}


def test_commit_with_s3_down_keeps_the_journal_for_the_cleanup_pass(
    s3_videos: S3VideoFileStorage,
    dead_storage: ObjectStorage,
    invoker: Invoker,
    records: PostgresVideoRecordStorage,
    object_storage: ObjectStorage,
    tmp_path: Path,
) -> None:
    name = new_video(records)
    s3_videos.save(source(tmp_path, b"body"), name, first_frame=frame())
    all_keys = set(keys(object_storage, name)[:2])
    token = s3_videos.stage_delete(name)

    unreachable = S3VideoFileStorage(dead_storage, tmp_path / "unreachable-cache")
    unreachable.start(invoker)
    with pytest.raises(ObjectStoreUnavailable):  # no local copy and no S3: an outage, not a missing video
        unreachable.get_path(name)
    with pytest.raises(VideoFileDeleteException) as raised:
        unreachable.commit_delete(token)
    assert caused_by(raised.value, ObjectStoreUnavailable)
    assert pending_keys(object_storage) == all_keys
    assert set(object_storage.index.find_by_keys(list(all_keys))) == all_keys
    assert all(object_storage.store.exists(key) for key in all_keys)

    s3_videos.commit_delete(token)  # S3 is back: the same promise completes
    assert pending_keys(object_storage) == set() and object_storage.index.usage(OWNER) == (0, 0)


def test_foreign_tokens_are_refused_like_stock(
    s3_videos: S3VideoFileStorage, disk_videos: DiskVideoFileStorage
) -> None:
    for storage in (disk_videos, s3_videos):
        for method in (storage.commit_delete, storage.rollback_delete):
            with pytest.raises(VideoFileDeleteException, match="^Invalid staged-delete token$"):
                method(object())
