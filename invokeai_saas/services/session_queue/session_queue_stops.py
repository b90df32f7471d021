"""Stop hooks of the PostgreSQL session queue: what the queue tells its listeners when a running item is stopped
from outside its run (canceled, failed by the service, deleted), inside the transaction that stops it.

Why in the queue: an item can be stopped by a dozen routes (cancel, delete, clear, cancel by batch or destination,
delete by destination...) and by processes that never run it (an API process, the spending-cap pass). The runner's
own callbacks see none of that when the row is gone (a deleted item's run ends with ``SessionQueueItemNotFoundError``
and no callback), so whatever must happen once per stop — charging the time the item ran — hangs on the one place
every stop goes through: the statement that moves or deletes the row. The hook runs in that statement's transaction
(in a savepoint: a failing hook is logged and never blocks the stop), so the stop and what it causes commit together.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from sqlalchemy import Connection, Row

logger = logging.getLogger("invokeai_saas.session_queue")

StopStatus = Literal["canceled", "failed", "deleted"]


@dataclass(frozen=True)
class StoppedItem:
    """A running item that was stopped, with both ends of its run on the database's clock."""

    item_id: int
    user_id: str
    started_at: datetime
    stopped_at: datetime
    status: StopStatus
    error_type: str | None = None

    @property
    def seconds(self) -> float:
        return max((self.stopped_at - self.started_at).total_seconds(), 0.0)


class StopHook(Protocol):
    """Called with the running items a statement stopped, on that statement's connection, before it commits."""

    def __call__(self, conn: Connection, stopped: Sequence[StoppedItem]) -> None: ...


def deleted_while_running(rows: Iterable[Row[Any]]) -> list[StoppedItem]:
    """The rows a ``DELETE ... RETURNING item_id, user_id, status, started_at, stopped_at`` removed while they
    were running (the others had finished, or never started)."""
    return [
        StoppedItem(int(row.item_id), str(row.user_id), row.started_at, row.stopped_at, "deleted")
        for row in rows
        if row.status == "in_progress" and row.started_at is not None
    ]


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
