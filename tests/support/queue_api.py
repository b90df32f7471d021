"""The session queue's HTTP API as the end-to-end tests drive it: enqueue, and wait for an item's status.

One copy for every test module that talks to ``saas_web``'s queue routes, so each polls the same way (with a
deadline: an item's status is a server's state)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from invokeai_saas.devstack.web import InvokeAIWebServer

Q = "default"
WAIT = 90.0  # seconds an item may take to reach a status (a worker claims, runs, settles)


def queue_url(web: InvokeAIWebServer, path: str) -> str:
    return f"{web.url}/api/v1/queue/{Q}{path}"


def sleep_batch(seconds: float, destination: str | None = None) -> dict[str, Any]:
    """A step-less graph: one node that waits ``seconds`` (checking for cancellation every 20 ms)."""
    graph = {"id": "sleep", "nodes": {"s": {"id": "s", "type": "saas_test_sleep", "seconds": seconds}}, "edges": []}
    return {"prepend": False, "batch": {"graph": graph, "runs": 1, "destination": destination}}


def enqueue(web: InvokeAIWebServer, headers: dict[str, str], body: dict[str, Any]) -> list[int]:
    r = httpx.post(queue_url(web, "/enqueue_batch"), json=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    return [int(item_id) for item_id in r.json()["item_ids"]]


def item_when_status(web: InvokeAIWebServer, headers: dict[str, str], item_id: int, *statuses: str) -> dict[str, Any]:
    """The item as soon as it has one of ``statuses``, or as it is when ``WAIT`` has passed (the caller checks)."""
    deadline = time.monotonic() + WAIT
    while True:
        item = dict(httpx.get(queue_url(web, f"/i/{item_id}"), headers=headers, timeout=30).json())
        if item.get("status") in statuses or time.monotonic() > deadline:
            return item
        time.sleep(0.05)


def wait_for_status(web: InvokeAIWebServer, headers: dict[str, str], item_id: int, *statuses: str) -> dict[str, Any]:
    """The item once it has one of ``statuses``; fails the test if it has none of them within ``WAIT``."""
    item = item_when_status(web, headers, item_id, *statuses)
    assert item.get("status") in statuses, item
    return item
