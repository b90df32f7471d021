"""Charging a running item that is stopped from outside its run: the time it ran, exactly once.

The studio's Cancel deletes the item (``DELETE /api/v1/queue/default/i/{id}``); "Cancel and Clear All" clears the
queue; a user may cancel by item, batch or destination; the spending cap (``invokeai_saas.credits.cap``) fails an
item that reached what its owner can pay, or its plan's longest run. A deleted item's run ends without any runner
callback (the row is gone), so the worker's ``SessionCharger`` cannot charge it, and its hold would be released by
the backstop: free GPU time. ``StopCharger`` is the session queue's stop hook
(``PostgresSessionQueue.add_stop_hook``): it charges in the very transaction that stops the item, for the seconds
between its start and the stop on the database's clock (× the plan's multiplier, rounded up), at most what the user
can pay unless the plan allows debt.

A workflow-call parent runs in segments and parks (``waiting``) while its child runs: a stop while it runs charges its
earlier segments too, and a stop while it is parked (or resumed but not yet claimed) charges the earlier segments
alone (``session_queue_stops``: the queue writes each segment's seconds when it parks). So does a parked parent that
its child's run completes (the call was its last node): no runner of its own settles it. The child is an item of its
own, held and charged for its own run.

Exactly once: the ledger settles an item once (its usage record), so the worker's own settlement when the run
ends afterwards changes nothing, and neither does a second stop (a delete after a cancel, a duplicate request).
Time after the stop is therefore never charged, however long the device takes to notice.

Failures that are the item's own (a node raised) are the ``SessionCharger``'s: they are not charged. Failures the
service imposes on a running item are charged the time it ran: the spending cap's two, and a plan refusal at run
time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import Connection

from invokeai_saas.credits.ledger import CreditLedger, Usage, credits_for
from invokeai_saas.credits.limits import PlanLimitExceeded
from invokeai_saas.credits.plans import PlanService
from invokeai_saas.services.session_queue.session_queue_stops import StoppedItem

logger = logging.getLogger("invokeai_saas.credits")

# The error types of the spending cap's stops (``invokeai_saas.credits.cap``).
OUT_OF_CREDITS = "OutOfCredits"
RUN_TIME_LIMIT = "RunTimeLimitExceeded"

# Failures of a running item that are charged the time it ran (the others are the run's own failures).
CHARGED_FAILURES = frozenset({OUT_OF_CREDITS, RUN_TIME_LIMIT, PlanLimitExceeded.__name__})


def is_charged(item: StoppedItem) -> bool:
    return item.status != "failed" or item.error_type in CHARGED_FAILURES


class StopCharger:
    """The stop hook that settles stopped running items (see the module docstring)."""

    def __init__(self, ledger: CreditLedger) -> None:
        self._ledger = ledger

    def __call__(self, conn: Connection, stopped: Sequence[StoppedItem]) -> None:
        # One user's account row at a time, in one order, so two bulk stops never wait on each other in a cycle.
        for item in sorted(stopped, key=lambda i: (i.user_id, i.item_id)):
            if is_charged(item):
                self._charge(conn, item)

    def _charge(self, conn: Connection, item: StoppedItem) -> None:
        subscription = PlanService.subscription_in(conn, item.user_id)
        limits = subscription.limits if subscription is not None else None
        seconds = item.seconds
        settlement = self._ledger.settle_in(
            conn,
            item.user_id,
            item.item_id,
            credits_for(seconds, limits.credit_multiplier if limits is not None else 1.0),
            Usage(seconds=seconds, gpu_tier=limits.gpu_tier if limits is not None else "standard"),
            limit_to_balance=not (limits is not None and limits.allow_debt),
            details=_details(item),
        )
        if not settlement.already_settled:
            state = "" if item.running else " (parked for a workflow call)"
            logger.info(
                f"Queue item {item.item_id} {item.status}{state} after {seconds:.1f}s: "
                f"charged {settlement.charged} credits"
            )


def _details(item: StoppedItem) -> dict[str, object]:
    """Why the settle entries exist: the stop, and for a parent between segments that it was parked."""
    details: dict[str, object] = {
        "stopped": item.status if item.error_type is None else f"{item.status}: {item.error_type}"
    }
    if not item.running:
        details["parked"] = True
    return details
