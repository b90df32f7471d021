"""The object-storage foundation against a real SeaweedFS and PostgreSQL: the S3 wrapper's two meaningful
errors, the key layout's refusals, the object index and its exact per-user usage, and the cleanup pass."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine, insert, select, text

from invokeai_saas.db.tables import images, storage_pending_deletes, user_storage_usage, users
from invokeai_saas.devstack import SeaweedS3Server
from invokeai_saas.storage import kinds
from invokeai_saas.storage.cleanup import CLEANUP_LOCK_KEY, StorageCleanup
from invokeai_saas.storage.context import ObjectStorage
from invokeai_saas.storage.keys import InvalidObjectName, KeyLayout
from invokeai_saas.storage.object_index import StorageObjectIndex
from invokeai_saas.storage.object_store import ObjectNotFound, ObjectStoreUnavailable, S3ObjectStore
from tests.conftest import object_storage_settings

LATER = timedelta(minutes=11)  # past the cleanup pass's default grace period


def test_bytes_round_trip_ranges_and_presigned_urls(object_storage: ObjectStorage) -> None:
    store, key = object_storage.store, object_storage.layout.image("u1", "a.png")
    payload = bytes(range(256)) * 40
    store.put_bytes(key, payload, "image/png")
    assert store.get_bytes(key) == payload
    assert store.size(key) == len(payload) and store.exists(key)
    part = store.get_range(key, 10, 19)
    assert (part.data, part.start, part.end, part.total) == (payload[10:20], 10, 19, len(payload))
    assert b"".join(store.iter_chunks(key, chunk_size=1000)) == payload
    url = store.presigned_get(key, 60, content_type="image/png")
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == payload
    store.delete(key)
    store.delete(key)  # idempotent
    assert not store.exists(key)
    with pytest.raises(ObjectNotFound):
        store.get_bytes(key)


def test_delete_many_in_batches(object_storage: ObjectStorage) -> None:
    store = object_storage.store
    keys = [object_storage.layout.image("u1", f"img-{i}.png") for i in range(5)]
    for key in keys:
        store.put_bytes(key, b"x", "image/png")
    store.delete_many([*keys, object_storage.layout.image("u1", "never-existed.png")])
    assert not any(store.exists(key) for key in keys)


def test_outage_and_bad_credentials_are_unavailable(seaweed: SeaweedS3Server) -> None:
    dead = S3ObjectStore(object_storage_settings(seaweed, s3_endpoint_url="http://127.0.0.1:1"))
    with pytest.raises(ObjectStoreUnavailable):
        dead.put_bytes("k", b"x", "image/png")
    with pytest.raises(ObjectStoreUnavailable):
        dead.get_bytes("k")
    wrong_secret = S3ObjectStore(object_storage_settings(seaweed, s3_secret_access_key="not-the-secret"))
    with pytest.raises(ObjectStoreUnavailable):
        wrong_secret.put_bytes("k", b"x", "image/png")


def test_key_layout_is_per_tenant_and_refuses_unsafe_names() -> None:
    layout = KeyLayout("prod")
    assert layout.image("u1", "a.png") == "prod/users/u1/images/a.png"
    assert layout.image_thumbnail("u1", "a.png") == "prod/users/u1/images/thumbnails/a.webp"
    assert layout.video_sidecar("u2", "v.mp4") == "prod/users/u2/videos/sidecars/v.json"
    assert layout.model_image("abc123") == "prod/shared/model_images/abc123.webp"
    assert layout.bulk_download("u1", "board_x.zip") == "prod/bulk_downloads/u1/board_x.zip"
    for bad in ("../a.png", "a/b.png", "", ".hidden", "a..png", "a b.png", "x" * 300):
        with pytest.raises(InvalidObjectName):
            layout.image("u1", bad)
    with pytest.raises(InvalidObjectName):
        layout.image("../u2", "a.png")


def test_index_find_forget_and_journal(pg_engine: Engine) -> None:
    index = StorageObjectIndex(pg_engine)
    index.put("k/a", "u1", kinds.IMAGE, "a.png", 100, "image/png")
    index.put("k/a-t", "u1", kinds.IMAGE_THUMBNAIL, "a.png", 10, "image/webp")
    index.put("k/b", "u2", kinds.IMAGE, "b.png", 7, "image/png")
    found = index.find(kinds.IMAGE, "a.png")
    assert found is not None and (found.object_key, found.user_id, found.bytes) == ("k/a", "u1", 100)
    assert index.find(kinds.IMAGE, "missing.png") is None
    assert set(index.find_many(kinds.IMAGE, ["a.png", "b.png", "c.png"])) == {"a.png", "b.png"}
    assert index.usage("u1") == (110, 2) and index.usage("u2") == (7, 1) and index.usage("nobody") == (0, 0)
    index.put("k/a", "u1", kinds.IMAGE, "a.png", 150, "image/png")  # rewritten: usage follows the new size
    assert index.usage("u1") == (160, 2)
    index.put("k/zip", "u1", kinds.BULK_DOWNLOAD, "a.zip", 5000, "application/zip")  # temporary copies: not counted
    assert index.usage("u1") == (160, 2)
    index.forget(["k/zip"])
    assert index.usage("u1") == (160, 2)
    index.journal(["k/a", "k/a"])
    assert [key for key, _ in index.pending()] == ["k/a"]
    index.unjournal(["k/a"])
    assert index.pending() == []
    index.journal(["k/b"])
    index.forget(["k/b"])
    assert index.pending() == [] and index.find(kinds.IMAGE, "b.png") is None and index.usage("u2") == (0, 0)


def test_usage_is_exact_under_concurrent_puts_and_forgets(pg_engine: Engine) -> None:
    index = StorageObjectIndex(pg_engine)
    rng = random.Random(7)
    plans = [[(f"u/{t}/{i}", rng.randint(1, 10_000), rng.random() < 0.4) for i in range(40)] for t in range(6)]

    def work(plan: list[tuple[str, int, bool]]) -> None:
        for key, size, forget in plan:
            index.put(key, "u1", kinds.IMAGE, key, size, "image/png")
            if forget:
                index.forget([key])

    threads = [threading.Thread(target=work, args=(plan,)) for plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kept = [(key, size) for plan in plans for key, size, forget in plan if not forget]
    assert index.usage("u1") == (sum(size for _, size in kept), len(kept))
    with pg_engine.connect() as conn:
        assert conn.execute(
            select(user_storage_usage.c.bytes).where(user_storage_usage.c.user_id == "u1")
        ).scalar() == sum(size for _, size in kept)


# --- the cleanup pass -------------------------------------------------------------------------------------------


def put_object(storage: ObjectStorage, user_id: str, kind: str, name: str, key: str) -> str:
    storage.store.put_bytes(key, b"0123456789", "image/png")
    storage.index.put(key, user_id, kind, name, 10, "image/png")
    return key


def add_user(engine: Engine, user_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(insert(users).values(user_id=user_id, email=f"{user_id}@example.com", password_hash="x"))


def add_image(engine: Engine, name: str, user_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(images).values(
                image_name=name, image_origin="internal", image_category="general", width=8, height=8, user_id=user_id
            )
        )


def later() -> datetime:
    return datetime.now(UTC) + LATER


def test_cleanup_deletes_orphans_and_keeps_live_objects(object_storage: ObjectStorage, pg_engine: Engine) -> None:
    layout = object_storage.layout
    add_user(pg_engine, "u1")
    add_image(pg_engine, "live.png", "u1")
    live = put_object(object_storage, "u1", kinds.IMAGE, "live.png", layout.image("u1", "live.png"))
    orphan = put_object(object_storage, "u1", kinds.IMAGE, "gone.png", layout.image("u1", "gone.png"))
    cleanup = StorageCleanup(object_storage, pg_engine)
    assert cleanup.run_once().deleted_objects == 0  # inside the grace period nothing is an orphan yet
    report = cleanup.run_once(now=later())
    assert report.ran and report.deleted_objects == 1 and not report.errors
    assert object_storage.store.exists(live) and not object_storage.store.exists(orphan)
    assert object_storage.index.usage("u1") == (10, 1)


def test_cleanup_finishes_or_drops_promised_deletes(object_storage: ObjectStorage, pg_engine: Engine) -> None:
    layout = object_storage.layout
    add_user(pg_engine, "u1")
    add_image(pg_engine, "rolled-back.png", "u1")
    kept = put_object(object_storage, "u1", kinds.IMAGE, "rolled-back.png", layout.image("u1", "rolled-back.png"))
    add_image(pg_engine, "deleted.png", "u1")
    doomed = put_object(object_storage, "u1", kinds.IMAGE, "deleted.png", layout.image("u1", "deleted.png"))
    object_storage.index.journal([kept, doomed])
    with pg_engine.begin() as conn:
        conn.execute(text("DELETE FROM images WHERE image_name = 'deleted.png'"))
    report = StorageCleanup(object_storage, pg_engine).run_once(now=later())
    assert (report.deleted_objects, report.dropped_promises) == (1, 1)
    assert object_storage.store.exists(kept) and not object_storage.store.exists(doomed)
    with pg_engine.connect() as conn:
        assert conn.execute(select(storage_pending_deletes.c.object_key)).all() == []


def test_cleanup_purges_a_deleted_users_media(object_storage: ObjectStorage, pg_engine: Engine) -> None:
    layout = object_storage.layout
    add_user(pg_engine, "leaver")
    add_user(pg_engine, "stayer")
    add_image(pg_engine, "leaver.png", "leaver")
    add_image(pg_engine, "stayer.png", "stayer")
    leaver_key = put_object(object_storage, "leaver", kinds.IMAGE, "leaver.png", layout.image("leaver", "leaver.png"))
    stayer_key = put_object(object_storage, "stayer", kinds.IMAGE, "stayer.png", layout.image("stayer", "stayer.png"))
    with pg_engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE user_id = 'leaver'"))
    report = StorageCleanup(object_storage, pg_engine).run_once(now=later())
    assert report.purged_records == 1 and report.deleted_objects == 1
    assert not object_storage.store.exists(leaver_key) and object_storage.store.exists(stayer_key)
    assert object_storage.index.usage("leaver") == (0, 0)
    with pg_engine.connect() as conn:
        assert conn.execute(select(images.c.image_name)).scalars().all() == ["stayer.png"]


def test_cleanup_expires_archives_and_unindexed_objects(object_storage: ObjectStorage, pg_engine: Engine) -> None:
    layout = object_storage.layout
    archive = put_object(object_storage, "u1", kinds.BULK_DOWNLOAD, "a.zip", layout.bulk_download("u1", "a.zip"))
    stray = layout.image("u1", "stray.png")
    object_storage.store.put_bytes(stray, b"no index row", "image/png")
    cleanup = StorageCleanup(object_storage, pg_engine, archive_ttl=timedelta(hours=1))
    assert cleanup.run_once(list_bucket=True).deleted_objects == 0  # both still young
    report = cleanup.run_once(now=datetime.now(UTC) + timedelta(hours=2), list_bucket=True)
    assert report.deleted_objects == 2
    assert not object_storage.store.exists(archive) and not object_storage.store.exists(stray)


def test_cleanup_takes_turns_and_survives_an_outage(
    object_storage: ObjectStorage, pg_engine: Engine, seaweed: SeaweedS3Server
) -> None:
    orphan = put_object(object_storage, "u1", kinds.IMAGE, "gone.png", object_storage.layout.image("u1", "gone.png"))
    with pg_engine.connect() as conn:
        conn.execute(select(text(f"pg_advisory_lock({CLEANUP_LOCK_KEY})")))
        assert StorageCleanup(object_storage, pg_engine).run_once(now=later()).ran is False
        conn.execute(select(text(f"pg_advisory_unlock({CLEANUP_LOCK_KEY})")))
        conn.commit()
    dead_settings = object_storage_settings(seaweed, s3_endpoint_url="http://127.0.0.1:1")
    dead = ObjectStorage(S3ObjectStore(dead_settings), object_storage.index, object_storage.layout, dead_settings)
    report = StorageCleanup(dead, pg_engine).run_once(now=later())
    assert report.errors and report.deleted_objects == 0
    assert object_storage.index.find(kinds.IMAGE, "gone.png") is not None  # nothing forgotten
    assert StorageCleanup(object_storage, pg_engine).run_once(now=later()).deleted_objects == 1
    assert not object_storage.store.exists(orphan)
