"""PostgreSQL implementation of ``SessionQueueBase`` (stock: ``SqliteSessionQueue``).

Stock serialises every queue operation through one process-wide lock (``SqliteDatabase``'s RLock plus a
class-level dequeue lock). Several web and worker processes share this database, so every guarantee that
stock gets from that lock is rebuilt from the database itself:

- **Claims** (``dequeue``): the candidate row is locked with ``SELECT ... FOR UPDATE SKIP LOCKED`` and
  flipped to ``in_progress`` in the same transaction, so two dequeuers — threads or processes, each on
  its own connection — never claim the same item, and a dequeuer never waits behind another one's claim.
- **Status transitions** (complete/fail/cancel/suspend/resume): one ``UPDATE ... WHERE status NOT IN
  (<terminal>)``. Under READ COMMITTED a concurrent second writer blocks on the row lock and then
  re-evaluates the guard against the committed version, so exactly one caller observes itself as the one
  that moved the item (and only that caller emits ``queue_item_status_changed``).
- **Capacity and prepend priority** (``enqueue_batch``, ``retry_items_by_id``,
  ``enqueue_workflow_call_child``): a transaction-scoped advisory lock per queue id makes
  "count pending, pick priority, insert" atomic across processes, so ``max_queue_size`` holds however many
  processes enqueue at once.
- **Bulk cancels/deletes**: ``UPDATE/DELETE ... RETURNING`` reports exactly the rows the statement moved,
  so the ``queue_items_canceled`` event and the returned counts never include a row another process moved
  first.

Orderings that stock expresses on its millisecond text timestamps (``created_at``, ``started_at``,
``completed_at``) compare ``date_trunc('milliseconds', ...)`` here, with the item id as the tie-break in
the direction SQLite's stable sort produces (rows sharing a millisecond come back in insertion order), so
lists built from one batch (all enqueued within the same millisecond) come back in stock's order.

Workflow-call chains (parent items parked in ``waiting`` while a child runs) are walked with recursive
CTEs — two statements per operation whatever the depth — instead of stock's one query per link; the
resulting id order (ancestors nearest-first, the item, then the root's descendants breadth-first, children
by item id) is exactly stock's, because events are emitted in that order.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from invokeai.app.services.invoker import Invoker
from invokeai.app.services.session_queue.session_queue_base import SessionQueueBase
from invokeai.app.services.session_queue.session_queue_common import (
    DEFAULT_QUEUE_ID,
    QUEUE_ITEM_STATUS,
    Batch,
    BatchStatus,
    CancelAllExceptCurrentResult,
    CancelByBatchIDsResult,
    CancelByDestinationResult,
    CancelByQueueIDResult,
    ClearResult,
    DeleteAllExceptCurrentResult,
    DeleteByDestinationResult,
    EnqueueBatchResult,
    IsEmptyResult,
    IsFullResult,
    ItemIdsResult,
    NodeFieldValue,
    PruneResult,
    RetryItemsResult,
    SessionQueueCountsByDestination,
    SessionQueueItem,
    SessionQueueItemNotFoundError,
    SessionQueueItemSummary,
    SessionQueueStatus,
    TooManySessionsError,
    ValueToInsertTuple,
    calc_session_count,
    prepare_values_to_insert,
)
from invokeai.app.services.shared.graph import GraphExecutionState
from invokeai.app.services.shared.pagination import CursorPaginatedResults
from invokeai.app.services.shared.sqlite.sqlite_common import SQLiteDirection
from pydantic_core import to_jsonable_python
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Row,
    Select,
    Text,
    and_,
    any_,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from invokeai_saas.db.convert import stock_ms
from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.tables import session_queue, users
from invokeai_saas.services.session_queue.batch_values import check_batch_values
from invokeai_saas.services.session_queue.dispatch_order import dispatch_order
from invokeai_saas.services.session_queue.session_queue_stops import (
    StopHook,
    canceled_while_parked,
    deleted_while_running,
    run_stop_hooks,
    stopped_item,
)
from invokeai_saas.services.session_queue.session_queue_suspensions import owner_may_run
from invokeai_saas.services.session_queue.stored_items import (
    UNREADABLE_ERROR_TYPE,
    UNREADABLE_MESSAGE,
    is_unreadable,
    item_from_values,
    summary_from_values,
    unreadable_reason,
)

sq = session_queue

TERMINAL_STATUSES: tuple[str, ...] = ("completed", "failed", "canceled")

# Stock's device-affinity bounds (session_queue_sqlite.MAX_AFFINITY_MODEL_KEYS / AFFINITY_MAX_LOOKAHEAD).
MAX_AFFINITY_MODEL_KEYS = 50
AFFINITY_MAX_LOOKAHEAD = 32

# Unreadable rows a claim fails (and skips) before it gives up for this call (see ``_claim_row``).
MAX_UNREADABLE_PER_CLAIM = 8

# Namespace for the per-queue advisory lock taken by the operations that check capacity before inserting.
_QUEUE_LOCK_NAMESPACE = "invokeai_saas.session_queue:"

# The columns stock's ``_transition_queue_item_status`` re-reads and patches onto a caller-supplied item.
_STATUS_FIELDS = (
    "status",
    "status_sequence",
    "error_type",
    "error_message",
    "error_traceback",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "device",
)
_TIME_FIELDS = ("created_at", "updated_at", "started_at", "completed_at")

# What a delete returns: enough for the stop hooks to charge a row that was running when it went (its end is now),
# or a workflow-call parent parked between segments (its earlier segments).
_DELETED_COLUMNS = (
    sq.c.item_id,
    sq.c.user_id,
    sq.c.status,
    sq.c.started_at,
    func.clock_timestamp().label("stopped_at"),
    sq.c.earlier_run_seconds,
)
# What a bulk cancel of pending/waiting rows returns: a parked or resumed parent's earlier segments are charged.
_CANCELED_COLUMNS = (sq.c.item_id, sq.c.user_id, sq.c.started_at, sq.c.completed_at, sq.c.earlier_run_seconds)


def _segment_ended() -> dict[str, Any]:
    """A running item parks (``waiting``, a workflow-call parent waiting for its child): add the segment that ends
    now to its earlier segments, on the database's clock, so every later stop charges it (``session_queue_stops``)."""
    segment = func.greatest(func.extract("epoch", func.clock_timestamp() - sq.c.started_at), 0)
    running = and_(sq.c.status == "in_progress", sq.c.started_at.is_not(None))
    return {"earlier_run_seconds": sq.c.earlier_run_seconds + case((running, segment), else_=0)}


# The column order of upstream's ``ValueToInsertTuple`` (prepare_values_to_insert / retry_items_by_id).
_VALUE_TUPLE_COLUMNS = (
    "queue_id",
    "session",
    "session_id",
    "batch_id",
    "field_values",
    "priority",
    "workflow",
    "origin",
    "destination",
    "retried_from_item_id",
    "user_id",
)


def _ms(column: Any) -> ColumnElement[Any]:
    """A timestamp at stock's precision: SQLite keeps these columns as millisecond text."""
    return func.date_trunc("milliseconds", column)


def _int_array(values: Iterable[int]) -> ColumnElement[Any]:
    """One bound ``bigint[]`` parameter: ``= ANY(...)`` takes any number of ids in a single statement."""
    return cast(literal(list(values), ARRAY(BigInteger)), ARRAY(BigInteger))


def _ids_in(column: Any, values: Iterable[int]) -> ColumnElement[bool]:
    return column == any_(_int_array(values))


def _stock_row(row: Row[Any] | Mapping[str, Any]) -> dict[str, Any]:
    """A row as the dict stock's ``sqlite3.Row`` gives: timestamps as SQLite's millisecond text."""
    values = dict(row._mapping) if isinstance(row, Row) else dict(row)
    for name in _TIME_FIELDS:
        if name in values and isinstance(values[name], datetime):
            values[name] = stock_ms(values[name])
    return values


def _item_from_row(row: Row[Any]) -> SessionQueueItem:
    """Stock's ``queue_item_from_dict``, tolerant: a row whose stored JSON no longer parses is read as a placeholder
    item instead of failing the whole read (``stored_items``)."""
    return item_from_values(_stock_row(row))


