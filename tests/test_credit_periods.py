"""Monthly allotments reset at period boundaries, against a real PostgreSQL: one grant per period however often and
from however many processes the roll runs, calendar months that clamp without drifting, the Trial ending, the
per-customer override, and projections that still equal the balance rebuilt from the entries."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from invokeai_saas.config import SaasSettings
from invokeai_saas.credits.ledger import CreditLedger
from invokeai_saas.credits.periods import (
    CreditPeriodScheduler,
    RollReport,
    SubscriptionPeriods,
    add_months,
    billing_day,
    current_period,
    subscription_grant_key,
)
from invokeai_saas.db.engine import get_engine
from invokeai_saas.periodic import THREAD_PREFIX
from invokeai_saas.plugins.builtin import credits as credits_plugin
from invokeai_saas.plugins.manager import get_plugin_manager
from invokeai_saas.runtime import WorkerRole, set_worker_role


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def _user(engine: Engine, user_id: str, keep_trial: bool = False) -> str:
    """A new user (on Trial, by the sign-up trigger). Unless ``keep_trial``, the trial grant is ended at once (in the
    entry and its projection alike) so that balances at the fixed dates below hold whatever today's date is."""
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO users (user_id, email, password_hash) VALUES (:u, :u || '@example.com', 'x')"),
            {"u": user_id},
        )
        if not keep_trial:
            for table in ("credit_ledger", "credit_grant_balances"):
                conn.execute(
                    text(f"UPDATE {table} SET valid_until = valid_from + interval '1 microsecond' WHERE user_id = :u"),
                    {"u": user_id},
                )
    return user_id


def _subscribe(
    engine: Engine,
    user_id: str,
    plan: str,
    start: datetime,
    end: datetime,
    status: str = "active",
    overrides: dict[str, Any] | None = None,
) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE subscriptions SET plan_id = :p, status = :s, period_start = :a, period_end = :b, "
                "overrides = CAST(:o AS jsonb) WHERE user_id = :u"
            ),
            {"u": user_id, "p": plan, "s": status, "a": start, "b": end, "o": json.dumps(overrides or {})},
        )


def _subscription(engine: Engine, user_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(text("SELECT * FROM subscriptions WHERE user_id = :u"), {"u": user_id}).one()


def _subscription_grants(engine: Engine, user_id: str) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT * FROM credit_ledger WHERE user_id = :u AND kind = 'grant' AND source = 'subscription' "
                "ORDER BY entry_id"
            ),
            {"u": user_id},
        ).all()


@pytest.fixture()
def ledger(pg_engine: Engine) -> CreditLedger:
    return CreditLedger(pg_engine)


@pytest.fixture()
def periods(pg_engine: Engine, ledger: CreditLedger) -> SubscriptionPeriods:
    return SubscriptionPeriods(pg_engine, ledger)


# region calendar


def test_months_clamp_to_the_month_and_keep_the_billing_day() -> None:
    assert add_months(utc(2026, 1, 31, 12, 30), 1) == utc(2026, 2, 28, 12, 30)
    assert add_months(utc(2028, 1, 31), 1) == utc(2028, 2, 29)
    assert add_months(utc(2026, 11, 15), 2) == utc(2027, 1, 15)
    assert add_months(utc(2026, 2, 28), 1, anchor_day=31) == utc(2026, 3, 31)
    # the billing day survives a short month: Jan 31 → Feb 28 is followed by Mar 31, then Apr 30, then May 31
    assert billing_day(utc(2026, 1, 31), utc(2026, 2, 28)) == 31
    assert billing_day(utc(2026, 1, 30), utc(2026, 2, 28)) == 30
    assert billing_day(utc(2026, 2, 28), utc(2026, 3, 31)) == 31
    assert billing_day(utc(2026, 1, 25), utc(2026, 2, 10)) == 10
    assert current_period(utc(2026, 1, 31), utc(2026, 2, 28), utc(2026, 3, 1)) == (
        utc(2026, 2, 28),
        utc(2026, 3, 31),
        0,
    )
    # three boundaries missed: straight to the period containing `at`
    assert current_period(utc(2026, 1, 15), utc(2026, 2, 15), utc(2026, 5, 20)) == (
        utc(2026, 5, 15),
        utc(2026, 6, 15),
        3,
    )
    # a boundary is the start of the next period
    assert current_period(utc(2026, 1, 15), utc(2026, 2, 15), utc(2026, 3, 15))[:2] == (
        utc(2026, 3, 15),
        utc(2026, 4, 15),
    )


# endregion

# region renewal


