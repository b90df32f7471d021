"""Real txt2img generation in saas mode, on the CPU, with a tiny random SD 1.x model: installed through the model
API, run by the in-process session processor (no SQS configured), its image stored in S3 and visible to its owner
only. A graph naming a model that does not exist must fail its queue item, not wedge the processor."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from invokeai_saas.db import migrate
from invokeai_saas.devstack import LocalStack
from invokeai_saas.devstack.web import InvokeAIWebServer
from tests.support.databases import create_database, drop_database
from tests.support.invokeai import TEST_ENV, add_graph_batch, admin_token
from tests.support.tiny_sd import install_tiny_sd, txt2img_batch

QUEUE = "default"
WAIT = 120.0
FINISHED = ("completed", "failed", "canceled")
SIZE = 64


@pytest.fixture(scope="module")
def web(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InvokeAIWebServer]:
    """One invokeai-web of its own, without SQS, so it runs graphs itself: a fresh database (no other suite's
    server claims its items), its own Redis database number and its own S3 prefix."""
    name = f"txt2img_{uuid.uuid4().hex[:10]}"
    database_url = create_database(stack.postgres, name)
    migrate.upgrade_url(database_url)
    s3 = {key: value for key, value in stack.saas_settings().items() if key.startswith("s3_")}
    settings = {
        "enabled": True,
        "database_url": database_url,
        "redis_url": stack.redis.url.rsplit("/", 1)[0] + "/7",
        **s3,
        "s3_prefix": f"{name}/",
    }
    server = InvokeAIWebServer(tmp_path_factory.mktemp("txt2img"), saas_settings=settings, env=dict(TEST_ENV))
    server.start(timeout=240)
    try:
        yield server
    finally:
        server.stop(timeout=30)
        drop_database(stack.postgres, name)


@pytest.fixture(scope="module")
def admin(web: InvokeAIWebServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_token(web.url)}"}


@pytest.fixture(scope="module")
def tiny_sd(web: InvokeAIWebServer, admin: dict[str, str], tiny_sd_dir: Path) -> dict[str, Any]:
    return install_tiny_sd(web.url, admin, tiny_sd_dir)


def _user(base_url: str, admin: dict[str, str], prefix: str) -> dict[str, str]:
    """Create a non-admin user and log in; returns its bearer headers."""
    email, password = f"{prefix}-{uuid.uuid4().hex[:6]}@example.com", "Txt2img-user-password-42"
    r = httpx.post(
        f"{base_url}/api/v1/auth/users",
        json={"email": email, "display_name": prefix, "password": password},
        headers=admin,
        timeout=30,
    )
    assert r.status_code in (200, 201), r.text
    r = httpx.post(f"{base_url}/api/v1/auth/login", json={"email": email, "password": password}, timeout=30)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _enqueue(base_url: str, headers: dict[str, str], body: dict[str, Any]) -> int:
    r = httpx.post(f"{base_url}/api/v1/queue/{QUEUE}/enqueue_batch", json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return int(r.json()["item_ids"][0])


def _finished_item(base_url: str, headers: dict[str, str], item_id: int) -> dict[str, Any]:
    """Poll the item until it reaches a final status; an item that never does fails the test instead of hanging."""
    deadline = time.monotonic() + WAIT
    while True:
        r = httpx.get(f"{base_url}/api/v1/queue/{QUEUE}/i/{item_id}", headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        item: dict[str, Any] = r.json()
        if item["status"] in FINISHED:
            return item
        assert time.monotonic() < deadline, f"item {item_id} still {item['status']} after {WAIT} s"
        time.sleep(0.2)


def _output_images(item: dict[str, Any]) -> list[str]:
    return [
        output["image"]["image_name"]
        for output in item["session"]["results"].values()
        if output.get("type") == "image_output"
    ]


def test_the_model_installs_as_an_sd1_main_model(tiny_sd: dict[str, Any], tiny_sd_dir: Path) -> None:
    assert (tiny_sd["name"], tiny_sd["base"], tiny_sd["type"]) == (tiny_sd_dir.name, "sd-1", "main")
    assert tiny_sd["key"] and tiny_sd["hash"]


def test_txt2img_saves_a_png_that_only_its_owner_can_read(
    web: InvokeAIWebServer, admin: dict[str, str], tiny_sd: dict[str, Any]
) -> None:
    alice, bob = _user(web.url, admin, "alice"), _user(web.url, admin, "bob")
    item = _finished_item(web.url, alice, _enqueue(web.url, alice, txt2img_batch(tiny_sd, size=SIZE, seed=7)))
    assert item["status"] == "completed", (item.get("error_type"), item.get("error_message"))

    images = _output_images(item)
    assert len(images) == 1  # l2i only: everything upstream is intermediate
    name = images[0]
    full = httpx.get(f"{web.url}/api/v1/images/i/{name}/full", headers=alice, timeout=30)
    assert full.status_code == 200
    assert full.headers["content-type"] == "image/png"
    png = Image.open(io.BytesIO(full.content))
    assert (png.format, png.size) == ("PNG", (SIZE, SIZE))

    dto = httpx.get(f"{web.url}/api/v1/images/i/{name}", headers=alice, timeout=30).json()
    assert (dto["width"], dto["height"], dto["is_intermediate"]) == (SIZE, SIZE, False)
    listed = httpx.get(f"{web.url}/api/v1/images/", params={"is_intermediate": False}, headers=alice, timeout=30)
    assert name in [i["image_name"] for i in listed.json()["items"]]

    for suffix in ("full", "thumbnail"):
        assert httpx.get(f"{web.url}/api/v1/images/i/{name}/{suffix}", headers=bob, timeout=30).status_code in (
            403,
            404,
        )
    bobs = httpx.get(f"{web.url}/api/v1/images/", params={"is_intermediate": False}, headers=bob, timeout=30)
    assert name not in [i["image_name"] for i in bobs.json()["items"]]


def test_an_unknown_model_key_fails_the_item_and_the_queue_moves_on(
    web: InvokeAIWebServer, admin: dict[str, str], tiny_sd: dict[str, Any]
) -> None:
    user = _user(web.url, admin, "carol")
    missing = {**tiny_sd, "key": str(uuid.uuid4())}
    item = _finished_item(web.url, user, _enqueue(web.url, user, txt2img_batch(missing)))
    assert item["status"] == "failed"
    assert item["error_type"]
    assert missing["key"] in item["error_message"]
    assert _output_images(item) == []

    after = _finished_item(web.url, user, _enqueue(web.url, user, add_graph_batch()))
    assert after["status"] == "completed"  # the processor is free again
