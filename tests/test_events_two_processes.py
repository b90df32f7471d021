"""Live events across API processes: two real ``invokeai-web`` processes in saas mode on one PostgreSQL database and
one Redis. A batch enqueued on A (run by whichever process claims it) must reach every browser connection exactly
as saas mode routes it in one process (``invokeai_saas.events.queue_rooms``): the owner gets the full events once,
in order, on either process; nobody else in the queue room (another user, an administrator) gets anything about
the item."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from invokeai_saas.db import migrate
from invokeai_saas.devstack import LocalStack
from invokeai_saas.devstack.group import start_together
from invokeai_saas.devstack.web import InvokeAIWebServer
from tests.support.browser import Browser, create_user
from tests.support.databases import create_database, drop_database
from tests.support.invokeai import TEST_ENV, add_graph_batch, admin_token

WAIT = 90.0
QUEUE = "default"
INSTALL_OUTCOMES = ("model_install_complete", "model_install_error")
PRIVATE_INVOCATION_EVENTS = ("invocation_started", "invocation_progress", "invocation_complete", "invocation_error")


@pytest.fixture(scope="module")
def pair(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InvokeAIWebServer, ...]]:
    """A deployment of its own: a fresh database and its own Redis database number (so its own event channel),
    so no other suite's server claims these queue items or hears these events."""
    name = f"events_{uuid.uuid4().hex[:10]}"
    database_url = create_database(stack.postgres, name)
    migrate.upgrade_url(database_url)
    redis_url = stack.redis.url.rsplit("/", 1)[0] + "/6"
    settings = {"enabled": True, "database_url": database_url, "redis_url": redis_url}
    servers = tuple(
        InvokeAIWebServer(tmp_path_factory.mktemp(f"events-{i}"), saas_settings=settings, env=dict(TEST_ENV))
        for i in range(2)
    )
    start_together(list(servers), timeout=300)
    try:
        yield servers
    finally:
        for server in servers:
            server.stop(timeout=30)
        drop_database(stack.postgres, name)


def _completed(item_id: int) -> Callable[[list[tuple[str, dict[str, Any]]]], bool]:
    return lambda events: any(
        n == "queue_item_status_changed" and d["item_id"] == item_id and d["status"] == "completed" for n, d in events
    )


