"""The shared queue as one user sees it in saas mode: only that user's items, filtered in SQL.

Stock's queue views show every user's items to everybody (redacted for non-owners: status, times, device and
sequential ids still show), and ``list_all`` returns every item of the deployment: at scale a megabyte answer on
every studio load, and other tenants' activity on display. Here each read takes the user and filters on it in the
statement, one statement per read whatever the number of items (no per-item reads: ``items_by_ids`` is one
statement where stock's route reads item by item). Administrators see their own items too: the studio is their
own workspace; the fleet is the admin routes' concern.

The status is the user's own: their counts by status, their running item's ids, and ``items_ahead``, how many
pending items (anyone's) workers serve before the user's next one (``dispatch_order``) — from one statement, so
the numbers come from one snapshot.
"""

from __future__ import annotations

from invokeai.app.services.session_queue.session_queue_common import (
    SessionQueueItem,
    SessionQueueItemSummary,
    SessionQueueStatus,
)
from pydantic import Field
from sqlalchemy import func, select, true

from invokeai_saas.db.tables import session_queue as sq
from invokeai_saas.services.session_queue.dispatch_order import items_ahead
from invokeai_saas.services.session_queue.session_queue_postgres import (
    PostgresSessionQueue,
    _ids_in,
    _item_from_row,
    _item_select,
    count_fields,
)


class OwnerQueueStatus(SessionQueueStatus):
    """Stock's queue status, every count the user's own, plus the user's place in the queue."""

    items_ahead: int | None = Field(
        default=None,
        description="How many pending items (all users') are served before your next pending item; 0 when yours is "
        "next, null when you have none pending",
    )


class OwnerQueueViews:
    """Reads of ``queue`` scoped to one owner (see the module docstring); the reads stock also has are the queue's own
    statements, given the owner as a filter."""

    def __init__(self, queue: PostgresSessionQueue) -> None:
        self._queue = queue
        self._reads = queue._reads

    def _round_robin(self) -> bool:
        config = self._queue._invoker.services.configuration
        return bool(config.multiuser and config.session_queue_mode == "round_robin")

    def list_items(self, queue_id: str, user_id: str, destination: str | None = None) -> list[SessionQueueItem]:
        """Stock's ``list_all_queue_items`` order (priority, then item id), the user's items only."""
        return self._queue._all_items(queue_id, destination, owner=user_id)

    def items_by_ids(self, queue_id: str, user_id: str, item_ids: list[int]) -> list[SessionQueueItem]:
        """The user's items among ``item_ids``, in the requested order (repeats repeated, others skipped, as stock)."""

        if not item_ids:
            return []
        with self._reads.connect() as conn:
            rows = conn.execute(
                _item_select().where(
                    sq.c.queue_id == queue_id, sq.c.user_id == user_id, _ids_in(sq.c.item_id, item_ids)
                )
            ).all()
        items = {row.item_id: _item_from_row(row) for row in rows}
        return [items[item_id] for item_id in item_ids if item_id in items]

    def summaries_by_ids(self, queue_id: str, user_id: str, item_ids: list[int]) -> list[SessionQueueItemSummary]:
        return self._queue._summaries_by_ids(queue_id, item_ids, owner=user_id)

    def current(self, queue_id: str, user_id: str) -> SessionQueueItem | None:
        """The user's running item (the first by id when several run on several workers)."""
        return self._queue._first_item(queue_id, "in_progress", owner=user_id)

    def next(self, queue_id: str, user_id: str) -> SessionQueueItem | None:
        """The user's next pending item in stock's ``get_next`` order (priority, creation, id)."""
        return self._queue._first_item(queue_id, "pending", owner=user_id)

    def status(self, queue_id: str, user_id: str) -> OwnerQueueStatus:
        """The user's counts, running item and place in the queue, from one statement (one snapshot)."""
        counts = (
            select(sq.c.status, func.count().label("total"))
            .where(sq.c.queue_id == queue_id, sq.c.user_id == user_id)
            .group_by(sq.c.status)
            .subquery("counts")
        )
        current = (
            select(sq.c.item_id, sq.c.session_id, sq.c.batch_id)
            .where(sq.c.queue_id == queue_id, sq.c.user_id == user_id, sq.c.status == "in_progress")
            .order_by(sq.c.item_id)
            .limit(1)
            .subquery("current_item")
        )
        ahead = items_ahead(queue_id, user_id, self._round_robin()).label("items_ahead")
        with self._reads.connect() as conn:
            rows = conn.execute(
                select(
                    counts.c.status,
                    counts.c.total,
                    current.c.item_id,
                    current.c.session_id,
                    current.c.batch_id,
                    ahead,
                ).select_from(counts.outerjoin(current, true()))
            ).all()
        totals = {row.status: row.total for row in rows}
        first = rows[0] if rows else None
        return OwnerQueueStatus(
            queue_id=queue_id,
            item_id=first.item_id if first is not None else None,
            session_id=first.session_id if first is not None else None,
            batch_id=first.batch_id if first is not None else None,
            **count_fields(totals),
            user_pending=totals.get("pending", 0),
            user_in_progress=totals.get("in_progress", 0),
            items_ahead=first.items_ahead if first is not None else None,
        )
