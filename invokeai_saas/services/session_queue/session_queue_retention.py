"""Each user keeps at most ``max_queue_history_per_user`` finished queue items; older ones are deleted.

Why: every queue item stores its whole graph and session (a few MB at most each: the request body limit bounds the
batch, and a batch of N runs stores N copies), and stock keeps finished items until someone clears the queue
(its ``max_queue_history`` prunes only at startup and counts the whole queue, not a user's share). Without a bound,
one tenant's history grows the shared database without end, outside any quota.

One set-based statement per pass deletes, for every user at once, the finished items (completed, failed, canceled)
beyond the ``keep`` most recently finished, as stock orders its history. Only items that finished more than
``MIN_AGE_SECONDS`` ago are deleted, so an item whose worker is still settling its credits, or that its owner is
looking at right now, is never taken away; a hold left without its item is released by the credit release pass as
"deleted" (``invokeai_saas.credits.settlement.release_unsettled``), and the charge of a settled item stays in the
ledger. Every API process runs the pass; the advisory lock makes them take turns.
"""

from __future__ import annotations

from logging import Logger

from sqlalchemy import Engine, and_, delete, func, literal, select

from invokeai_saas.db.tables import session_queue
from invokeai_saas.periodic import PeriodicTask

TERMINAL = ("completed", "failed", "canceled")
MIN_AGE_SECONDS = 600
INTERVAL_SECONDS = 300.0
_LOCK_NAME = "invokeai-saas:queue-history-retention"


def prune_queue_history(engine: Engine, keep: int, min_age_seconds: float = MIN_AGE_SECONDS) -> int:
    """Delete each user's finished items beyond their ``keep`` newest (older than ``min_age_seconds``); returns how
    many were deleted, 0 when another process holds the pass."""
    sq = session_queue
    finished_at = func.coalesce(sq.c.completed_at, sq.c.updated_at, sq.c.created_at)
    rank = (
        func.row_number()
        .over(partition_by=sq.c.user_id, order_by=(finished_at.desc(), sq.c.item_id.desc()))
        .label("rank")
    )
    ranked = select(sq.c.item_id, finished_at.label("finished_at"), rank).where(sq.c.status.in_(TERMINAL)).subquery()
    old_enough = func.clock_timestamp() - func.make_interval(0, 0, 0, 0, 0, 0, min_age_seconds)
    beyond = select(ranked.c.item_id).where(and_(ranked.c.rank > keep, ranked.c.finished_at < old_enough))
    with engine.begin() as conn:
        locked = conn.execute(
            select(func.pg_try_advisory_xact_lock(func.hashtextextended(literal(_LOCK_NAME), 0)))
        ).scalar_one()
        if not locked:
            return 0
        deleted = conn.execute(delete(sq).where(sq.c.item_id.in_(beyond), sq.c.status.in_(TERMINAL)))
        return int(deleted.rowcount or 0)


def retention_task(engine: Engine, keep: int, logger: Logger) -> PeriodicTask:
    def run(_: int) -> None:
        deleted = prune_queue_history(engine, keep)
        if deleted:
            logger.info(f"Queue history: deleted {deleted} finished items beyond {keep} per user")

    return PeriodicTask("invokeai-saas-queue-history", INTERVAL_SECONDS, run, logger)
