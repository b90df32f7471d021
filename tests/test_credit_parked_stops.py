"""A workflow-call parent is charged every segment it ran, whichever way it ends, exactly once (issue 12, item 1).

A parent runs until its ``call_saved_workflow`` node queues a child, then parks (``waiting``) while the child runs,
is resumed (``pending``), claimed again (which restamps ``started_at``) and runs on. Before the fix, a stop charged
``started_at`` to the stop alone: a parent stopped while parked was never charged the seconds it had run (its hold
was released by the backstop), and a resumed parent stopped or completed was charged its last segment only.

In one process against a real PostgreSQL: stock's queue API on ``PostgresSessionQueue`` with the credit guard and
the stop hook as the credits plugin wires them; the runner's steps (record the call, queue the child, park) are
driven as stock's runner does them, and each segment's start is moved back on the database's clock instead of
waiting. The child is an item of its own: it is held, and charged for what it ran, separately.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import pytest
from invokeai.app.services.session_queue.session_queue_common import Batch, SessionQueueItem
from invokeai.app.services.shared.graph import GraphExecutionState
from sqlalchemy import Engine, text

from invokeai_saas.config import SaasSettings
from invokeai_saas.credits.cap import SpendingCap
from invokeai_saas.credits.estimate import CreditEstimator
from invokeai_saas.credits.ledger import CreditLedger
from invokeai_saas.credits.plans import PlanService
from invokeai_saas.credits.settlement import SessionCharger, release_unsettled
from invokeai_saas.services.session_queue.session_queue_postgres import PostgresSessionQueue
from tests.services.test_session_queue import add_graph
from tests.support.credits import (
    assert_charged_once,
    assert_stopping_again_changes_nothing,
    backdate_start,
    item_entries,
    set_balance,
    set_overrides,
    usage,
)
from tests.support.workflow_calls import park_on_a_call
from tests.test_credit_periods import _user
from tests.test_credit_stops import metered_queue

Q = "default"
BALANCE = 100
EARLIER = 7.0  # seconds the parent ran before it parked for its child


@pytest.fixture()
def ledger(pg_engine: Engine) -> CreditLedger:
    return CreditLedger(pg_engine)


@pytest.fixture()
def queue(pg_engine: Engine, ledger: CreditLedger) -> PostgresSessionQueue:
    return metered_queue(pg_engine, ledger)


def parked_parent(
    engine: Engine, queue: PostgresSessionQueue, user_id: str, ran: float = EARLIER
) -> tuple[SessionQueueItem, SessionQueueItem]:
    """A parent (destination ``canvas``) that ran ``ran`` seconds, called a saved workflow and parked; its child is
    pending. Returns (parent, child)."""
    batch = Batch(graph=add_graph(), runs=1, destination="canvas")
    (parent_id,) = asyncio.run(queue.enqueue_batch(Q, batch, False, user_id)).item_ids
    parent = queue.dequeue()
    assert parent is not None and parent.item_id == parent_id
    backdate_start(engine, parent_id, ran)
    park_on_a_call(parent)
    child = queue.enqueue_workflow_call_child(parent, GraphExecutionState(graph=add_graph(a=7)))
    queue.suspend_queue_item(parent_id, queue_item=parent)
    assert queue.get_queue_item(parent_id).status == "waiting" and child.status == "pending"
    return parent, child


def _claim(queue: PostgresSessionQueue, item_id: int) -> SessionQueueItem:
    """Claim the next item, which must be ``item_id``."""
    claimed = queue.dequeue()
    assert claimed is not None and claimed.item_id == item_id
    return claimed


def _run_child_to_completion(engine: Engine, queue: PostgresSessionQueue, child: SessionQueueItem) -> None:
    _claim(queue, child.item_id)
    queue.complete_queue_item(child.item_id)


def _resumed_parent(engine: Engine, queue: PostgresSessionQueue, name: str) -> SessionQueueItem:
    """A new user's parked parent whose child ran to completion, resumed (pending again)."""
    user_id = _user(engine, name)
    set_balance(engine, user_id, BALANCE)
    parent, child = parked_parent(engine, queue, user_id)
    _run_child_to_completion(engine, queue, child)
    queue.resume_queue_item(parent.item_id)
    return parent


