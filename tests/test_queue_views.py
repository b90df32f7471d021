"""In saas mode a user's queue views hold only that user's items (issue 12, item 7), against ``saas_web`` (SQS, a
worker, credits): two tenants, each view showing only its own items, another tenant's item answering 404 (also
through an API key), the status giving the user's own counts and place in the queue with the fleet, and the
Socket.IO queue room carrying an item's events to its owner only (a real python-socketio client per tenant)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from invokeai_saas.devstack.web import InvokeAIWebServer
from tests.support.browser import Browser
from tests.support.credits import saas_user, set_plan
from tests.support.invokeai import add_graph_batch, admin_token
from tests.support.queue_api import Q, enqueue, item_when_status, queue_url, sleep_batch


def _get(web: InvokeAIWebServer, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
    return httpx.get(queue_url(web, path), headers=headers, params=params, timeout=30)


def _post(web: InvokeAIWebServer, path: str, headers: dict[str, str], body: Any) -> httpx.Response:
    return httpx.post(queue_url(web, path), headers=headers, json=body, timeout=30)


def _ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [int(i["item_id"]) for i in response.json()]


@pytest.fixture()
def admin(saas_web: InvokeAIWebServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_token(saas_web.url)}"}


@pytest.fixture()
def paused(saas_web: InvokeAIWebServer, admin: dict[str, str]) -> Iterator[None]:
    """The fleet paused: what is enqueued stays pending until resume (workers take no new item)."""
    assert httpx.put(queue_url(saas_web, "/processor/pause"), headers=admin, timeout=30).status_code == 200
    try:
        yield
    finally:
        httpx.put(queue_url(saas_web, "/processor/resume"), headers=admin, timeout=30)


def test_each_tenant_sees_only_its_own_items(saas_web: InvokeAIWebServer, admin: dict[str, str], paused: None) -> None:
    a_id, a = saas_user(saas_web, "tenant-a")
    _, b = saas_user(saas_web, "tenant-b")
    seed = uuid.uuid4().int % 10_000
    a_items = [enqueue(saas_web, a, add_graph_batch(seed, n))[0] for n in range(3)]
    (b_item,) = enqueue(saas_web, b, add_graph_batch(seed, 9))
    everyone = [*a_items, b_item]

    assert sorted(_ids(_get(saas_web, "/list_all", a))) == sorted(a_items)
    assert _ids(_get(saas_web, "/list_all", b)) == [b_item]
    assert b_item not in _ids(_get(saas_web, "/list_all", admin))  # administrators see their own items too
    ids_a = _get(saas_web, "/item_ids", a, order_dir="ASC").json()
    assert ids_a == {"item_ids": a_items, "total_count": 3}
    assert _get(saas_web, "/item_ids", b).json() == {"item_ids": [b_item], "total_count": 1}
    # Someone else's ids are skipped as unknown ones are; the caller's keep the requested order.
    assert _ids(_post(saas_web, "/items_by_ids", b, {"item_ids": everyone})) == [b_item]
    assert _ids(_post(saas_web, "/items_by_ids", a, {"item_ids": everyone[::-1]})) == a_items[::-1]
    assert _ids(_post(saas_web, "/item_summaries_by_ids", b, {"item_ids": everyone})) == [b_item]
    assert _ids(_post(saas_web, "/item_summaries_by_ids", a, {"item_ids": [a_items[1]]})) == [a_items[1]]
    next_b = _get(saas_web, "/next", b)
    assert next_b.status_code == 200 and next_b.json()["item_id"] == b_item
    assert _get(saas_web, "/next", a).json()["item_id"] == a_items[0]
    assert _get(saas_web, "/current", b).json() is None

    # Another tenant's item answers exactly as an id that does not exist.
    missing = max(everyone) + 1_000_000
    for item_id in (a_items[0], missing):
        r = _get(saas_web, f"/i/{item_id}", b)
        assert r.status_code == 404, r.text
        assert r.json() == {"detail": f"Queue item with id {item_id} not found in queue {Q}"}
        # Canceling or deleting it answers the same (stock: 403, which confirms the item exists).
        canceled = httpx.put(queue_url(saas_web, f"/i/{item_id}/cancel"), headers=b, timeout=30)
        deleted = httpx.delete(queue_url(saas_web, f"/i/{item_id}"), headers=b, timeout=30)
        assert (canceled.status_code, deleted.status_code) == (404, 404), (canceled.text, deleted.text)
        assert canceled.json() == deleted.json() == r.json()
    assert _get(saas_web, f"/i/{a_items[0]}", a).json()["status"] == "pending"  # untouched
    own = _get(saas_web, f"/i/{a_items[0]}", a)
    assert own.status_code == 200 and own.json()["user_id"] == a_id
    assert _get(saas_web, f"/i/{a_items[0]}", admin).status_code == 200  # administrators act on any item by id

    # The status: the user's own counts, place in the queue (round robin: a's first item, then b's), the fleet.
    status_a = _get(saas_web, "/status", a).json()
    status_b = _get(saas_web, "/status", b).json()
    assert (status_a["queue"]["pending"], status_a["queue"]["total"]) == (3, 3)
    assert (status_b["queue"]["pending"], status_b["queue"]["total"], status_b["queue"]["in_progress"]) == (1, 1, 0)
    assert status_b["queue"]["user_pending"] == 1 and status_b["queue"]["item_id"] is None
    assert status_a["queue"]["items_ahead"] is not None
    assert status_b["queue"]["items_ahead"] == status_a["queue"]["items_ahead"] + 1
    assert status_b["fleet"]["paused"] is True and status_b["fleet"]["workers"] >= 1
    batch = _get(saas_web, f"/i/{a_items[0]}", a).json()["batch_id"]
    assert _get(saas_web, f"/b/{batch}/status", b).json()["total"] == 0
    assert _get(saas_web, f"/b/{batch}/status", admin).json()["total"] == 0
    assert _get(saas_web, f"/b/{batch}/status", a).json()["pending"] == 1
    httpx.put(queue_url(saas_web, "/clear"), headers=a, timeout=30)
    httpx.put(queue_url(saas_web, "/clear"), headers=b, timeout=30)


def test_a_running_item_is_current_only_for_its_owner(saas_web: InvokeAIWebServer, admin: dict[str, str]) -> None:
    _, a = saas_user(saas_web, "runner")
    _, b = saas_user(saas_web, "watcher")
    (item_id,) = enqueue(saas_web, a, sleep_batch(3.0))
    assert item_when_status(saas_web, a, item_id, "in_progress", "completed")["status"] == "in_progress"
    current = _get(saas_web, "/current", a).json()
    assert current is not None and current["item_id"] == item_id
    assert _get(saas_web, "/current", b).json() is None
    own = _get(saas_web, "/status", a).json()["queue"]
    assert (own["in_progress"], own["item_id"], own["user_in_progress"]) == (1, item_id, 1)
    other = _get(saas_web, "/status", b).json()["queue"]
    assert (other["in_progress"], other["item_id"], other["total"]) == (0, None, 0)
    assert item_when_status(saas_web, a, item_id, "completed", "failed")["status"] == "completed"


def test_an_api_key_reaches_only_its_owners_items(saas_web: InvokeAIWebServer, saas_db: Engine) -> None:
    _, a = saas_user(saas_web, "key-victim")
    b_id, b = saas_user(saas_web, "key-holder")
    set_plan(saas_db, b_id, "pro")  # API access
    created = httpx.post(f"{saas_web.url}/api/v1/saas/me/api-keys", json={"name": "probe"}, headers=b, timeout=30)
    assert created.status_code == 201, created.text
    key = {"Authorization": f"Bearer {created.json()['secret']}"}
    (a_item,) = enqueue(saas_web, a, add_graph_batch(uuid.uuid4().int % 10_000, 5))
    (b_item,) = enqueue(saas_web, key, add_graph_batch(uuid.uuid4().int % 10_000, 6))
    assert _get(saas_web, f"/i/{a_item}", key).status_code == 404
    assert httpx.put(queue_url(saas_web, f"/i/{a_item}/cancel"), headers=key, timeout=30).status_code == 404
    assert _get(saas_web, f"/i/{b_item}", key).status_code == 200
    assert _ids(_get(saas_web, "/list_all", key)) == [b_item]
    assert _ids(_post(saas_web, "/items_by_ids", key, {"item_ids": [a_item, b_item]})) == [b_item]
    assert _get(saas_web, "/item_ids", key).json()["item_ids"] == [b_item]
    for item_id, headers in ((a_item, a), (b_item, b)):
        item_when_status(saas_web, headers, item_id, "completed", "failed")


def _mentions(events: list[tuple[str, dict[str, Any]]], item_id: int, user_id: str, batch_id: str) -> list[str]:
    return [
        name
        for name, data in events
        if data.get("item_id") == item_id
        or user_id in repr(data)
        or batch_id in repr(data)
        or item_id in (data.get("canceled_item_ids") or []) + (data.get("retried_item_ids") or [])
    ]


def test_the_queue_room_carries_an_items_events_to_its_owner_only(
    saas_web: InvokeAIWebServer, admin: dict[str, str]
) -> None:
    a_id, a = saas_user(saas_web, "socket-owner")
    _, b = saas_user(saas_web, "socket-other")
    browsers = {
        "owner": Browser(saas_web.url, a["Authorization"].removeprefix("Bearer ")),
        "other": Browser(saas_web.url, b["Authorization"].removeprefix("Bearer ")),
        "admin": Browser(saas_web.url, admin["Authorization"].removeprefix("Bearer ")),
    }
    try:
        enqueued = _post(saas_web, "/enqueue_batch", a, add_graph_batch(uuid.uuid4().int % 10_000, 7))
        assert enqueued.status_code == 200, enqueued.text
        (item_id,) = enqueued.json()["item_ids"]
        batch_id = enqueued.json()["batch"]["batch_id"]

        def done(item: int) -> Any:
            return lambda events: any(
                n == "queue_item_status_changed" and d["item_id"] == item and d["status"] == "completed"
                for n, d in events
            )

        assert browsers["owner"].wait_for(done(item_id)), browsers["owner"].events
        # Barrier: the others' own items, enqueued after; their events follow the first item's through the same
        # path, so once each browser has its own completion no copy of the first item's events is still on the way.
        for who in ("other", "admin"):
            headers = b if who == "other" else admin
            (own_item,) = enqueue(saas_web, headers, add_graph_batch(uuid.uuid4().int % 10_000, 8))
            assert browsers[who].wait_for(done(own_item)), (who, browsers[who].events)
    finally:
        for browser in browsers.values():
            browser.close()

    owner = browsers["owner"]
    statuses = [d["status"] for d in owner.named("queue_item_status_changed", item_id)]
    assert statuses[-1] == "completed" and all(
        d["user_id"] == a_id for d in owner.named("queue_item_status_changed", item_id)
    )
    assert [d["batch_id"] for d in owner.named("batch_enqueued")] == [batch_id]
    assert len(owner.named("invocation_complete", item_id)) == 1
    # The owner's events carry the owner's own view of the queue.
    last = owner.named("queue_item_status_changed", item_id)[-1]["queue_status"]
    assert last["user_pending"] == last["pending"] and last["total"] >= 1
    for who in ("other", "admin"):
        assert _mentions(browsers[who].events, item_id, a_id, batch_id) == [], (who, browsers[who].events)
        assert all(d.get("user_id") != "redacted" for _, d in browsers[who].events), who
