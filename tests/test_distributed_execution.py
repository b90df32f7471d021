"""Distributed execution with real processes: two ``invokeai-web`` API processes and two ``invokeai-saas worker``
processes on one PostgreSQL database, one Redis, the moto SQS server and SeaweedFS.

The deployment has a database, an SQS queue prefix, a Redis database number (hence an event channel) and an S3
prefix of its own, so no other suite's server or worker sees its items. Beats are fast (0.5 s, lease 4 s) so a
killed worker's item is taken over within seconds. Graphs use stock math nodes and the test node pack
(``saas_test_sleep`` holds a worker while a test kills, cancels or pauses around it).
"""

from __future__ import annotations

import io
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import Engine, create_engine, text

from invokeai_saas.config import SaasSettings
from invokeai_saas.db import migrate
from invokeai_saas.db.engine import sync_url
from invokeai_saas.devstack import LocalStack
from invokeai_saas.devstack.group import start_together
from invokeai_saas.devstack.web import InvokeAIWebServer
from invokeai_saas.devstack.worker import InvokeAIWorker
from invokeai_saas.dispatch.sqs_dispatch import Runnable, SqsDispatcher
from invokeai_saas.services.session_queue.session_queue_dispatching import WORKER_LOST_ERROR
from tests.support.browser import Browser, create_user
from tests.support.databases import create_database, drop_database
from tests.support.deployment import web_server, worker_process
from tests.support.invokeai import add_graph_batch, admin_token
from tests.support.tiny_sd import install_tiny_sd, txt2img_batch

WAIT = 90.0
Q = "default"