def test_a_monthly_subscription_gets_one_new_allotment_and_the_old_one_stops_counting(
    pg_engine: Engine, ledger: CreditLedger, periods: SubscriptionPeriods
) -> None:
    user = _user(pg_engine, "monthly", keep_trial=True)
    now = datetime.now(UTC)
    old_start, old_end = now - timedelta(days=31), now - timedelta(hours=1)
    _subscribe(pg_engine, user, "starter", old_start, old_end)
    ledger.grant(user, 5000, "subscription", subscription_grant_key(user, old_start), old_start, old_end)
    assert ledger.balance(user, old_end - timedelta(minutes=1)).available == 5000  # the trial starts later

    report = periods.roll_due(now)

    assert report.renewed == [user] and report.grants_written == 1 and report.credits_granted == 5000
    sub = _subscription(pg_engine, user)
    assert sub.period_start == old_end and sub.period_end == add_months(old_end, 1)
    old, new = _subscription_grants(pg_engine, user)
    assert new.natural_key == subscription_grant_key(user, old_end)
    assert (new.credits, new.valid_from, new.valid_until) == (5000, sub.period_start, sub.period_end)
    balance = ledger.balance(user, now)
    assert balance.available == 5500  # reset, not 10,500: the new allotment and the trial
    assert sorted((g.source, g.remaining) for g in balance.grants) == [("subscription", 5000), ("trial", 500)]
    assert all(g.entry_id != old.entry_id for g in balance.grants)
    with pg_engine.connect() as conn:
        expired = conn.execute(
            text("SELECT credits FROM credit_ledger WHERE kind = 'expire' AND grant_entry_id = :g"),
            {"g": old.entry_id},
        ).scalar_one()
    assert expired == 5000  # the roll's pass wrote the old allotment's expiry
    assert ledger.rebuild(user, now) == balance


def test_rolling_again_grants_nothing_more(
    pg_engine: Engine, ledger: CreditLedger, periods: SubscriptionPeriods
) -> None:
    user = _user(pg_engine, "twice")
    _subscribe(pg_engine, user, "pro", utc(2026, 1, 10), utc(2026, 2, 10))
    at = utc(2026, 2, 10, 0, 5)
    first = periods.roll_due(at)
    second = periods.roll_due(at)
    third = periods.roll_due(at + timedelta(days=3))
    assert first.grants_written == 1 and first.credits_granted == 15000
    assert second.renewed == [] and second.grants_written == 0
    assert third.renewed == [] and third.grants_written == 0
    assert [g.credits for g in _subscription_grants(pg_engine, user)] == [15000]
    # billing granting the same period (a Stripe renewal) reuses the key: still one allotment
    sub = _subscription(pg_engine, user)
    ledger.grant(user, 15000, "subscription", subscription_grant_key(user, sub.period_start), sub.period_start)
    assert len(_subscription_grants(pg_engine, user)) == 1
    assert ledger.balance(user, at).available == 15000
    assert ledger.rebuild(user, at) == ledger.balance(user, at)


def test_two_processes_rolling_at_once_grant_each_period_once(pg_engine: Engine, ledger: CreditLedger) -> None:
    users = [_user(pg_engine, f"racer{i:02d}") for i in range(24)]
    for user in users:
        _subscribe(pg_engine, user, "starter", utc(2026, 3, 5), utc(2026, 4, 5))
    at = utc(2026, 4, 5, 0, 1)
    # two independent "processes": separate engines (pools) on the same database
    other_engine = create_engine(pg_engine.url)
    runners = [SubscriptionPeriods(pg_engine, ledger), SubscriptionPeriods(other_engine, CreditLedger(other_engine))]
    reports: list[RollReport] = []
    barrier = threading.Barrier(len(runners))

    def run(runner: SubscriptionPeriods) -> None:
        barrier.wait()
        reports.append(runner.roll_due(at))

    try:
        threads = [threading.Thread(target=run, args=(runner,)) for runner in runners]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        other_engine.dispose()
    assert len(reports) == 2 and not any(r.failed for r in reports)
    renewed = [user for report in reports for user in report.renewed]
    assert sorted(renewed) == users  # each subscription rolled by exactly one of them
    assert sum(r.grants_written for r in reports) == len(users)
    for user in users:
        (grant,) = _subscription_grants(pg_engine, user)
        assert (grant.credits, grant.valid_from, grant.valid_until) == (5000, utc(2026, 4, 5), utc(2026, 5, 5))
        assert ledger.rebuild(user, at) == ledger.balance(user, at)


