"""The signed-in user's plan, credits and usage, and the public plan catalogue, under ``/api/v1/saas``.

Every ``/me/...`` route reads the caller's own user id from the bearer token and takes no user id from the
request, so no parameter can point one at another user's numbers; without a valid token they answer 401.

- ``GET /me/plan``: the current subscription (status, period) and its plan, with the *effective* limits (the
  plan's, with this subscription's overrides laid over them).
- ``GET /me/balance``: available, held and debt, and what is left of each live grant, earliest expiry first
  (the order settlement consumes them in).
- ``GET /me/ledger``: the entries, newest first, ``offset``/``limit`` paginated (limit 1..200, default 50) with
  the total count. Entries carry their amounts, references and validity; never the natural key (an internal
  idempotency key that can name payment ids) nor the free-form ``details`` (a grant's details may hold billing
  references or an admin's note). The one detail shown is a release's ``reason``, which the system writes
  ("settled", or why the item was not charged). ``description`` is a one-line English summary for display.
- ``GET /me/usage``: settled runs summed per UTC day over the last ``days`` days (1..366, default 30, today
  included), oldest first and zero-filled, so a chart needs no date arithmetic, with the window's totals.
- ``GET /plans``: the public plan catalogue, for the pricing page. It needs no authentication: prices and limits
  are public, and the page is shown to visitors before they sign up.

Reads go through the engine's autocommit view (one round trip per statement); each route's statements are
independent, so none needs a common snapshot.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from fastapi import APIRouter, HTTPException, Query
from invokeai.app.api.auth_dependencies import CurrentUser
from pydantic import BaseModel, Field
from sqlalchemy import Engine

from invokeai_saas.credits.ledger import CreditLedger, LedgerEntry
from invokeai_saas.credits.plans import Plan, PlanLimits, PlanService
from invokeai_saas.db.engine import autocommit_reads, get_engine
from invokeai_saas.runtime import current_runtime

credits_router = APIRouter(prefix="/api/v1/saas", tags=["saas"])

LEDGER_PAGE_DEFAULT = 50
LEDGER_PAGE_MAX = 200
LEDGER_OFFSET_MAX = 2**31 - 1  # far beyond any history; keeps the value inside PostgreSQL's integer types
USAGE_DAYS_DEFAULT = 30
USAGE_DAYS_MAX = 366

EntryKind = Literal["grant", "hold", "settle", "release", "expire"]
GrantSource = Literal["subscription", "purchase", "trial", "test", "admin"]

_SOURCE_LABELS: dict[str, str] = {
    "subscription": "Subscription allotment",
    "purchase": "Credit purchase",
    "trial": "Trial credits",
    "test": "Test grant",
    "admin": "Adjustment by an administrator",
}


class MyPlan(BaseModel):
    """The caller's subscription and what it allows right now."""

    plan_id: str
    name: str
    price_cents: int | None = Field(description="Price per period in US cents; None for custom pricing")
    billing_period: str | None
    status: str = Field(description="The subscription's status, e.g. 'trialing', 'active'")
    period_start: datetime
    period_end: datetime | None = Field(description="When the current period ends; None when open-ended")
    limits: PlanLimits = Field(description="The plan's limits with this subscription's overrides applied")


class CreditGrantBalance(BaseModel):
    entry_id: int = Field(description="The grant's ledger entry id")
    source: GrantSource
    granted: int = Field(description="Credits the grant gave")
    remaining: int = Field(description="Credits left of it")
    valid_from: datetime
    valid_until: datetime | None = Field(description="When what is left expires; None when it never does")


class CreditBalance(BaseModel):
    """``available`` = the sum of ``grants[].remaining`` − ``held`` − ``debt``."""

    available: int = Field(description="Credits that can be spent now (negative while debt exceeds the grants)")
    held: int = Field(description="Credits set aside for queued and running items")
    debt: int = Field(description="Credits used beyond what the grants covered, taken from the next grants")
    grants: list[CreditGrantBalance] = Field(description="Live grants with credits left, earliest expiry first")


class CreditLedgerEntry(BaseModel):
    entry_id: int
    kind: EntryKind
    source: GrantSource | None = Field(description="Where a grant's credits came from; None for other kinds")
    credits: int = Field(description="The entry's amount, always >= 0; its kind says which way it moves")
    grant_entry_id: int | None = Field(description="The grant a settlement drew from or an expiry ended")
    item_id: int | None = Field(description="The queue item a hold, settlement or release is for")
    valid_from: datetime | None = Field(description="A grant's start")
    valid_until: datetime | None = Field(description="A grant's end; None when it never expires")
    reason: str | None = Field(description="Why a release happened; None for other kinds")
    description: str = Field(description="A one-line summary for display")
    created_at: datetime


class CreditLedgerPage(BaseModel):
    total: int = Field(description="How many entries the user has in all")
    offset: int
    limit: int
    entries: list[CreditLedgerEntry] = Field(description="This page, newest first")


class CreditUsageDay(BaseModel):
    day: date = Field(description="The UTC date")
    items: int = Field(description="Queue items settled that day")
    seconds: float = Field(description="GPU seconds they used")
    credits: int = Field(description="Credits they were charged")


class CreditUsage(BaseModel):
    days: int
    start: date = Field(description="The window's first UTC date")
    end: date = Field(description="The window's last UTC date (today)")
    items: int = Field(description="Items settled in the window")
    seconds: float = Field(description="GPU seconds used in the window")
    credits: int = Field(description="Credits charged in the window")
    by_day: list[CreditUsageDay] = Field(description="Every day of the window, oldest first; zero when unused")


