"""The spending cap and the longest run: a pass that fails running items which may not go on.

A hold is an estimate taken at enqueue, and a step-less graph (an upscaler, a video) can run far longer than it
said. Two limits stop a running item:

- **Out of credits**: its cost so far (seconds × the plan's multiplier) reached what its owner can pay, its hold
  plus the available balance. The available balance is shared by the owner's running items, so the cap is per
  owner: when the cost their running items have beyond their holds reaches the available balance, every item that
  used up its own hold is stopped. Plans with ``allow_debt`` (postpaid, Enterprise) are not capped by the balance.
- **Run time**: it ran ``max_run_seconds`` (the plan's, or the subscription's override), on every plan.

The pass only fails the item in PostgreSQL, through the session queue, with a clear error (``OutOfCredits``,
``RunTimeLimitExceeded``). The queue's stop hook (``invokeai_saas.credits.stops``) charges it in that transaction:
the seconds it ran, at most its hold plus the balance, so the balance ends at exactly 0, never below. The device
stops on the status: the processor running it gets the status event (``patches/session_processor_failed_stops``
makes stock's handler cancel the run on these failures), and a worker also reads its item's status every beat.

Where it runs: every API process (``plugins/builtin/credits.py``), every ``CAP_INTERVAL_SECONDS``. API processes
exist in every deployment, with or without SQS workers; the pass needs nothing but the database (both ends of a
run are on its clock), so it also holds when a worker is wedged or its event relay is down. Two processes running
it at once fail an item once (the status transition is guarded) and charge it once (the ledger's natural keys).
Cost per pass: two statements, whatever the number of running items.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from invokeai.app.services.session_queue.session_queue_base import SessionQueueBase
from invokeai.app.services.session_queue.session_queue_common import SessionQueueItemNotFoundError
from sqlalchemy import Boolean, Engine, Float, case, cast, exists, func, not_, select

from invokeai_saas.credits.ledger import CreditLedger
from invokeai_saas.credits.limits import UPGRADE
from invokeai_saas.credits.plans import FREE_TIER_PLAN_ID
from invokeai_saas.credits.stops import OUT_OF_CREDITS, RUN_TIME_LIMIT
from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.tables import credit_holds, credit_usage, plans, session_queue, subscriptions

logger = logging.getLogger("invokeai_saas.credits")

BUY = "Buy a credit pack or move to a larger plan (plans: GET /api/v1/saas/plans)."


@dataclass(frozen=True)
class RunningItem:
    """A running item with what its owner's plan allows it."""

    item_id: int
    user_id: str
    seconds: float
    held: int
    multiplier: float
    max_run_seconds: float
    allow_debt: bool
    plan: str

    @property
    def cost(self) -> float:
        """What it has cost so far, unrounded: it is stopped when this reaches what can be paid, so a user gets
        every second they pay for (the charge is rounded up and capped at what can be paid)."""
        return self.seconds * self.multiplier


@dataclass(frozen=True)
class CapStop:
    item_id: int
    user_id: str
    error_type: str
    message: str


def cap_stops(running: Sequence[RunningItem], available: Mapping[str, int]) -> list[CapStop]:
    """Which running items must stop now (see the module docstring); ``available`` is each owner's balance."""
    stops: list[CapStop] = []
    by_user: dict[str, list[RunningItem]] = {}
    for item in running:
        by_user.setdefault(item.user_id, []).append(item)
    for user_id, items in by_user.items():
        within: list[RunningItem] = []
        for item in items:
            if item.seconds >= item.max_run_seconds:
                stops.append(
                    CapStop(
                        item.item_id,
                        user_id,
                        RUN_TIME_LIMIT,
                        f"Run time limit: stopped after {item.seconds:.0f} seconds. {item.plan} lets one item run "
                        f"at most {item.max_run_seconds:.0f} seconds; split the work into smaller items. {UPGRADE}",
                    )
                )
            else:
                within.append(item)
        balance = max(available.get(user_id, 0), 0)
        beyond = [item for item in within if not item.allow_debt and item.cost >= item.held]
        if beyond and sum(item.cost - item.held for item in beyond) >= balance:
            for item in beyond:
                stops.append(
                    CapStop(
                        item.item_id,
                        user_id,
                        OUT_OF_CREDITS,
                        f"Out of credits: stopped after {item.seconds:.0f} seconds, when its cost reached what "
                        f"your balance can pay ({item.held} credits held for it and {balance} available). {BUY}",
                    )
                )
    return stops


