"""Plans and subscriptions: what a user may do, read from PostgreSQL.

A plan row carries the defaults; a subscription's ``overrides`` carries per-customer values (an Enterprise deal,
a support exception), so the effective limits are the plan's columns with the overrides laid over them; an
expired subscription has the Trial plan's limits. Limits are read per request, never cached across requests: an
upgrade applies to the very next enqueue.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import Connection, Engine, select

from invokeai_saas.db.tables import plans, subscriptions

ModelAccess = Literal["sd_only", "flux_included", "full"]

# Whose limits an expired subscription gets.
FREE_TIER_PLAN_ID = "trial"


class PlanLimits(BaseModel):
    """What a plan allows; every field may be overridden per subscription."""

    gpu_tier: str
    credit_multiplier: float = Field(description="Credits per GPU-second on this plan's GPU tier")
    priority: int = Field(description="Scheduling tier: higher starts first")
    concurrent_jobs: int
    queue_size: int
    storage_gb: int
    max_resolution: int = Field(description="Largest width or height of a generation, in pixels")
    max_batch_size: int
    model_access: ModelAccess
    node_editor: bool
    api_access: bool
    monthly_credits: int | None = Field(description="Credits granted each period; None for custom plans")
    max_run_seconds: int = Field(description="The longest one queue item may run; it fails when it runs longer")
    allow_debt: bool = Field(
        description="Running work may cost more than the balance (postpaid accounts); otherwise a running item "
        "stops when its cost reaches its hold plus the available balance"
    )


class Plan(BaseModel):
    plan_id: str
    name: str
    price_cents: int | None = Field(description="Price per period in US cents; None for custom pricing")
    billing_period: str | None
    trial_days: int | None
    public: bool
    limits: PlanLimits


class Subscription(BaseModel):
    user_id: str
    plan: Plan
    status: str
    period_start: datetime
    period_end: datetime | None
    limits: PlanLimits = Field(description="The plan's limits with this subscription's overrides applied")


_LIMIT_FIELDS = tuple(PlanLimits.model_fields)


def _plan(row: object) -> Plan:
    values = row._mapping  # type: ignore[attr-defined]
    return Plan(
        plan_id=values["plan_id"],
        name=values["name"],
        price_cents=values["price_cents"],
        billing_period=values["billing_period"],
        trial_days=values["trial_days"],
        public=values["public"],
        limits=PlanLimits(**{name: values[name] for name in _LIMIT_FIELDS}),
    )


class PlanService:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def list_plans(self, include_internal: bool = False) -> list[Plan]:
        query = select(plans).order_by(plans.c.sort_order, plans.c.plan_id)
        if not include_internal:
            query = query.where(plans.c.public.is_(True))
        with self._engine.connect() as conn:
            return [_plan(row) for row in conn.execute(query)]

    def get_plan(self, plan_id: str) -> Plan | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(plans).where(plans.c.plan_id == plan_id)).first()
        return _plan(row) if row is not None else None

    def subscription(self, user_id: str) -> Subscription | None:
        """The user's current subscription with its effective limits (None only for a user that does not exist)."""
        with self._engine.connect() as conn:
            return self.subscription_in(conn, user_id)

    @staticmethod
    def subscription_in(conn: Connection, user_id: str) -> Subscription | None:
        """``subscription`` on the caller's connection: inside a transaction that holds locks (the enqueue's), a
        second pooled connection could wait on the very pool its holder needs.

        An ``expired`` subscription (a trial that ended, a paid plan whose payment never came) keeps its plan for
        display, but its limits are the Trial plan's: what a lapsed account may do is the free tier, not what it
        no longer pays for. Credits it bought still spend within those limits."""
        row = conn.execute(
            select(
                plans,
                subscriptions.c.user_id,
                subscriptions.c.status,
                subscriptions.c.period_start,
                subscriptions.c.period_end,
                subscriptions.c.overrides,
            )
            .join(subscriptions, subscriptions.c.plan_id == plans.c.plan_id)
            .where(subscriptions.c.user_id == user_id)
        ).first()
        if row is None:
            return None
        plan = _plan(row)
        if row.status == "expired":
            free = conn.execute(select(plans).where(plans.c.plan_id == FREE_TIER_PLAN_ID)).first()
            limits = _plan(free).limits if free is not None else plan.limits
        else:
            overrides = {k: v for k, v in dict(row.overrides or {}).items() if k in _LIMIT_FIELDS}
            limits = PlanLimits(**{**plan.limits.model_dump(), **overrides})
        return Subscription(
            user_id=row.user_id,
            plan=plan,
            status=row.status,
            period_start=row.period_start,
            period_end=row.period_end,
            limits=limits,
        )
