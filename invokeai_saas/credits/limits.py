"""Plan limits checked when items are enqueued, server-side, with messages that say what the plan allows.

``enforce_plan_limits`` runs in the enqueue guard (``invokeai_saas.credits.settlement.CreditHoldGuard``), before
the hold, in the transaction that inserts the items, after the user's account row is locked, so two concurrent
enqueues cannot both slip under the queue-size limit. Each refusal is a ``PlanLimitExceeded`` with the HTTP status
the enqueue route answers:

- batch size (items in one enqueue) above ``max_batch_size``: 403;
- a generation width or height above ``max_resolution``: 403 (the sizes of denoisers and ``noise``, literal or from
  batch data; see ``invokeai_saas.credits.estimate.is_generation_node``);
- any model the graph uses (main, LoRA, ControlNet, VAE...: ``CostEstimate.model_bases``/``model_keys``) whose
  base is outside the plan's ``model_access`` (``sd_only``: SD 1.x, 2.x and SDXL; ``flux_included``: those and
  FLUX; ``full``: any): 403. Models of base ``any`` (encoders shared by several families) are in every plan.
  A worker loads a model by its key alone, so the base an identifier claims is only the client's word: the check
  also reads each key's recorded base (one query over the ``models`` table) and refuses if either is outside the
  plan;
- storage (media on S3, ``user_storage_usage``) at or over ``storage_gb``: 403, since every generation adds media;
- more of the user's items pending or running than ``queue_size``: 429.

``enforce_graph_limits`` is the resolution and model checks alone, for new work that is not an enqueue (a
workflow-call child: part of its parent's job, so batch, storage and queue size do not apply to it).

The running cap (``concurrent_jobs``) is enforced where items start, by the scheduler (see
``invokeai_saas.services.session_queue.session_queue_dispatching``), not here.
"""

from __future__ import annotations

from fastapi import HTTPException
from sqlalchemy import Connection, Text, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY

from invokeai_saas.credits.estimate import ANY_BASE, CostEstimate
from invokeai_saas.credits.ledger import CreditLedger
from invokeai_saas.credits.plans import Subscription
from invokeai_saas.db.tables import models, session_queue, user_storage_usage

SD_BASES = frozenset({"sd-1", "sd-2", "sdxl", "sdxl-refiner"})
FLUX_BASES = frozenset({"flux", "flux2"})
BYTES_PER_GB = 1024**3
UPGRADE = "Move to a larger plan for more (plans: GET /api/v1/saas/plans)."
# The refusal for an account without a subscription (none exists for a live account: a trigger gives every user one).
NO_PLAN = "Your account has no plan."


class PlanLimitExceeded(Exception):
    """A request the user's plan does not allow; ``status_code`` and ``detail`` are the HTTP answer."""

    def __init__(self, status_code: int, detail: str) -> None:
        self.status_code = status_code
        self.detail = detail
        super().__init__(detail)

    def to_http(self) -> HTTPException:
        return HTTPException(status_code=self.status_code, detail=self.detail)


def plan_label(subscription: Subscription) -> str:
    """How every refusal names the plan; an expired subscription keeps its plan's name but has the free tier's
    limits (``PlanService.subscription_in``), which the label says, or the numbers would not add up."""
    if subscription.status == "expired":
        return f"Your expired plan ({subscription.plan.name}, now with the free tier's limits)"
    return f"Your plan ({subscription.plan.name})"


def _size(n: int) -> str:
    for unit, scale in (("GB", BYTES_PER_GB), ("MB", 1024**2)):
        if n >= scale // 10:
            return f"{n / scale:.{2 if unit == 'GB' else 1}f} {unit}"
    return f"{-(-n // 1024)} KB"  # rounded up: a 200-byte request is 1 KB, not 0


