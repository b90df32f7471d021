"""The session queue of a worker process: ``dequeue`` takes a dispatch message and claims an item for it.

Stock's ``DefaultSessionProcessor`` runs unchanged in the worker and calls ``dequeue`` whenever it is free, so
this is the one place where SQS, the claim and the lease meet:

1. **The previous item ended** (the processor only asks again when it did): its lease is dropped; its message
   is deleted unless its workflow-call chain goes on here, and one parked message of its tier is handed out
   again, since its owner now has one item fewer running.
2. **Chain first**: items pinned to this worker (a workflow-call child, or the parent resumed after it) are
   claimed under the message the chain started with; their intermediates are on this worker's disk.
3. **Otherwise a message**: received highest tier first, then the claim, one transaction under a
   deployment-wide advisory lock: the next item in stock's round-robin order among this worker's tiers (the
   message's tier and below, highest tier first), owners at their running cap skipped. Messages are
   interchangeable within a tier, so a duplicate or stale message claims nothing (deleted) or the next item,
   whose own message later claims nothing; no item is claimed twice (the claim is conditional on ``pending``).
   When every pending item belongs to a capped owner, the message is parked (a count per tier) and deleted.
4. **The claim is a lease**: a row in ``session_queue_leases`` with a fencing token; every write this worker makes
   about the item (status transitions, the session) is conditional on it, so after the reaper took the item over
   a late write from here changes nothing. The worker's beat renews the lease and the message's visibility, and
   in the same statement reads each held item's status: an item deleted, canceled or failed by another process
   (or taken over) is reported, so the worker stops it within one beat whether or not the event reached it.
5. **The end of a run is written through a database outage**: status transitions, the session and the lease's
   release are retried for about a lease period (``invokeai_saas.worker.outage``). A run that ends without its
   outcome written (the retries ran out, the worker stopped it for a lease it could not renew, its thread died)
   leaves its item ``in_progress``; when the claim ends it is handed back to run again, not left claimed.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from invokeai.app.services.invoker import Invoker
from invokeai.app.services.session_queue.session_queue_common import (
    SessionQueueItem,
    SessionQueueItemNotFoundError,
)
from sqlalchemy import Connection, Engine, delete, exists, func, not_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from invokeai_saas.config import SaasSettings
from invokeai_saas.db.tables import dispatch_parked
from invokeai_saas.dispatch.fleet import FleetState
from invokeai_saas.dispatch.sqs_dispatch import DispatchToken, DispatchUnavailable, SqsDispatcher
from invokeai_saas.services.session_queue.session_queue_dispatching import (
    DispatchingSessionQueue,
    _seconds,
    leases,
    running_count_exceeds,
)
from invokeai_saas.services.session_queue.session_queue_postgres import (
    TERMINAL_STATUSES,
    _item_from_row,
    moved_to,
    sq,
)
from invokeai_saas.worker.outage import DatabaseUnavailable, retry_through_outage

logger = logging.getLogger("invokeai_saas.worker")

# Claims are serialised across the deployment: the running-cap check and the claim must be one atomic step.
_CLAIM_LOCK = "invokeai_saas.dispatch.claim"


@dataclass
class Claim:
    """An item this worker runs, under which message, with which fencing token."""

    item_id: int
    claim_token: str
    token: DispatchToken | None
    tier: int
    # This worker is recording the run's end itself (a transition out of in_progress): the beat leaves it alone.
    ending: bool = False
    # Why the beat found the item stopped elsewhere (each reason reported once: a delete cancels first).
    stop_reason: str | None = None
    # The run stopped, or its thread died, without its outcome written: the item goes back when the claim ends.
    unrecorded: bool = False


@dataclass(frozen=True)
class StoppedElsewhere:
    """A held item that must stop here: ``reason`` is ``deleted``, ``canceled``, ``failed`` (by another process,
    e.g. a spending cap) or ``taken over`` (the lease went to another worker after missed beats); ``first`` is
    whether this beat is the first to see it so (a deleted item may be seen canceled first)."""

    item_id: int
    reason: str
    first: bool


@dataclass
class _Slot:
    """One processing thread's state: the message it holds and the item it runs."""

    token: DispatchToken | None = None
    claim: Claim | None = None