def _effective(column: str, json_type: str, sql_type: Any) -> Any:
    """A plan limit as ``PlanService.subscription_in`` has it: the free tier's for an expired subscription, else the
    subscription's override when it is a JSON value of the right type, else the plan's column."""
    free = plans.alias("free_tier")
    free_value = select(free.c[column]).where(free.c.plan_id == FREE_TIER_PLAN_ID).scalar_subquery()
    raw = subscriptions.c.overrides[column]
    override = case((func.jsonb_typeof(raw) == json_type, cast(raw.astext, sql_type)))
    return case((subscriptions.c.status == "expired", free_value), else_=func.coalesce(override, plans.c[column]))


def _plan_label(name: str, status: str) -> str:
    """As ``limits.plan_label`` names the plan."""
    if status == "expired":
        return f"Your expired plan ({name}, now with the free tier's limits)"
    return f"Your plan ({name})"


class SpendingCap:
    """One pass: read the running items and their owners' balances, fail those that must stop."""

    def __init__(self, engine: Engine, queue: SessionQueueBase) -> None:
        self._reads = autocommit_reads(engine)
        self._queue = queue

    def running(self) -> tuple[list[RunningItem], dict[str, int]]:
        sq = session_queue
        query = (
            select(
                sq.c.item_id,
                sq.c.user_id,
                # A resumed workflow-call parent's earlier segments count toward its cost and its run time.
                (func.extract("epoch", func.clock_timestamp() - sq.c.started_at) + sq.c.earlier_run_seconds).label(
                    "seconds"
                ),
                func.coalesce(credit_holds.c.held, 0).label("held"),
                _effective("credit_multiplier", "number", Float).label("multiplier"),
                _effective("max_run_seconds", "number", Float).label("max_run_seconds"),
                _effective("allow_debt", "boolean", Boolean).label("allow_debt"),
                plans.c.name,
                subscriptions.c.status,
            )
            .select_from(
                sq.join(subscriptions, subscriptions.c.user_id == sq.c.user_id)
                .join(plans, plans.c.plan_id == subscriptions.c.plan_id)
                .outerjoin(credit_holds, credit_holds.c.item_id == sq.c.item_id)
            )
            .where(
                sq.c.status == "in_progress",
                sq.c.started_at.is_not(None),
                not_(exists().where(credit_usage.c.item_id == sq.c.item_id)),  # charged already: nothing to cap
            )
            .order_by(sq.c.item_id)
        )
        with self._reads.connect() as conn:
            rows = conn.execute(query).all()
            running = [
                RunningItem(
                    item_id=int(row.item_id),
                    user_id=str(row.user_id),
                    seconds=float(row.seconds),
                    held=int(row.held),
                    multiplier=float(row.multiplier),
                    max_run_seconds=float(row.max_run_seconds),
                    allow_debt=bool(row.allow_debt),
                    plan=_plan_label(row.name, row.status),
                )
                for row in rows
            ]
            available = CreditLedger.available_many(conn, sorted({item.user_id for item in running}))
        return running, available

    def run_once(self) -> list[CapStop]:
        """One pass; returns the stops it made."""
        running, available = self.running()
        stops = cap_stops(running, available)
        made: list[CapStop] = []
        for stop in stops:
            try:
                item = self._queue.fail_queue_item(stop.item_id, stop.error_type, stop.message, "")
            except SessionQueueItemNotFoundError:
                continue  # deleted meanwhile (and charged by that delete)
            if item.status == "failed" and item.error_type == stop.error_type:
                logger.warning(f"Queue item {stop.item_id} of user {stop.user_id} stopped: {stop.message}")
                made.append(stop)
        return made
