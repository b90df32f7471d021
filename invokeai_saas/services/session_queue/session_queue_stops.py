"""Stop hooks of the PostgreSQL session queue: what the queue tells its listeners when a running item is stopped
from outside its run (canceled, failed by the service, deleted), inside the transaction that stops it.

Why in the queue: an item can be stopped by a dozen routes (cancel, delete, clear, cancel by batch or destination,
delete by destination...) and by processes that never run it (an API process, the spending-cap pass). The runner's
own callbacks see none of that when the row is gone (a deleted item's run ends with ``SessionQueueItemNotFoundError``
and no callback), so whatever must happen once per stop — charging the time the item ran — hangs on the one place
every stop goes through: the statement that moves or deletes the row. The hook runs in that statement's transaction
(in a savepoint: a failing hook is logged and never blocks the stop), so the stop and what it causes commit together.

A workflow-call parent runs in segments: it parks (``waiting``) while its child runs, is resumed (``pending``) and
claimed again, which restamps ``started_at``. The queue adds each ended segment to ``earlier_run_seconds`` in the
transaction that parks it, on the database's clock, so a stop sees the whole run: a running parent's earlier
segments plus the current one, and a parent stopped while parked (or resumed, not yet claimed) its earlier segments.
A parked parent that ends without running again (canceled, deleted, failed, or completed by its child's run when the
call was its last node) has no runner of its own to settle it either, so the hooks hear of that end too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from sqlalchemy import Connection, Row

logger = logging.getLogger("invokeai_saas.session_queue")

StopStatus = Literal["canceled", "failed", "deleted", "completed"]

# Statuses of an item that is between segments: parked for its child, or resumed and not claimed yet.
PARKED_STATUSES = ("waiting", "pending")


@dataclass(frozen=True)
class StoppedItem:
    """An item that was stopped while it ran or while it was parked between segments, on the database's clock.

    ``running``: a segment was under way (``started_at`` to ``stopped_at``); otherwise only ``earlier_seconds``,
    the segments that already ended, count. ``completed`` is only ever a parked parent completed by its child's run."""

    item_id: int
    user_id: str
    started_at: datetime | None
    stopped_at: datetime
    status: StopStatus
    error_type: str | None = None
    earlier_seconds: float = 0.0
    running: bool = True

    @property
    def seconds(self) -> float:
        current = 0.0
        if self.running and self.started_at is not None:
            current = max((self.stopped_at - self.started_at).total_seconds(), 0.0)
        return max(self.earlier_seconds, 0.0) + current


def stopped_item(
    item_id: int,
    user_id: str,
    prior_status: str,
    started_at: datetime | None,
    stopped_at: datetime,
    earlier_seconds: float,
    status: StopStatus,
    error_type: str | None = None,
) -> StoppedItem | None:
    """The stop the hooks hear of, if the item had run by then: running (a segment under way), or parked between
    segments with earlier ones to its name. ``None`` for an item that never ran (or was already finished)."""
    earlier = float(earlier_seconds or 0.0)
    if prior_status == "in_progress" and started_at is not None:
        return StoppedItem(item_id, user_id, started_at, stopped_at, status, error_type, earlier, running=True)
    if prior_status in PARKED_STATUSES and earlier > 0:
        return StoppedItem(item_id, user_id, started_at, stopped_at, status, error_type, earlier, running=False)
    return None


class StopHook(Protocol):
    """Called with the running items a statement stopped, on that statement's connection, before it commits."""

    def __call__(self, conn: Connection, stopped: Sequence[StoppedItem]) -> None: ...


def deleted_while_running(rows: Iterable[Row[Any]]) -> list[StoppedItem]:
    """The rows a ``DELETE ... RETURNING item_id, user_id, status, started_at, stopped_at, earlier_run_seconds``
    removed while they were running or parked between segments (the others had finished, or never started)."""
    stops = (
        stopped_item(
            int(row.item_id),
            str(row.user_id),
            row.status,
            row.started_at,
            row.stopped_at,
            row.earlier_run_seconds,
            "deleted",
        )
        for row in rows
    )
    return [stop for stop in stops if stop is not None]


def canceled_while_parked(rows: Iterable[Row[Any]]) -> list[StoppedItem]:
    """The rows a bulk cancel of pending/waiting items (``UPDATE ... RETURNING item_id, user_id, started_at,
    completed_at, earlier_run_seconds``) moved that had run earlier segments: parked or resumed parents."""
    stops = (
        stopped_item(
            int(row.item_id),
            str(row.user_id),
            "waiting",
            row.started_at,
            row.completed_at,
            row.earlier_run_seconds,
            "canceled",
        )
        for row in rows
    )
    return [stop for stop in stops if stop is not None]


def run_stop_hooks(conn: Connection, hooks: Sequence[StopHook], stopped: Sequence[StoppedItem]) -> None:
    """Each hook in a savepoint of the stopping transaction: its writes commit with the stop, its failure is
    logged and rolled back alone (a stop must never fail because of what listens to it)."""
    if not stopped:
        return
    for hook in hooks:
        try:
            with conn.begin_nested():
                hook(conn, stopped)
        except Exception:
            logger.exception(f"A stop hook failed for queue items {[item.item_id for item in stopped]}")