PARKED_STOPS: dict[str, Callable[[PostgresSessionQueue, SessionQueueItem, SessionQueueItem], Any]] = {
    "delete the parent (the studio's Cancel)": lambda q, p, c: q.delete_queue_item(p.item_id),
    "delete the child (its chain goes with it)": lambda q, p, c: q.delete_queue_item(c.item_id),
    "clear (Cancel and Clear All)": lambda q, p, c: q.clear(Q, p.user_id),
    "cancel the parent": lambda q, p, c: q.cancel_queue_item(p.item_id),
    "cancel the child (its chain goes with it)": lambda q, p, c: q.cancel_queue_item(c.item_id),
    "cancel by batch": lambda q, p, c: q.cancel_by_batch_ids(Q, [p.batch_id], p.user_id),
    "cancel by destination": lambda q, p, c: q.cancel_by_destination(Q, "canvas", p.user_id),
    "cancel the whole queue": lambda q, p, c: q.cancel_by_queue_id(Q),
    "delete by destination": lambda q, p, c: q.delete_by_destination(Q, "canvas", p.user_id),
    "delete by ids": lambda q, p, c: q.delete_queue_items_by_id([p.item_id, c.item_id]),
}


@pytest.mark.parametrize("path", list(PARKED_STOPS))
def test_a_parent_stopped_while_parked_is_charged_the_segments_it_ran_once(
    pg_engine: Engine, ledger: CreditLedger, queue: PostgresSessionQueue, path: str
) -> None:
    user_id = _user(pg_engine, f"parked-{abs(hash(path)) % 10**8}")
    set_balance(pg_engine, user_id, BALANCE)
    parent, child = parked_parent(pg_engine, queue, user_id)
    PARKED_STOPS[path](queue, parent, child)

    record = assert_charged_once(pg_engine, parent.item_id, EARLIER, "the parent")
    assert usage(pg_engine, child.item_id) is None  # the child never ran: nothing charged, its hold released
    release_unsettled(pg_engine, ledger)  # (the backstop's pass; young holds are left alone)
    with pg_engine.begin() as conn:
        conn.execute(text("UPDATE credit_holds SET created_at = created_at - interval '1 minute'"))
    release_unsettled(pg_engine, ledger)
    balance = ledger.balance(user_id)
    assert (balance.available, balance.held, balance.debt) == (BALANCE - record.credits, 0, 0)
    (settle,) = [details for kind, _, details in item_entries(pg_engine, parent.item_id) if kind == "settle"]
    assert settle == {"stopped": settle["stopped"], "parked": True}

    # Stopping it again, pruning, and a late settlement change nothing.
    assert_stopping_again_changes_nothing(
        ledger,
        user_id,
        parent.item_id,
        balance,
        lambda: PARKED_STOPS[path](queue, parent, child),
        lambda: queue.prune(Q, user_id),
    )


def test_a_resumed_parent_not_yet_claimed_is_charged_its_earlier_segments(
    pg_engine: Engine, ledger: CreditLedger, queue: PostgresSessionQueue
) -> None:
    parent = _resumed_parent(pg_engine, queue, "resumed-pending")
    assert queue.get_queue_item(parent.item_id).status == "pending"
    queue.cancel_by_batch_ids(Q, [parent.batch_id], parent.user_id)
    assert_charged_once(pg_engine, parent.item_id, EARLIER, "the parent")


def test_a_resumed_parent_stopped_while_running_is_charged_every_segment(
    pg_engine: Engine, ledger: CreditLedger, queue: PostgresSessionQueue
) -> None:
    """Before the fix: the last segment alone (3 s), the 7 s before the call free."""
    parent = _resumed_parent(pg_engine, queue, "resumed-running")
    _claim(queue, parent.item_id)
    backdate_start(pg_engine, parent.item_id, 3.0)
    queue.delete_queue_item(parent.item_id)
    record = assert_charged_once(pg_engine, parent.item_id, EARLIER + 3.0, "the parent")
    (settle,) = [details for kind, _, details in item_entries(pg_engine, parent.item_id) if kind == "settle"]
    assert settle == {"stopped": "canceled"}
    assert record.seconds >= EARLIER + 3.0


