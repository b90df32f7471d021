"""The worker's beat and the end of a run, step by step in one process against the real servers (the API's
``DispatchingSessionQueue`` and two workers' ``WorkerSessionQueue`` on PostgreSQL and moto SQS, as in
``test_dispatch_queue``); the same behaviour with real processes and restarted servers is in
``test_worker_faults``.

- The beat reads each held item's status with the lease renewal: deleted, canceled, failed elsewhere and taken
  over are told apart, each reported once; the worker's own end of a run is not a stop.
- A run that ends without its outcome written leaves no item claimed: it is handed back and runs again.
- A database outage is retried, then reported without the driver's text; other errors are not retried.
- An unhealthy worker is listed as such and not counted idle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from invokeai.app.services.session_queue.session_queue_common import SessionQueueItem
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import IntegrityError

from invokeai_saas.devstack import LocalStack
from invokeai_saas.dispatch.fleet import WorkerInfo, WorkerRegistry
from invokeai_saas.services.session_queue.session_queue_worker import StoppedElsewhere, WorkerSessionQueue
from invokeai_saas.worker.outage import DatabaseUnavailable, is_outage, retry_through_outage
from tests.test_dispatch_queue import Deployment, _deployment, _settings


@pytest.fixture()
def d(pg_engine: Engine, stack: LocalStack) -> Deployment:
    deployment = _deployment(pg_engine, _settings(stack))
    # Several of alice's items run at once on one worker here (Trial's running cap is one).
    deployment.sql("INSERT INTO user_scheduling (user_id, tier, max_running) VALUES ('alice', 0, 10)")
    return deployment


class Devices:
    """Processing threads of one worker, as stock runs one per device: each claims an item and keeps it (a
    thread's next dequeue would end its claim) until the test ends."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []

    def claim(self, worker: WorkerSessionQueue) -> SessionQueueItem:
        claimed: list[SessionQueueItem | None] = []
        ready = threading.Event()

        def run() -> None:
            claimed.append(worker.dequeue())
            ready.set()
            self._done.wait(30)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._threads.append(thread)
        assert ready.wait(30)
        (item,) = claimed
        assert item is not None
        return item

    def close(self) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join(5)


@pytest.fixture()
def devices() -> Iterator[Devices]:
    held = Devices()
    yield held
    held.close()


def _reasons(beat: list[StoppedElsewhere]) -> list[tuple[int, str, bool]]:
    return [(s.item_id, s.reason, s.first) for s in beat]


def test_the_beat_tells_deleted_canceled_failed_and_taken_over_apart(d: Deployment, devices: Devices) -> None:
    w0, _ = d.workers
    items = d.enqueue("alice", 4)
    assert sorted(devices.claim(w0).item_id for _ in items) == items
    assert w0.beat() == []  # all running, all renewed
    deleted, canceled, failed, taken = items
    d.sql("DELETE FROM session_queue WHERE item_id = :i", i=deleted)
    d.api.cancel_queue_item(canceled)
    # A spending-cap monitor in another process writes the row; no event reaches the worker.
    d.sql("UPDATE session_queue SET status = 'failed', error_type = 'OutOfCredits' WHERE item_id = :i", i=failed)
    d.sql("DELETE FROM session_queue_leases WHERE item_id = :i", i=taken)
    expected = [(deleted, "deleted"), (canceled, "canceled"), (failed, "failed"), (taken, "taken over")]
    assert sorted(_reasons(w0.beat())) == sorted((i, r, True) for i, r in expected)
    assert sorted(_reasons(w0.beat())) == sorted((i, r, False) for i, r in expected)  # reported once
    # The worker neither re-marks nor overwrites what was written elsewhere.
    assert d.item(failed).status == "failed" and d.item(failed).error_type == "OutOfCredits"


def test_a_delete_seen_canceled_first_is_reported_deleted_too(d: Deployment) -> None:
    w0, _ = d.workers
    (item_id,) = d.enqueue("alice")
    assert w0.dequeue() is not None
    d.api.cancel_queue_item(item_id)
    assert _reasons(w0.beat()) == [(item_id, "canceled", True)]
    d.sql("DELETE FROM session_queue WHERE item_id = :i", i=item_id)
    assert _reasons(w0.beat()) == [(item_id, "deleted", True)]


def test_the_workers_own_end_of_a_run_is_not_a_stop(d: Deployment, devices: Devices) -> None:
    w0, _ = d.workers
    failing, completing = d.enqueue("alice", 2)
    assert sorted(devices.claim(w0).item_id for _ in range(2)) == [failing, completing]
    w0.fail_queue_item(failing, "ValueError", "bad input", "")
    w0.complete_queue_item(completing)
    assert w0.beat() == []  # both ended here; the processor lets go at its next dequeue
    assert d.item(failing).status == "failed" and d.item(completing).status == "completed"


def test_a_run_that_ended_unrecorded_is_handed_back_and_runs_again(d: Deployment) -> None:
    w0, w1 = d.workers
    (item_id,) = d.enqueue("alice")
    assert w0.dequeue() is not None
    # The run ended without its outcome written (its writes ran out of retries): the processor asks for its
    # next item, and the item is not left in_progress under a dropped lease.
    w0.fail_queue_item(item_id, DatabaseUnavailable.__name__, "The database was unreachable.", "")
    assert d.item(item_id).status == "in_progress"  # an outage is not the item's failure
    # The processor asks for its next item: the unrecorded run is handed back (its message released), and the
    # item is claimed again rather than left in_progress under a dropped lease.
    again = w0.dequeue() or w1.dequeue()
    assert again is not None and again.item_id == item_id
    assert d.events.statuses(item_id) == ["in_progress", "pending", "in_progress"]
    assert d.sql("SELECT attempts FROM session_queue WHERE item_id = :i", i=item_id).scalar() == 2
    assert d.sql("SELECT count(*) FROM session_queue_leases WHERE item_id = :i", i=item_id).scalar() == 1


def test_an_outage_is_retried_then_reported_without_the_drivers_text() -> None:
    unreachable = create_engine(
        "postgresql+psycopg://nobody:secret@127.0.0.1:1/none", connect_args={"connect_timeout": 1}
    )
    attempts = 0

    def select_one() -> int:
        nonlocal attempts
        attempts += 1
        with unreachable.connect() as conn:
            return int(conn.execute(text("SELECT 1")).scalar_one())

    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as raised:
        retry_through_outage(select_one, 0.5, "testing")
    assert 0.3 < time.monotonic() - started < 3 and attempts >= 3
    assert str(raised.value) == "The database was unreachable while testing." and raised.value.__cause__ is None
    unreachable.dispose()


def test_a_statement_the_database_refuses_is_not_retried(pg_engine: Engine) -> None:
    attempts = 0

    def insert_twice() -> None:
        nonlocal attempts
        attempts += 1
        with pg_engine.begin() as conn:
            for _ in range(2):
                conn.execute(text("INSERT INTO users (user_id, email, password_hash) VALUES ('u', 'u@x', 'x')"))

    with pytest.raises(IntegrityError) as raised:
        retry_through_outage(insert_twice, 5, "testing")
    assert attempts == 1 and not is_outage(raised.value)


def test_an_unhealthy_worker_is_listed_as_such_and_not_counted_idle(pg_engine: Engine) -> None:
    registry = WorkerRegistry(pg_engine, lease_seconds=30)
    for worker_id in ("healthy", "sick"):
        registry.register(WorkerInfo(worker_id, "host", 1, "cpu", None, None, (0,)))
    registry.beat("sick", "unhealthy", None)
    assert {w.worker_id: w.state for w in registry.list()} == {"healthy": "idle", "sick": "unhealthy"}
    summary = registry.summary(paused=False)
    assert (summary.workers, summary.busy, summary.idle) == (2, 0, 1)
