"""Every way of stopping a running item charges the time it ran, exactly once (issue 12, item 1).

In one process against a real PostgreSQL (``PostgresSessionQueue`` with the credit guard and the stop hook, no
runner): an item is claimed, its start is moved back N seconds on the database's clock (rather than waiting N
seconds), and each stop path of stock's queue API stops it. Then end to end through ``saas_web``'s routes with a
real worker: the studio's Cancel (``DELETE /i/{id}``), "Cancel and Clear All", cancel by item, batch and
destination, delete by destination, while a step-less node runs; the worker's own settlement when the run ends
afterwards changes nothing.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from invokeai.app.services.session_queue.session_queue_common import Batch, SessionQueueItem
from sqlalchemy import Engine

from invokeai_saas.config import SaasSettings
from invokeai_saas.credits.estimate import CreditEstimator
from invokeai_saas.credits.ledger import CreditLedger
from invokeai_saas.credits.periods import SubscriptionPeriods
from invokeai_saas.credits.plans import PlanService
from invokeai_saas.credits.settlement import CreditHoldGuard
from invokeai_saas.credits.stops import StopCharger
from invokeai_saas.devstack.web import InvokeAIWebServer
from invokeai_saas.services.session_queue.session_queue_postgres import PostgresSessionQueue
from tests.services.test_session_queue import add_graph
from tests.support.credits import (
    assert_charged_once,
    assert_stopping_again_changes_nothing,
    backdate_start,
    charged,
    item_entries,
    saas_user,
    set_balance,
    settled,
    usage,
)
from tests.support.queue_api import enqueue, sleep_batch, wait_for_status
from tests.test_credit_periods import _user
from tests.test_dispatch_queue import RecordingEvents, _start

Q = "default"
BALANCE = 100
RAN = 7.0  # seconds each stopped item has run


@pytest.fixture()
def ledger(pg_engine: Engine) -> CreditLedger:
    return CreditLedger(pg_engine)


def metered_queue(engine: Engine, ledger: CreditLedger) -> PostgresSessionQueue:
    """Stock's queue API on PostgreSQL as the credits plugin wires it: holds at enqueue, charges at stops."""
    settings = SaasSettings()
    estimator = CreditEstimator(settings.credit_estimate_overhead_seconds, settings.credit_estimate_step_seconds)
    queue = PostgresSessionQueue(engine)
    periods = SubscriptionPeriods(engine, ledger)
    queue.add_enqueue_guard(CreditHoldGuard(ledger, PlanService(engine), estimator, periods))
    queue.add_stop_hook(StopCharger(ledger))
    _start(queue, RecordingEvents())
    return queue


@pytest.fixture()
def queue(pg_engine: Engine, ledger: CreditLedger) -> PostgresSessionQueue:
    return metered_queue(pg_engine, ledger)


def start_running(engine: Engine, queue: PostgresSessionQueue, user_id: str, seconds: float) -> SessionQueueItem:
    """Enqueue one item (destination ``canvas``), claim it, and move its start ``seconds`` back."""
    batch = Batch(graph=add_graph(), runs=1, destination="canvas")
    (item_id,) = asyncio.run(queue.enqueue_batch(Q, batch, False, user_id)).item_ids
    claimed = queue.dequeue()
    assert claimed is not None and claimed.item_id == item_id and claimed.status == "in_progress"
    backdate_start(engine, item_id, seconds)
    return claimed


STOPS: dict[str, Callable[[PostgresSessionQueue, SessionQueueItem], Any]] = {
    "delete (the studio's Cancel)": lambda q, i: q.delete_queue_item(i.item_id),
    "clear (Cancel and Clear All)": lambda q, i: q.clear(Q, i.user_id),
    "cancel item": lambda q, i: q.cancel_queue_item(i.item_id),
    "cancel by batch": lambda q, i: q.cancel_by_batch_ids(Q, [i.batch_id], i.user_id),
    "cancel by destination": lambda q, i: q.cancel_by_destination(Q, "canvas", i.user_id),
    "cancel the whole queue": lambda q, i: q.cancel_by_queue_id(Q),
    "delete by destination": lambda q, i: q.delete_by_destination(Q, "canvas", i.user_id),
    "delete by ids (a running row deleted as it is)": lambda q, i: q.delete_queue_items_by_id([i.item_id]),
}


@pytest.mark.parametrize("path", list(STOPS))
def test_each_stop_path_charges_the_seconds_run_once(
    pg_engine: Engine, ledger: CreditLedger, queue: PostgresSessionQueue, path: str
) -> None:
    user_id = _user(pg_engine, f"stop-{abs(hash(path)) % 10**8}")
    set_balance(pg_engine, user_id, BALANCE)
    item = start_running(pg_engine, queue, user_id, RAN)
    STOPS[path](queue, item)
    record = assert_charged_once(pg_engine, item.item_id, RAN, f"{path}: the stopped item")
    balance = ledger.balance(user_id)
    assert (balance.available, balance.held, balance.debt) == (BALANCE - record.credits, 0, 0)

    # Stopping it again, pruning it, and the worker settling it when its run ends change nothing.
    assert_stopping_again_changes_nothing(
        ledger, user_id, item.item_id, balance, lambda: STOPS[path](queue, item), lambda: queue.prune(Q, user_id)
    )
    assert [kind for kind, _, _ in item_entries(pg_engine, item.item_id)] == ["hold", "settle", "release"]