def test_a_parent_its_child_completes_while_parked_is_charged_its_segments(
    pg_engine: Engine, ledger: CreditLedger, queue: PostgresSessionQueue
) -> None:
    """When the call is the parent's last node, stock's runner completes the parent straight from ``waiting`` in the
    child's run: no runner of the parent's own settles it."""
    user_id = _user(pg_engine, "completed-parked")
    set_balance(pg_engine, user_id, BALANCE)
    parent, child = parked_parent(pg_engine, queue, user_id)
    _run_child_to_completion(pg_engine, queue, child)
    waiting = queue.get_queue_item(parent.item_id)
    assert waiting.status == "waiting"
    queue.complete_queue_item(parent.item_id, queue_item=waiting)
    assert_charged_once(pg_engine, parent.item_id, EARLIER, "the parent")
    (settle,) = [details for kind, _, details in item_entries(pg_engine, parent.item_id) if kind == "settle"]
    assert settle == {"stopped": "completed", "parked": True}


def test_the_runner_settles_a_resumed_parent_for_every_segment_whichever_process_resumes_it(
    pg_engine: Engine, ledger: CreditLedger, queue: PostgresSessionQueue
) -> None:
    """The runner's settlement (``SessionCharger``) of a resumed parent adds the segments the queue recorded when it
    parked, so a process that never saw the earlier segments (another worker, a restarted one) charges them too."""
    parent = _resumed_parent(pg_engine, queue, "runner-settles")
    resumed = _claim(queue, parent.item_id)

    settings = SaasSettings()
    estimator = CreditEstimator(settings.credit_estimate_overhead_seconds, settings.credit_estimate_step_seconds)
    charger = SessionCharger(pg_engine, ledger, PlanService(pg_engine), estimator)  # a fresh process's charger
    charger.on_before_run_session(resumed)
    completed = queue.complete_queue_item(parent.item_id, queue_item=resumed)
    charger.on_after_run_session(completed)
    record = assert_charged_once(pg_engine, parent.item_id, EARLIER, "the parent")
    assert record.credits == math.ceil(record.seconds) >= EARLIER


def test_the_run_time_limit_counts_a_resumed_parents_earlier_segments(
    pg_engine: Engine, ledger: CreditLedger, queue: PostgresSessionQueue
) -> None:
    user_id = _user(pg_engine, "capped-parent")
    set_balance(pg_engine, user_id, BALANCE)
    set_overrides(pg_engine, user_id, '{"max_run_seconds": 5}')
    parent, child = parked_parent(pg_engine, queue, user_id)
    _run_child_to_completion(pg_engine, queue, child)
    queue.resume_queue_item(parent.item_id)
    _claim(queue, parent.item_id)
    (stop,) = SpendingCap(pg_engine, queue).run_once()
    assert stop.item_id == parent.item_id and stop.error_type == "RunTimeLimitExceeded"
    assert_charged_once(pg_engine, parent.item_id, EARLIER, "the parent")


@pytest.mark.parametrize("path", ["cancel all except current", "delete all except current"])
def test_all_except_current_charges_a_parked_parent_outside_the_running_chains(
    pg_engine: Engine, ledger: CreditLedger, queue: PostgresSessionQueue, path: str
) -> None:
    """With another item running, a parked parent whose child is still pending is not part of a running chain:
    "all except current" stops it, and it is charged its earlier segments; the running item goes on."""
    user_id = _user(pg_engine, f"except-{path.split()[0]}")
    set_balance(pg_engine, user_id, BALANCE)
    parent, child = parked_parent(pg_engine, queue, user_id)
    batch = Batch(graph=add_graph(), runs=1)
    (other_id,) = asyncio.run(queue.enqueue_batch(Q, batch, False, user_id)).item_ids
    # The other item runs (put in progress directly: the child is first in line for a claim).
    with pg_engine.begin() as conn:
        conn.execute(text("UPDATE session_queue SET status = 'in_progress' WHERE item_id = :i"), {"i": other_id})
    if path == "cancel all except current":
        queue.cancel_all_except_current(Q, user_id)
    else:
        queue.delete_all_except_current(Q, user_id)
    assert_charged_once(pg_engine, parent.item_id, EARLIER, "the parent")
    assert usage(pg_engine, child.item_id) is None and usage(pg_engine, other_id) is None
    assert queue.get_queue_item(other_id).status == "in_progress"
