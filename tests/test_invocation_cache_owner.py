"""The invocation cache is per owner (``invokeai_saas/services/invocation_cache/invocation_cache_owner.py``): two
tenants running the same node get outputs of their own runs, never each other's cached image, while a tenant's own
repeat is still answered from the cache."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from invokeai.app.invocations.primitives import StringOutput
from invokeai.app.invocations.strings import StringJoinInvocation

from invokeai_saas.devstack.web import InvokeAIWebServer
from invokeai_saas.services.invocation_cache.invocation_cache_owner import CACHE_OWNER, OwnerScopedInvocationCache
from tests.support.credits import saas_user

Q = "default"
WAIT = 120.0


def _blank_then_blur(color: int) -> dict[str, Any]:
    """A blank image (cached by stock: ``use_cache`` is on) fed to a blur, which must read that image as the item's
    owner: another tenant's cached image would fail it on stock's access check."""
    rgba = {"r": color, "g": 1, "b": 2, "a": 255}
    nodes = {
        "blank": {"id": "blank", "type": "blank_image", "width": 32, "height": 32, "color": rgba},
        "blur": {"id": "blur", "type": "img_blur", "radius": 1, "is_intermediate": False},
    }
    edges = [{"source": {"node_id": "blank", "field": "image"}, "destination": {"node_id": "blur", "field": "image"}}]
    return {"prepend": False, "batch": {"graph": {"id": "cache-owner", "nodes": nodes, "edges": edges}, "runs": 1}}


def _run(web: InvokeAIWebServer, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{web.url}/api/v1/queue/{Q}/enqueue_batch", json=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    item_id = r.json()["item_ids"][0]
    deadline = time.monotonic() + WAIT
    while True:
        item = httpx.get(f"{web.url}/api/v1/queue/{Q}/i/{item_id}", headers=headers, timeout=30).json()
        if item["status"] in ("completed", "failed", "canceled"):
            return dict(item)
        assert time.monotonic() < deadline, item
        time.sleep(0.1)


def _blank_image_name(item: dict[str, Any]) -> str:
    session = item["session"]
    (prepared,) = session["source_prepared_mapping"]["blank"]
    return str(session["results"][prepared]["image"]["image_name"])


def test_two_tenants_with_the_same_node_each_get_their_own_output(saas_web: InvokeAIWebServer) -> None:
    _, alice = saas_user(saas_web, "cache-a")
    _, bob = saas_user(saas_web, "cache-b")
    body = _blank_then_blur(uuid.uuid4().int % 200)  # a color no other test used: nothing cached before this test

    first = _run(saas_web, alice, body)
    assert first["status"] == "completed", first
    alice_image = _blank_image_name(first)

    theirs = _run(saas_web, bob, body)
    assert theirs["status"] == "completed", theirs  # with a shared cache: "not authorized to access this image"
    bob_image = _blank_image_name(theirs)
    assert bob_image != alice_image
    assert httpx.get(f"{saas_web.url}/api/v1/images/i/{bob_image}", headers=bob, timeout=30).status_code == 200
    assert httpx.get(f"{saas_web.url}/api/v1/images/i/{alice_image}", headers=bob, timeout=30).status_code in (403, 404)

    again = _run(saas_web, alice, body)  # the owner's own repeat is a cache hit: the same image comes back
    assert again["status"] == "completed", again
    assert _blank_image_name(again) == alice_image


def test_keys_carry_the_owner_and_a_node_without_one_is_not_cached() -> None:
    cache = OwnerScopedInvocationCache(max_cache_size=8)
    node = StringJoinInvocation(id="a", string_left="x", string_right="y")
    same_inputs = StringJoinInvocation(id="b", string_left="x", string_right="y")
    output = StringOutput(value="xy")

    unowned = cache.create_key(node)
    cache.save(unowned, output)
    assert cache.get(unowned) is None and cache.get_status().size == 0

    token = CACHE_OWNER.set("alice")
    try:
        alice_key = cache.create_key(node)
        cache.save(alice_key, output)
        assert cache.get(cache.create_key(same_inputs)) is output  # the node id is not part of the key, as in stock
    finally:
        CACHE_OWNER.reset(token)
    token = CACHE_OWNER.set("bob")
    try:
        assert cache.create_key(same_inputs) != alice_key
        assert cache.get(cache.create_key(same_inputs)) is None
    finally:
        CACHE_OWNER.reset(token)
