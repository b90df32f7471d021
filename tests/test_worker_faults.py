"""A worker under faults, with real processes: one ``invokeai-web`` and one ``invokeai-saas worker`` on a PostgreSQL
and a Redis of their own (so the tests can stop and restart them), the session's moto SQS and SeaweedFS.

- **Redis down**: a cancel, or a fail written by another process (a spending-cap monitor writes the row), reaches
  the running item through the worker's beat, which reads the held items' status in the same statement as the
  lease renewal: the device stops within one beat, and the charge is the time until the cancel.
- **A deleted item** is stopped, logged once as deleted (not "taken over"), and the worker is free again.
- **PostgreSQL restarted as an item finishes**: the completion write is retried through the outage and the item
  completes; an outage long enough to kill stock's processing thread makes the worker unhealthy, hand the item
  back and restart the thread: the item runs again, is charged once, and the worker takes new work.

Beats are fast (0.5 s, lease 4 s) as in ``test_distributed_execution``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from invokeai_saas.db import migrate
from invokeai_saas.db.engine import sync_url
from invokeai_saas.devstack import LocalStack, PostgresServer, RedisServer
from invokeai_saas.devstack.group import start_together
from invokeai_saas.devstack.web import InvokeAIWebServer
from invokeai_saas.devstack.worker import InvokeAIWorker
from tests.support.browser import create_user
from tests.support.deployment import web_server, worker_process
from tests.support.invokeai import add_graph_batch, admin_token
from tests.support.servers import temporary_server

Q = "default"
WAIT = 90.0
BEAT = 0.5


@dataclass
class Faults:
    pg: PostgresServer
    redis: RedisServer
    web: InvokeAIWebServer
    worker: InvokeAIWorker
    engine: Engine
    admin: dict[str, str]
    files: Path

    def sql(self, statement: str, **params: Any) -> Any:
        with self.engine.begin() as conn:
            return conn.execute(text(statement), params)

    def user(self, name: str) -> tuple[str, dict[str, str]]:
        user_id, token = create_user(self.web.url, self.admin, f"{name}-{uuid.uuid4().hex[:6]}@example.com")
        return user_id, {"Authorization": f"Bearer {token}"}

    def enqueue(self, headers: dict[str, str], graph: dict[str, Any]) -> int:
        body = {"prepend": False, "batch": {"graph": graph, "runs": 1}}
        r = httpx.post(f"{self.web.url}/api/v1/queue/{Q}/enqueue_batch", json=body, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        (item_id,) = r.json()["item_ids"]
        return int(item_id)

    def row(self, item_id: int) -> Any:
        """The item's row, read straight from PostgreSQL (retried while the server restarts)."""
        deadline = time.monotonic() + WAIT
        while True:
            try:
                return self.sql("SELECT * FROM session_queue WHERE item_id = :i", i=item_id).one_or_none()
            except OperationalError:
                assert time.monotonic() < deadline, "PostgreSQL did not come back"
                time.sleep(0.1)

    def wait_status(self, item_id: int, *statuses: str, timeout: float = WAIT) -> Any:
        deadline = time.monotonic() + timeout
        while (row := self.row(item_id)) is None or row.status not in statuses:
            assert time.monotonic() < deadline, f"item {item_id} stayed {row.status if row else 'deleted'}"
            time.sleep(0.05)
        return row

    def worker_state(self) -> Any:
        return self.sql(
            "SELECT state, current_item_id FROM saas_workers WHERE worker_id = :w", w=self.worker.worker_id
        ).one()

    def wait_worker_free(self, timeout: float = WAIT) -> float:
        """Seconds until the worker's registry row holds no item."""
        start = time.monotonic()
        while self.worker_state().current_item_id is not None:
            assert time.monotonic() - start < timeout, "the worker kept the item"
            time.sleep(0.05)
        return time.monotonic() - start

    def usage(self, item_id: int, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while (usage := self.sql("SELECT * FROM credit_usage WHERE item_id = :i", i=item_id).first()) is None:
            assert time.monotonic() < deadline, f"item {item_id} was never settled"
            time.sleep(0.1)
        return usage

    def log(self) -> str:
        return self.worker.log_path.read_text(errors="replace")

    def completes_new_work(self, headers: dict[str, str]) -> None:
        body = add_graph_batch()
        r = httpx.post(f"{self.web.url}/api/v1/queue/{Q}/enqueue_batch", json=body, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        (item_id,) = r.json()["item_ids"]
        assert self.wait_status(item_id, "completed", "failed", timeout=60).status == "completed"


def sleep_graph(seconds: float) -> dict[str, Any]:
    return {"id": "sleep", "nodes": {"s": {"id": "s", "type": "saas_test_sleep", "seconds": seconds}}, "edges": []}


def node_value(row: Any) -> int:
    """The output of the item's one node, from the session the worker saved."""
    (result,) = json.loads(row.session)["results"].values()
    return int(result["value"])


@pytest.fixture(scope="module", name="f")
def faults(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faults]:
    with (
        temporary_server(lambda data_dir: PostgresServer(data_dir, durable=False), "saas-faults-pg-") as pg,
        temporary_server(lambda data_dir: RedisServer(data_dir, durable=False), "saas-faults-redis-") as redis,
    ):
        migrate.upgrade_url(pg.url)
        name = f"faults-{uuid.uuid4().hex[:8]}"
        settings: dict[str, Any] = {
            **{k: v for k, v in stack.saas_settings().items() if not k.startswith("stripe")},
            "enabled": True,
            "database_url": pg.url,
            "redis_url": redis.url,
            "s3_prefix": f"{name}/",
            "sqs_queue_prefix": name,
            "worker_heartbeat_seconds": BEAT,
            "worker_lease_seconds": 4,
            "worker_drain_seconds": 2,
        }
        web_root = tmp_path_factory.mktemp("faults-web")
        web = web_server(web_root, settings)
        worker = worker_process(
            tmp_path_factory.mktemp("faults-worker"),
            settings,
            web_root,
            worker_id=name,
            env={"INVOKEAI_LOG_LEVEL": "info"},  # the tests read what the worker says about each item
        )
        start_together([web, worker], timeout=400)
        # No pool: every statement of the test connects afresh, so a restarted server needs no reconnect logic.
        engine = create_engine(sync_url(pg.url), poolclass=NullPool, connect_args={"connect_timeout": 3})
        try:
            admin = {"Authorization": f"Bearer {admin_token(web.url)}"}
            yield Faults(pg, redis, web, worker, engine, admin, tmp_path_factory.mktemp("faults-files"))
        finally:
            worker.stop(timeout=30)
            web.stop(timeout=30)
            engine.dispose()


@pytest.fixture()
def redis_down(f: Faults) -> Iterator[None]:
    f.redis.stop()
    try:
        yield
    finally:
        f.redis.start()


# region Redis down: the beat stops what was stopped elsewhere


@pytest.mark.parametrize("how", ["cancel", "fail"])
def test_with_redis_down_a_stop_elsewhere_stops_the_device_within_one_beat(
    f: Faults, redis_down: None, how: str
) -> None:
    _, owner = f.user(f"redis-{how}")
    item_id = f.enqueue(owner, sleep_graph(30))
    f.wait_status(item_id, "in_progress")
    time.sleep(1.0)
    if how == "cancel":
        r = httpx.put(f"{f.web.url}/api/v1/queue/{Q}/i/{item_id}/cancel", headers=owner, timeout=30)
        assert r.status_code == 200, r.text
    else:
        # What a spending-cap monitor in another process does: the row says failed, no event is needed.
        f.sql(
            "UPDATE session_queue SET status = 'failed', error_type = 'OutOfCredits', error_message = 'cap', "
            "status_sequence = status_sequence + 1, completed_at = now() WHERE item_id = :i",
            i=item_id,
        )
    ran_until_stop = f.sql(
        "SELECT extract(epoch FROM clock_timestamp() - started_at) FROM session_queue WHERE item_id = :i", i=item_id
    ).scalar()
    # The node saved how long it waited (20 ms slices) once it stopped: the device ran about one beat past it.
    usage = f.usage(item_id) if how == "cancel" else None
    row = f.wait_status(item_id, "canceled", "failed")
    deadline = time.monotonic() + 30
    while json.loads(row.session)["results"] == {}:
        assert time.monotonic() < deadline, "the worker never saved the stopped session"
        time.sleep(0.1)
        row = f.row(item_id)
    device_seconds = node_value(row) * 0.02
    print(f"redis down, {how} {ran_until_stop:.2f}s in: node ran {device_seconds:.2f}s", end="")
    assert device_seconds < float(ran_until_stop) + BEAT + 0.5, "the device went on after the stop"
    # Its final status is the one written elsewhere, not overwritten by the worker.
    assert row.status == ("canceled" if how == "cancel" else "failed")
    if how == "fail":
        assert row.error_type == "OutOfCredits"
    if usage is not None:
        print(f"; charged {usage.credits} credits for {usage.seconds:.2f}s")
        assert usage.seconds < float(ran_until_stop) + BEAT + 1.0
        assert usage.credits <= int(float(ran_until_stop) + BEAT + 1.0) + 1
    f.wait_worker_free(timeout=10)
    f.completes_new_work(owner)


def test_a_deleted_item_is_stopped_logged_once_as_deleted_and_the_worker_is_free(f: Faults, redis_down: None) -> None:
    _, owner = f.user("deleted")
    # A node that never checks for cancellation (3 s of CPU): the worker can only stop the item when it returns, so
    # it sees the deletion on several beats and must report it once.
    graph = {
        "id": "spin",
        "nodes": {"spin": {"id": "spin", "type": "saas_test_spin", "milliseconds": 3000}},
        "edges": [],
    }
    item_id = f.enqueue(owner, graph)
    deadline = time.monotonic() + WAIT
    while f.worker_state().current_item_id != item_id:
        assert time.monotonic() < deadline, "the worker never reported the item"
        time.sleep(0.05)
    r = httpx.delete(f"{f.web.url}/api/v1/queue/{Q}/i/{item_id}", headers=owner, timeout=30)
    assert r.status_code == 200, r.text
    assert f.row(item_id) is None
    freed = f.wait_worker_free(timeout=30)
    print(f"deleted item: worker free {freed:.2f}s after the delete")
    assert freed < 30  # the spin's 3 s of CPU time on a busy machine
    log = f.log()
    assert log.count(f"Queue item {item_id} was deleted; stopping it here") == 1
    assert f"Lost the lease on queue item {item_id}" not in log
    f.completes_new_work(owner)


# endregion

# region PostgreSQL restarted as an item finishes


def _gate_graph(f: Faults) -> tuple[dict[str, Any], Path, Path]:
    tag = uuid.uuid4().hex[:8]
    reached, release = f.files / f"{tag}.reached", f.files / f"{tag}.release"
    node = {"id": "g", "type": "saas_test_gate", "reached_file": str(reached), "release_file": str(release)}
    return {"id": "gate", "nodes": {"g": node}, "edges": []}, reached, release


def _wait_file(path: Path) -> None:
    deadline = time.monotonic() + WAIT
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


class _StateWatcher:
    """Records every state ``GET /api/v1/saas/workers`` shows for the worker (polled through the restart)."""

    def __init__(self, f: Faults) -> None:
        self._f = f
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self._f.web.url, headers=self._f.admin, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    r = client.get("/api/v1/saas/workers")
                except httpx.HTTPError:
                    r = None
                if r is not None and r.status_code == 200:
                    self.seen.update(w["state"] for w in r.json() if w["worker_id"] == self._f.worker.worker_id)
                self._stop.wait(0.02)

    def stop(self) -> set[str]:
        self._stop.set()
        self._thread.join(5)
        return self.seen


def test_postgres_restarted_as_an_item_finishes_the_item_completes(f: Faults) -> None:
    user_id, owner = f.user("pg-restart")
    graph, reached, release = _gate_graph(f)
    item_id = f.enqueue(owner, graph)
    _wait_file(reached)
    reached_at = down = time.monotonic()
    f.pg.stop()
    release.touch()  # the node returns now: its completion write meets a stopped server
    released_at = time.monotonic()
    time.sleep(2.0)  # the outage itself: a restart that takes a while, shorter than the lease
    f.pg.start()
    back = time.monotonic()
    row = f.wait_status(item_id, "completed", "failed", "canceled", timeout=60)
    completed_after = time.monotonic() - back
    print(f"PostgreSQL down {back - down:.2f}s; the item completed {completed_after:.2f}s after it was back", end="")
    assert row.status == "completed", (row.error_type, row.error_message)
    assert row.attempts == 1 and node_value(row) == 1  # the first run's result, not a rerun
    usage = f.usage(item_id)
    print(f"; charged {usage.credits} credits for {usage.seconds:.2f}s")
    assert f.sql("SELECT count(*) FROM credit_usage WHERE item_id = :i", i=item_id).scalar() == 1
    assert usage.user_id == user_id
    # The run is measured to its last node's end: the seconds its completion write waited out the outage (at least
    # 2) are not billed (1 s of slack: the session starts before the node writes its file).
    assert usage.seconds <= released_at - reached_at + 1.0, (usage.seconds, released_at - reached_at)
    assert "Fatal Error in session processor" not in f.log()
    f.completes_new_work(owner)


def test_a_longer_outage_kills_the_processing_thread_and_the_worker_recovers(f: Faults) -> None:
    """Down longer than two retry budgets: stock's processor thread dies on its failure write. The worker reports
    unhealthy, hands the item back and restarts the thread; the item runs again and is charged once."""
    _, owner = f.user("pg-long")
    graph, reached, release = _gate_graph(f)
    item_id = f.enqueue(owner, graph)
    _wait_file(reached)
    watcher = _StateWatcher(f)
    f.pg.stop()
    release.touch()
    deadline = time.monotonic() + 60
    while "Fatal Error in session processor" not in f.log():
        assert time.monotonic() < deadline, "the processing thread did not die"
        time.sleep(0.1)
    f.pg.start()
    back = time.monotonic()
    try:
        row = f.wait_status(item_id, "completed", "failed", "canceled", timeout=60)
    finally:
        states = watcher.stop()
    print(f"the item completed {time.monotonic() - back:.2f}s after PostgreSQL was back; states seen {states}")
    assert row.status == "completed", (row.error_type, row.error_message)
    assert row.attempts == 2 and node_value(row) == 2  # the second run's result
    f.usage(item_id)
    assert f.sql("SELECT count(*) FROM credit_usage WHERE item_id = :i", i=item_id).scalar() == 1
    log = f.log()
    assert "died; this worker reports itself unhealthy" in log and "restarted" in log
    assert "unhealthy" in states
    f.completes_new_work(owner)


# endregion
