"""A hold is a spending cap, and every plan caps the run time of an item (issue 12, item 2).

Measured before: a user with 500 credits ran two 280-second step-less items, each held at 1 credit, and ended at
-62. Here, scaled down:

- the decision alone (``cap_stops``): an item stops when its cost reaches its hold plus the available balance, the
  balance shared by the owner's running items; at its plan's ``max_run_seconds``; not for the balance on a plan
  that allows debt;
- the pass in one process against PostgreSQL (``SpendingCap`` with the metered queue; runs are made N seconds long
  by moving their start back on the database's clock): the item fails with a clear message and is charged exactly
  what could be paid, the balance ends at 0, never below;
- end to end through ``saas_web``: a step-less node held at 1 credit runs on the worker until the API process's
  pass stops it at hold + balance, and the worker is free again at once.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest
from sqlalchemy import Engine, text

from invokeai_saas.credits.cap import CapStop, RunningItem, SpendingCap, cap_stops
from invokeai_saas.credits.ledger import CreditLedger, Usage
from invokeai_saas.credits.stops import OUT_OF_CREDITS, RUN_TIME_LIMIT
from invokeai_saas.devstack.web import InvokeAIWebServer
from invokeai_saas.services.session_queue.session_queue_postgres import PostgresSessionQueue
from tests.support.credits import (
    charged,
    saas_user,
    set_balance,
    set_overrides,
    set_plan,
    settled,
    usage,
)
from tests.support.queue_api import enqueue, sleep_batch, wait_for_status
from tests.test_credit_periods import _user
from tests.test_credit_stops import metered_queue, start_running

Q = "default"


def _running(item_id: int, seconds: float, held: int = 1, user_id: str = "u", **plan: object) -> RunningItem:
    values: dict[str, object] = {"multiplier": 1.0, "max_run_seconds": 600.0, "allow_debt": False, "plan": "Trial"}
    values.update(plan)
    return RunningItem(item_id=item_id, user_id=user_id, seconds=seconds, held=held, **values)  # type: ignore[arg-type]


def _kinds(stops: list[CapStop]) -> dict[int, str]:
    return {stop.item_id: stop.error_type for stop in stops}


# region the decision


def test_an_item_stops_when_its_cost_reaches_its_hold_plus_the_balance() -> None:
    assert cap_stops([_running(1, 2.9)], {"u": 2}) == []
    assert _kinds(cap_stops([_running(1, 3.0)], {"u": 2})) == {1: OUT_OF_CREDITS}
    assert _kinds(cap_stops([_running(1, 1.6, multiplier=2.0)], {"u": 2})) == {1: OUT_OF_CREDITS}  # 3.2 credits
    assert _kinds(cap_stops([_running(1, 1.0)], {"u": -5})) == {1: OUT_OF_CREDITS}  # in debt: the hold, no more
    (stop,) = cap_stops([_running(1, 3.0)], {"u": 2})
    assert stop.message.startswith("Out of credits: stopped after 3 seconds")
    assert "1 credits held for it and 2 available" in stop.message and "/api/v1/saas/plans" in stop.message


def test_running_items_of_one_owner_share_the_balance() -> None:
    # Each is within hold + balance alone; together they spent the balance: both stop.
    both = [_running(1, 3.0), _running(2, 2.0)]
    assert cap_stops(both, {"u": 4}) == []
    assert _kinds(cap_stops([_running(1, 3.0), _running(2, 3.0)], {"u": 4})) == {1: OUT_OF_CREDITS, 2: OUT_OF_CREDITS}
    # One still within its own hold goes on; other owners are not touched.
    mixed = [_running(1, 5.0), _running(2, 0.5, held=3), _running(3, 50.0, user_id="rich")]
    assert _kinds(cap_stops(mixed, {"u": 4, "rich": 1000})) == {1: OUT_OF_CREDITS}


def test_the_plans_longest_run_stops_any_item_and_debt_plans_are_not_capped_by_the_balance() -> None:
    (stop,) = cap_stops([_running(1, 4.0, held=100, max_run_seconds=4.0)], {"u": 1000})
    assert stop.error_type == RUN_TIME_LIMIT
    assert stop.message.startswith("Run time limit: stopped after 4 seconds. Trial lets one item run at most 4")
    assert cap_stops([_running(1, 900.0, allow_debt=True, max_run_seconds=3600.0)], {"u": 0}) == []
    assert _kinds(cap_stops([_running(1, 3600.0, allow_debt=True, max_run_seconds=3600.0)], {"u": 0})) == {
        1: RUN_TIME_LIMIT
    }


# endregion

# region the pass, in one process


@pytest.fixture()
def ledger(pg_engine: Engine) -> CreditLedger:
    return CreditLedger(pg_engine)


@pytest.fixture()
def queue(pg_engine: Engine, ledger: CreditLedger) -> PostgresSessionQueue:
    return metered_queue(pg_engine, ledger)


def test_the_pass_fails_an_item_at_hold_plus_balance_and_charges_exactly_that(
    pg_engine: Engine, ledger: CreditLedger, queue: PostgresSessionQueue
) -> None:
    user_id = _user(pg_engine, "capped")
    set_balance(pg_engine, user_id, 5)
    cap = SpendingCap(pg_engine, queue)
    item = start_running(pg_engine, queue, user_id, 3.0)  # held 1: 4 credits available beside it
    assert cap.run_once() == []
    with pg_engine.begin() as conn:  # 5.2 s in: its cost reached 1 + 4
        conn.execute(
            text("UPDATE session_queue SET started_at = clock_timestamp() - interval '5.2 seconds' WHERE item_id = :i"),
            {"i": item.item_id},
        )
    (stop,) = cap.run_once()
    assert (stop.item_id, stop.error_type) == (item.item_id, OUT_OF_CREDITS)
    failed = queue.get_queue_item(item.item_id)
    assert (failed.status, failed.error_type) == ("failed", OUT_OF_CREDITS)
    assert failed.error_message is not None and failed.error_message.startswith("Out of credits")
    assert usage(pg_engine, item.item_id).credits == 5 == charged(pg_engine, item.item_id)
    balance = ledger.balance(user_id)
    assert (balance.available, balance.held, balance.debt) == (0, 0, 0)
    # The worker's own settlement when the run ends (6 s measured) changes nothing; a second pass neither.
    assert ledger.settle(user_id, item.item_id, 6, Usage(seconds=6.0, gpu_tier="standard")).already_settled
    assert cap.run_once() == []
    assert ledger.balance(user_id) == balance == ledger.rebuild(user_id)


def test_two_running_items_end_at_exactly_zero(
    pg_engine: Engine, ledger: CreditLedger, queue: PostgresSessionQueue, capsys: pytest.CaptureFixture[str]
) -> None:
    """The measured scenario in small: two step-less items held at 1 credit each, a balance for 6 seconds."""
    user_id = _user(pg_engine, "two-long")
    set_balance(pg_engine, user_id, 6)
    first = start_running(pg_engine, queue, user_id, 4.5)
    second = start_running(pg_engine, queue, user_id, 2.5)
    stops = SpendingCap(pg_engine, queue).run_once()
    assert _kinds(stops) == {first.item_id: OUT_OF_CREDITS, second.item_id: OUT_OF_CREDITS}
    charges = [charged(pg_engine, first.item_id), charged(pg_engine, second.item_id)]
    balance = ledger.balance(user_id)
    assert sum(charges) == 6 and (balance.available, balance.held, balance.debt) == (0, 0, 0)
    assert ledger.rebuild(user_id) == balance
    with capsys.disabled():
        print(f"\ntwo capped items (balance 6): charged {charges}, final balance {balance.available}")


def test_an_item_past_its_plans_longest_run_fails_and_is_charged_its_time(
    pg_engine: Engine, ledger: CreditLedger, queue: PostgresSessionQueue
) -> None:
    user_id = _user(pg_engine, "long-run")
    set_balance(pg_engine, user_id, 100)
    set_overrides(pg_engine, user_id, '{"max_run_seconds": 4}')
    item = start_running(pg_engine, queue, user_id, 4.2)
    (stop,) = SpendingCap(pg_engine, queue).run_once()
    assert (stop.item_id, stop.error_type) == (item.item_id, RUN_TIME_LIMIT)
    failed = queue.get_queue_item(item.item_id)
    assert (failed.status, failed.error_type) == ("failed", RUN_TIME_LIMIT)
    assert "at most 4 seconds" in (failed.error_message or "")
    record = usage(pg_engine, item.item_id)
    assert record.seconds >= 4.2 and record.credits == math.ceil(record.seconds)
    assert ledger.balance(user_id).available == 100 - record.credits


def test_a_plan_that_allows_debt_is_not_capped_by_the_balance(
    pg_engine: Engine, ledger: CreditLedger, queue: PostgresSessionQueue
) -> None:
    user_id = _user(pg_engine, "postpaid")
    set_plan(pg_engine, user_id, "enterprise")
    set_balance(pg_engine, user_id, 2)
    item = start_running(pg_engine, queue, user_id, 10.0)
    assert SpendingCap(pg_engine, queue).run_once() == []
    queue.cancel_queue_item(item.item_id)
    record = usage(pg_engine, item.item_id)
    balance = ledger.balance(user_id)
    assert record.credits == math.ceil(record.seconds) >= 11
    assert (balance.debt, balance.available) == (record.credits - 2, 2 - record.credits)


def test_completed_work_is_charged_at_most_what_can_be_paid_unless_the_plan_allows_debt(
    pg_engine: Engine, ledger: CreditLedger
) -> None:
    """The worker's settlement of a run that ended between two passes: capped the same way."""
    poor = _user(pg_engine, "poor-completion")
    set_balance(pg_engine, poor, 3)
    ledger.hold(poor, [(1, 1)])
    assert ledger.settle(poor, 1, 9, Usage(9.0, "standard"), limit_to_balance=True).charged == 3
    assert ledger.balance(poor).available == 0 and ledger.balance(poor).debt == 0
    assert ledger.rebuild(poor) == ledger.balance(poor)