def test_month_end_boundaries_roll_without_drifting(
    pg_engine: Engine, ledger: CreditLedger, periods: SubscriptionPeriods
) -> None:
    user = _user(pg_engine, "monthend")
    leap = _user(pg_engine, "leapyear")
    _subscribe(pg_engine, user, "starter", utc(2025, 12, 31, 9), utc(2026, 1, 31, 9))
    _subscribe(pg_engine, leap, "starter", utc(2027, 12, 31, 9), utc(2028, 1, 31, 9))
    expected = [
        (utc(2026, 2, 1), utc(2026, 1, 31, 9), utc(2026, 2, 28, 9)),
        (utc(2026, 3, 1), utc(2026, 2, 28, 9), utc(2026, 3, 31, 9)),
        (utc(2026, 4, 1), utc(2026, 3, 31, 9), utc(2026, 4, 30, 9)),
        (utc(2026, 5, 1), utc(2026, 4, 30, 9), utc(2026, 5, 31, 9)),
    ]
    for at, start, end in expected:
        periods.roll_due(at)
        sub = _subscription(pg_engine, user)
        assert (sub.period_start, sub.period_end) == (start, end)
    assert [(g.valid_from, g.valid_until) for g in _subscription_grants(pg_engine, user)] == [
        (start, end) for _, start, end in expected
    ]
    at = utc(2026, 5, 2)
    assert ledger.balance(user, at).available == 5000  # only the current allotment counts
    assert ledger.rebuild(user, at) == ledger.balance(user, at)
    periods.roll_due(utc(2028, 2, 1))
    sub = _subscription(pg_engine, leap)
    assert (sub.period_start, sub.period_end) == (utc(2028, 1, 31, 9), utc(2028, 2, 29, 9))


def test_missed_periods_grant_only_the_current_allotment(
    pg_engine: Engine, ledger: CreditLedger, periods: SubscriptionPeriods
) -> None:
    user = _user(pg_engine, "sleeper")
    _subscribe(pg_engine, user, "studio", utc(2026, 1, 15), utc(2026, 2, 15))
    report = periods.roll_due(utc(2026, 5, 20))
    assert report.grants_written == 1
    (grant,) = _subscription_grants(pg_engine, user)
    assert (grant.credits, grant.valid_from, grant.valid_until) == (30000, utc(2026, 5, 15), utc(2026, 6, 15))
    assert grant.details["skipped_periods"] == 3
    assert ledger.balance(user, utc(2026, 5, 20)).available == 30000


# endregion

# region plans without a renewal


def test_the_trial_expires_at_its_end_with_no_new_grant(
    pg_engine: Engine, ledger: CreditLedger, periods: SubscriptionPeriods
) -> None:
    user = _user(pg_engine, "trialist", keep_trial=True)
    sub = _subscription(pg_engine, user)
    assert (sub.plan_id, sub.status) == ("trial", "trialing")
    # (the migrated database's own users are on Trial too: the reports below are checked for this user only)
    assert user not in periods.roll_due(sub.period_end - timedelta(seconds=1)).expired_subscriptions

    at = sub.period_end + timedelta(minutes=1)
    report = periods.roll_due(at)

    assert user in report.expired_subscriptions and report.renewed == []
    after = _subscription(pg_engine, user)
    assert (after.plan_id, after.status) == ("trial", "expired")
    assert (after.period_start, after.period_end) == (sub.period_start, sub.period_end)
    assert _subscription_grants(pg_engine, user) == []
    balance = ledger.balance(user, at)
    assert balance.available == 0 and balance.grants == []
    with pg_engine.connect() as conn:
        expired = conn.execute(
            text("SELECT credits FROM credit_ledger WHERE kind = 'expire' AND user_id = :u"), {"u": user}
        ).scalar_one()
    assert expired == 500  # the trial grant ended by its own window, and the pass wrote its expiry
    assert ledger.rebuild(user, at) == balance
    assert user not in periods.roll_due(at + timedelta(days=40)).expired_subscriptions  # an expired one stays put


def test_canceled_ends_and_past_due_is_left_to_billing(pg_engine: Engine, periods: SubscriptionPeriods) -> None:
    canceled = _user(pg_engine, "canceler")
    late = _user(pg_engine, "latepayer")
    _subscribe(pg_engine, canceled, "pro", utc(2026, 1, 1), utc(2026, 2, 1), status="canceled")
    _subscribe(pg_engine, late, "pro", utc(2026, 1, 1), utc(2026, 2, 1), status="past_due")
    report = periods.roll_due(utc(2026, 2, 2))
    assert report.expired_subscriptions == [canceled] and report.renewed == []
    assert _subscription(pg_engine, canceled).status == "expired"
    assert _subscription(pg_engine, late).status == "past_due"
    assert _subscription_grants(pg_engine, canceled) == [] and _subscription_grants(pg_engine, late) == []


