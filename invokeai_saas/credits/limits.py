"""Plan limits checked when items are enqueued, server-side, with messages that say what the plan allows.

``enforce_plan_limits`` runs in the enqueue guard (``invokeai_saas.credits.settlement.CreditHoldGuard``), before
the hold, in the transaction that inserts the items, after the user's account row is locked, so two concurrent
enqueues cannot both slip under the queue-size limit. Each refusal is a ``PlanLimitExceeded`` with the HTTP status
the enqueue route answers:

- batch size (items in one enqueue) above ``max_batch_size``: 403;
- a width or height above ``max_resolution``: 403;
- a main model whose base is outside the plan's ``model_access`` (``sd_only``: SD 1.x, 2.x and SDXL;
  ``flux_included``: those and FLUX; ``full``: any): 403;
- storage (media on S3, ``user_storage_usage``) at or over ``storage_gb``: 403, since every generation adds media;
- more of the user's items pending or running than ``queue_size``: 429.

The running cap (``concurrent_jobs``) is enforced where items start, by the scheduler (see
``invokeai_saas.services.session_queue.session_queue_dispatching``), not here.
"""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from invokeai_saas.credits.estimate import CostEstimate
from invokeai_saas.credits.ledger import CreditLedger
from invokeai_saas.credits.plans import Subscription
from invokeai_saas.db.tables import session_queue, user_storage_usage

SD_BASES = frozenset({"sd-1", "sd-2", "sdxl", "sdxl-refiner"})
FLUX_BASES = frozenset({"flux", "flux2"})
BYTES_PER_GB = 1024**3
UPGRADE = "Move to a larger plan for more (plans: GET /api/v1/saas/plans)."


class PlanLimitExceeded(Exception):
    """A request the user's plan does not allow; ``status_code`` and ``detail`` are the HTTP answer."""

    def __init__(self, status_code: int, detail: str) -> None:
        self.status_code = status_code
        self.detail = detail
        super().__init__(detail)


def model_allowed(model_access: str, base: str | None) -> bool:
    if base is None or model_access == "full":
        return True
    if model_access == "flux_included":
        return base in SD_BASES | FLUX_BASES
    return base in SD_BASES


def enforce_plan_limits(
    conn: Connection, user_id: str, subscription: Subscription, estimate: CostEstimate, item_count: int
) -> None:
    """Refuse (``PlanLimitExceeded``) new items the subscription's plan does not allow; see the module docstring."""
    limits = subscription.limits
    plan = f"Your plan ({subscription.plan.name})"
    if item_count > limits.max_batch_size:
        raise PlanLimitExceeded(
            403, f"{plan} allows batches of up to {limits.max_batch_size} items; this one has {item_count}. {UPGRADE}"
        )
    largest = max(estimate.width, estimate.height)
    if largest > limits.max_resolution:
        raise PlanLimitExceeded(
            403,
            f"{plan} allows images up to {limits.max_resolution} pixels wide or high; this asks for {largest}. "
            f"{UPGRADE}",
        )
    if not model_allowed(limits.model_access, estimate.model_base):
        raise PlanLimitExceeded(403, f"{plan} does not include {estimate.model_base} models. {UPGRADE}")
    used = conn.execute(
        select(func.coalesce(func.max(user_storage_usage.c.bytes), 0)).where(user_storage_usage.c.user_id == user_id)
    ).scalar_one()
    if used >= limits.storage_gb * BYTES_PER_GB:
        raise PlanLimitExceeded(
            403,
            f"{plan} includes {limits.storage_gb} GB of storage and it is full; delete images or videos to "
            f"generate more. {UPGRADE}",
        )
    CreditLedger.lock_account(conn, user_id)  # serialises this user's enqueues: the count below stays true
    queued = conn.execute(
        select(func.count())
        .select_from(session_queue)
        .where(session_queue.c.user_id == user_id, session_queue.c.status.in_(("pending", "in_progress")))
    ).scalar_one()
    if queued > limits.queue_size:
        raise PlanLimitExceeded(
            429, f"{plan} allows {limits.queue_size} queued items at a time; wait for some to finish. {UPGRADE}"
        )