def _engine() -> Engine:
    return autocommit_reads(get_engine(current_runtime().settings))


def _describe(entry: LedgerEntry, reason: str | None) -> str:
    item = f"queue item {entry.item_id}"
    if entry.kind == "grant":
        return _SOURCE_LABELS.get(entry.source or "", "Credits granted")
    if entry.kind == "hold":
        return f"Held for {item}"
    if entry.kind == "settle":
        if entry.grant_entry_id is None and entry.credits > 0:
            return f"Charged for {item}, beyond the grants (added to debt)"
        return f"Charged for {item}"
    if entry.kind == "release":
        return f"Released the hold for {item}" + (f" ({reason})" if reason else "")
    return f"Expired: what was left of grant {entry.grant_entry_id}"


def _entry(entry: LedgerEntry) -> CreditLedgerEntry:
    raw_reason = entry.details.get("reason") if entry.kind == "release" else None
    reason = raw_reason if isinstance(raw_reason, str) else None
    return CreditLedgerEntry(
        entry_id=entry.entry_id,
        kind=entry.kind,  # type: ignore[arg-type]
        source=entry.source,  # type: ignore[arg-type]
        credits=entry.credits,
        grant_entry_id=entry.grant_entry_id,
        item_id=entry.item_id,
        valid_from=entry.valid_from,
        valid_until=entry.valid_until,
        reason=reason,
        description=_describe(entry, reason),
        created_at=entry.created_at,
    )


def _my_plan(user_id: str) -> MyPlan:
    sub = PlanService(_engine()).subscription(user_id)
    if sub is None:
        raise HTTPException(status_code=404, detail="You have no subscription")
    return MyPlan(
        plan_id=sub.plan.plan_id,
        name=sub.plan.name,
        price_cents=sub.plan.price_cents,
        billing_period=sub.plan.billing_period,
        status=sub.status,
        period_start=sub.period_start,
        period_end=sub.period_end,
        limits=sub.limits,
    )


def _my_balance(user_id: str) -> CreditBalance:
    balance = CreditLedger(_engine()).balance(user_id)
    return CreditBalance(
        available=balance.available,
        held=balance.held,
        debt=balance.debt,
        grants=[
            CreditGrantBalance(
                entry_id=g.entry_id,
                source=g.source,  # type: ignore[arg-type]
                granted=g.granted,
                remaining=g.remaining,
                valid_from=g.valid_from,
                valid_until=g.valid_until,
            )
            for g in balance.grants
        ],
    )


def _my_ledger(user_id: str, offset: int, limit: int) -> CreditLedgerPage:
    entries, total = CreditLedger(_engine()).history(user_id, offset, limit)
    return CreditLedgerPage(total=total, offset=offset, limit=limit, entries=[_entry(e) for e in entries])


def _my_usage(user_id: str, days: int) -> CreditUsage:
    end = datetime.now(UTC).date()
    start = end - timedelta(days=days - 1)
    since = datetime(start.year, start.month, start.day, tzinfo=UTC)
    used = {u.day: u for u in CreditLedger(_engine()).usage_by_day(user_id, since)}
    by_day = []
    for n in range(days):
        day = start + timedelta(days=n)
        u = used.get(day)
        by_day.append(
            CreditUsageDay(day=day, items=u.items, seconds=u.seconds, credits=u.credits)
            if u is not None
            else CreditUsageDay(day=day, items=0, seconds=0.0, credits=0)
        )
    return CreditUsage(
        days=days,
        start=start,
        end=end,
        items=sum(d.items for d in by_day),
        seconds=sum(d.seconds for d in by_day),
        credits=sum(d.credits for d in by_day),
        by_day=by_day,
    )


@credits_router.get("/me/plan", operation_id="get_my_saas_plan", response_model=MyPlan)
async def get_my_plan(current_user: CurrentUser) -> MyPlan:
    """My plan, my subscription's status and period, and the limits that apply to me."""
    return await asyncio.to_thread(_my_plan, current_user.user_id)


@credits_router.get("/me/balance", operation_id="get_my_credit_balance", response_model=CreditBalance)
async def get_my_balance(current_user: CurrentUser) -> CreditBalance:
    """My credits: available, held, debt, and what is left of each grant."""
    return await asyncio.to_thread(_my_balance, current_user.user_id)


@credits_router.get("/me/ledger", operation_id="list_my_credit_ledger", response_model=CreditLedgerPage)
async def list_my_ledger(
    current_user: CurrentUser,
    offset: int = Query(default=0, ge=0, le=LEDGER_OFFSET_MAX, description="Entries to skip, newest first"),
    limit: int = Query(default=LEDGER_PAGE_DEFAULT, ge=1, le=LEDGER_PAGE_MAX, description="Entries per page"),
) -> CreditLedgerPage:
    """My credit history, newest first."""
    return await asyncio.to_thread(_my_ledger, current_user.user_id, offset, limit)


@credits_router.get("/me/usage", operation_id="get_my_credit_usage", response_model=CreditUsage)
async def get_my_usage(
    current_user: CurrentUser,
    days: int = Query(default=USAGE_DAYS_DEFAULT, ge=1, le=USAGE_DAYS_MAX, description="Days back, today included"),
) -> CreditUsage:
    """What my settled runs used, per UTC day."""
    return await asyncio.to_thread(_my_usage, current_user.user_id, days)


@credits_router.get("/plans", operation_id="list_saas_plans", response_model=list[Plan])
async def list_plans() -> list[Plan]:
    """The public plan catalogue, in display order (no authentication: it is the pricing page's content)."""
    return await asyncio.to_thread(PlanService(_engine()).list_plans)