def test_the_override_sets_the_allotment_and_a_custom_plan_without_one_only_advances(
    pg_engine: Engine, ledger: CreditLedger, periods: SubscriptionPeriods
) -> None:
    deal = _user(pg_engine, "bigcorp")
    custom = _user(pg_engine, "smallcorp")
    bonus = _user(pg_engine, "vip")
    _subscribe(pg_engine, deal, "enterprise", utc(2026, 6, 1), utc(2026, 7, 1), overrides={"monthly_credits": 123456})
    _subscribe(pg_engine, custom, "enterprise", utc(2026, 6, 1), utc(2026, 7, 1))
    _subscribe(pg_engine, bonus, "starter", utc(2026, 6, 1), utc(2026, 7, 1), overrides={"monthly_credits": 7000})
    at = utc(2026, 7, 1, 0, 0, 30)
    report = periods.roll_due(at)
    assert sorted(report.renewed) == sorted([deal, custom, bonus]) and report.grants_written == 2
    assert [g.credits for g in _subscription_grants(pg_engine, deal)] == [123456]
    assert [g.credits for g in _subscription_grants(pg_engine, bonus)] == [7000]
    assert _subscription_grants(pg_engine, custom) == []
    assert _subscription(pg_engine, custom).period_end == utc(2026, 8, 1)
    for user in (deal, custom, bonus):
        assert ledger.rebuild(user, at) == ledger.balance(user, at)


def test_a_bad_override_fails_that_subscription_only(pg_engine: Engine, periods: SubscriptionPeriods) -> None:
    broken = _user(pg_engine, "broken")
    fine = _user(pg_engine, "fine")
    _subscribe(pg_engine, broken, "starter", utc(2026, 6, 1), utc(2026, 7, 1), overrides={"monthly_credits": "lots"})
    _subscribe(pg_engine, fine, "starter", utc(2026, 6, 1), utc(2026, 7, 1))
    report = periods.roll_due(utc(2026, 7, 2))
    assert report.renewed == [fine] and list(report.failed) == [broken]
    assert "monthly_credits" in report.failed[broken]
    assert _subscription(pg_engine, broken).period_end == utc(2026, 7, 1)  # rolled back: retried next pass
    assert _subscription_grants(pg_engine, broken) == []


# endregion

# region scheduling


def test_roll_user_renews_one_subscription_on_demand(
    pg_engine: Engine, ledger: CreditLedger, periods: SubscriptionPeriods
) -> None:
    user = _user(pg_engine, "eager")
    other = _user(pg_engine, "patient")
    for who in (user, other):
        _subscribe(pg_engine, who, "starter", utc(2026, 6, 1), utc(2026, 7, 1))
    at = utc(2026, 7, 1, 0, 0, 5)
    assert periods.roll_user(user, at).renewed == [user]
    assert periods.roll_user(user, at).renewed == []
    assert len(_subscription_grants(pg_engine, user)) == 1 and _subscription_grants(pg_engine, other) == []


def test_the_scheduler_rolls_due_subscriptions_in_the_background(pg_engine: Engine, ledger: CreditLedger) -> None:
    user = _user(pg_engine, "background")
    now = datetime.now(UTC)
    _subscribe(pg_engine, user, "starter", now - timedelta(days=30), now - timedelta(seconds=1))
    scheduler = CreditPeriodScheduler(
        SubscriptionPeriods(pg_engine, ledger), logging.getLogger("test-credit-periods"), interval=0.1
    )
    scheduler.start()
    try:
        deadline = time.monotonic() + 20
        while not _subscription_grants(pg_engine, user) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        scheduler.stop()
    assert [g.credits for g in _subscription_grants(pg_engine, user)] == [5000]


def test_the_credits_plugin_runs_the_pass_in_api_processes_only(pg_engine: Engine) -> None:
    assert get_plugin_manager(SaasSettings()).get_plugin("credits") is credits_plugin
    logger = logging.getLogger("test-credit-periods")
    settings = SaasSettings(database_url=pg_engine.url.render_as_string(hide_password=False))

    def running() -> bool:
        name = f"{THREAD_PREFIX}invokeai-saas-credit-periods"
        return any(t.name == name and t.is_alive() for t in threading.enumerate())

    credits_plugin.saas_startup(saas_config=SaasSettings(), services=None, logger=logger)
    assert not running()  # no database: nothing to roll
    set_worker_role(WorkerRole("w-test", (0,)))
    try:
        credits_plugin.saas_startup(saas_config=settings, services=None, logger=logger)
        assert not running()  # workers leave it to the API processes
    finally:
        set_worker_role(None)
    # An API process: the spending cap's pass gets the queue it fails items through (none run here).
    credits_plugin.saas_startup(saas_config=settings, services=SimpleNamespace(session_queue=None), logger=logger)
    try:
        assert running()
    finally:
        credits_plugin.saas_shutdown(saas_config=settings, logger=logger)
        get_engine(settings).dispose()
    assert not running()


# endregion
