"""The session queue of a deployment whose graphs run on workers (SQS dispatch).

``DispatchingSessionQueue`` is the API process's queue. It is ``PostgresSessionQueue`` plus:

- **Dispatch**: every item that becomes runnable through the API (``enqueue_batch``, ``retry_items_by_id``) gets
  its owner's scheduling tier at insert and one SQS message once the insert committed. (Workflow-call children
  and resumed parents become runnable on the worker that runs their chain; see ``WorkerSessionQueue``.)
- **No dequeue**: an API process never runs a graph, so ``dequeue`` claims nothing.
- **The reaper pass** (``reap``), run by every API process and worker on a timer, one at a time across the
  deployment (advisory lock): items whose worker stopped renewing its lease are put back (re-run, up to
  ``worker_lost_item_reruns`` times) or failed with a clear error; workflow-call chains pinned to a worker that is
  gone are failed (their intermediates lived on its disk); parked dispatch messages are handed out again; and
  pending items that have no message (SQS was down when they were enqueued) get one.

A dispatch failure never fails the request that made the item: the item is committed and the reaper sends its
message within one pass.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from invokeai.app.services.session_queue.session_queue_common import SessionQueueItem, SessionQueueItemNotFoundError
from sqlalchemy import Connection, Engine, Integer, Row, and_, case, cast, delete, func, literal, select, update

from invokeai_saas.config import SaasSettings
from invokeai_saas.credits.plans import FREE_TIER_PLAN_ID
from invokeai_saas.db.tables import (
    dispatch_parked,
    plans,
    session_queue_leases,
    subscriptions,
    user_scheduling,
    workers,
)
from invokeai_saas.dispatch.sqs_dispatch import DispatchUnavailable, Runnable, SqsDispatcher
from invokeai_saas.services.session_queue.session_queue_postgres import (
    TERMINAL_STATUSES,
    PostgresSessionQueue,
    moved_to,
    sq,
)

logger = logging.getLogger("invokeai_saas.dispatch")

leases = session_queue_leases

# One reaper pass at a time across every process of the deployment.
_REAPER_LOCK = "invokeai_saas.dispatch.reaper"
# Pending items younger than this may still have their message on the way; the backlog check ignores them.
_RECONCILE_MIN_AGE_SECONDS = 15.0
_RECONCILE_MAX_MESSAGES = 500

WORKER_LOST_ERROR = "WorkerLostError"


def _seconds(value: float) -> Any:
    return func.make_interval(0, 0, 0, 0, 0, 0, literal(value))


@dataclass
class ReapResult:
    """What one reaper pass did (empty when another process held the reaper lock)."""

    ran: bool = False
    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    unparked: int = 0
    redispatched: int = 0


class DispatchingSessionQueue(PostgresSessionQueue):
    def __init__(self, engine: Engine, dispatcher: SqsDispatcher, settings: SaasSettings) -> None:
        super().__init__(engine)
        self.dispatcher = dispatcher
        self.settings = settings

    # region dispatch

    def tier_of_users(self, conn: Connection, user_ids: set[str]) -> dict[str, int]:
        """Each user's scheduling tier: their ``user_scheduling`` row (an admin's override), else their plan's
        priority (with the subscription's overrides), else ``default_tier`` — clamped to the configured tiers, so a
        plan written for more tiers than this deployment has still dispatches."""
        top = self.settings.scheduling_tiers - 1
        tiers = {user_id: self.settings.default_tier for user_id in user_ids}
        if user_ids:
            tier = func.coalesce(user_scheduling.c.tier, _plan_value("priority"))
            rows = conn.execute(
                select(subscriptions.c.user_id, tier.label("tier"))
                .select_from(
                    subscriptions.join(plans, plans.c.plan_id == subscriptions.c.plan_id).outerjoin(
                        user_scheduling, user_scheduling.c.user_id == subscriptions.c.user_id
                    )
                )
                .where(subscriptions.c.user_id.in_(sorted(user_ids)))
            ).all()
            tiers.update({row.user_id: max(0, min(top, int(row.tier))) for row in rows if row.tier is not None})
        return tiers

    def _insert_extras(self, conn: Connection, user_ids: set[str]) -> dict[str, dict[str, Any]]:
        return {user_id: {"dispatch_tier": tier} for user_id, tier in self.tier_of_users(conn, user_ids).items()}

    def _dispatch_new(self, rows: Sequence[Row[Any]]) -> None:
        self.send_dispatch(
            [Runnable(int(r.item_id), str(r.user_id), str(r.queue_id), int(r.dispatch_tier)) for r in rows]
        )

    def send_dispatch(self, runnables: Sequence[Runnable]) -> bool:
        """Send one message per item; on an SQS outage log it and leave the items to the reaper's backlog check."""
        if not runnables:
            return True
        try:
            self.dispatcher.send(runnables)
        except DispatchUnavailable as e:
            logger.error(f"{e}; {len(runnables)} item(s) stay pending and are dispatched again by the reaper")
            return False
        return True

    def dequeue(self, device: str | None = None) -> SessionQueueItem | None:
        """API processes never run graphs: workers claim items (``WorkerSessionQueue.dequeue``)."""
        return None

    # endregion

    # region reaper

    def reap(self, reconcile: bool = True) -> ReapResult:
        """One pass of the reaper (see the module docstring); a no-op when another process is running one.
        ``reconcile`` includes the backlog check, which asks SQS for its queue counts."""
        result = ReapResult()
        with self._engine.begin() as conn:
            if not conn.execute(
                select(func.pg_try_advisory_xact_lock(func.hashtextextended(_REAPER_LOCK, 0)))
            ).scalar():
                return result
            result.ran = True
            self._take_over_lost_claims(conn, result)
            self._fail_orphaned_chains(conn, result)
        self._emit_for(result.requeued + result.failed)
        self.send_dispatch(self._runnables(result.requeued))
        result.unparked = self.unpark_all()
        if reconcile:
            result.redispatched = self._redispatch_missing()
        return result

    def _take_over_lost_claims(self, conn: Connection, result: ReapResult) -> None:
        grace = self.settings.worker_heartbeat_seconds
        lost = conn.execute(
            select(leases.c.item_id, leases.c.worker_id, sq.c.attempts, sq.c.pinned_worker_id)
            .join(sq, sq.c.item_id == leases.c.item_id)
            .where(sq.c.status == "in_progress", leases.c.lease_expires_at < func.clock_timestamp() - _seconds(grace))
            .with_for_update(of=leases, skip_locked=True)
        ).all()
        for row in lost:
            conn.execute(delete(leases).where(leases.c.item_id == row.item_id))
            chain = row.pinned_worker_id is not None
            if not chain and row.attempts <= self.settings.worker_lost_item_reruns:
                moved = conn.execute(
                    update(sq)
                    .where(sq.c.item_id == row.item_id, sq.c.status == "in_progress")
                    .values(**moved_to("pending"))
                    .returning(sq.c.item_id)
                ).first()
                if moved is not None:
                    result.requeued.append(row.item_id)
                    logger.warning(f"Worker {row.worker_id} lost queue item {row.item_id}; it runs again")
                continue
            reason = (
                "its workflow-call chain kept intermediate results on that worker"
                if chain
                else f"it was already run {row.attempts} time(s)"
            )
            result.failed.extend(self._fail_lost(conn, [row.item_id], row.worker_id, reason))
            if chain:
                result.failed.extend(
                    self._fail_lost(
                        conn,
                        self._unfinished_pinned_to(conn, row.pinned_worker_id),
                        row.worker_id,
                        "its workflow-call chain kept intermediate results on that worker",
                    )
                )

    @staticmethod
    def _unfinished_pinned_to(conn: Connection, worker_id: str) -> list[int]:
        return list(
            conn.execute(
                select(sq.c.item_id).where(sq.c.pinned_worker_id == worker_id, sq.c.status.not_in(TERMINAL_STATUSES))
            ).scalars()
        )

    def _fail_orphaned_chains(self, conn: Connection, result: ReapResult) -> None:
        """Chains waiting or pending on a worker that stopped beating (or exited) can never resume."""
        live = select(workers.c.worker_id).where(
            workers.c.stopped_at.is_(None),
            workers.c.last_beat_at
            > func.clock_timestamp()
            - _seconds(self.settings.worker_lease_seconds + self.settings.worker_heartbeat_seconds),
        )
        rows = conn.execute(
            select(sq.c.item_id, sq.c.pinned_worker_id).where(
                sq.c.pinned_worker_id.is_not(None),
                sq.c.status.in_(("pending", "waiting")),
                sq.c.pinned_worker_id.not_in(live),
            )
        ).all()
        for row in rows:
            result.failed.extend(
                self._fail_lost(
                    conn, [row.item_id], row.pinned_worker_id, "its workflow-call chain kept intermediate results there"
                )
            )

    @staticmethod
    def _fail_lost(conn: Connection, item_ids: Sequence[int], worker_id: str, reason: str) -> list[int]:
        if not item_ids:
            return []
        message = f"The worker running this item ({worker_id}) stopped before finishing it, and {reason}."
        return list(
            conn.execute(
                update(sq)
                .where(sq.c.item_id.in_(list(item_ids)), sq.c.status.not_in(TERMINAL_STATUSES))
                .values(**moved_to("failed", WORKER_LOST_ERROR, message))
                .returning(sq.c.item_id)
            ).scalars()
        )

    def _emit_for(self, item_ids: Sequence[int]) -> None:
        for item_id in item_ids:
            try:
                self._emit_status_changed(self.get_queue_item(item_id))
            except SessionQueueItemNotFoundError:
                continue

    def _runnables(self, item_ids: Sequence[int]) -> list[Runnable]:
        if not item_ids:
            return []
        with self._reads.connect() as conn:
            rows = conn.execute(
                select(sq.c.item_id, sq.c.user_id, sq.c.queue_id, sq.c.dispatch_tier).where(
                    sq.c.item_id.in_(list(item_ids)), sq.c.status == "pending"
                )
            ).all()
        return [Runnable(int(r.item_id), str(r.user_id), str(r.queue_id), int(r.dispatch_tier)) for r in rows]

    def unpark_all(self) -> int:
        """Hand every parked message out again (each parks again if its users are still at their cap)."""
        with self._engine.begin() as conn:
            parked = conn.execute(
                select(dispatch_parked.c.tier, dispatch_parked.c.tokens)
                .where(dispatch_parked.c.tokens > 0)
                .with_for_update()
            ).all()
            if not parked:
                return 0
            conn.execute(update(dispatch_parked).where(dispatch_parked.c.tokens > 0).values(tokens=0))
        return self._send_tokens({row.tier: row.tokens for row in parked})

    def unpark(self, conn: Connection, tier: int) -> bool:
        """Take one parked message of ``tier`` (inside the caller's transaction); True if there was one."""
        row = conn.execute(
            update(dispatch_parked)
            .where(dispatch_parked.c.tier == tier, dispatch_parked.c.tokens > 0)
            .values(tokens=dispatch_parked.c.tokens - 1)
            .returning(dispatch_parked.c.tier)
        ).first()
        return row is not None

    def _send_tokens(self, counts: dict[int, int]) -> int:
        """Send ``counts[tier]`` messages per tier, each naming a pending item of that tier when there is one."""
        runnables: list[Runnable] = []
        with self._reads.connect() as conn:
            for tier, count in counts.items():
                rows = conn.execute(
                    select(sq.c.item_id, sq.c.user_id, sq.c.queue_id)
                    .where(sq.c.status == "pending", sq.c.dispatch_tier == tier, sq.c.pinned_worker_id.is_(None))
                    .order_by(sq.c.item_id)
                    .limit(count)
                ).all()
                runnables.extend(Runnable(int(r.item_id), str(r.user_id), str(r.queue_id), tier) for r in rows)
        return len(runnables) if self.send_dispatch(runnables) else 0

    def _redispatch_missing(self) -> int:
        """Pending items beyond the messages SQS holds for them (sent while SQS was down) get a message."""
        with self._reads.connect() as conn:
            pending = dict(
                conn.execute(
                    select(sq.c.dispatch_tier, func.count())
                    .where(
                        sq.c.status == "pending",
                        sq.c.pinned_worker_id.is_(None),
                        sq.c.created_at < func.clock_timestamp() - _seconds(_RECONCILE_MIN_AGE_SECONDS),
                    )
                    .group_by(sq.c.dispatch_tier)
                ).all()
            )
            if not pending:
                return 0
            held = conn.execute(select(func.count(func.distinct(leases.c.worker_id)))).scalar_one()
            parked = conn.execute(select(func.coalesce(func.sum(dispatch_parked.c.tokens), 0))).scalar_one()
        try:
            backlog = self.dispatcher.approximate_backlog()
        except DispatchUnavailable as e:
            logger.warning(f"{e}; the backlog check waits for the next pass")
            return 0
        deficit = sum(pending.values()) - (sum(backlog.values()) - held) - parked
        if deficit <= 0:
            return 0
        counts: dict[int, int] = {}
        for tier in sorted(pending, reverse=True):
            take = min(pending[tier], deficit, _RECONCILE_MAX_MESSAGES - sum(counts.values()))
            if take > 0:
                counts[tier] = take
                deficit -= take
        sent = self._send_tokens(counts)
        if sent:
            logger.warning(f"Dispatched {sent} pending item(s) again that had no SQS message")
        return sent

    # endregion


def _plan_value(column: str) -> Any:
    """A plan limit as the subscription sees it: the subscription's override, else the plan's column, and the free
    tier's for an expired subscription, as ``PlanService.subscription_in`` has it (to be used in a query that joins
    ``subscriptions`` and ``plans``)."""
    free = plans.alias("free_tier")
    free_value = select(free.c[column]).where(free.c.plan_id == FREE_TIER_PLAN_ID).scalar_subquery()
    return case(
        (subscriptions.c.status == "expired", free_value),
        else_=func.coalesce(cast(subscriptions.c.overrides[column].astext, Integer), plans.c[column]),
    )


def running_count_exceeds(user_column: Any, default_cap: int | None) -> Any:
    """``user_column`` is a user with at least their cap of items running now: their ``user_scheduling`` row (an
    admin's override), else their plan's ``concurrent_jobs``, else ``default_cap``; no cap when all are unset."""
    running = sq.alias("running")
    scheduled = select(user_scheduling.c.max_running).where(user_scheduling.c.user_id == user_column).scalar_subquery()
    planned = (
        select(_plan_value("concurrent_jobs"))
        .select_from(subscriptions.join(plans, plans.c.plan_id == subscriptions.c.plan_id))
        .where(subscriptions.c.user_id == user_column)
        .scalar_subquery()
    )
    cap = func.coalesce(scheduled, planned, literal(default_cap))
    count = (
        select(func.count())
        .select_from(running)
        .where(running.c.user_id == user_column, running.c.status == "in_progress")
        .scalar_subquery()
    )
    return and_(cap.is_not(None), count >= cap)