def test_an_item_stopped_before_it_ran_or_failing_by_itself_is_not_charged_here(
    pg_engine: Engine, ledger: CreditLedger, queue: PostgresSessionQueue
) -> None:
    user_id = _user(pg_engine, "not-charged")
    set_balance(pg_engine, user_id, BALANCE)
    pending = asyncio.run(queue.enqueue_batch(Q, Batch(graph=add_graph()), False, user_id)).item_ids[0]
    queue.cancel_queue_item(pending)
    assert usage(pg_engine, pending) is None  # its hold is released by the backstop, nothing charged
    # A node that raised fails the item from inside its run: the worker's SessionCharger releases its hold.
    failing = start_running(pg_engine, queue, user_id, RAN)
    queue.fail_queue_item(failing.item_id, "ValueError", "bad input", "")
    assert usage(pg_engine, failing.item_id) is None


def test_a_stop_charges_at_most_what_the_user_can_pay(
    pg_engine: Engine, ledger: CreditLedger, queue: PostgresSessionQueue
) -> None:
    user_id = _user(pg_engine, "poor")
    set_balance(pg_engine, user_id, 3)
    item = start_running(pg_engine, queue, user_id, RAN)
    queue.delete_queue_item(item.item_id)
    assert usage(pg_engine, item.item_id).credits == 3
    balance = ledger.balance(user_id)
    assert (balance.available, balance.held, balance.debt) == (0, 0, 0)
    (settle,) = [details for kind, _, details in item_entries(pg_engine, item.item_id) if kind == "settle"]
    assert settle == {"stopped": "canceled", "measured_credits": settle["measured_credits"]}
    assert settle["measured_credits"] > math.ceil(RAN)  # what the time it ran would have cost


# region end to end: the routes of saas_web with a real worker


def _route_stop(web: InvokeAIWebServer, headers: dict[str, str], path: str, item: dict[str, Any]) -> httpx.Response:
    base, item_id = f"{web.url}/api/v1/queue/{Q}", item["item_id"]
    routes: dict[str, Callable[[], httpx.Response]] = {
        "DELETE /i/{id} (Cancel)": lambda: httpx.delete(f"{base}/i/{item_id}", headers=headers, timeout=30),
        "PUT /clear": lambda: httpx.put(f"{base}/clear", headers=headers, timeout=30),
        "PUT /i/{id}/cancel": lambda: httpx.put(f"{base}/i/{item_id}/cancel", headers=headers, timeout=30),
        "PUT /cancel_by_batch_ids": lambda: httpx.put(
            f"{base}/cancel_by_batch_ids", json={"batch_ids": [item["batch_id"]]}, headers=headers, timeout=30
        ),
        "PUT /cancel_by_destination": lambda: httpx.put(
            f"{base}/cancel_by_destination", params={"destination": "canvas"}, headers=headers, timeout=30
        ),
        "DELETE /d/{destination}": lambda: httpx.delete(f"{base}/d/canvas", headers=headers, timeout=30),
    }
    return routes[path]()


ROUTE_STOPS = [
    "DELETE /i/{id} (Cancel)",
    "PUT /clear",
    "PUT /i/{id}/cancel",
    "PUT /cancel_by_batch_ids",
    "PUT /cancel_by_destination",
    "DELETE /d/{destination}",
]


@pytest.mark.parametrize("path", ROUTE_STOPS)
def test_stopping_a_running_item_through_the_api_charges_the_time_it_ran_once(
    saas_web: InvokeAIWebServer, saas_db: Engine, capsys: pytest.CaptureFixture[str], path: str
) -> None:
    ledger = CreditLedger(saas_db)
    user_id, headers = saas_user(saas_web, "stopper")
    set_balance(saas_db, user_id, BALANCE)
    (item_id,) = enqueue(saas_web, headers, sleep_batch(60, destination="canvas"))
    item = wait_for_status(saas_web, headers, item_id, "in_progress")
    time.sleep(2.0)
    r = _route_stop(saas_web, headers, path, item)
    assert r.status_code == 200, r.text
    record = settled(saas_db, item_id)
    assert 2.0 <= record.seconds < 8 and record.credits == math.ceil(record.seconds)

    # The worker is free again (the run stopped) and, once it has ended the run, nothing more was charged.
    (probe,) = enqueue(saas_web, headers, sleep_batch(0))
    assert wait_for_status(saas_web, headers, probe, "completed", "failed")["status"] == "completed"
    settled(saas_db, probe)
    assert charged(saas_db, item_id) == record.credits
    balance = ledger.balance(user_id)
    probe_credits = usage(saas_db, probe).credits
    assert (balance.available, balance.held, balance.debt) == (BALANCE - record.credits - probe_credits, 0, 0)
    assert ledger.rebuild(user_id) == balance
    with capsys.disabled():
        print(f"\n{path}: ran {record.seconds:.2f} s, charged {record.credits} credits (once)")


# endregion