def test_the_cap_leaves_items_already_charged_alone(
    pg_engine: Engine, ledger: CreditLedger, queue: PostgresSessionQueue
) -> None:
    user_id = _user(pg_engine, "charged-already")
    set_balance(pg_engine, user_id, 1)
    item = start_running(pg_engine, queue, user_id, 30.0)
    ledger.settle(user_id, item.item_id, 1, Usage(1.0, "standard"))
    assert SpendingCap(pg_engine, queue).run_once() == []


@pytest.mark.parametrize(
    ("error_type", "stops"), [(OUT_OF_CREDITS, True), (RUN_TIME_LIMIT, True), ("ValueError", False)]
)
def test_stocks_processor_stops_a_run_the_cap_failed(error_type: str, stops: bool) -> None:
    """Where the API process runs graphs itself (no SQS), stock's processor thread is stopped by the status event:
    stock stops a run only on ``canceled``; the patch adds the cap's failures (a run's own failure is left alone)."""
    from invokeai.app.services.events.events_common import QueueItemStatusChangedEvent
    from invokeai.app.services.session_processor.session_processor_default import (
        DefaultSessionProcessor,
        DefaultSessionRunner,
        _SessionWorker,
    )
    from invokeai.app.services.session_queue.session_queue_common import SessionQueueItem

    from invokeai_saas.patches import session_processor_failed_stops

    session_processor_failed_stops.apply([OUT_OF_CREDITS, RUN_TIME_LIMIT])
    processor = DefaultSessionProcessor(session_runner=DefaultSessionRunner())
    running, idle = _SessionWorker(None, processor.session_runner), _SessionWorker(None, processor.session_runner)
    running.queue_item = SessionQueueItem.model_construct(item_id=7)
    processor._workers = [idle, running]
    processor._poll_now_event = threading.Event()
    event = QueueItemStatusChangedEvent.model_construct(item_id=7, status="failed", error_type=error_type)
    asyncio.run(processor._on_queue_item_status_changed(("queue_item_status_changed", event)))
    assert running.cancel_event.is_set() is stops and not idle.cancel_event.is_set()
    assert processor._poll_now_event.is_set()  # stock's own handling still ran


