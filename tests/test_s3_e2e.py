"""A graph run by stock ``invokeai-web`` in saas mode writes its output image to S3, not to the outputs folder;
deleting the image through the API deletes its objects and gives the bytes back to the owner's usage."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from PIL import Image
from sqlalchemy import create_engine, select

from invokeai_saas.db.tables import storage_objects, user_storage_usage
from invokeai_saas.devstack import LocalStack
from invokeai_saas.devstack.stack import S3_BUCKET
from invokeai_saas.devstack.web import InvokeAIWebServer
from tests.support.invokeai import admin_token


def blank_image_batch(width: int, height: int) -> dict[str, Any]:
    """A real graph whose node saves an image (no model weights needed)."""
    node = {
        "id": "blank",
        "type": "blank_image",
        "width": width,
        "height": height,
        "color": {"r": 200, "g": 20, "b": 20, "a": 255},
        "is_intermediate": False,
    }
    return {"prepend": False, "batch": {"graph": {"id": "s3-e2e", "nodes": {"blank": node}, "edges": []}, "runs": 1}}


def wait_for_batch(client: httpx.Client, batch_id: str) -> None:
    deadline = time.monotonic() + 90
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = client.get(f"/api/v1/queue/default/b/{batch_id}/status").json()
        if status.get("completed") == 1:
            return
        assert not status.get("failed"), status
        time.sleep(0.3)
    raise AssertionError(f"batch did not complete: {status}")


def test_graph_output_lands_in_s3_and_deletes_follow(saas_web: InvokeAIWebServer, stack: LocalStack) -> None:
    headers = {"Authorization": f"Bearer {admin_token(saas_web.url)}"}
    engine = create_engine(str(stack.saas_settings()["database_url"]))
    s3 = stack.s3.client()
    with httpx.Client(base_url=saas_web.url, headers=headers, timeout=30) as client:
        r = client.post("/api/v1/queue/default/enqueue_batch", json=blank_image_batch(72, 40))
        assert r.status_code == 200, r.text
        wait_for_batch(client, r.json()["batch"]["batch_id"])
        listed = client.get("/api/v1/images/", params={"limit": 50, "categories": "general"}).json()["items"]
        made = [item for item in listed if (item["width"], item["height"]) == (72, 40)]
        assert len(made) == 1
        image_name, owner = made[0]["image_name"], made[0].get("user_id")

        with engine.connect() as conn:
            rows = {
                row.kind: row
                for row in conn.execute(select(storage_objects).where(storage_objects.c.name == image_name))
            }
        assert set(rows) == {"image", "image_thumbnail"}
        stored = s3.get_object(Bucket=S3_BUCKET, Key=rows["image"].object_key)["Body"].read()
        assert len(stored) == rows["image"].bytes
        assert (
            rows["image"].object_key.endswith(f"/images/{image_name}") and "/users/" in f"/{rows['image'].object_key}"
        )
        with Image.open(io.BytesIO(stored)) as image:
            assert image.size == (72, 40) and image.getpixel((0, 0)) == (200, 20, 20)
            assert "invokeai_graph" in image.info  # the graph is embedded, as the disk storage does
        assert client.get(f"/api/v1/images/i/{image_name}/full").content == stored

        # Nothing user-owned is written under the InvokeAI root's outputs folder.
        outputs = saas_web.root / "outputs"
        written = [p for p in outputs.rglob("*") if p.is_file()] if outputs.exists() else []
        assert written == []

        owner_id = rows["image"].user_id
        if owner is not None:
            assert owner_id == owner
        with engine.connect() as conn:
            usage_before = conn.execute(
                select(user_storage_usage.c.bytes).where(user_storage_usage.c.user_id == owner_id)
            ).scalar_one()
        r = client.delete(f"/api/v1/images/i/{image_name}")
        assert r.status_code == 200, r.text
        for key in (rows["image"].object_key, rows["image_thumbnail"].object_key):
            assert s3.list_objects_v2(Bucket=S3_BUCKET, Prefix=key).get("KeyCount") == 0
        with engine.connect() as conn:
            assert conn.execute(select(storage_objects).where(storage_objects.c.name == image_name)).all() == []
            usage_after = conn.execute(
                select(user_storage_usage.c.bytes).where(user_storage_usage.c.user_id == owner_id)
            ).scalar_one()
        assert usage_before - usage_after == rows["image"].bytes + rows["image_thumbnail"].bytes
        assert client.get(f"/api/v1/images/i/{image_name}/full").status_code == 404
    engine.dispose()


def noise_png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (64, 64), bytes((seed * 7 + i) % 256 for i in range(64 * 64 * 3))).save(buffer, "PNG")
    return buffer.getvalue()


def test_usage_stays_exact_under_concurrent_uploads_and_deletes(saas_web: InvokeAIWebServer, stack: LocalStack) -> None:
    """Usage is what the bucket holds for the user, byte for byte, after uploads and deletes raced each other."""
    headers = {"Authorization": f"Bearer {admin_token(saas_web.url)}"}
    engine = create_engine(str(stack.saas_settings()["database_url"]))
    s3 = stack.s3.client()

    def upload(seed: int) -> str:
        with httpx.Client(base_url=saas_web.url, headers=headers, timeout=60) as client:
            r = client.post(
                "/api/v1/images/upload",
                params={"image_category": "user", "is_intermediate": False},
                files={"file": (f"n{seed}.png", noise_png(seed), "image/png")},
            )
            assert r.status_code == 201, r.text
            return str(r.json()["image_name"])

    def remove(name: str) -> None:
        with httpx.Client(base_url=saas_web.url, headers=headers, timeout=60) as client:
            assert client.delete(f"/api/v1/images/i/{name}").status_code == 200

    with ThreadPoolExecutor(max_workers=8) as pool:
        first = list(pool.map(upload, range(12)))
        # Deletes of the first half race uploads of a second batch.
        deletes = [pool.submit(remove, name) for name in first[:6]]
        second = list(pool.map(upload, range(100, 108)))
        for future in deletes:
            future.result()
    kept = set(first[6:]) | set(second)

    with engine.connect() as conn:
        rows = conn.execute(
            select(storage_objects).where(storage_objects.c.kind.in_(("image", "image_thumbnail")))
        ).all()
        mine = [row for row in rows if row.name in kept or row.name in first]
        assert {row.name for row in mine} == kept
        owner = mine[0].user_id
        usage = conn.execute(
            select(user_storage_usage.c.bytes, user_storage_usage.c.objects).where(
                user_storage_usage.c.user_id == owner
            )
        ).one()
        indexed = (
            conn.execute(select(storage_objects.c.bytes).where(storage_objects.c.user_id == owner)).scalars().all()
        )
    engine.dispose()
    assert (usage.bytes, usage.objects) == (sum(indexed), len(indexed))
    owner_prefix = mine[0].object_key.split("/images/")[0] + "/"
    listed = s3.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=owner_prefix)
    in_bucket = [item["Size"] for page in listed for item in page.get("Contents", [])]
    assert sum(in_bucket) == usage.bytes and len(in_bucket) == usage.objects


def test_deleting_a_board_with_its_images_deletes_their_objects(saas_web: InvokeAIWebServer, stack: LocalStack) -> None:
    headers = {"Authorization": f"Bearer {admin_token(saas_web.url)}"}
    engine = create_engine(str(stack.saas_settings()["database_url"]))
    s3 = stack.s3.client()
    with httpx.Client(base_url=saas_web.url, headers=headers, timeout=60) as client:
        board_id = client.post("/api/v1/boards/", params={"board_name": "to-delete"}).json()["board_id"]
        names = []
        for seed in (1, 2):
            r = client.post(
                "/api/v1/images/upload",
                params={"image_category": "general", "is_intermediate": False, "board_id": board_id},
                files={"file": (f"b{seed}.png", noise_png(seed), "image/png")},
            )
            assert r.status_code == 201, r.text
            names.append(r.json()["image_name"])
        with engine.connect() as conn:
            keys = (
                conn.execute(select(storage_objects.c.object_key).where(storage_objects.c.name.in_(names)))
                .scalars()
                .all()
            )
        assert len(keys) == 4 and all(s3.head_object(Bucket=S3_BUCKET, Key=key) for key in keys)

        r = client.delete(f"/api/v1/boards/{board_id}", params={"include_images": True})
        assert r.status_code == 200, r.text
        assert set(r.json()["deleted_images"]) == set(names)
    for key in keys:
        assert s3.list_objects_v2(Bucket=S3_BUCKET, Prefix=key).get("KeyCount") == 0
    with engine.connect() as conn:
        assert conn.execute(select(storage_objects).where(storage_objects.c.name.in_(names))).all() == []
    engine.dispose()