def _item_select() -> Select[Any]:
    """``sq.* , u.display_name, u.email`` — the projection every stock read of a full item uses."""
    return select(sq, users.c.display_name.label("user_display_name"), users.c.email.label("user_email")).select_from(
        sq.outerjoin(users, users.c.user_id == sq.c.user_id)
    )


def _user_scope(user_id: str | None) -> list[ColumnElement[bool]]:
    return [sq.c.user_id == user_id] if user_id is not None else []


def _locked(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    """``item_id IN (<matching ids, locked in item-id order>)`` for bulk UPDATE/DELETE statements.

    Locking in one global order means two bulk statements over overlapping rows (say a cancel-by-batch
    and a cancel-all racing from two processes) queue behind each other instead of deadlocking; every
    other write locks a single row (a claim never waits: SKIP LOCKED). A row another writer changes
    first is re-checked against ``conditions`` once its lock is released, and dropped if it no longer
    matches.
    """
    return sq.c.item_id.in_(select(sq.c.item_id).where(*conditions).order_by(sq.c.item_id).with_for_update())


def _cancelable() -> ColumnElement[bool]:
    """Stock's bulk-cancel guard: not finished and not running (running items are canceled one by one)."""
    return sq.c.status.not_in((*TERMINAL_STATUSES, "in_progress"))


def moved_to(
    status: str, error_type: str | None = None, error_message: str | None = None, error_traceback: str | None = None
) -> dict[str, Any]:
    """The values of a status transition: the new status, the next status sequence (clients order status events by
    it), and the error fields, which every transition overwrites as stock's does."""
    return {
        "status": status,
        "status_sequence": func.coalesce(sq.c.status_sequence, 0) + 1,
        "error_type": error_type,
        "error_message": error_message,
        "error_traceback": error_traceback,
    }


def _status_counts(rows: Iterable[Row[Any]]) -> dict[str, int]:
    return {row[0]: row[1] for row in rows}


_COUNTED_STATUSES = ("pending", "in_progress", "waiting", "completed", "failed", "canceled")


def count_fields(counts: Mapping[str, int]) -> dict[str, int]:
    """Stock's count fields (queue status, batch status, counts by destination) from ``{status: items}``: one per
    status, 0 where it has none, and the total."""
    return {status: counts.get(status, 0) for status in _COUNTED_STATUSES} | {"total": sum(counts.values())}


def _group_by_user(rows: Iterable[Row[Any]]) -> dict[str, list[int]]:
    """``{owner: [item ids]}`` for the ``queue_items_canceled`` event, ids ascending.

    Stock lists them in the order of whichever index SQLite's planner walks for that statement (e.g. pending
    ids before waiting ones through the status index); which ids, for which owners, is what clients act on.
    """
    grouped: dict[str, list[int]] = {}
    for item_id, owner in sorted(((row[0], row[1]) for row in rows), key=lambda pair: pair[0]):
        grouped.setdefault(owner, []).append(item_id)
    return grouped


class EnqueueGuard(Protocol):
    """Checks (and accompanies) new items in their inserting transaction; see ``add_enqueue_guard``."""

    def on_enqueue(self, conn: Connection, user_id: str, batch: Batch, rows: Sequence[Row[Any]]) -> None: ...

    def on_workflow_call_child(
        self, conn: Connection, parent_queue_item: SessionQueueItem, child_session: GraphExecutionState, row: Row[Any]
    ) -> None: ...


class PostgresSessionQueue(SessionQueueBase):
    _invoker: Invoker

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self._reads = autocommit_reads(engine)
        self._enqueue_guards: list[EnqueueGuard] = []
        self._stop_hooks: list[StopHook] = []

    def add_enqueue_guard(self, guard: EnqueueGuard) -> None:
        """Run ``guard`` inside every transaction that makes new items runnable: enqueue and retry through the API
        (``on_enqueue``), and a workflow-call parent's children (``on_workflow_call_child``), which are new work too.
        It may write alongside the items (credit holds) or raise to refuse them, which rolls the items back; a
        refused child fails its parent, as stock does for any error while enqueuing children."""
        self._enqueue_guards.append(guard)

    def add_stop_hook(self, hook: StopHook) -> None:
        """Call ``hook`` in every transaction that stops a running item from outside its run: a transition from
        ``in_progress`` to ``canceled`` or ``failed``, or a delete of an ``in_progress`` row (see
        ``session_queue_stops``). Bulk cancels and deletes stop running items through the same two statements."""
        self._stop_hooks.append(hook)

    def _guard_enqueue(self, conn: Connection, user_id: str, batch: Batch, rows: Sequence[Row[Any]]) -> None:
        for guard in self._enqueue_guards:
            guard.on_enqueue(conn, user_id, batch, rows)

    def start(self, invoker: Invoker) -> None:
        """Stock's startup minus its "cancel everything in progress" sweep.

        Stock assumes it is the only process: anything ``in_progress`` or ``waiting`` at startup must have
        been orphaned by its own previous run, so it cancels those chains. On a shared database those rows
        belong to workers in *other* processes that are running them right now, so this start leaves them
        alone. Reclaiming the items of workers that really died is the job of distributed execution (a
        lease/heartbeat per claim), not of whichever process happens to start next.

        For the same reason ``clear_queue_on_startup`` is not honoured: every process start (a deploy, an
        autoscaling event) would delete the queue other processes are serving. It is logged instead; an
        operator who wants an empty queue calls ``clear``. As in stock, the flag disables the
        ``max_queue_history`` pruning, which only deletes finished items and is therefore safe (and
        idempotent) whichever process runs it.
        """
        self._invoker = invoker
        config = invoker.services.configuration
        if config.clear_queue_on_startup:
            invoker.services.logger.warning(
                "clear_queue_on_startup is ignored with the shared PostgreSQL session queue: other processes "
                "may be serving it. Clear the queue explicitly instead."
            )
            return
        if config.max_queue_history is not None:
            deleted = self._prune_terminal_to_limit(DEFAULT_QUEUE_ID, config.max_queue_history)
            if deleted > 0:
                invoker.services.logger.info(
                    f"Pruned {deleted} completed/failed/canceled queue items (kept up to {config.max_queue_history})"
                )

    # region internals

    def _prune_terminal_to_limit(self, queue_id: str, keep: int) -> int:
        """Delete finished items of ``queue_id`` beyond the ``keep`` most recently finished (stock's order)."""
        finished = and_(sq.c.queue_id == queue_id, sq.c.status.in_(TERMINAL_STATUSES))
        kept = (
            select(sq.c.item_id)
            .where(finished)
            .order_by(
                _ms(func.coalesce(sq.c.completed_at, sq.c.updated_at, sq.c.created_at)).desc(), sq.c.item_id.desc()
            )
            .limit(keep)
        )
        with self._engine.begin() as conn:
            deleted = conn.execute(
                delete(sq).where(_locked(finished, sq.c.item_id.not_in(kept))).returning(sq.c.item_id)
            ).all()
        return len(deleted)

    def _lock_queue(self, conn: Connection, queue_id: str) -> None:
        """Serialise capacity checks and inserts on one queue across processes (released at commit)."""
        key = func.hashtextextended(literal(_QUEUE_LOCK_NAMESPACE + queue_id), 0)
        conn.execute(select(func.pg_advisory_xact_lock(key)))

    @staticmethod
    def _pending_count(conn: Connection, queue_id: str) -> int:
        return conn.execute(
            select(func.count()).select_from(sq).where(sq.c.queue_id == queue_id, sq.c.status == "pending")
        ).scalar_one()

    def _insert_values(self, conn: Connection, values: Sequence[ValueToInsertTuple]) -> list[Row[Any]]:
        """Insert upstream-prepared value tuples (psycopg batches them into multi-row statements); returns each
        new row's ``item_id, user_id, queue_id, dispatch_tier``, for ``_dispatch_new`` once committed."""
        if not values:
            return []
        rows = [dict(zip(_VALUE_TUPLE_COLUMNS, value, strict=True)) for value in values]
        extras = self._insert_extras(conn, {str(row["user_id"]) for row in rows})
        for row in rows:
            row.update(extras.get(str(row["user_id"]), {}))
        return list(
            conn.execute(
                insert(sq).returning(
                    sq.c.item_id, sq.c.user_id, sq.c.queue_id, sq.c.dispatch_tier, sort_by_parameter_order=True
                ),
                rows,
            ).all()
        )

    # Extension points for distributed execution (``DispatchingSessionQueue``, ``WorkerSessionQueue``). Here,
    # where the API process runs graphs itself, new items need no extra columns and no dispatch, and every
    # write about an item is unconditional.

    def _insert_extras(self, conn: Connection, user_ids: set[str]) -> dict[str, dict[str, Any]]:
        """Extra column values for new items, per owner (inside the inserting transaction)."""
        return {}

    def _dispatch_new(self, rows: Sequence[Row[Any]]) -> None:
        """Called after the transaction that inserted ``rows`` (see ``_insert_values``) committed."""
        return None

    def _workflow_call_child_columns(self, parent_queue_item: SessionQueueItem) -> dict[str, Any]:
        """Extra column values for a workflow-call child."""
        return {}

    def _write_guard(self, item_id: int) -> list[ColumnElement[bool]]:
        """Extra conditions on every write about ``item_id`` (a worker's claim fence)."""
        return []

    def _fetch_item(self, conn: Connection, item_id: int) -> SessionQueueItem:
        row = conn.execute(_item_select().where(sq.c.item_id == item_id)).one_or_none()
        if row is None:
            raise SessionQueueItemNotFoundError(f"No queue item with id {item_id}")
        return _item_from_row(row)

    # Saas mode's per-owner queue views (``owner_views``): the status in each event is then the owner's own, as the
    # status route answers it (the studio copies it into its status cache). Off: stock's view.
    _owner_views = False

    def scope_views_to_owners(self) -> None:
        self._owner_views = True

    def _emit_status_changed(self, queue_item: SessionQueueItem) -> None:
        """Stock's event: batch status plus the owner's view of the queue status (current item redacted
        unless it is the owner's), computed after the transition committed."""
        batch_status = self.get_batch_status(queue_id=queue_item.queue_id, batch_id=queue_item.batch_id)
        if self._owner_views:
            from invokeai_saas.services.session_queue.owner_views import OwnerQueueViews

            queue_status: SessionQueueStatus = OwnerQueueViews(self).status(queue_item.queue_id, queue_item.user_id)
        else:
            queue_status = self.get_queue_status(
                queue_id=queue_item.queue_id, user_id=queue_item.user_id, acting_user_id=queue_item.user_id
            )
        self._invoker.services.events.emit_queue_item_status_changed(queue_item, batch_status, queue_status)

    def _set_queue_item_status(
        self,
        item_id: int,
        status: QUEUE_ITEM_STATUS,
        error_type: str | None = None,
        error_message: str | None = None,
        error_traceback: str | None = None,
        queue_item: SessionQueueItem | None = None,
    ) -> SessionQueueItem:
        return self._transition_queue_item_status(
            item_id, status, error_type, error_message, error_traceback, queue_item=queue_item
        )[0]

    def _transition_queue_item_status(
        self,
        item_id: int,
        status: QUEUE_ITEM_STATUS,
        error_type: str | None = None,
        error_message: str | None = None,
        error_traceback: str | None = None,
        queue_item: SessionQueueItem | None = None,
    ) -> tuple[SessionQueueItem, bool]:
        """Move an unfinished item to ``status``; return it and whether THIS call moved it.

        The terminal guard is part of the UPDATE itself, so it holds across processes (see the module
        docstring). As in stock: every transition overwrites the error fields with the given values, a
        caller-supplied ``queue_item`` is patched in place with the refreshed status columns (it carries a
        session the caller may have advanced), an item that was already finished comes back unchanged
        without an event, and a missing item raises ``SessionQueueItemNotFoundError``.
        """
        if queue_item is not None and queue_item.item_id != item_id:
            raise ValueError(f"Queue item {queue_item.item_id} does not match requested item {item_id}")

        moved = (
            update(sq)
            .where(sq.c.item_id == item_id, sq.c.status.not_in(TERMINAL_STATUSES), *self._write_guard(item_id))
            .values(
                **moved_to(status, error_type, error_message, error_traceback),
                **(_segment_ended() if status == "waiting" else {}),
            )
        )
        with self._engine.begin() as conn:
            # A stop hook needs the status the row had: read (and lock) it first, only for the ends it listens to
            # (a completion only when the item was parked: a workflow-call parent completed by its child's run).
            prior = None
            if self._stop_hooks and status in ("canceled", "failed", "completed"):
                prior = conn.execute(
                    select(sq.c.status, sq.c.user_id, sq.c.earlier_run_seconds)
                    .where(sq.c.item_id == item_id)
                    .with_for_update()
                ).one_or_none()
            if queue_item is None:
                changed = moved.returning(*sq.c).cte("changed")
                row = conn.execute(
                    select(
                        changed, users.c.display_name.label("user_display_name"), users.c.email.label("user_email")
                    ).select_from(changed.outerjoin(users, users.c.user_id == changed.c.user_id))
                ).one_or_none()
                if row is not None:
                    queue_item = _item_from_row(row)
            else:
                row = conn.execute(moved.returning(*(sq.c[name] for name in _STATUS_FIELDS))).one_or_none()
                if row is not None:
                    for name, value in _stock_row(row).items():
                        setattr(queue_item, name, value)
            if row is not None and prior is not None:
                values = row._mapping
                stopped = stopped_item(
                    item_id,
                    prior.user_id,
                    prior.status,
                    values["started_at"],
                    values["completed_at"],
                    prior.earlier_run_seconds,
                    status,
                    error_type,
                )
                if stopped is not None and not (status == "completed" and stopped.running):
                    run_stop_hooks(conn, self._stop_hooks, [stopped])
        if row is None:
            # Already finished (returned unchanged) or deleted (get_queue_item raises).
            return self.get_queue_item(item_id), False
        assert queue_item is not None
        self._emit_status_changed(queue_item)
        return queue_item, True

    @staticmethod
    def _ancestor_links(conn: Connection, seeds: Sequence[int]) -> dict[int, int | None]:
        """``{item_id: parent_item_id}`` for the seeds and all their ancestors (one recursive statement)."""
        links = (
            select(sq.c.item_id, sq.c.parent_item_id).where(_ids_in(sq.c.item_id, seeds)).cte("links", recursive=True)
        )
        parent = sq.alias("parent")
        links = links.union(
            select(parent.c.item_id, parent.c.parent_item_id).join(links, parent.c.item_id == links.c.parent_item_id)
        )
        return {
            row.item_id: row.parent_item_id for row in conn.execute(select(links.c.item_id, links.c.parent_item_id))
        }

    @staticmethod
    def _children_by_parent(conn: Connection, roots: Iterable[int]) -> dict[int, list[int]]:
        """Every descendant of ``roots``, as ``{parent: [children by item id]}`` (one recursive statement)."""
        roots = list(roots)
        if not roots:
            return {}
        tree = (
            select(sq.c.item_id, sq.c.parent_item_id)
            .where(_ids_in(sq.c.parent_item_id, roots))
            .cte("tree", recursive=True)
        )
        child = sq.alias("child")
        tree = tree.union(
            select(child.c.item_id, child.c.parent_item_id).join(tree, child.c.parent_item_id == tree.c.item_id)
        )
        children: dict[int, list[int]] = {}
        for row in conn.execute(select(tree.c.item_id, tree.c.parent_item_id).order_by(tree.c.item_id)):
            children.setdefault(row.parent_item_id, []).append(row.item_id)
        return children

    @staticmethod
    def _breadth_first(children: Mapping[int, list[int]], root: int) -> list[int]:
        """Stock's descendant order: breadth first from ``root``, each parent's children by item id."""
        descendants: list[int] = []
        frontier = [root]
        seen = {root}
        while frontier:
            current = frontier.pop(0)
            for child_id in children.get(current, []):
                if child_id in seen:  # a parent cycle would make stock loop forever; stop instead
                    continue
                seen.add(child_id)
                descendants.append(child_id)
                frontier.append(child_id)
        return descendants

    def _workflow_call_chains(self, conn: Connection, seeds: Sequence[int]) -> dict[int, list[int]]:
        """Each seed's workflow-call chain in stock's order: ancestors (nearest first), the item, then every
        descendant of the chain's root breadth first; duplicates keep their first position.

        Raises ``SessionQueueItemNotFoundError`` for a missing seed or a dangling parent link, as stock's
        item-by-item walk does.
        """
        if not seeds:
            return {}
        links = self._ancestor_links(conn, seeds)
        ancestors_by_seed: dict[int, list[int]] = {}
        for seed in seeds:
            if seed not in links:
                raise SessionQueueItemNotFoundError(f"No queue item with id {seed}")
            ancestors: list[int] = []
            parent_id = links[seed]
            while parent_id is not None and parent_id not in ancestors and parent_id != seed:
                if parent_id not in links:
                    raise SessionQueueItemNotFoundError(f"No queue item with id {parent_id}")
                ancestors.append(parent_id)
                parent_id = links[parent_id]
            ancestors_by_seed[seed] = ancestors
        roots = {seed: (ancestors[-1] if ancestors else seed) for seed, ancestors in ancestors_by_seed.items()}
        children = self._children_by_parent(conn, set(roots.values()))
        return {
            seed: list(dict.fromkeys([*ancestors_by_seed[seed], seed, *self._breadth_first(children, roots[seed])]))
            for seed in seeds
        }

    def _workflow_call_chain(self, item_id: int) -> list[int]:
        with self._reads.connect() as conn:
            return self._workflow_call_chains(conn, [item_id])[item_id]

    def _current_workflow_call_chain_item_ids(self, conn: Connection, queue_id: str) -> set[int]:
        """Ids in the chains of every in-progress item of the queue (several with several workers); with
        nothing running, the chain of the next pending child whose parent waits for it (stock's rule)."""
        in_progress_ids = list(
            conn.execute(
                select(sq.c.item_id)
                .where(sq.c.queue_id == queue_id, sq.c.status == "in_progress")
                .order_by(sq.c.item_id)
            ).scalars()
        )
        if not in_progress_ids:
            child, parent = sq.alias("child"), sq.alias("parent")
            next_child = conn.execute(
                select(child.c.item_id)
                .join(parent, parent.c.item_id == child.c.parent_item_id)
                .where(child.c.queue_id == queue_id, child.c.status == "pending", parent.c.status == "waiting")
                .order_by(child.c.priority.desc(), _ms(child.c.created_at), child.c.item_id)
                .limit(1)
            ).scalar_one_or_none()
            if next_child is None:
                return set()
            in_progress_ids = [next_child]
        chains = self._workflow_call_chains(conn, in_progress_ids)
        return {item_id for chain in chains.values() for item_id in chain}

    def _cancel_in_progress_matching(self, match: Sequence[ColumnElement[bool]]) -> list[int]:
        """Cancel each running item matching ``match`` through the status transition, so each emits its own
        ``queue_item_status_changed`` (the processor stops the worker running that item on it). Counts
        only the items this call moved; an item that vanished meanwhile needs no cancel."""
        with self._reads.connect() as conn:
            item_ids = list(
                conn.execute(
                    select(sq.c.item_id).where(sq.c.status == "in_progress", *match).order_by(sq.c.item_id)
                ).scalars()
            )
        canceled: list[int] = []
        for item_id in item_ids:
            try:
                _, transitioned = self._transition_queue_item_status(item_id, "canceled")
            except SessionQueueItemNotFoundError:
                continue
            if transitioned:
                canceled.append(item_id)
        return canceled

    def _emit_queue_items_canceled(self, queue_id: str, item_ids_by_user: dict[str, list[int]]) -> None:
        if item_ids_by_user:
            self._invoker.services.events.emit_queue_items_canceled(queue_id, item_ids_by_user)

    def _bulk_cancel(self, match: Sequence[ColumnElement[bool]]) -> dict[str, list[int]]:
        """Cancel the pending/waiting items matching ``match`` in one statement; ``{owner: ids}`` moved."""
        with self._engine.begin() as conn:
            rows = conn.execute(
                update(sq)
                .where(_locked(*match, _cancelable()))
                .values(status="canceled", status_sequence=func.coalesce(sq.c.status_sequence, 0) + 1)
                .returning(*_CANCELED_COLUMNS)
            ).all()
            run_stop_hooks(conn, self._stop_hooks, canceled_while_parked(rows))
        return _group_by_user(rows)

    def _claim_candidate(
        self,
        conn: Connection,
        round_robin: bool,
        eligible: Sequence[ColumnElement[bool]] = (),
        tier_first: bool = False,
    ) -> Row[Any] | None:
        """Lock the next item to serve (``FOR UPDATE SKIP LOCKED``): rows another dequeuer is claiming are
        skipped, not waited for, and a row claimed since this statement's snapshot fails the re-checked
        ``status = 'pending'`` and is skipped too.

        The order is ``dispatch_order``'s (FIFO: stock's query; round robin: stock's turns), which is what
        SKIP LOCKED needs: its first row is the item stock would serve, and a dequeuer that finds user A's item
        being claimed by another worker takes user B's next — what stock would serve next — rather than
        returning nothing while work is pending.

        Workers narrow the pending rows with ``eligible`` (their tiers, users under their running cap, no
        chain pinned elsewhere) and serve the highest scheduling tier first (``tier_first``), stock's order
        applying within a tier. With several users, an item whose owner is deactivated (or gone) is never claimed:
        stock claims it and then cancels it, charged for the instant it held the device; the suspension pass
        (``session_queue_suspensions``) cancels it instead.
        """
        owners = (owner_may_run(sq.c.user_id),) if self._invoker.services.configuration.multiuser else ()
        pending = (sq.c.status == "pending", *owners, *eligible)
        source, order = dispatch_order(pending, round_robin, tier_first)
        return conn.execute(
            select(sq.c.item_id, sq.c.user_id, sq.c.priority)
            .select_from(source)
            .where(*pending)
            .order_by(*order)
            .limit(1)
            .with_for_update(of=sq, skip_locked=True)
        ).one_or_none()

    def _affinity_choice(self, conn: Connection, candidate: Row[Any], resident_keys: set[str]) -> int:
        """Stock's device affinity: among the candidate owner's equal-priority pending items at most
        ``AFFINITY_MAX_LOOKAHEAD`` ids past it, prefer the one mentioning most of the models already
        cached on the claiming device (substring match on the session JSON); keep the candidate when
        none does. Only unlocked rows (or the candidate, which this transaction holds) qualify."""
        if not resident_keys:
            return candidate.item_id
        keys = sorted(resident_keys)[:MAX_AFFINITY_MODEL_KEYS]
        score = sum((cast(func.strpos(sq.c.session, key) > 0, Integer) for key in keys), literal(0))
        row = conn.execute(
            select(sq.c.item_id, score.label("affinity"))
            .where(
                sq.c.status == "pending",
                sq.c.user_id.is_not_distinct_from(candidate.user_id),
                sq.c.priority == candidate.priority,
                sq.c.item_id <= candidate.item_id + AFFINITY_MAX_LOOKAHEAD,
            )
            .order_by(score.desc(), sq.c.item_id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).one_or_none()
        if row is None or not row.affinity:
            return candidate.item_id
        return row.item_id

    def _get_device_resident_model_keys(self, device: str | None) -> set[str]:
        """Best-effort lookup of the model keys cached for ``device`` (affinity is only an optimisation)."""
        if device is None:
            return set()
        try:
            cache = self._invoker.services.model_manager.load.ram_caches.get(device)
            if cache is None:
                return set()
            return set(cache.cached_model_keys())
        except Exception:
            return set()

    # endregion

    # region enqueue / dequeue

    async def enqueue_batch(
        self, queue_id: str, batch: Batch, prepend: bool, user_id: str = "system"
    ) -> EnqueueBatchResult:
        # All database and CPU work (expanding a large batch) runs off the event loop, as in stock.
        return await asyncio.to_thread(self._enqueue_batch, queue_id, batch, prepend, user_id)

    def _enqueue_batch(self, queue_id: str, batch: Batch, prepend: bool, user_id: str) -> EnqueueBatchResult:
        """Expand the batch with upstream's helpers and insert it, under the queue's advisory lock so the
        free capacity and the prepend priority cannot change between reading and inserting."""
        check_batch_values(batch)  # a value its node refuses would make the stored row unreadable
        max_queue_size = self._invoker.services.configuration.max_queue_size
        requested_count = calc_session_count(batch=batch)
        with self._engine.begin() as conn:
            self._lock_queue(conn, queue_id)
            pending = sq.c.queue_id == queue_id, sq.c.status == "pending"
            current_size, highest = conn.execute(
                select(func.count(), func.max(sq.c.priority)).select_from(sq).where(*pending)
            ).one()
            priority = (highest or 0) + 1 if prepend else 0
            values_to_insert = prepare_values_to_insert(
                queue_id=queue_id,
                batch=batch,
                priority=priority,
                max_new_queue_items=max_queue_size - current_size,
                user_id=user_id,
            )
            inserted = self._insert_values(conn, values_to_insert)
            self._guard_enqueue(conn, user_id, batch, inserted)
            item_ids = list(
                conn.execute(
                    select(sq.c.item_id).where(sq.c.batch_id == batch.batch_id).order_by(sq.c.item_id.desc())
                ).scalars()
            )
        self._dispatch_new(inserted)
        enqueue_result = EnqueueBatchResult(
            queue_id=queue_id,
            requested=requested_count,
            enqueued=len(values_to_insert),
            batch=batch,
            priority=priority,
            item_ids=item_ids,
        )
        self._invoker.services.events.emit_batch_enqueued(enqueue_result, user_id=user_id)
        return enqueue_result

    def dequeue(self, device: str | None = None) -> SessionQueueItem | None:
        """Claim the next item (see ``_claim_candidate``) atomically across processes.

        As stock, the queue id is not a filter (every processor serves every queue) and the affinity
        reordering applies only in ``round_robin`` mode with a device whose cache can be inspected. The
        model-cache snapshot is taken before any row is locked: it may block on the cache lock, and a
        claim must not hold row locks (or a connection) while waiting for it.
        """
        config = self._invoker.services.configuration
        round_robin = config.multiuser and config.session_queue_mode == "round_robin"
        resident_keys = (
            self._get_device_resident_model_keys(device) if config.session_queue_mode == "round_robin" else set()
        )
        row = None
        with self._engine.begin() as conn:
            # A candidate whose stored data cannot be read is failed by its claim; the next one is tried (a few).
            for _ in range(1 + MAX_UNREADABLE_PER_CLAIM):
                candidate = self._claim_candidate(conn, round_robin)
                if candidate is None:
                    break
                chosen_id = self._affinity_choice(conn, candidate, resident_keys)
                row = self._claim_row(conn, chosen_id, device)  # the candidate row is locked by this transaction
                if row is not None:
                    break
        self._announce_unreadable_claims()
        if row is None:
            return None
        queue_item = _item_from_row(row)
        self._emit_status_changed(queue_item)
        return queue_item

    def _claim_row(self, conn: Connection, item_id: int, device: str | None, **values: Any) -> Row[Any] | None:
        """Flip ``item_id`` to ``in_progress`` (with ``values``) unless it finished; the full row, or None.

        A row whose stored session, field values or workflow no longer parse (``stored_items``) cannot run: it is
        failed instead, in the same transaction, with a message saying so, and None is returned as for a row
        that finished. Its status event goes out once the caller's transaction committed
        (``_announce_unreadable_claims``)."""
        claimed = (
            update(sq)
            .where(sq.c.item_id == item_id, sq.c.status.not_in(TERMINAL_STATUSES))
            .values(**moved_to("in_progress"), device=func.coalesce(literal(device, Text), sq.c.device), **values)
            .returning(*sq.c)
            .cte("claimed")
        )
        row = conn.execute(
            select(
                claimed, users.c.display_name.label("user_display_name"), users.c.email.label("user_email")
            ).select_from(claimed.outerjoin(users, users.c.user_id == claimed.c.user_id))
        ).one_or_none()
        reason = unreadable_reason(_stock_row(row)) if row is not None else None
        if reason is None:
            return row
        conn.execute(
            update(sq)
            .where(sq.c.item_id == item_id)
            .values(**moved_to("failed", UNREADABLE_ERROR_TYPE, f"{UNREADABLE_MESSAGE} ({reason})"))
        )
        self._claims_state().unreadable.append(item_id)
        return None

    def _claims_state(self) -> threading.local:
        state = self.__dict__.setdefault("_claims_local", threading.local())
        if not hasattr(state, "unreadable"):
            state.unreadable = []
        return state

    def _announce_unreadable_claims(self) -> None:
        """Emit the status change of each item this thread's last claim failed as unreadable (now committed)."""
        state = self._claims_state()
        failed, state.unreadable = state.unreadable, []
        for item_id in failed:
            self._invoker.services.logger.warning(
                f"Queue item {item_id} failed at its claim: its stored data is unreadable"
            )
            try:
                self._emit_status_changed(self.get_queue_item(item_id))
            except SessionQueueItemNotFoundError:
                continue

    def get_next(self, queue_id: str) -> SessionQueueItem | None:
        return self._first_item(queue_id, "pending")

    def get_current(self, queue_id: str) -> SessionQueueItem | None:
        return self._first_item(queue_id, "in_progress")

    def _first_item(self, queue_id: str, status: str, owner: str | None = None) -> SessionQueueItem | None:
        """The first item with ``status``: pending ones in stock's ``get_next`` order (priority, creation, id),
        running ones by id. ``owner`` keeps one user's items only (the saas views, ``owner_views``)."""
        order: tuple[Any, ...] = (sq.c.item_id,)
        if status == "pending":
            order = (sq.c.priority.desc(), _ms(sq.c.created_at), sq.c.item_id)
        with self._reads.connect() as conn:
            row = conn.execute(
                _item_select()
                .where(sq.c.queue_id == queue_id, sq.c.status == status, *_user_scope(owner))
                .order_by(*order)
                .limit(1)
            ).one_or_none()
        return _item_from_row(row) if row is not None else None

    # endregion

    # region queue-wide state

    def is_empty(self, queue_id: str) -> IsEmptyResult:
        with self._reads.connect() as conn:
            count = conn.execute(select(func.count()).select_from(sq).where(sq.c.queue_id == queue_id)).scalar_one()
        return IsEmptyResult(is_empty=count == 0)

    def is_full(self, queue_id: str) -> IsFullResult:
        """As stock: every item of the queue counts, finished ones included."""
        with self._reads.connect() as conn:
            count = conn.execute(select(func.count()).select_from(sq).where(sq.c.queue_id == queue_id)).scalar_one()
        return IsFullResult(is_full=count >= self._invoker.services.configuration.max_queue_size)

    def clear(self, queue_id: str, user_id: str | None = None) -> ClearResult:
        """Cancel the running items in scope first (each worker is signalled through its own event), then
        delete everything in scope. A user-scoped clear touches only that user's items."""
        match = [sq.c.queue_id == queue_id, *_user_scope(user_id)]
        self._cancel_in_progress_matching(match)
        with self._engine.begin() as conn:
            deleted = conn.execute(delete(sq).where(_locked(*match)).returning(*_DELETED_COLUMNS)).all()
            run_stop_hooks(conn, self._stop_hooks, deleted_while_running(deleted))
        self._invoker.services.events.emit_queue_cleared(queue_id, user_id)
        return ClearResult(deleted=len(deleted))

    def prune(self, queue_id: str, user_id: str | None = None) -> PruneResult:
        with self._engine.begin() as conn:
            deleted = conn.execute(
                delete(sq)
                .where(_locked(sq.c.queue_id == queue_id, sq.c.status.in_(TERMINAL_STATUSES), *_user_scope(user_id)))
                .returning(sq.c.item_id)
            ).all()
        return PruneResult(deleted=len(deleted))

    def get_queue_status(
        self,
        queue_id: str,
        user_id: str | None = None,
        acting_user_id: str | None = None,
        is_admin: bool = False,
    ) -> SessionQueueStatus:
        """Global counts, the caller's own counts and the current item, from ONE statement (one snapshot:
        under READ COMMITTED separate statements could each see a different queue)."""
        counts = (
            select(
                sq.c.status,
                func.count().label("total"),
                func.count().filter(sq.c.user_id == user_id).label("own"),
            )
            .where(sq.c.queue_id == queue_id)
            .group_by(sq.c.status)
            .subquery("counts")
        )
        current = (
            select(sq.c.item_id, sq.c.session_id, sq.c.batch_id, sq.c.user_id)
            .where(sq.c.queue_id == queue_id, sq.c.status == "in_progress")
            .order_by(sq.c.item_id)
            .limit(1)
            .subquery("current_item")
        )
        with self._reads.connect() as conn:
            rows = conn.execute(
                select(
                    counts.c.status,
                    counts.c.total,
                    counts.c.own,
                    current.c.item_id,
                    current.c.session_id,
                    current.c.batch_id,
                    current.c.user_id,
                ).select_from(counts.outerjoin(current, true()))
            ).all()
        totals = {row.status: row.total for row in rows}
        current_row = rows[0] if rows and rows[0].item_id is not None else None

        user_pending: int | None = None
        user_in_progress: int | None = None
        if user_id is not None:
            own = {row.status: row.own for row in rows}
            user_pending = own.get("pending", 0)
            user_in_progress = own.get("in_progress", 0)

        # Stock's redaction rule: the current item's identifiers only for admins, global callers and its owner.
        owner_user_id = user_id if acting_user_id is None else acting_user_id
        current_item_id = current_session_id = current_batch_id = None
        if current_row is not None and (is_admin or owner_user_id is None or current_row.user_id == owner_user_id):
            current_item_id = current_row.item_id
            current_session_id = current_row.session_id
            current_batch_id = current_row.batch_id

        return SessionQueueStatus(
            queue_id=queue_id,
            item_id=current_item_id,
            session_id=current_session_id,
            batch_id=current_batch_id,
            **count_fields(totals),
            user_pending=user_pending,
            user_in_progress=user_in_progress,
        )

    def get_batch_status(self, queue_id: str, batch_id: str, user_id: str | None = None) -> BatchStatus:
        with self._reads.connect() as conn:
            rows = conn.execute(
                select(sq.c.status, func.count(), func.min(sq.c.origin), func.min(sq.c.destination))
                .where(sq.c.queue_id == queue_id, sq.c.batch_id == batch_id, *_user_scope(user_id))
                .group_by(sq.c.status)
                .order_by(sq.c.status)
            ).all()
        counts = _status_counts(rows)
        return BatchStatus(
            batch_id=batch_id,
            origin=rows[0][2] if rows else None,
            destination=rows[0][3] if rows else None,
            queue_id=queue_id,
            **count_fields(counts),
        )

    def get_counts_by_destination(
        self, queue_id: str, destination: str, user_id: str | None = None
    ) -> SessionQueueCountsByDestination:
        with self._reads.connect() as conn:
            rows = conn.execute(
                select(sq.c.status, func.count())
                .where(sq.c.queue_id == queue_id, sq.c.destination == destination, *_user_scope(user_id))
                .group_by(sq.c.status)
            ).all()
        counts = _status_counts(rows)
        return SessionQueueCountsByDestination(
            queue_id=queue_id,
            destination=destination,
            **count_fields(counts),
        )

    # endregion

    # region single items

    def complete_queue_item(self, item_id: int, queue_item: SessionQueueItem | None = None) -> SessionQueueItem:
        return self._set_queue_item_status(item_id=item_id, status="completed", queue_item=queue_item)

    def suspend_queue_item(self, item_id: int, queue_item: SessionQueueItem | None = None) -> SessionQueueItem:
        return self._set_queue_item_status(item_id=item_id, status="waiting", queue_item=queue_item)

    def resume_queue_item(self, item_id: int, queue_item: SessionQueueItem | None = None) -> SessionQueueItem:
        return self._set_queue_item_status(item_id=item_id, status="pending", queue_item=queue_item)

    def fail_queue_item(
        self, item_id: int, error_type: str, error_message: str, error_traceback: str
    ) -> SessionQueueItem:
        return self._set_queue_item_status(
            item_id=item_id,
            status="failed",
            error_type=error_type,
            error_message=error_message,
            error_traceback=error_traceback,
        )

    def cancel_queue_item(self, item_id: int) -> SessionQueueItem:
        """Cancel the item's whole workflow-call chain, one transition (and event) per unfinished link."""
        for chain_item_id in self._workflow_call_chain(item_id):
            self._set_queue_item_status(item_id=chain_item_id, status="canceled")
        return self.get_queue_item(item_id)

    def delete_queue_item(self, item_id: int) -> None:
        """Delete the item's whole workflow-call chain, canceling it first if any link is unfinished (so a
        worker running one of them is signalled)."""
        chain = self._workflow_call_chain(item_id)
        with self._reads.connect() as conn:
            statuses = dict(conn.execute(select(sq.c.item_id, sq.c.status).where(_ids_in(sq.c.item_id, chain))).all())
        missing = [chain_item_id for chain_item_id in chain if chain_item_id not in statuses]
        if missing:
            raise SessionQueueItemNotFoundError(f"No queue item with id {missing[0]}")
        if any(status not in TERMINAL_STATUSES for status in statuses.values()):
            self.cancel_queue_item(item_id)
        self.delete_queue_items_by_id(chain)

    def delete_queue_items_by_id(self, item_ids: list[int]) -> None:
        if not item_ids:
            return
        with self._engine.begin() as conn:
            deleted = conn.execute(
                delete(sq).where(_locked(_ids_in(sq.c.item_id, item_ids))).returning(*_DELETED_COLUMNS)
            ).all()
            run_stop_hooks(conn, self._stop_hooks, deleted_while_running(deleted))

    def get_queue_item(self, item_id: int) -> SessionQueueItem:
        with self._reads.connect() as conn:
            return self._fetch_item(conn, item_id)

    def save_queue_item_session(self, item_id: int, session: GraphExecutionState) -> None:
        # exclude_none as stock: nulls in the graph fail validation when the session is loaded again.
        session_json = session.model_dump_json(warnings=False, exclude_none=True)
        with self._engine.begin() as conn:
            updated = conn.execute(
                update(sq)
                .where(sq.c.item_id == item_id, *self._write_guard(item_id))
                .values(session=session_json)
                .returning(sq.c.item_id)
            ).one_or_none()
        if updated is None and self._write_guard(item_id):
            return  # this worker's claim was taken over: the item's next run owns the session now
        if updated is None:
            raise SessionQueueItemNotFoundError(f"No queue item with id {item_id}")

    def set_queue_item_session(self, item_id: int, session: GraphExecutionState) -> SessionQueueItem:
        self.save_queue_item_session(item_id, session)
        return self.get_queue_item(item_id)

    # endregion

    # region bulk cancel / delete

    def cancel_by_batch_ids(
        self, queue_id: str, batch_ids: list[str], user_id: str | None = None
    ) -> CancelByBatchIDsResult:
        match = [sq.c.queue_id == queue_id, sq.c.batch_id.in_(batch_ids), *_user_scope(user_id)]
        canceled_by_user = self._bulk_cancel(match)
        count = sum(len(ids) for ids in canceled_by_user.values())
        count += len(self._cancel_in_progress_matching(match))
        self._emit_queue_items_canceled(queue_id, canceled_by_user)
        return CancelByBatchIDsResult(canceled=count)

    def cancel_by_destination(
        self, queue_id: str, destination: str, user_id: str | None = None
    ) -> CancelByDestinationResult:
        match = [sq.c.queue_id == queue_id, sq.c.destination == destination, *_user_scope(user_id)]
        canceled_by_user = self._bulk_cancel(match)
        count = sum(len(ids) for ids in canceled_by_user.values())
        count += len(self._cancel_in_progress_matching(match))
        self._emit_queue_items_canceled(queue_id, canceled_by_user)
        return CancelByDestinationResult(canceled=count)

    def cancel_by_queue_id(self, queue_id: str) -> CancelByQueueIDResult:
        match = [sq.c.queue_id == queue_id]
        canceled_by_user = self._bulk_cancel(match)
        count = sum(len(ids) for ids in canceled_by_user.values())
        count += len(self._cancel_in_progress_matching(match))
        self._emit_queue_items_canceled(queue_id, canceled_by_user)
        return CancelByQueueIDResult(canceled=count)

    def delete_by_destination(
        self, queue_id: str, destination: str, user_id: str | None = None
    ) -> DeleteByDestinationResult:
        """Cancel the running items first (each signalled by its own event), then delete every matching row;
        the bulk event lists only the rows that were not signalled already."""
        match = [sq.c.queue_id == queue_id, sq.c.destination == destination, *_user_scope(user_id)]
        signalled = set(self._cancel_in_progress_matching(match))
        with self._engine.begin() as conn:
            rows = conn.execute(delete(sq).where(_locked(*match)).returning(*_DELETED_COLUMNS)).all()
            run_stop_hooks(conn, self._stop_hooks, deleted_while_running(rows))
        deleted_by_user = _group_by_user(row for row in rows if row.item_id not in signalled)
        self._emit_queue_items_canceled(queue_id, deleted_by_user)
        return DeleteByDestinationResult(deleted=len(rows))

    def cancel_all_except_current(self, queue_id: str, user_id: str | None = None) -> CancelAllExceptCurrentResult:
        """Cancel pending/waiting items except the chains of running items (all of them: several workers)."""
        with self._engine.begin() as conn:
            protected = self._current_workflow_call_chain_item_ids(conn, queue_id)
            rows = conn.execute(
                update(sq)
                .where(
                    _locked(
                        sq.c.queue_id == queue_id,
                        sq.c.status.in_(("pending", "waiting")),
                        *_user_scope(user_id),
                        ~_ids_in(sq.c.item_id, protected),
                    )
                )
                .values(status="canceled", status_sequence=func.coalesce(sq.c.status_sequence, 0) + 1)
                .returning(*_CANCELED_COLUMNS)
            ).all()
            run_stop_hooks(conn, self._stop_hooks, canceled_while_parked(rows))
        canceled_by_user = _group_by_user(rows)
        self._emit_queue_items_canceled(queue_id, canceled_by_user)
        return CancelAllExceptCurrentResult(canceled=len(rows))

    def delete_all_except_current(self, queue_id: str, user_id: str | None = None) -> DeleteAllExceptCurrentResult:
        with self._engine.begin() as conn:
            protected = self._current_workflow_call_chain_item_ids(conn, queue_id)
            rows = conn.execute(
                delete(sq)
                .where(
                    _locked(
                        sq.c.queue_id == queue_id,
                        sq.c.status.in_(("pending", "waiting")),
                        *_user_scope(user_id),
                        ~_ids_in(sq.c.item_id, protected),
                    )
                )
                .returning(*_DELETED_COLUMNS)
            ).all()
            run_stop_hooks(conn, self._stop_hooks, deleted_while_running(rows))
        deleted_by_user = _group_by_user(rows)
        self._emit_queue_items_canceled(queue_id, deleted_by_user)
        return DeleteAllExceptCurrentResult(deleted=len(rows))

    # endregion

    # region lists

    def list_queue_items(
        self,
        queue_id: str,
        limit: int,
        priority: int,
        cursor: int | None = None,
        status: QUEUE_ITEM_STATUS | None = None,
        destination: str | None = None,
    ) -> CursorPaginatedResults[SessionQueueItem]:
        """A page in (priority desc, item id) order after the cursor item ``(priority, cursor)``.

        Deliberate difference from stock: stock appends the cursor condition as
        ``AND (priority < ?) OR (priority = ? AND item_id > ?)`` — SQL binds AND tighter than OR, so on every
        page after the first the second branch ignores the queue, status and destination filters and
        items of other statuses/destinations/queues leak into the page (shown in the suite). Here the
        cursor condition is parenthesised, so the filters hold on every page. Like stock, the items carry
        no user display name/email (stock selects ``session_queue`` alone here). No router calls this.
        """
        conditions: list[ColumnElement[bool]] = [sq.c.queue_id == queue_id]
        if status is not None:
            conditions.append(sq.c.status == status)
        if destination is not None:
            conditions.append(sq.c.destination == destination)
        if cursor is not None:
            conditions.append(or_(sq.c.priority < priority, and_(sq.c.priority == priority, sq.c.item_id > cursor)))
        with self._reads.connect() as conn:
            rows = conn.execute(
                select(sq).where(*conditions).order_by(sq.c.priority.desc(), sq.c.item_id).limit(limit + 1)
            ).all()
        items = [_item_from_row(row) for row in rows]
        has_more = len(items) > limit
        if has_more:
            items.pop()
        return CursorPaginatedResults(items=items, limit=limit, has_more=has_more)

    def list_all_queue_items(self, queue_id: str, destination: str | None = None) -> list[SessionQueueItem]:
        return self._all_items(queue_id, destination)

    def _all_items(
        self, queue_id: str, destination: str | None = None, owner: str | None = None
    ) -> list[SessionQueueItem]:
        """Stock's ``list_all_queue_items`` order (priority, then item id); ``owner`` keeps one user's items."""
        conditions: list[ColumnElement[bool]] = [sq.c.queue_id == queue_id, *_user_scope(owner)]
        if destination is not None:
            conditions.append(sq.c.destination == destination)
        with self._reads.connect() as conn:
            rows = conn.execute(_item_select().where(*conditions).order_by(sq.c.priority.desc(), sq.c.item_id)).all()
        return [_item_from_row(row) for row in rows]

    def get_queue_item_ids(
        self,
        queue_id: str,
        order_dir: SQLiteDirection = SQLiteDirection.Descending,
        user_id: str | None = None,
    ) -> ItemIdsResult:
        """By creation time at stock's millisecond precision; items created in the same millisecond (a
        batch) in insertion order whichever the direction, as SQLite's stable sort returns them."""
        created = _ms(sq.c.created_at)
        order = created.desc() if order_dir == SQLiteDirection.Descending else created.asc()
        with self._reads.connect() as conn:
            item_ids = list(
                conn.execute(
                    select(sq.c.item_id)
                    .where(sq.c.queue_id == queue_id, *_user_scope(user_id))
                    .order_by(order, sq.c.item_id)
                ).scalars()
            )
        return ItemIdsResult(item_ids=item_ids, total_count=len(item_ids))

    def get_queue_item_summaries_by_ids(self, queue_id: str, item_ids: list[int]) -> list[SessionQueueItemSummary]:
        return self._summaries_by_ids(queue_id, item_ids)

    def _summaries_by_ids(
        self, queue_id: str, item_ids: list[int], owner: str | None = None
    ) -> list[SessionQueueItemSummary]:
        """One statement for any number of ids (one ``bigint[]`` parameter); results in the requested order,
        unknown ids and other queues' items skipped, repeated ids repeated — as stock. ``owner`` skips other
        users' items too."""
        if not item_ids:
            return []
        with self._reads.connect() as conn:
            rows = conn.execute(
                select(
                    sq.c.item_id,
                    sq.c.created_at,
                    sq.c.status,
                    sq.c.device,
                    sq.c.started_at,
                    sq.c.completed_at,
                    sq.c.origin,
                    sq.c.destination,
                    sq.c.batch_id,
                    sq.c.user_id,
                    users.c.display_name.label("user_display_name"),
                    users.c.email.label("user_email"),
                    sq.c.field_values,
                    sq.c.parent_item_id,
                )
                .select_from(sq.outerjoin(users, users.c.user_id == sq.c.user_id))
                .where(sq.c.queue_id == queue_id, _ids_in(sq.c.item_id, item_ids), *_user_scope(owner))
            ).all()
        summaries = {row.item_id: summary_from_values(_stock_row(row)) for row in rows}
        return [summaries[item_id] for item_id in item_ids if item_id in summaries]

    # endregion

    # region workflow calls and retries

    def enqueue_workflow_call_child(
        self,
        parent_queue_item: SessionQueueItem,
        child_session: GraphExecutionState,
        field_values: list[NodeFieldValue] | None = None,
    ) -> SessionQueueItem:
        """Queue a child execution for a parent parked on a workflow call; it inherits the parent's batch,
        priority, owner, origin and destination, and counts against the queue's capacity (checked under the
        queue's advisory lock, like ``enqueue_batch``)."""
        workflow_call_execution = parent_queue_item.session.waiting_workflow_call_execution
        if workflow_call_execution is None:
            raise ValueError("Parent queue item is missing active workflow call execution metadata.")

        session_json = child_session.model_dump_json(warnings=False, exclude_none=True)
        field_values_json = json.dumps(field_values, default=to_jsonable_python) if field_values is not None else None
        root_item_id = parent_queue_item.root_item_id or parent_queue_item.item_id

        with self._engine.begin() as conn:
            self._lock_queue(conn, parent_queue_item.queue_id)
            if (
                self._pending_count(conn, parent_queue_item.queue_id)
                >= self._invoker.services.configuration.max_queue_size
            ):
                raise TooManySessionsError(
                    "call_saved_workflow exceeds remaining queue capacity for child workflow executions"
                )
            inserted = (
                insert(sq)
                .values(
                    queue_id=parent_queue_item.queue_id,
                    session=session_json,
                    session_id=child_session.id,
                    batch_id=parent_queue_item.batch_id,
                    field_values=field_values_json,
                    priority=parent_queue_item.priority,
                    workflow=None,
                    origin=parent_queue_item.origin,
                    destination=parent_queue_item.destination,
                    retried_from_item_id=None,
                    user_id=parent_queue_item.user_id,
                    workflow_call_id=workflow_call_execution.id,
                    parent_item_id=parent_queue_item.item_id,
                    parent_session_id=parent_queue_item.session_id,
                    root_item_id=root_item_id,
                    workflow_call_depth=workflow_call_execution.depth,
                    status="pending",
                    **self._workflow_call_child_columns(parent_queue_item),
                )
                .returning(*sq.c)
                .cte("inserted")
            )
            row = conn.execute(
                select(
                    inserted, users.c.display_name.label("user_display_name"), users.c.email.label("user_email")
                ).select_from(inserted.outerjoin(users, users.c.user_id == inserted.c.user_id))
            ).one()
            for guard in self._enqueue_guards:
                guard.on_workflow_call_child(conn, parent_queue_item, child_session, row)
        queue_item = _item_from_row(row)
        self._emit_status_changed(queue_item)
        return queue_item

    def cancel_workflow_call_children(
        self, workflow_call_id: str, exclude_item_ids: set[int] | None = None
    ) -> list[int]:
        """Cancel a workflow call's children and their descendants (not the waiting parent chain), in
        stock's order: each child by item id, followed by its descendants breadth first.

        Returns the ids this call canceled. Stock also lists an item that another writer finished between
        its read and its cancel; here only items this call actually moved are listed (the same list
        whenever nothing else touches the chain meanwhile)."""
        exclude_item_ids = exclude_item_ids or set()
        with self._reads.connect() as conn:
            child_ids = list(
                conn.execute(
                    select(sq.c.item_id).where(sq.c.workflow_call_id == workflow_call_id).order_by(sq.c.item_id)
                ).scalars()
            )
            children = self._children_by_parent(conn, child_ids)
            ordered = list(
                dict.fromkeys(
                    item_id
                    for child_id in child_ids
                    for item_id in (child_id, *self._breadth_first(children, child_id))
                )
            )
            candidates = [item_id for item_id in ordered if item_id not in exclude_item_ids]
            statuses = dict(
                conn.execute(select(sq.c.item_id, sq.c.status).where(_ids_in(sq.c.item_id, candidates))).all()
            )
        canceled: list[int] = []
        for item_id in candidates:
            if item_id not in statuses:
                raise SessionQueueItemNotFoundError(f"No queue item with id {item_id}")
            if statuses[item_id] in TERMINAL_STATUSES:
                continue
            _, transitioned = self._transition_queue_item_status(item_id, "canceled")
            if transitioned:
                canceled.append(item_id)
        return canceled

    def retry_items_by_id(self, queue_id: str, item_ids: list[int]) -> RetryItemsResult:
        """Re-enqueue the roots of the given failed/canceled items as fresh sessions (stock's rules: items of
        other queues or in other states are skipped, a chain is retried once, through its root, and only
        while the root itself failed or was canceled), up to the queue's free capacity."""
        with self._engine.begin() as conn:
            self._lock_queue(conn, queue_id)
            max_new_queue_items = self._invoker.services.configuration.max_queue_size - self._pending_count(
                conn, queue_id
            )
            if max_new_queue_items <= 0:
                return RetryItemsResult(queue_id=queue_id, retried_item_ids=[])

            requested = sq.alias("requested")
            roots = select(requested.c.root_item_id).where(
                _ids_in(requested.c.item_id, item_ids), requested.c.root_item_id.is_not(None)
            )
            rows = conn.execute(
                _item_select().where(or_(_ids_in(sq.c.item_id, item_ids), sq.c.item_id.in_(roots)))
            ).all()
            items = {row.item_id: _item_from_row(row) for row in rows}

            values_to_insert: list[ValueToInsertTuple] = []
            retried_batches: list[Batch] = []
            retried_root_item_ids: list[int] = []
            retried_user_ids: list[str] = []
            retried_item_ids_by_user: dict[str, list[int]] = {}
            seen_root_item_ids: set[int] = set()
            for item_id in item_ids:
                queue_item = items.get(item_id)
                if queue_item is None or queue_item.queue_id != queue_id:
                    continue
                if queue_item.status not in ("failed", "canceled") or is_unreadable(queue_item):
                    continue  # an unreadable item has no graph to run again
                root_item_id = queue_item.root_item_id or queue_item.item_id
                if root_item_id in seen_root_item_ids:
                    continue
                seen_root_item_ids.add(root_item_id)
                root_queue_item = items.get(root_item_id)
                if root_queue_item is None:
                    raise SessionQueueItemNotFoundError(f"No queue item with id {root_item_id}")
                if root_queue_item.status not in ("failed", "canceled") or is_unreadable(root_queue_item):
                    continue

                retried_root_item_ids.append(root_item_id)
                retried_user_ids.append(root_queue_item.user_id)
                retried_item_ids_by_user.setdefault(root_queue_item.user_id, []).append(root_item_id)
                values_to_insert.append(self._retry_values(root_queue_item))
                # The guards see what is enqueued again: the graph, and the workflow it was built in (if any).
                retried_batches.append(
                    Batch(
                        batch_id=root_queue_item.batch_id,
                        graph=root_queue_item.session.graph,
                        workflow=root_queue_item.workflow,
                    )
                )
                if len(values_to_insert) >= max_new_queue_items:
                    break
            inserted = self._insert_values(conn, values_to_insert)
            if self._enqueue_guards:
                for row, retried_batch in zip(inserted, retried_batches, strict=True):
                    self._guard_enqueue(conn, str(row.user_id), retried_batch, [row])
        self._dispatch_new(inserted)

        retry_result = RetryItemsResult(queue_id=queue_id, retried_item_ids=retried_root_item_ids)
        self._invoker.services.events.emit_queue_items_retried(
            retry_result,
            user_ids=list(dict.fromkeys(retried_user_ids)),
            retried_item_ids_by_user=retried_item_ids_by_user,
        )
        return retry_result

    @staticmethod
    def _retry_values(root_queue_item: SessionQueueItem) -> ValueToInsertTuple:
        """Stock's retry row: a fresh session over the root's graph, pointing back at the original item."""
        field_values_json = (
            json.dumps(root_queue_item.field_values, default=to_jsonable_python)
            if root_queue_item.field_values
            else None
        )
        workflow_json = (
            json.dumps(root_queue_item.workflow, default=to_jsonable_python) if root_queue_item.workflow else None
        )
        cloned_session = GraphExecutionState(graph=root_queue_item.session.graph)
        retried_from_item_id = (
            root_queue_item.retried_from_item_id
            if root_queue_item.retried_from_item_id is not None
            else root_queue_item.item_id
        )
        return (
            root_queue_item.queue_id,
            cloned_session.model_dump_json(warnings=False, exclude_none=True),
            cloned_session.id,
            root_queue_item.batch_id,
            field_values_json,
            root_queue_item.priority,
            workflow_json,
            root_queue_item.origin,
            root_queue_item.destination,
            retried_from_item_id,
            root_queue_item.user_id,
        )

    # endregion
