"""Holding credits at enqueue, charging measured GPU time where the graph ran, releasing what was not used.

- ``CreditHoldGuard`` runs inside the enqueue (and retry) transaction of the session queue: it checks the plan's
  limits (``invokeai_saas.credits.limits``), then estimates each item's cost (``CreditEstimator`` × the plan's
  multiplier) and holds it, or raises ``InsufficientCredits``, which rolls the items back: 100 concurrent enqueues
  against a balance for 10 leave exactly 10 items and 10 holds.
  A workflow-call child holds its own estimate when its parent creates it.
- ``SessionCharger`` is a pair of stock ``DefaultSessionRunner`` callbacks, so it measures where the graph runs (a
  worker, or the API process without SQS): the seconds between the session starting and ending on its device, plus,
  for a workflow-call parent, the segments it ran before it parked for its child (``earlier_run_seconds``, which the
  queue writes on the database's clock when a segment ends, so it holds whichever process resumes the parent, and a
  parent that ends while parked is charged them by the stop hook). A completed item, or one canceled while running, is
  charged those seconds (rounded up, × the plan's multiplier), at most what the user can pay (its hold plus the
  available balance) unless the plan allows debt; a failed item is charged nothing and its hold released, unless the
  service failed it: a node outside the plan (``invokeai_saas.credits.run_limits``: the work it did before the refusal
  is charged, or a graph could keep a generation and refuse itself afterwards to run free), or the spending cap
  (``invokeai_saas.credits.cap``). The ledger settles each item once, so a duplicate run or delivery never charges
  twice, and an item a stop already charged (``invokeai_saas.credits.stops``) is not charged again.
- ``release_unsettled`` is the backstop for items that end without reaching a runner's callback: canceled or
  deleted before they started, failed by the reaper after their worker died, a worker killed mid-settlement. It
  releases the holds of items that are finished (or gone) and were never settled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from invokeai.app.services.session_queue.session_queue_common import Batch, SessionQueueItem
from invokeai.app.services.shared.graph import GraphExecutionState
from sqlalchemy import Connection, Engine, Row, func, not_, or_, select

from invokeai_saas.credits.access import enforce_node_editor
from invokeai_saas.credits.estimate import CreditEstimator
from invokeai_saas.credits.ledger import CreditLedger, Usage, credits_for
from invokeai_saas.credits.limits import NO_PLAN, PlanLimitExceeded, enforce_graph_limits, enforce_plan_limits
from invokeai_saas.credits.periods import ROLLED_STATUSES, SubscriptionPeriods
from invokeai_saas.credits.plans import PlanService, Subscription
from invokeai_saas.credits.stops import CHARGED_FAILURES
from invokeai_saas.db.tables import credit_holds, credit_usage, session_queue

logger = logging.getLogger("invokeai_saas.credits")

# A hold younger than this may belong to an item whose enqueue transaction is still being emitted; the backstop
# leaves it alone.
_RELEASE_MIN_AGE_SECONDS = 5.0
_FINISHED = ("completed", "failed", "canceled")


class CreditHoldGuard:
    """A session-queue enqueue guard (``PostgresSessionQueue.add_enqueue_guard``): checks the plan's limits, then
    holds each item's estimated cost. One subscription read and one estimate serve both: the enqueue is the hot path.

    A subscription whose period has ended is rolled first, in the same transaction, so a user whose allotment
    renewed a moment ago is not refused for credits the next 60 s pass would have granted. Workflow-call children
    hold their own estimate when their parent creates them, within the plan's resolution and models, so a called
    workflow is paid for and limited like any other item (a parent whose child is refused fails with the reason)."""

    def __init__(
        self, ledger: CreditLedger, plans: PlanService, estimator: CreditEstimator, periods: SubscriptionPeriods
    ) -> None:
        self._ledger = ledger
        self._plans = plans
        self._estimator = estimator
        self._periods = periods

    def on_enqueue(self, conn: Connection, user_id: str, batch: Batch, rows: Sequence[Row[Any]]) -> None:
        subscription = self._subscription(conn, user_id)
        estimate = self._estimator.estimate(batch)
        # Limits first: a request the plan does not allow is refused as such, before its cost is even counted.
        enforce_node_editor(subscription, batch)
        enforce_plan_limits(conn, user_id, subscription, estimate, len(rows))
        cost = estimate.credits(subscription.limits.credit_multiplier)
        self._ledger.hold_in(conn, user_id, [(int(row.item_id), cost) for row in rows])

    def on_workflow_call_child(
        self, conn: Connection, parent_queue_item: SessionQueueItem, child_session: GraphExecutionState, row: Row[Any]
    ) -> None:
        user_id = parent_queue_item.user_id
        subscription = self._subscription(conn, user_id)
        estimate = self._estimator.estimate(Batch(graph=child_session.graph))
        enforce_graph_limits(conn, subscription, estimate)
        cost = estimate.credits(subscription.limits.credit_multiplier)
        self._ledger.hold_in(conn, user_id, [(int(row.item_id), cost)])

    def _subscription(self, conn: Connection, user_id: str) -> Subscription:
        """The user's subscription, read on the enqueue's own connection, rolled first if its period is over (in a
        savepoint: a roll that fails, e.g. on a malformed override, is logged and left to the pass, and the enqueue
        goes on with the balance as it is)."""
        subscription = self._plans.subscription_in(conn, user_id)
        if subscription is None:
            raise PlanLimitExceeded(403, NO_PLAN)
        ended = subscription.period_end is not None and subscription.period_end <= datetime.now(UTC)
        if not ended or subscription.status not in ROLLED_STATUSES:
            return subscription  # in its period, or one the roll leaves alone (expired, past due)
        try:
            with conn.begin_nested():
                report = self._periods.roll_in(conn, user_id)
        except Exception:
            logger.exception(f"Could not renew the subscription of user {user_id} at enqueue")
            return subscription
        if not (report.renewed or report.expired_subscriptions):
            return subscription
        # Re-read: the roll moved the period on, or expired the subscription (a Trial that ended: other limits).
        return self._plans.subscription_in(conn, user_id) or subscription


class SessionCharger:
    """``on_before_run_session`` / ``on_after_run_node`` / ``on_after_run_session`` callbacks for stock's
    ``DefaultSessionRunner``.

    A run is measured from its start to the end of its last node, not to the after-session callback: stock calls
    that after writing the item's session and completion, and a worker retries those writes through a database
    outage (``invokeai_saas.worker.outage``), time that is ours, not the user's. A run whose last node did not end
    (canceled, failed) is measured to the callback; a stop from outside was charged at the stop anyway."""

    def __init__(self, engine: Engine, ledger: CreditLedger, plans: PlanService, estimator: CreditEstimator) -> None:
        self._engine = engine
        self._ledger = ledger
        self._plans = plans
        self._estimator = estimator
        self._started: dict[int, float] = {}
        self._last_node_end: dict[int, float] = {}
        self._lock = threading.Lock()

    def on_before_run_session(self, queue_item: SessionQueueItem) -> None:
        with self._lock:
            self._started[queue_item.item_id] = time.monotonic()
            self._last_node_end.pop(queue_item.item_id, None)

    def on_after_run_node(self, invocation: Any, queue_item: SessionQueueItem, output: Any) -> None:
        with self._lock:
            if queue_item.item_id in self._started:
                self._last_node_end[queue_item.item_id] = time.monotonic()

    def on_after_run_session(self, queue_item: SessionQueueItem) -> None:
        now = time.monotonic()
        with self._lock:
            started = self._started.pop(queue_item.item_id, None)
            ended = self._last_node_end.pop(queue_item.item_id, None)
            if started is None:
                return
        complete = queue_item.status == "completed"
        seconds = (ended if complete and ended is not None else now) - started
        if queue_item.status == "waiting":
            # A workflow-call parent parked for its child: the queue recorded this segment as it parked it; the
            # parent is charged when it ends (here after it resumes, or by the stop hook if it ends while parked).
            return
        try:
            self._settle(queue_item, seconds)
        except Exception:
            # Charging must never break the run's own bookkeeping; the hold stays, and the backstop releases it
            # if the item is finished without a settlement.
            logger.exception(f"Could not settle the credits of queue item {queue_item.item_id}")

    def _settle(self, queue_item: SessionQueueItem, seconds: float) -> None:
        charged_failure = queue_item.status == "failed" and queue_item.error_type in CHARGED_FAILURES
        if queue_item.status == "failed" and not charged_failure:
            self._ledger.release(queue_item.user_id, queue_item.item_id, "failed")
            return
        if queue_item.status not in ("completed", "canceled", "failed"):
            return  # handed back or taken over: the item runs again and is charged then
        subscription = self._plans.subscription(queue_item.user_id)
        limits = subscription.limits if subscription is not None else None
        estimate = self._estimator.estimate(Batch(graph=queue_item.session.graph))
        with self._engine.begin() as conn:
            # A resumed workflow-call parent ran earlier segments before it parked: they are part of its run.
            earlier = conn.execute(
                select(session_queue.c.earlier_run_seconds).where(session_queue.c.item_id == queue_item.item_id)
            ).scalar()
            seconds += max(float(earlier or 0.0), 0.0)
            usage = Usage(
                seconds=seconds,
                gpu_tier=limits.gpu_tier if limits is not None else "standard",
                model=estimate.model_base,
                steps=estimate.steps or None,
                width=estimate.width,
                height=estimate.height,
            )
            # A hold is a spending cap: at most what the user can pay, unless the plan allows debt. An item stopped
            # from outside (canceled, deleted, capped) was charged by the queue's stop hook already: this changes
            # nothing.
            self._ledger.settle_in(
                conn,
                queue_item.user_id,
                queue_item.item_id,
                credits_for(seconds, limits.credit_multiplier if limits is not None else 1.0),
                usage,
                limit_to_balance=not (limits is not None and limits.allow_debt),
            )


def release_unsettled(engine: Engine, ledger: CreditLedger, limit: int = 500) -> int:
    """Release the holds of items that finished (or were deleted) without being settled; returns how many."""
    sq = session_queue
    young = func.clock_timestamp() - func.make_interval(0, 0, 0, 0, 0, 0, _RELEASE_MIN_AGE_SECONDS)
    with engine.connect() as conn:
        rows = conn.execute(
            select(credit_holds.c.item_id, credit_holds.c.user_id, sq.c.status)
            .outerjoin(sq, sq.c.item_id == credit_holds.c.item_id)
            .where(
                credit_holds.c.created_at < young,
                or_(sq.c.item_id.is_(None), sq.c.status.in_(_FINISHED)),
                not_(select(credit_usage.c.item_id).where(credit_usage.c.item_id == credit_holds.c.item_id).exists()),
            )
            .order_by(credit_holds.c.item_id)
            .limit(limit)
        ).all()
    released = 0
    for row in rows:
        reason = "deleted" if row.status is None else row.status
        if ledger.release(row.user_id, row.item_id, reason):
            released += 1
    return released