def _enqueue(base_url: str, token: str) -> tuple[str, int]:
    r = httpx.post(
        f"{base_url}/api/v1/queue/{QUEUE}/enqueue_batch",
        json=add_graph_batch(),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    return str(body["batch"]["batch_id"]), int(body["item_ids"][0])


def test_events_reach_their_owners_connections_once_and_nobody_elses(pair: tuple[InvokeAIWebServer, ...]) -> None:
    a, b = pair
    admin_bearer = admin_token(a.url)
    admin = {"Authorization": f"Bearer {admin_bearer}"}
    owner_id, owner_token = create_user(a.url, admin, f"owner-{uuid.uuid4().hex[:6]}@example.com")
    _, other_token = create_user(a.url, admin, f"other-{uuid.uuid4().hex[:6]}@example.com")

    browsers = {
        "owner@A": Browser(a.url, owner_token),
        "owner@B": Browser(b.url, owner_token),
        "admin@B": Browser(b.url, admin_bearer),
        "other@B": Browser(b.url, other_token),
    }
    owners = {"owner@A": owner_token, "owner@B": owner_token, "admin@B": admin_bearer, "other@B": other_token}
    try:
        batch_id, item_id = _enqueue(a.url, owner_token)
        for who in ("owner@A", "owner@B"):
            assert browsers[who].wait_for(_completed(item_id)), f"{who} got no completed event: {browsers[who].events}"
        # Barrier: a second item from the same owner, and one of their own for the others. Whichever process runs
        # it, its events follow the first item's through the same path, so once each browser has seen its barrier
        # complete no late copy of the first is pending.
        _, barrier_item = _enqueue(a.url, owner_token)
        barriers = {who: barrier_item for who in ("owner@A", "owner@B")}
        barriers.update({who: _enqueue(a.url, owners[who])[1] for who in ("admin@B", "other@B")})
        for who, browser in browsers.items():
            assert browser.wait_for(_completed(barriers[who])), f"{who} missed the barrier: {browser.events}"
    finally:
        for browser in browsers.values():
            browser.close()

    full_views = {who: browsers[who] for who in ("owner@A", "owner@B")}
    reference = full_views["owner@A"].named("queue_item_status_changed", item_id)
    statuses = [d["status"] for d in reference]
    assert statuses[-1] == "completed" and statuses[0] in ("pending", "in_progress")
    assert len(set(statuses)) == len(statuses), statuses  # no status twice
    sequences = [d["status_sequence"] for d in reference]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    for who, browser in full_views.items():
        changes = browser.named("queue_item_status_changed", item_id)
        # The very event objects, whichever process emitted them and whichever path they took to this socket.
        assert changes == reference, who
        assert all(d["user_id"] == owner_id and d["batch_id"] == batch_id for d in changes), who
        enqueued = [d for d in browser.named("batch_enqueued") if d["batch_id"] == batch_id]
        assert len(enqueued) == 1 and enqueued[0]["user_id"] == owner_id, who  # emitted on A, seen on B too
        for name in ("invocation_started", "invocation_complete"):
            assert len(browser.named(name, item_id)) == 1, (who, name)
        assert browser.named("invocation_complete", item_id)[0]["result"]["value"] == 5, who

    # Stock sends the rest of the queue room redacted copies and administrators the full events; in saas mode
    # each user's queue views hold only their own items, so neither gets anything about the owner's.
    for who in ("other@B", "admin@B"):
        events = browsers[who].events
        assert not [n for n, d in events if d.get("item_id") in (item_id, barrier_item)], (who, events)
        assert not [n for n, d in events if d.get("user_id") == "redacted"], (who, events)
        assert owner_id not in repr(events) and batch_id not in repr(events), who


def test_model_manager_events_reach_admins_on_the_other_process(pair: tuple[InvokeAIWebServer, ...]) -> None:
    """Stock hands its event service to the model installer before the dependency-swap hook runs; its events
    (admin-only in stock) must be relayed too."""
    a, b = pair
    admin_bearer = admin_token(a.url)
    admin = {"Authorization": f"Bearer {admin_bearer}"}
    _, user_token = create_user(a.url, admin, f"user-{uuid.uuid4().hex[:6]}@example.com")
    not_a_model = a.root / f"not-a-model-{uuid.uuid4().hex[:6]}.safetensors"
    not_a_model.write_bytes(b"\0" * 64)

    admin_b, user_b = Browser(b.url, admin_bearer), Browser(b.url, user_token)
    try:
        r = httpx.post(
            f"{a.url}/api/v2/models/install",
            params={"source": str(not_a_model), "inplace": "true"},
            json={},
            headers=admin,
            timeout=30,
        )
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]

        def finished(events: list[tuple[str, dict[str, Any]]]) -> bool:
            # Stock registers an unrecognised file as an "unknown" model; either outcome ends the job.
            return any(n in INSTALL_OUTCOMES and d["id"] == job_id for n, d in events)

        assert admin_b.wait_for(finished), admin_b.events
        # Barrier, as above: a graph run on the same deployment by each, seen completed by its own connection.
        for token, browser in ((admin_bearer, admin_b), (user_token, user_b)):
            _, barrier_item = _enqueue(a.url, token)
            assert browser.wait_for(_completed(barrier_item)), browser.events
    finally:
        admin_b.close()
        user_b.close()

    assert len([d for d in admin_b.named("model_install_started") if d["id"] == job_id]) == 1
    outcomes = [n for n, d in admin_b.events if n in INSTALL_OUTCOMES and d["id"] == job_id]
    assert len(outcomes) == 1, outcomes
    assert not [n for n, _ in user_b.events if n.startswith("model_install")]