@dataclass
class Deployment:
    a: InvokeAIWebServer
    b: InvokeAIWebServer
    workers: list[InvokeAIWorker]
    settings: dict[str, Any]
    engine: Engine
    admin: dict[str, str]
    make_worker: Callable[[str], InvokeAIWorker]

    def sql(self, statement: str, **params: Any) -> Any:
        with self.engine.begin() as conn:
            return conn.execute(text(statement), params)

    def user(self, name: str) -> tuple[str, dict[str, str]]:
        user_id, token = create_user(self.a.url, self.admin, f"{name}-{uuid.uuid4().hex[:6]}@example.com")
        return user_id, {"Authorization": f"Bearer {token}"}

    def enqueue(self, headers: dict[str, str], body: dict[str, Any], on: InvokeAIWebServer | None = None) -> list[int]:
        r = httpx.post(f"{(on or self.a).url}/api/v1/queue/{Q}/enqueue_batch", json=body, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        return sorted(int(i) for i in r.json()["item_ids"])

    def item(self, item_id: int, headers: dict[str, str] | None = None) -> dict[str, Any]:
        r = httpx.get(f"{self.b.url}/api/v1/queue/{Q}/i/{item_id}", headers=headers or self.admin, timeout=30)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait_status(self, item_id: int, *statuses: str, timeout: float = WAIT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            item = self.item(item_id)
            if item["status"] in statuses:
                return item
            assert time.monotonic() < deadline, f"item {item_id} stayed {item['status']}"
            time.sleep(0.1)

    def running_on(self, item_id: int) -> InvokeAIWorker:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            worker_id = self.sql(
                "SELECT worker_id FROM session_queue_leases WHERE item_id = :i", i=item_id
            ).scalar_one_or_none()
            for worker in self.workers:
                if worker.worker_id == worker_id:
                    return worker
            time.sleep(0.1)
        raise AssertionError(f"item {item_id} is not running on any worker")

    def replace_worker(self, old: InvokeAIWorker) -> None:
        old.stop(timeout=30)
        new = self.make_worker(f"{old.worker_id.rsplit('-r', 1)[0]}-r{uuid.uuid4().hex[:4]}")
        new.start(timeout=240)
        self.workers[self.workers.index(old)] = new


def sleep_batch(seconds: float, runs: int = 1) -> dict[str, Any]:
    return {
        "prepend": False,
        "batch": {
            "graph": {
                "id": "sleep",
                "nodes": {"s": {"id": "s", "type": "saas_test_sleep", "seconds": seconds}},
                "edges": [],
            },
            "runs": runs,
        },
    }


@pytest.fixture(scope="module", name="d")
def deployment(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    name = f"dist_{uuid.uuid4().hex[:10]}"
    database_url = create_database(stack.postgres, name)
    migrate.upgrade_url(database_url)
    connection = stack.saas_settings()
    settings: dict[str, Any] = {
        **{k: v for k, v in connection.items() if not k.startswith("stripe")},
        "enabled": True,
        "database_url": database_url,
        "redis_url": str(connection["redis_url"]).rsplit("/", 1)[0] + "/8",
        "s3_prefix": f"{name}/",
        "sqs_queue_prefix": name.replace("_", "-"),
        "worker_heartbeat_seconds": 0.5,
        "worker_lease_seconds": 4,
        "worker_drain_seconds": 2,
        "max_running_per_user": 2,
    }
    web_roots = [tmp_path_factory.mktemp(f"dist-web-{i}") for i in range(2)]
    webs = [web_server(root, settings) for root in web_roots]

    def make_worker(worker_id: str) -> InvokeAIWorker:
        return worker_process(tmp_path_factory.mktemp(f"dist-{worker_id}"), settings, web_roots[0], worker_id=worker_id)

    workers = [make_worker(f"w{i}") for i in range(2)]
    start_together([*webs, *workers], timeout=400)
    engine = create_engine(sync_url(database_url))
    try:
        admin = {"Authorization": f"Bearer {admin_token(webs[0].url)}"}
        yield Deployment(webs[0], webs[1], workers, settings, engine, admin, make_worker)
    finally:
        for server in [*workers, *webs]:
            server.stop(timeout=30)
        engine.dispose()
        drop_database(stack.postgres, name)


def _status(d: Deployment, on: InvokeAIWebServer, headers: dict[str, str]) -> dict[str, Any]:
    r = httpx.get(f"{on.url}/api/v1/queue/{Q}/status", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_items_run_on_workers_and_the_other_api_process_delivers_their_events(d: Deployment) -> None:
    owner_id, owner = d.user("owner")
    _, other = d.user("other")
    owner_b = Browser(d.b.url, owner["Authorization"].removeprefix("Bearer "))
    other_b = Browser(d.b.url, other["Authorization"].removeprefix("Bearer "))
    try:
        (item_id,) = d.enqueue(owner, add_graph_batch(2, 3))  # through A; the browsers are on B

        def done(item: int) -> Callable[[list[tuple[str, dict[str, Any]]]], bool]:
            return lambda events: any(
                n == "queue_item_status_changed" and e["item_id"] == item and e["status"] == "completed"
                for n, e in events
            )

        assert owner_b.wait_for(done(item_id))
        # Barrier: the other user's own item, enqueued after; its events follow the owner's through the same path.
        (barrier_item,) = d.enqueue(other, add_graph_batch(4, 5))
        assert other_b.wait_for(done(barrier_item))
    finally:
        owner_b.close()
        other_b.close()
    assert [e["status"] for e in owner_b.named("queue_item_status_changed", item_id)] == ["in_progress", "completed"]
    assert all(e["user_id"] == owner_id for e in owner_b.named("queue_item_status_changed", item_id))
    assert len(owner_b.named("invocation_started", item_id)) == 1
    (complete,) = owner_b.named("invocation_complete", item_id)
    assert complete["result"]["value"] == 5
    # Another user in the queue room gets nothing about the owner's item (stock: redacted copies; saas mode: each
    # user's queue views hold only their own items, invokeai_saas/events/queue_rooms.py).
    assert other_b.named("queue_item_status_changed", item_id) == []
    assert not [
        n for n, e in other_b.events if e.get("item_id") == item_id or e.get("user_id") in (owner_id, "redacted")
    ]
    item = d.item(item_id, owner)
    assert item["status"] == "completed" and item["device"] == "cpu"
    assert d.sql("SELECT attempts FROM session_queue WHERE item_id = :i", i=item_id).scalar() == 1


def test_txt2img_runs_on_workers_with_models_from_the_shared_directory(d: Deployment, tiny_sd_dir: Path) -> None:
    """A real SD 1.x graph (model loader, compel, noise, denoise, l2i) with the tiny random model: installed through
    API process A (records in PostgreSQL), loaded and run by the workers, its image in S3 for B to serve."""
    model = install_tiny_sd(d.a.url, d.admin, tiny_sd_dir)
    _, painter = d.user("painter")
    _, other = d.user("onlooker")
    # Two seeds: identical graphs would be answered from stock's node cache instead of run twice.
    items = [item for seed in (3, 4) for item in d.enqueue(painter, txt2img_batch(model, size=64, seed=seed), on=d.b)]
    for item_id in items:
        item = d.wait_status(item_id, "completed", "failed", timeout=180)
        assert item["status"] == "completed", (item.get("error_type"), item.get("error_message"))
    listed = httpx.get(f"{d.a.url}/api/v1/images/", params={"is_intermediate": False}, headers=painter, timeout=30)
    names = [i["image_name"] for i in listed.json()["items"]]
    assert len(names) == 2
    for name in names:
        full = httpx.get(f"{d.b.url}/api/v1/images/i/{name}/full", headers=painter, timeout=30)
        assert full.status_code == 200
        assert Image.open(io.BytesIO(full.content)).size == (64, 64)
        assert httpx.get(f"{d.b.url}/api/v1/images/i/{name}/full", headers=other, timeout=30).status_code in (403, 404)


def test_the_fleet_is_reported_and_listed_for_admins_only(d: Deployment) -> None:
    _, user = d.user("fleet")
    status = _status(d, d.b, user)
    assert status["fleet"] == {"workers": 2, "busy": 0, "idle": 2, "paused": False}
    assert status["processor"] == {"is_started": True, "is_processing": False}
    r = httpx.get(f"{d.a.url}/api/v1/saas/workers", headers=d.admin, timeout=30)
    assert r.status_code == 200
    listed = {w["worker_id"]: w for w in r.json()}
    assert set(listed) == {w.worker_id for w in d.workers}
    for worker in d.workers:
        row = listed[worker.worker_id]
        assert row["pid"] == worker.pid and row["device"] == "cpu" and row["tiers"] == [0, 1, 2]
        assert row["state"] == "idle" and row["current_item_id"] is None
    assert httpx.get(f"{d.a.url}/api/v1/saas/workers", headers=user, timeout=30).status_code == 403
    assert httpx.get(f"{d.a.url}/api/v1/saas/workers", timeout=30).status_code == 401


def _wait_worker_free(d: Deployment, worker: InvokeAIWorker) -> None:
    """The worker stops the node (it checks for cancellation every 20 ms) long before it would have ended."""
    deadline = time.monotonic() + 30
    while d.sql("SELECT current_item_id FROM saas_workers WHERE worker_id = :w", w=worker.worker_id).scalar():
        assert time.monotonic() < deadline, "the worker kept running the canceled item"
        time.sleep(0.1)


@pytest.mark.parametrize("how", ["item", "batch", "all"])
def test_cancel_through_either_api_process_stops_the_running_item(d: Deployment, how: str) -> None:
    _, owner = d.user(f"cancel-{how}")
    r = httpx.post(f"{d.a.url}/api/v1/queue/{Q}/enqueue_batch", json=sleep_batch(120), headers=owner, timeout=30)
    assert r.status_code == 200, r.text
    batch_id, (long_item,) = r.json()["batch"]["batch_id"], r.json()["item_ids"]
    d.wait_status(long_item, "in_progress")
    worker = d.running_on(long_item)
    if how == "item":
        r = httpx.put(f"{d.b.url}/api/v1/queue/{Q}/i/{long_item}/cancel", headers=owner, timeout=30)
    elif how == "batch":
        r = httpx.put(
            f"{d.b.url}/api/v1/queue/{Q}/cancel_by_batch_ids", json={"batch_ids": [batch_id]}, headers=owner, timeout=30
        )
    else:
        r = httpx.put(f"{d.b.url}/api/v1/queue/{Q}/cancel_all_except_current", headers=owner, timeout=30)
        assert r.status_code == 200, r.text
        assert d.item(long_item)["status"] == "in_progress"  # "except current" leaves the running one alone
        r = httpx.put(f"{d.b.url}/api/v1/queue/{Q}/clear", headers=owner, timeout=30)
    assert r.status_code == 200, r.text
    _wait_worker_free(d, worker)
    if how != "all":
        assert d.item(long_item)["status"] == "canceled"
    if how == "item":
        # A retry is another way an item becomes runnable: it is dispatched to the workers like an enqueue.
        r = httpx.put(f"{d.a.url}/api/v1/queue/{Q}/retry_items_by_id", json=[long_item], headers=owner, timeout=30)
        assert r.status_code == 200, r.text
        (retried,) = d.sql("SELECT item_id FROM session_queue WHERE retried_from_item_id = :i", i=long_item).scalars()
        d.wait_status(retried, "in_progress")
        httpx.put(f"{d.b.url}/api/v1/queue/{Q}/i/{retried}/cancel", headers=owner, timeout=30).raise_for_status()
        assert d.wait_status(retried, "canceled")["status"] == "canceled"
    (next_item,) = d.enqueue(owner, add_graph_batch())
    assert d.wait_status(next_item, "completed", "failed", timeout=30)["status"] == "completed"


def test_pause_and_resume_apply_to_every_worker(d: Deployment) -> None:
    _, owner = d.user("pause")
    r = httpx.put(f"{d.a.url}/api/v1/queue/{Q}/processor/pause", headers=d.admin, timeout=30)
    assert r.status_code == 200 and r.json()["is_started"] is False
    try:
        assert _status(d, d.b, owner)["fleet"]["paused"] is True  # the other API process sees it too
        items = d.enqueue(owner, add_graph_batch(), on=d.b)
        time.sleep(3)  # six beats of every worker
        assert d.item(items[0])["status"] == "pending"
    finally:
        r = httpx.put(f"{d.b.url}/api/v1/queue/{Q}/processor/resume", headers=d.admin, timeout=30)
        assert r.status_code == 200 and r.json()["is_started"] is True
    assert d.wait_status(items[0], "completed", "failed")["status"] == "completed"
    # Pausing stays an admin's action, as in stock.
    assert httpx.put(f"{d.a.url}/api/v1/queue/{Q}/processor/pause", headers=owner, timeout=30).status_code == 403


def test_a_duplicate_message_runs_the_item_once(d: Deployment) -> None:
    owner_id, owner = d.user("dup")
    httpx.put(f"{d.a.url}/api/v1/queue/{Q}/processor/pause", headers=d.admin, timeout=30).raise_for_status()
    try:
        (item_id,) = d.enqueue(owner, add_graph_batch())
        SqsDispatcher(SaasSettings(**d.settings)).send([Runnable(item_id, owner_id, Q, 0)] * 2)
    finally:
        httpx.put(f"{d.a.url}/api/v1/queue/{Q}/processor/resume", headers=d.admin, timeout=30).raise_for_status()
    assert d.wait_status(item_id, "completed", "failed")["status"] == "completed"
    time.sleep(2)  # let the copies be received and found empty
    assert d.sql("SELECT attempts FROM session_queue WHERE item_id = :i", i=item_id).scalar() == 1
    assert d.item(item_id)["status"] == "completed"


def test_higher_tiers_start_first_and_users_take_turns_within_a_tier(d: Deployment) -> None:
    a_id, a = d.user("turns-a")
    b_id, b = d.user("turns-b")
    hi_id, hi = d.user("turns-hi")
    d.sql("INSERT INTO user_scheduling (user_id, tier, max_running) VALUES (:u, 2, 2)", u=hi_id)
    httpx.put(f"{d.a.url}/api/v1/queue/{Q}/processor/pause", headers=d.admin, timeout=30).raise_for_status()
    try:
        items = d.enqueue(a, sleep_batch(0.3, runs=3)) + d.enqueue(b, sleep_batch(0.3, runs=2))
        items += d.enqueue(hi, sleep_batch(0.3, runs=2))
    finally:
        httpx.put(f"{d.a.url}/api/v1/queue/{Q}/processor/resume", headers=d.admin, timeout=30).raise_for_status()
    for item_id in items:
        assert d.wait_status(item_id, "completed", "failed")["status"] == "completed"
    owners = d.sql(
        "SELECT user_id FROM session_queue WHERE item_id = ANY(:ids) ORDER BY started_at, item_id", ids=items
    ).scalars()
    # The premium user's items start first; then the two users of tier 0 alternate, as stock's round robin.
    assert list(owners) == [hi_id, hi_id, a_id, b_id, a_id, b_id, a_id]


def test_a_users_running_cap_holds_across_workers(d: Deployment) -> None:
    user_id, owner = d.user("capped")
    d.sql("INSERT INTO user_scheduling (user_id, tier, max_running) VALUES (:u, 0, 1)", u=user_id)
    items = d.enqueue(owner, sleep_batch(0.5, runs=3))
    for item_id in items:
        assert d.wait_status(item_id, "completed", "failed")["status"] == "completed"
    spans = d.sql(
        "SELECT started_at, completed_at FROM session_queue WHERE item_id = ANY(:ids) ORDER BY started_at", ids=items
    ).all()
    for earlier, later in zip(spans, spans[1:], strict=False):
        assert later.started_at >= earlier.completed_at  # never two of this user's items at once


def test_restarting_an_api_process_cancels_nothing(d: Deployment) -> None:
    _, owner = d.user("restart")
    (item_id,) = d.enqueue(owner, sleep_batch(6))
    d.wait_status(item_id, "in_progress")
    d.a.stop(timeout=30)
    d.a.start(timeout=240)
    assert d.wait_status(item_id, "completed", "failed", "canceled")["status"] == "completed"


def test_a_worker_killed_mid_item_is_taken_over_then_fails_when_reruns_run_out(d: Deployment) -> None:
    _, owner = d.user("killed")
    (item_id,) = d.enqueue(owner, sleep_batch(4))
    d.wait_status(item_id, "in_progress")
    first = d.running_on(item_id)
    assert first.pid is not None
    os.kill(first.pid, signal.SIGKILL)
    # The lease expires, the reaper puts the item back, the other worker runs it to the end.
    second = None
    deadline = time.monotonic() + WAIT
    while second is None or second is first:
        assert time.monotonic() < deadline
        second = d.running_on(item_id)
    assert d.wait_status(item_id, "completed", "failed")["status"] == "completed"
    assert d.sql("SELECT attempts FROM session_queue WHERE item_id = :i", i=item_id).scalar() == 2
    d.replace_worker(first)

    # worker_lost_item_reruns=1: an item lost twice fails with a clear error instead of a third run.
    (doomed,) = d.enqueue(owner, sleep_batch(120))
    for _ in range(2):
        d.wait_status(doomed, "in_progress")
        victim = d.running_on(doomed)
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        deadline = time.monotonic() + WAIT
        while d.sql("SELECT worker_id FROM session_queue_leases WHERE item_id = :i", i=doomed).scalar() == (
            victim.worker_id
        ):
            assert time.monotonic() < deadline, "the reaper never took the item over"
            time.sleep(0.1)
        d.replace_worker(victim)
    failed = d.wait_status(doomed, "failed")
    assert failed["error_type"] == WORKER_LOST_ERROR
    assert "stopped before finishing it" in failed["error_message"]


def test_sigterm_hands_the_running_item_back_and_another_worker_takes_it(d: Deployment) -> None:
    _, owner = d.user("drain")
    (item_id,) = d.enqueue(owner, sleep_batch(60))
    d.wait_status(item_id, "in_progress")
    leaving = d.running_on(item_id)
    leaving.stop(timeout=30)  # SIGTERM: drains for worker_drain_seconds, then hands the item back
    row = d.sql("SELECT stopped_at FROM saas_workers WHERE worker_id = :w", w=leaving.worker_id).one()
    assert row.stopped_at is not None  # a clean exit
    taker = d.running_on(item_id)
    assert taker is not leaving
    assert d.sql("SELECT attempts FROM session_queue WHERE item_id = :i", i=item_id).scalar() == 1
    httpx.put(f"{d.a.url}/api/v1/queue/{Q}/i/{item_id}/cancel", headers=owner, timeout=30).raise_for_status()
    d.replace_worker(leaving)