# endregion

# region end to end


def test_a_step_less_item_held_at_1_credit_stops_at_hold_plus_balance_on_the_worker(
    saas_web: InvokeAIWebServer, saas_db: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = CreditLedger(saas_db)
    user_id, headers = saas_user(saas_web, "cap")
    set_balance(saas_db, user_id, 3)
    (item_id,) = enqueue(saas_web, headers, sleep_batch(60))
    assert ledger.balance(user_id).held == 1  # a step-less node: the estimate is the overhead alone
    item = wait_for_status(saas_web, headers, item_id, "failed", "completed", "canceled")
    assert (item["status"], item["error_type"]) == ("failed", OUT_OF_CREDITS), item
    assert item["error_message"].startswith("Out of credits") and "Traceback" not in str(item)
    record = settled(saas_db, item_id)
    assert record.credits == 3
    # The worker stopped the run: an item enqueued now (by someone with credits) runs at once, not after the node.
    started = time.monotonic()
    _, other = saas_user(saas_web, "after-cap")
    (probe,) = enqueue(saas_web, other, sleep_batch(0))
    assert wait_for_status(saas_web, other, probe, "completed", "failed")["status"] == "completed"
    assert time.monotonic() - started < 20
    balance = ledger.balance(user_id)
    assert (balance.available, balance.held, balance.debt) == (0, 0, 0)
    assert charged(saas_db, item_id) == 3 and ledger.rebuild(user_id) == balance
    with capsys.disabled():
        print(f"\ncapped on the worker: ran {record.seconds:.2f} s, charged {record.credits}, final balance 0")


# endregion
