"""A suspended account's work stops: its unfinished queue items are canceled through the queue, within a second.

Stock stops a deactivated owner's work from inside the process that runs it: its processor cancels the running item
on the ``user_access_changed`` event, rejects a pending item at dequeue, and the runner checks the owner between
nodes. In a deployment none of that is enough: the event only exists when the deactivation is made by the API
(``invokeai-saas user modify --deactivate`` is another process, with no queue and no events), it reaches a worker
only through Redis, and without it a step-less node runs on to its end (minutes for an upscaler or a video), the
time after the suspension charged to the account. A pending item rejected at dequeue has been claimed first, so it
was charged a credit for the instant it held the device.

So every API process runs ``SuspendedOwnerStops`` each second (``plugins/builtin/postgres.py``): it cancels every
unfinished item (running, parked for a workflow call, pending) whose owner is inactive or gone, with the queue's own
``cancel_queue_item``, which cancels the item's workflow-call chain, emits each status change (the processor running
it stops the device; a worker also reads the status at its next beat), and calls the queue's stop hooks in the
cancelling transaction (``session_queue_stops``): a running item is charged the seconds it ran up to the cancel, a
parked parent its earlier segments, a pending item nothing. Claims skip items of such owners
(``PostgresSessionQueue._claim_candidate``), so a worker freed by the cancel never takes the account's next item.
Two processes cancel an item once (the status transition is guarded) and charge it once (the ledger).
Cost per pass: one statement on the unfinished rows (the status index), whatever the number of users.
"""

from __future__ import annotations

from logging import Logger

from invokeai.app.services.session_queue.session_queue_base import SessionQueueBase
from invokeai.app.services.session_queue.session_queue_common import SessionQueueItemNotFoundError
from sqlalchemy import ColumnElement, Engine, exists, not_, select

from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.tables import session_queue, users
from invokeai_saas.periodic import PeriodicTask

INTERVAL_SECONDS = 1.0
UNFINISHED = ("in_progress", "waiting", "pending")
_BATCH = 500


def owner_may_run(user_column: ColumnElement[str]) -> ColumnElement[bool]:
    """``user_column`` is an account that exists and is active (a claim's condition on its candidates)."""
    return exists().where(users.c.user_id == user_column, users.c.is_active.is_(True))


class SuspendedOwnerStops:
    """One pass: cancel the unfinished items of inactive (or deleted) accounts; returns the ids it canceled."""

    def __init__(self, engine: Engine, queue: SessionQueueBase) -> None:
        self._reads = autocommit_reads(engine)
        self._queue = queue

    def item_ids(self) -> list[int]:
        sq = session_queue
        query = (
            select(sq.c.item_id)
            .where(sq.c.status.in_(UNFINISHED), not_(owner_may_run(sq.c.user_id)))
            # Queued items first: the cancel of a running item frees its device for the next claim.
            .order_by((sq.c.status == "in_progress").asc(), sq.c.item_id)
            .limit(_BATCH)
        )
        with self._reads.connect() as conn:
            return [int(item_id) for item_id in conn.execute(query).scalars()]

    def run_once(self) -> list[int]:
        canceled: list[int] = []
        for item_id in self.item_ids():
            try:
                item = self._queue.cancel_queue_item(item_id)
            except SessionQueueItemNotFoundError:
                continue  # deleted meanwhile (and charged by that delete if it ran)
            if item.status == "canceled":
                canceled.append(item_id)
        return canceled


def suspension_task(engine: Engine, queue: SessionQueueBase, logger: Logger) -> PeriodicTask:
    stops = SuspendedOwnerStops(engine, queue)

    def run(_: int) -> None:
        canceled = stops.run_once()
        if canceled:
            logger.warning(f"Canceled queue items {canceled}: their owners' accounts are deactivated or deleted")

    return PeriodicTask("invokeai-saas-suspended-owners", INTERVAL_SECONDS, run, logger)
