"""Subscription periods: monthly allotments reset at period boundaries.

``SubscriptionPeriods.roll_due`` handles every subscription whose ``period_end`` has passed:

- a monthly plan (``billing_period = 'month'``) that is ``active`` or ``trialing`` (a paid plan's trial still
  carries the plan's allotment; billing moves it to ``past_due`` when the first payment fails, and past-due
  subscriptions are never renewed here) moves on to the period that contains ``at`` and gets that period's
  allotment: a grant of the effective ``monthly_credits`` (the subscription's ``overrides`` over the plan) valid
  from the new period start until the new period end. The previous allotment ended at the boundary by its own
  ``valid_until``, so credits reset instead of accumulating. A plan without ``monthly_credits`` (Enterprise without
  an override) only moves its period on;
- the Trial plan (no billing period, ``trial_days`` set) and a ``canceled`` subscription end: the status becomes
  ``expired`` and nothing is granted; the trial grant ends by its own ``valid_until``;
- ``past_due`` and ``expired`` subscriptions are left to billing (a recovered payment renews, an ended grace
  period expires).

Missed periods (every process down across one or more boundaries) are skipped, not granted one by one: each
allotment is only valid for its own period, so the allotments of periods that are already over would add nothing
to the balance but entries that expire at once. The subscription jumps to the period containing ``at`` and gets
that period's allotment only — at most one allotment per period, whatever the schedule did.

Several API processes run this at once (``CreditPeriodScheduler``, every ``ROLL_INTERVAL_SECONDS``): each
subscription is handled in its own transaction with its row locked ``FOR UPDATE SKIP LOCKED`` and re-checked after
the lock, so a row another process is rolling is skipped and one it has rolled is no longer due; the grant's
natural key (``subscription_grant_key``) makes a repeated grant for the same period a no-op even when billing
(a Stripe renewal) writes it too. The same pass writes the ``expire`` entries of grants that ended.

Periods are computed in UTC calendar months anchored on the subscription's billing day: a period ending on Jan 31
is followed by one ending on Feb 28 (29 in a leap year), then Mar 31 — the day is clamped to the month's length,
never drifted.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from logging import Logger
from typing import Any

from sqlalchemy import Connection, Engine, and_, or_, select, update

from invokeai_saas.credits.ledger import CreditLedger
from invokeai_saas.db.tables import credit_ledger, plans, subscriptions
from invokeai_saas.periodic import PeriodicTask

ROLL_INTERVAL_SECONDS = 60.0
"""How often every API process runs ``roll_due``. Boundaries are a month apart, so a minute's delay is invisible
next to the period, and an idle pass is one indexed query (``ix_subscriptions_period_end``) per process."""

ROLL_BATCH_SIZE = 1000
"""Most subscriptions one pass handles (the earliest boundaries first); the next pass takes the rest."""

RENEWING_STATUSES = ("active", "trialing")
# Every status a period's end changes (renewed, or ended: a trial, a canceled plan); others are billing's.
ROLLED_STATUSES = (*RENEWING_STATUSES, "canceled")
"""Statuses whose monthly plan is renewed at the boundary."""


def subscription_grant_key(user_id: str, period_start: datetime) -> str:
    """The natural key of a subscription allotment: one per user and period. Billing code that grants an allotment
    (a Stripe renewal) uses this key too, so the scheduled roll and the webhook never grant the same period twice."""
    return f"grant:subscription:{user_id}:{_utc(period_start).isoformat()}"


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("period times must be timezone-aware")
    return value.astimezone(UTC)


def add_months(value: datetime, months: int, anchor_day: int | None = None) -> datetime:
    """``value`` moved by whole calendar months, on ``anchor_day`` (default: ``value``'s day) clamped to the target
    month's length; the time of day is kept."""
    day = anchor_day if anchor_day is not None else value.day
    month_index = value.year * 12 + (value.month - 1) + months
    year, month = divmod(month_index, 12)
    month += 1
    return value.replace(year=year, month=month, day=min(day, calendar.monthrange(year, month)[1]))


def billing_day(period_start: datetime, period_end: datetime) -> int:
    """The day of the month periods end on. Usually ``period_end``'s day; but a period that ends on the last day of
    a short month because its billing day does not exist there (Jan 31 → Feb 28) keeps the longer day from its
    start, so that the next period ends on Mar 31, not Mar 28."""
    start, end = _utc(period_start), _utc(period_end)
    last_day = calendar.monthrange(end.year, end.month)[1]
    if end.day == last_day and start.day > end.day:
        return start.day
    return end.day


def current_period(period_start: datetime, period_end: datetime, at: datetime) -> tuple[datetime, datetime, int]:
    """The monthly period that follows ``period_end`` and contains ``at`` (``period_end <= at``): its start, its end
    and how many whole periods were skipped on the way."""
    anchor = billing_day(period_start, period_end)
    end = _utc(period_end)
    months = 1
    while add_months(end, months, anchor) <= at:
        months += 1
    start = end if months == 1 else add_months(end, months - 1, anchor)
    return start, add_months(end, months, anchor), months - 1


@dataclass(frozen=True)
class PlanStart:
    """What ``SubscriptionPeriods.start_plan`` did: ``period_start`` is None when the user already was on the plan
    in a live period (nothing changed)."""

    plan_id: str
    plan_name: str
    period_start: datetime | None
    period_end: datetime | None
    credits_granted: int


@dataclass
class RollReport:
    """What one pass did."""

    renewed: list[str] = field(default_factory=list)
    """Users whose monthly period moved on (with or without an allotment)."""
    grants_written: int = 0
    credits_granted: int = 0
    expired_subscriptions: list[str] = field(default_factory=list)
    expired_grants: int = 0
    """Grants that ended with credits left and got their ``expire`` entry in this pass."""
    skipped: int = 0
    """Due when listed, but locked by another process or no longer due once locked."""
    failed: dict[str, str] = field(default_factory=dict)
    """User id → why that subscription could not be rolled (it is retried next pass)."""


def _is_trial_plan() -> Any:
    return and_(plans.c.billing_period.is_(None), plans.c.trial_days.is_not(None))


def _due(at: datetime) -> Any:
    """Subscriptions this task handles whose period has ended by ``at``."""
    return and_(
        subscriptions.c.period_end.is_not(None),
        subscriptions.c.period_end <= at,
        or_(
            subscriptions.c.status == "canceled",
            and_(
                subscriptions.c.status.in_(RENEWING_STATUSES),
                or_(plans.c.billing_period == "month", _is_trial_plan()),
            ),
        ),
    )


def _monthly_credits(plan_credits: int | None, overrides: dict[str, Any] | None) -> int | None:
    value = (overrides or {}).get("monthly_credits", plan_credits)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < 0:
        raise ValueError(f"monthly_credits must be a whole number >= 0, got {value!r}")
    return int(value)


class SubscriptionPeriods:
    def __init__(self, engine: Engine, ledger: CreditLedger) -> None:
        self._engine = engine
        self._ledger = ledger

    def roll_due(self, at: datetime | None = None, batch_size: int = ROLL_BATCH_SIZE) -> RollReport:
        """Roll every subscription whose period ended by ``at`` (default now), then expire the grants that ended.
        Safe to run from several processes at once; a subscription that fails is reported and retried next pass."""
        at = _utc(at) if at is not None else datetime.now(UTC)
        report = RollReport()
        with self._engine.connect() as conn:
            due = (
                conn.execute(
                    select(subscriptions.c.user_id)
                    .join(plans, plans.c.plan_id == subscriptions.c.plan_id)
                    .where(_due(at))
                    .order_by(subscriptions.c.period_end, subscriptions.c.user_id)
                    .limit(batch_size)
                )
                .scalars()
                .all()
            )
        for user_id in due:
            try:
                with self._engine.begin() as conn:
                    if not self._roll_one(conn, user_id, at, report, skip_locked=True):
                        report.skipped += 1
            except Exception as error:  # one bad subscription must not stop everyone else's reset
                report.failed[user_id] = f"{type(error).__name__}: {error}"
        report.expired_grants = self._ledger.expire_due(at)
        return report

    def roll_user(self, user_id: str, at: datetime | None = None) -> RollReport:
        """Roll one user's subscription now if its period has ended, waiting for a process that is rolling it.

        For a request that finds the previous allotment over before the next pass ran (e.g. before refusing an
        enqueue for lack of credits). Call it outside any transaction that holds the user's credit account lock.
        Does not expire grants (an ended grant already counts for nothing)."""
        with self._engine.begin() as conn:
            return self.roll_in(conn, user_id, at)

    def roll_in(self, conn: Connection, user_id: str, at: datetime | None = None) -> RollReport:
        """``roll_user`` inside the caller's transaction (the enqueue's, before it locks the credit account: the
        same lock order as the pass, subscription then account). Rolled back with it if the caller fails."""
        at = _utc(at) if at is not None else datetime.now(UTC)
        report = RollReport()
        self._roll_one(conn, user_id, at, report, skip_locked=False)
        return report

    def start_plan(self, user_id: str, plan_id: str, at: datetime | None = None) -> PlanStart:
        """Move the user to ``plan_id`` now, as an operator does (``invokeai-saas user modify --plan``; staff go on
        the internal Tester plan): a new period starts at ``at`` with the plan's allotment granted at once.

        A monthly plan becomes ``active`` for one calendar month; the Trial plan becomes ``trialing`` for its days,
        with its credits only if the user never had them (the trial grant is once per user). Grants already given
        keep their own validity: a plan change never takes credits away. The subscription's per-customer
        ``overrides`` are cleared: they were the terms of the plan being left. A user already on the plan in a live
        period is left as is (running the command twice grants once). Raises ``ValueError`` for an unknown plan."""
        at = _utc(at) if at is not None else datetime.now(UTC)
        with self._engine.begin() as conn:
            plan = conn.execute(select(plans).where(plans.c.plan_id == plan_id)).first()
            if plan is None:
                known = ", ".join(conn.execute(select(plans.c.plan_id).order_by(plans.c.sort_order)).scalars())
                raise ValueError(f"no plan '{plan_id}' (plans: {known})")
            current = conn.execute(
                select(subscriptions.c.plan_id, subscriptions.c.status, subscriptions.c.period_end)
                .where(subscriptions.c.user_id == user_id)
                .with_for_update()
            ).first()
            if current is None:
                raise ValueError(f"no subscription for user '{user_id}'")
            if (
                current.plan_id == plan_id
                and current.status in ("active", "trialing")
                and (current.period_end is None or current.period_end > at)
            ):
                # Already on it, in a live period: nothing restarts and nothing more is granted.
                return PlanStart(plan_id, plan.name, None, current.period_end, 0)
            trial = plan.billing_period is None and plan.trial_days is not None
            end = at + timedelta(days=plan.trial_days) if trial else add_months(at, 1)
            conn.execute(
                update(subscriptions)
                .where(subscriptions.c.user_id == user_id)
                .values(
                    plan_id=plan_id,
                    status="trialing" if trial else "active",
                    period_start=at,
                    period_end=end,
                    overrides={},
                )
            )
            granted = 0
            if plan.monthly_credits:
                source, key = (
                    ("trial", f"grant:trial:{user_id}")
                    if trial
                    else (
                        "subscription",
                        subscription_grant_key(user_id, at),
                    )
                )
                exists = conn.execute(
                    select(credit_ledger.c.entry_id).where(credit_ledger.c.natural_key == key)
                ).first()
                if exists is None:
                    details = {"plan_id": plan_id, "started_by": "operator"}
                    self._ledger.grant_in(conn, user_id, plan.monthly_credits, source, key, at, end, details)
                    granted = plan.monthly_credits
        return PlanStart(plan_id, plan.name, at, end, granted)

    def _roll_one(self, conn: Connection, user_id: str, at: datetime, report: RollReport, skip_locked: bool) -> bool:
        """Lock the subscription and roll it if it is (still) due; False when it was locked elsewhere or not due."""
        row = conn.execute(
            select(
                subscriptions.c.status,
                subscriptions.c.plan_id,
                subscriptions.c.period_start,
                subscriptions.c.period_end,
                subscriptions.c.overrides,
                plans.c.billing_period,
                plans.c.trial_days,
                plans.c.monthly_credits,
            )
            .join(plans, plans.c.plan_id == subscriptions.c.plan_id)
            .where(subscriptions.c.user_id == user_id, _due(at))
            .with_for_update(of=subscriptions, skip_locked=skip_locked)
        ).first()
        if row is None:
            return False
        where_user = subscriptions.c.user_id == user_id
        if row.status == "canceled" or row.billing_period != "month":
            conn.execute(update(subscriptions).where(where_user).values(status="expired"))
            report.expired_subscriptions.append(user_id)
            return True
        credits = _monthly_credits(row.monthly_credits, row.overrides)
        start, end, skipped_periods = current_period(row.period_start, row.period_end, at)
        conn.execute(update(subscriptions).where(where_user).values(period_start=start, period_end=end))
        report.renewed.append(user_id)
        if credits:
            key = subscription_grant_key(user_id, start)
            exists = conn.execute(select(credit_ledger.c.entry_id).where(credit_ledger.c.natural_key == key)).first()
            if exists is None:
                details = {"plan_id": row.plan_id, "skipped_periods": skipped_periods}
                self._ledger.grant_in(conn, user_id, credits, "subscription", key, start, end, details)
                report.grants_written += 1
                report.credits_granted += credits
        return True


class CreditPeriodScheduler:
    """Runs ``roll_due`` every ``interval`` seconds in a daemon thread of this process. Every API process runs one;
    the row locks make them share the work instead of repeating it."""

    def __init__(self, periods: SubscriptionPeriods, logger: Logger, interval: float = ROLL_INTERVAL_SECONDS) -> None:
        self._periods = periods
        self._logger = logger
        self._task = PeriodicTask("invokeai-saas-credit-periods", interval, self._pass, logger)

    def start(self) -> None:
        self._task.start()

    def stop(self, timeout: float = 10) -> None:
        self._task.stop(timeout)

    def _pass(self, number: int) -> None:
        report = self._periods.roll_due()
        if report.failed:
            problems = "; ".join(f"{user}: {why}" for user, why in sorted(report.failed.items()))
            self._logger.warning(f"credit periods: {len(report.failed)} subscriptions not rolled ({problems})")
        if report.renewed or report.expired_subscriptions:
            self._logger.info(
                f"credit periods: {len(report.renewed)} renewed ({report.credits_granted} credits granted), "
                f"{len(report.expired_subscriptions)} ended, {report.expired_grants} grants expired"
            )


__all__ = [
    "ROLL_INTERVAL_SECONDS",
    "CreditPeriodScheduler",
    "RollReport",
    "SubscriptionPeriods",
    "add_months",
    "billing_day",
    "current_period",
    "subscription_grant_key",
]