def storage_refusal(subscription: Subscription, used: int, incoming: int | None, to: str) -> PlanLimitExceeded | None:
    """Why ``incoming`` more bytes (None: unknown) may not be stored on top of ``used``, or None; ``to`` says what
    the user was doing ("upload more", "generate more")."""
    quota_gb = subscription.limits.storage_gb
    quota = quota_gb * BYTES_PER_GB
    if used >= quota:
        return PlanLimitExceeded(
            403,
            f"{plan_label(subscription)} includes {quota_gb} GB of storage and it is full ({_size(used)} used); "
            f"delete images or videos to {to}. {UPGRADE}",
        )
    if incoming is not None and used + incoming > quota:
        return PlanLimitExceeded(
            403,
            f"{plan_label(subscription)} includes {quota_gb} GB of storage; {_size(used)} is used and this upload "
            f"({_size(incoming)}) would go over it. Delete images or videos to make room. {UPGRADE}",
        )
    return None


def model_allowed(model_access: str, base: str | None) -> bool:
    """Whether a plan with ``model_access`` may use models of ``base`` (``None``: no model; ``any``: a model of no
    family, such as a CLIP or T5 encoder, which every family's graphs load)."""
    if base is None or base == ANY_BASE or model_access == "full":
        return True
    if model_access == "flux_included":
        return base in SD_BASES | FLUX_BASES
    return base in SD_BASES


def graph_model_bases(conn: Connection, estimate: CostEstimate) -> frozenset[str]:
    """The bases of every model the estimated graph uses: those its identifiers claim and those its model keys are
    recorded with (one statement, the keys as one array parameter however many there are), ``any`` left out.
    A key with no record adds nothing: the graph fails where it loads it, having used no model."""
    claimed = set(estimate.model_bases)
    if estimate.model_base is not None:
        claimed.add(estimate.model_base)
    recorded: set[str] = set()
    if estimate.model_keys:
        keys = bindparam("model_keys", sorted(estimate.model_keys), type_=ARRAY(Text))
        recorded = set(conn.execute(select(models.c.base).where(models.c.id == any_(keys)).distinct()).scalars())
    return frozenset(claimed | recorded) - {ANY_BASE}


def enforce_model_access(conn: Connection, subscription: Subscription, estimate: CostEstimate) -> None:
    """Refuse (403) a graph that uses a model whose base the subscription's plan does not include."""
    access = subscription.limits.model_access
    excluded = sorted(base for base in graph_model_bases(conn, estimate) if not model_allowed(access, base))
    if excluded:
        raise PlanLimitExceeded(
            403,
            f"{plan_label(subscription)} does not include {' or '.join(excluded)} models, which this graph "
            f"uses. {UPGRADE}",
        )


def enforce_resolution(subscription: Subscription, estimate: CostEstimate) -> None:
    """Refuse (403) a generation larger than the plan's ``max_resolution`` (the estimate's generation size)."""
    limits = subscription.limits
    largest = max(estimate.width, estimate.height)
    if largest > limits.max_resolution:
        raise PlanLimitExceeded(
            403,
            f"{plan_label(subscription)} allows images up to {limits.max_resolution} pixels wide or high; "
            f"this asks for {largest}. {UPGRADE}",
        )


def enforce_graph_limits(conn: Connection, subscription: Subscription, estimate: CostEstimate) -> None:
    """Refuse (403) a graph larger than the plan's resolution or using a model outside it: what any graph run for
    the user must respect, an enqueued batch's or a workflow-call child's."""
    enforce_resolution(subscription, estimate)
    enforce_model_access(conn, subscription, estimate)


def enforce_plan_limits(
    conn: Connection, user_id: str, subscription: Subscription, estimate: CostEstimate, item_count: int
) -> None:
    """Refuse (``PlanLimitExceeded``) new items the subscription's plan does not allow; see the module docstring."""
    limits = subscription.limits
    plan = plan_label(subscription)
    if item_count > limits.max_batch_size:
        raise PlanLimitExceeded(
            403, f"{plan} allows batches of up to {limits.max_batch_size} items; this one has {item_count}. {UPGRADE}"
        )
    enforce_graph_limits(conn, subscription, estimate)
    used = conn.execute(
        select(func.coalesce(func.max(user_storage_usage.c.bytes), 0)).where(user_storage_usage.c.user_id == user_id)
    ).scalar_one()
    refusal = storage_refusal(subscription, used, None, "generate more")
    if refusal is not None:
        raise refusal
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