class WorkerSessionQueue(DispatchingSessionQueue):
    def __init__(
        self, engine: Engine, dispatcher: SqsDispatcher, settings: SaasSettings, worker_id: str, tiers: Sequence[int]
    ) -> None:
        super().__init__(engine, dispatcher, settings)
        self.worker_id = worker_id
        self.tiers = sorted(set(tiers), reverse=True)
        self._slots: dict[int, _Slot] = {}
        self._fences: dict[int, str] = {}
        self._lock = threading.Lock()
        self._draining = threading.Event()
        self._paused = threading.Event()
        self._dequeue_lock = threading.Lock()

    def start(self, invoker: Invoker) -> None:
        """Stock's start, and the fleet's pause switch as it is now (a worker started while the fleet is paused
        takes no work until resume)."""
        super().start(invoker)
        self.set_paused(FleetState(self._engine).is_paused())

    def set_paused(self, paused: bool) -> None:
        """The fleet's pause switch, read by the worker on every beat: while paused no message is taken (the
        running item, and its workflow-call chain, finish), as stock's pause."""
        if paused:
            self._paused.set()
        else:
            self._paused.clear()

    # region dequeue

    def dequeue(self, device: str | None = None) -> SessionQueueItem | None:
        # Held for the whole call so ``drain`` can wait for a claim in flight: an item claimed as SIGTERM arrives
        # must be seen (and handed back), not left for the stopping processor to cancel.
        with self._dequeue_lock:
            try:
                return self._dequeue(device)
            finally:
                self._announce_unreadable_claims()  # items a claim failed as unreadable (``_claim_row``)

    def _dequeue(self, device: str | None) -> SessionQueueItem | None:
        slot = self._slot()
        if slot.claim is not None:
            self._finish(slot)
        if slot.token is not None:
            item = self._claim_pinned(slot, device)
            if item is not None:
                return item
            self._drop_token(slot)
        if self._draining.is_set() or self._paused.is_set():
            return None
        while True:
            try:
                token = self.dispatcher.receive(self.tiers)
            except DispatchUnavailable as e:
                logger.warning(f"{e}; trying again")
                return None
            if token is None:
                return None
            if token.tier not in self.tiers:
                continue
            item = self._claim_for(slot, token, device)
            if item is not None:
                return item

    def _slot(self) -> _Slot:
        with self._lock:
            return self._slots.setdefault(threading.get_ident(), _Slot())

    def _claim_for(self, slot: _Slot, token: DispatchToken, device: str | None) -> SessionQueueItem | None:
        """Claim the next item this message may start; delete (or park) the message when there is none."""
        config = self._invoker.services.configuration
        round_robin = config.multiuser and config.session_queue_mode == "round_robin"
        eligible = [
            sq.c.pinned_worker_id.is_(None),
            sq.c.dispatch_tier <= token.tier,
            sq.c.dispatch_tier.in_(self.tiers),
            not_(running_count_exceeds(sq.c.user_id, self.settings.max_running_per_user)),
        ]
        claim_token = uuid.uuid4().hex
        row = None
        parked = paused = False
        with self._engine.begin() as conn:
            self._lock_claims(conn)
            # Paused since this worker's last beat: no item starts once a pause has committed.
            paused = FleetState.paused_in(conn)
            if not paused:
                candidate = self._claim_candidate(conn, round_robin, eligible=eligible, tier_first=True)
                if candidate is not None:
                    row = self._claim_row(conn, candidate.item_id, device, attempts=sq.c.attempts + 1)
                if row is None:
                    parked = self._park_if_capped(conn, token)
                else:
                    self._write_lease(conn, row.item_id, claim_token)
        if paused:
            self._paused.set()
            self._release_token(token)
            return None
        if row is None:
            self._delete_token(token)
            if parked:
                logger.debug(f"Parked a tier-{token.tier} message: every pending item's owner is at their cap")
            return None
        return self._started(slot, row, claim_token, token)

    def _claim_pinned(self, slot: _Slot, device: str | None) -> SessionQueueItem | None:
        """The next pending item of a workflow-call chain pinned to this worker, under the chain's message."""
        claim_token = uuid.uuid4().hex
        with self._engine.begin() as conn:
            candidate = conn.execute(
                select(sq.c.item_id)
                .where(sq.c.status == "pending", sq.c.pinned_worker_id == self.worker_id)
                .order_by(sq.c.item_id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if candidate is None:
                return None
            row = self._claim_row(conn, candidate.item_id, device, attempts=sq.c.attempts + 1)
            if row is None:
                return None
            self._write_lease(conn, row.item_id, claim_token)
        return self._started(slot, row, claim_token, slot.token)

    def _started(self, slot: _Slot, row: Any, claim_token: str, token: DispatchToken | None) -> SessionQueueItem:
        queue_item = _item_from_row(row)
        slot.token = token
        slot.claim = Claim(queue_item.item_id, claim_token, token, int(row.dispatch_tier))
        with self._lock:
            self._fences[queue_item.item_id] = claim_token
        self._emit_status_changed(queue_item)
        return queue_item

    @staticmethod
    def _lock_claims(conn: Connection) -> None:
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(_CLAIM_LOCK, 0))))

    def _write_lease(self, conn: Connection, item_id: int, claim_token: str) -> None:
        expires = func.clock_timestamp() + _seconds(self.settings.worker_lease_seconds)
        conn.execute(
            pg_insert(leases)
            .values(item_id=item_id, worker_id=self.worker_id, claim_token=claim_token, lease_expires_at=expires)
            .on_conflict_do_update(
                index_elements=[leases.c.item_id],
                set_={"worker_id": self.worker_id, "claim_token": claim_token, "lease_expires_at": expires},
            )
        )

    def _park_if_capped(self, conn: Connection, token: DispatchToken) -> bool:
        """Nothing claimable: if that is because of running caps (pending work exists), count the message as
        parked, so an item's end hands it out again (``_finish``) rather than losing it."""
        waiting = conn.execute(
            select(
                exists().where(
                    sq.c.status == "pending",
                    sq.c.pinned_worker_id.is_(None),
                    sq.c.dispatch_tier <= token.tier,
                    sq.c.dispatch_tier.in_(self.tiers),
                )
            )
        ).scalar()
        if not waiting:
            return False
        conn.execute(
            pg_insert(dispatch_parked)
            .values(tier=token.tier, tokens=1)
            .on_conflict_do_update(
                index_elements=[dispatch_parked.c.tier], set_={"tokens": dispatch_parked.c.tokens + 1}
            )
        )
        return True

    # endregion

    # region the end of a run

    def _finish(self, slot: _Slot) -> bool:
        """The processor is done with the slot's item: drop the lease, and give back one parked message of its
        tier (the owner's running count just went down), under the claim lock so no claim parks in between.

        A run that ended without its outcome written (``Claim.unrecorded``) leaves the item ``in_progress`` under
        this claim: it is handed back to run again, its message released for it. The claim is forgotten only once
        that is written (retried through an outage; on failure the next dequeue tries again). Returns whether the
        item was handed back."""
        claim = slot.claim
        assert claim is not None

        def release() -> tuple[bool, bool, bool]:
            with self._engine.begin() as conn:
                self._lock_claims(conn)
                unrecorded = claim.unrecorded and not claim.ending
                moved, pinned = self._let_go(conn, claim, running_only=True) if unrecorded else (False, False)
                conn.execute(
                    delete(leases).where(leases.c.item_id == claim.item_id, leases.c.claim_token == claim.claim_token)
                )
                return moved, pinned, self.unpark(conn, claim.tier)

        moved, pinned, unparked = retry_through_outage(
            release, self._outage_budget, f"releasing queue item {claim.item_id}"
        )
        slot.claim = None
        with self._lock:
            self._fences.pop(claim.item_id, None)
        if moved:
            outcome = "it failed (a workflow call's intermediates stay here)" if pinned else "it runs again"
            logger.warning(f"Queue item {claim.item_id} ended here without its outcome written; {outcome}")
            if not pinned:
                token, slot.token = slot.token, None
                if token is not None:
                    self._release_token(token)
            self._emit_moved(claim.item_id)
        if unparked:
            self._send_tokens({claim.tier: 1})
        return moved

    def release_thread(self, thread_ident: int) -> int | None:
        """A processing thread died: let go of what it held (see ``_finish``), as its next dequeue would have.
        Returns the item it held, if any."""
        with self._lock:
            slot = self._slots.get(thread_ident)
        if slot is None:
            return None
        item_id = slot.claim.item_id if slot.claim is not None else None
        if slot.claim is not None:
            slot.claim.unrecorded = True
            self._finish(slot)
        self._drop_token(slot)
        with self._lock:
            self._slots.pop(thread_ident, None)
        return item_id

    def _let_go(self, conn: Connection, claim: Claim, *, running_only: bool) -> tuple[bool, bool]:
        """Move the claimed item back to ``pending`` (a workflow-call chain item, whose intermediates are on this
        worker's disk, fails with a clear error instead), conditional on the claim's fence. Returns whether it
        moved and whether it is pinned to this worker. ``running_only``: only an item still ``in_progress``
        (else any unfinished one); a run that ended unrecorded counts as an attempt, a drain does not."""
        fence = exists().where(leases.c.item_id == claim.item_id, leases.c.claim_token == claim.claim_token)
        pinned = conn.execute(select(sq.c.pinned_worker_id).where(sq.c.item_id == claim.item_id)).scalar() is not None
        if pinned:
            values = moved_to(
                "failed",
                "WorkerStoppedError",
                "The worker running this workflow call was stopped; its intermediates were lost.",
            )
        elif running_only:
            values = moved_to("pending")
        else:
            values = {**moved_to("pending"), "attempts": func.greatest(sq.c.attempts - 1, 0)}
        unfinished = sq.c.status == "in_progress" if running_only else sq.c.status.not_in(TERMINAL_STATUSES)
        moved = conn.execute(
            update(sq).where(sq.c.item_id == claim.item_id, unfinished, fence).values(**values).returning(sq.c.item_id)
        ).first()
        return moved is not None, pinned

    def _emit_moved(self, item_id: int) -> bool:
        try:
            self._emit_status_changed(self.get_queue_item(item_id))
        except (SessionQueueItemNotFoundError, DatabaseUnavailable):
            return False
        return True

    def _drop_token(self, slot: _Slot) -> None:
        token, slot.token = slot.token, None
        if token is not None:
            self._delete_token(token)

    def _release_token(self, token: DispatchToken) -> None:
        try:
            self.dispatcher.release(token)
        except DispatchUnavailable as e:
            logger.warning(f"{e}; the message comes back after its visibility timeout")

    def _delete_token(self, token: DispatchToken) -> None:
        try:
            self.dispatcher.delete(token)
        except DispatchUnavailable as e:
            # It reappears after its visibility timeout and then claims nothing (or the next item).
            logger.warning(f"{e}; the message will be delivered again and find nothing to do")

    # endregion

    # region fencing, beats, draining

    def _write_guard(self, item_id: int) -> list[Any]:
        with self._lock:
            claim_token = self._fences.get(item_id)
        if claim_token is None:
            return []
        return [exists().where(leases.c.item_id == item_id, leases.c.claim_token == claim_token)]

    def current_item_ids(self) -> list[int]:
        """Items this worker holds a claim on (handed-back items are no longer held)."""
        with self._lock:
            return sorted(slot.claim.item_id for slot in self._slots.values() if slot.claim is not None)

    def beat(self) -> list[StoppedElsewhere]:
        """Renew this worker's leases and its messages' visibility, and read the held items' status in the same
        statement. Returns the held items that must stop here (see ``StoppedElsewhere``): the cancel may never
        have reached this process as an event (Redis down), and a deleted item's lease went with it."""
        with self._lock:
            claims = [slot.claim for slot in self._slots.values() if slot.claim is not None]
            tokens = [slot.token for slot in self._slots.values() if slot.token is not None]
        stopped: list[StoppedElsewhere] = []
        if claims:
            item_ids = [claim.item_id for claim in claims]
            expires = func.clock_timestamp() + _seconds(self.settings.worker_lease_seconds)
            renewed = (
                update(leases)
                .where(
                    leases.c.worker_id == self.worker_id,
                    leases.c.item_id.in_(item_ids),
                    leases.c.claim_token.in_([claim.claim_token for claim in claims]),
                )
                .values(lease_expires_at=expires)
                .returning(leases.c.item_id)
                .cte("renewed")
            )
            with self._engine.begin() as conn:
                rows = conn.execute(
                    select(sq.c.item_id, sq.c.status, renewed.c.item_id.is_not(None).label("renewed"))
                    .select_from(sq.outerjoin(renewed, renewed.c.item_id == sq.c.item_id))
                    .where(sq.c.item_id.in_(item_ids))
                ).all()
            found = {row.item_id: row for row in rows}
            for claim in claims:
                reason = _stop_reason(found.get(claim.item_id))
                if reason is None or claim.ending:
                    continue
                stopped.append(StoppedElsewhere(claim.item_id, reason, first=claim.stop_reason != reason))
                claim.stop_reason = reason
        for token in tokens:
            try:
                self.dispatcher.extend(token)
            except DispatchUnavailable as e:
                logger.warning(f"{e}; the message may be delivered to another worker, which will find nothing to do")
        return stopped

    def drain(self) -> None:
        """Stop taking new messages (SIGTERM); the current item and its chain may finish. Returns once no claim
        is in flight, so ``current_item_ids`` then lists everything this worker holds."""
        self._draining.set()
        with self._dequeue_lock:
            return

    def hand_back(self, item_id: int) -> bool:
        """Give a running item back to the queue (pending again, this run not counted as an attempt) and release
        its message for another worker at once. A chain item cannot move (its intermediates are here): it fails
        with a clear error instead. Returns whether the item was handed back."""
        # The fence stays: with the lease row gone it refuses every later write of the run that is being stopped
        # here (which would otherwise complete the item it no longer holds).
        with self._lock:
            slot = next((s for s in self._slots.values() if s.claim and s.claim.item_id == item_id), None)
        claim = slot.claim if slot is not None else None
        if claim is None:
            return False

        def move() -> tuple[bool, bool]:
            with self._engine.begin() as conn:
                result = self._let_go(conn, claim, running_only=False)
                conn.execute(
                    delete(leases).where(leases.c.item_id == item_id, leases.c.claim_token == claim.claim_token)
                )
                return result

        moved, pinned = retry_through_outage(move, self._outage_budget, f"handing back queue item {item_id}")
        assert slot is not None
        slot.claim = None
        token, slot.token = slot.token, None
        if token is not None:
            try:
                if pinned:
                    self.dispatcher.delete(token)
                else:
                    self.dispatcher.release(token)
            except DispatchUnavailable as e:
                logger.warning(f"{e}; the message comes back after its visibility timeout")
        if not moved:
            return False
        return self._emit_moved(item_id) and not pinned

    # endregion

    # region writes about a running item ride out a database outage

    @property
    def _outage_budget(self) -> float:
        return self.settings.worker_lease_seconds

    def run_unrecorded(self, item_id: int) -> None:
        """The run of ``item_id`` ends without its outcome written (stopped here for a lease this worker could not
        renew, or its writes ran out of retries): hand the item back when the processor lets go of it."""
        claim = self._held_claim(item_id)
        if claim is not None:
            claim.unrecorded = True

    def _held_claim(self, item_id: int) -> Claim | None:
        with self._lock:
            return next((s.claim for s in self._slots.values() if s.claim and s.claim.item_id == item_id), None)

    def _transition_queue_item_status(self, item_id: int, status: Any, *args: Any, **kwargs: Any) -> Any:
        claim = self._held_claim(item_id)
        if claim is not None and status != "in_progress":
            claim.ending = True  # before the write: a beat that sees the new status must not call it a stop
        transition = super()._transition_queue_item_status
        return retry_through_outage(
            lambda: transition(item_id, status, *args, **kwargs),
            self._outage_budget,
            f"recording queue item {item_id} as {status}",
        )

    def save_queue_item_session(self, item_id: int, session: Any) -> None:
        save = super().save_queue_item_session
        retry_through_outage(
            lambda: save(item_id, session), self._outage_budget, f"saving the session of queue item {item_id}"
        )

    def get_queue_item(self, item_id: int) -> SessionQueueItem:
        get = super().get_queue_item
        return retry_through_outage(lambda: get(item_id), self._outage_budget, f"reading queue item {item_id}")

    def fail_queue_item(
        self, item_id: int, error_type: str, error_message: str, error_traceback: str
    ) -> SessionQueueItem:
        """Stock fails the item when a write about it raised; a database outage is not the item's failure: it is
        left ``in_progress`` and handed back when the processor lets go of it (``_finish``)."""
        if error_type == DatabaseUnavailable.__name__:
            self.run_unrecorded(item_id)
            logger.warning(f"Queue item {item_id} is not failed for a database outage; it is handed back")
            return self.get_queue_item(item_id)
        return super().fail_queue_item(item_id, error_type, error_message, error_traceback)

    def _emit_status_changed(self, queue_item: SessionQueueItem) -> None:
        """The event's reads are retried too; the transition it reports has committed, so an outage past the
        budget costs the event (clients read the status again), not the write."""
        emit = super()._emit_status_changed
        try:
            retry_through_outage(
                lambda: emit(queue_item), self._outage_budget, f"reporting queue item {queue_item.item_id}"
            )
        except DatabaseUnavailable:
            pass

    # endregion

    # region workflow-call chains stay on this worker

    def _workflow_call_child_columns(self, parent_queue_item: SessionQueueItem) -> dict[str, Any]:
        return {"pinned_worker_id": self.worker_id, "dispatch_tier": self._tier_of_item(parent_queue_item.item_id)}

    def enqueue_workflow_call_child(self, parent_queue_item: SessionQueueItem, *args: Any, **kwargs: Any) -> Any:
        """Pin the parent (and its root) here before the child exists: the parent resumes where its
        intermediates are, and the child runs under the parent's message (see ``dequeue``)."""
        root = parent_queue_item.root_item_id or parent_queue_item.item_id
        with self._engine.begin() as conn:
            conn.execute(
                update(sq)
                .where(sq.c.item_id.in_([parent_queue_item.item_id, root]), sq.c.pinned_worker_id.is_(None))
                .values(pinned_worker_id=self.worker_id)
            )
        return super().enqueue_workflow_call_child(parent_queue_item, *args, **kwargs)

    def _tier_of_item(self, item_id: int) -> int:
        with self._reads.connect() as conn:
            tier = conn.execute(select(sq.c.dispatch_tier).where(sq.c.item_id == item_id)).scalar()
        return int(tier or 0)

    # endregion


def _stop_reason(row: Any) -> str | None:
    """Why a held item must stop here, from its row as the beat read it (``None``: it may go on)."""
    if row is None:
        return "deleted"
    if row.status in ("canceled", "failed"):
        return str(row.status)
    if not row.renewed:
        return "taken over"
    return None
