"""The credit ledger against a real PostgreSQL: trial on sign-up, idempotent grants, holds that refuse what the
balance cannot cover (also under concurrency), settlement exactly once with earliest-expiry-first consumption,
releases, expiry, and projections that always equal the balance rebuilt from the entries alone."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from invokeai_saas.credits.ledger import CreditLedger, InsufficientCredits, Usage, credits_for
from invokeai_saas.credits.plans import PlanService

USAGE = Usage(seconds=1.0, gpu_tier="standard")


def _user(engine: Engine, user_id: str) -> str:
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO users (user_id, email, password_hash) VALUES (:u, :u || '@example.com', 'x')"),
            {"u": user_id},
        )
    return user_id


@pytest.fixture()
def ledger(pg_engine: Engine) -> Iterator[CreditLedger]:
    yield CreditLedger(pg_engine)


def _clear_trial(engine: Engine, user_id: str) -> None:
    """Start from an empty balance: end the sign-up trial grant now (in the entry and its projection alike)."""
    with engine.begin() as conn:
        for table in ("credit_ledger", "credit_grant_balances"):
            conn.execute(
                text(f"UPDATE {table} SET valid_until = valid_from + interval '1 microsecond' WHERE user_id = :u"),
                {"u": user_id},
            )


def test_a_new_user_starts_on_trial_with_its_credits(pg_engine: Engine, ledger: CreditLedger) -> None:
    user = _user(pg_engine, "newcomer")
    with pg_engine.connect() as conn:
        sub = conn.execute(text("SELECT * FROM subscriptions WHERE user_id = :u"), {"u": user}).one()
    assert (sub.plan_id, sub.status) == ("trial", "trialing")
    assert sub.period_end - sub.period_start == timedelta(days=7)
    balance = ledger.balance(user)
    assert balance.available == 500 and balance.held == 0
    (grant,) = balance.grants
    assert (grant.source, grant.remaining, grant.valid_until) == ("trial", 500, sub.period_end)
    assert ledger.rebuild(user) == balance


def test_grants_are_idempotent_by_their_natural_key(pg_engine: Engine, ledger: CreditLedger) -> None:
    user = _user(pg_engine, "granted")
    first = ledger.grant(user, 1000, "purchase", "purchase:pi_123")
    again = ledger.grant(user, 1000, "purchase", "purchase:pi_123")
    assert first == again
    assert ledger.balance(user).available == 1500
    with pytest.raises(ValueError):
        ledger.grant(user, 10, "gift", "gift:1")
    with pytest.raises(ValueError):
        ledger.grant(user, -5, "admin", "admin:neg")


def test_holds_refuse_what_the_balance_cannot_cover(pg_engine: Engine, ledger: CreditLedger) -> None:
    user = _user(pg_engine, "holder")
    ledger.hold(user, [(1, 200), (2, 200)])
    with pytest.raises(InsufficientCredits) as refused:
        ledger.hold(user, [(3, 60), (4, 60)])
    assert (refused.value.needed, refused.value.available) == (120, 100)
    assert ledger.balance(user).available == 100  # nothing of the refused batch was held
    assert ledger.balance(user).held == 400


def test_settlement_consumes_earliest_expiry_first_and_happens_once(pg_engine: Engine, ledger: CreditLedger) -> None:
    user = _user(pg_engine, "settler")
    _clear_trial(pg_engine, user)
    now = datetime.now(UTC)
    soon = ledger.grant(user, 100, "subscription", "sub:soon", valid_until=now + timedelta(days=1))
    later = ledger.grant(user, 100, "test", "test:later", valid_until=now + timedelta(days=10))
    forever = ledger.grant(user, 100, "admin", "admin:forever")
    ledger.hold(user, [(7, 200)])
    settled = ledger.settle(user, 7, 150, USAGE)
    assert (settled.charged, settled.released, settled.already_settled) == (150, 50, False)
    remaining = {g.entry_id: g.remaining for g in ledger.balance(user).grants}
    assert remaining == {later: 50, forever: 100}  # the soonest-expiring grant went first
    assert soon not in remaining
    assert ledger.settle(user, 7, 150, USAGE).already_settled  # a duplicate settles nothing
    assert ledger.release(user, 7, "late failure") == 0  # nor does a late release
    balance = ledger.balance(user)
    assert (balance.available, balance.held, balance.debt) == (150, 0, 0)
    assert ledger.rebuild(user) == balance
    with pg_engine.connect() as conn:
        usage = conn.execute(text("SELECT credits, seconds FROM credit_usage WHERE item_id = 7")).one()
    assert tuple(usage) == (150, 1.0)


def test_a_released_hold_charges_nothing(pg_engine: Engine, ledger: CreditLedger) -> None:
    user = _user(pg_engine, "released")
    ledger.hold(user, [(11, 300)])
    assert ledger.balance(user).available == 200
    assert ledger.release(user, 11, "canceled before start") == 300
    assert ledger.release(user, 11, "canceled before start") == 0
    assert ledger.balance(user).available == 500
    assert ledger.rebuild(user) == ledger.balance(user)


def test_a_run_that_costs_more_than_is_left_leaves_a_debt(pg_engine: Engine, ledger: CreditLedger) -> None:
    user = _user(pg_engine, "overrun")
    ledger.hold(user, [(21, 400)])
    ledger.settle(user, 21, 620, USAGE)  # ran far longer than estimated
    balance = ledger.balance(user)
    assert (balance.available, balance.debt, balance.grants) == (-120, 120, [])
    with pytest.raises(InsufficientCredits):
        ledger.hold(user, [(22, 1)])
    ledger.grant(user, 1000, "purchase", "purchase:topup")
    assert ledger.balance(user).available == 880
    assert ledger.rebuild(user) == ledger.balance(user)


def test_expired_grants_leave_the_balance_and_are_recorded(pg_engine: Engine, ledger: CreditLedger) -> None:
    user = _user(pg_engine, "expiring")
    now = datetime.now(UTC)
    grant = ledger.grant(user, 50, "test", "test:short", valid_from=now - timedelta(days=2), valid_until=now)
    assert grant not in {g.entry_id for g in ledger.balance(user).grants}
    assert ledger.expire_due() >= 1
    assert ledger.expire_due() == 0  # idempotent
    with pg_engine.connect() as conn:
        expired = conn.execute(
            text("SELECT credits FROM credit_ledger WHERE natural_key = :k"), {"k": f"expire:{grant}"}
        )
        assert expired.scalar_one() == 50
    assert ledger.rebuild(user) == ledger.balance(user)


def test_projections_equal_the_balance_rebuilt_from_the_entries(pg_engine: Engine, ledger: CreditLedger) -> None:
    """A seeded random history of every operation; after each step the projections must equal the rebuild."""
    rng = random.Random(20261203)
    users = [_user(pg_engine, f"random-{i}") for i in range(3)]
    open_items: dict[int, str] = {}
    next_item = 1000
    for step in range(120):
        user = rng.choice(users)
        action = rng.choice(["grant", "hold", "settle", "release", "expire"])
        if action == "grant":
            now = datetime.now(UTC)
            until = rng.choice(
                [None, now + timedelta(days=rng.randint(1, 30)), now + timedelta(seconds=rng.randint(1, 3))]
            )
            ledger.grant(
                user, rng.randint(0, 300), rng.choice(["purchase", "test", "admin"]), f"r:{step}", valid_until=until
            )
        elif action == "hold":
            try:
                ledger.hold(user, [(next_item, rng.randint(1, 120))])
                open_items[next_item] = user
            except InsufficientCredits:
                pass
            next_item += 1
        elif action in ("settle", "release") and open_items:
            item = rng.choice(sorted(open_items))
            owner = open_items.pop(item)
            if action == "settle":
                ledger.settle(owner, item, rng.randint(0, 200), USAGE)
            else:
                ledger.release(owner, item, "random")
        elif action == "expire":
            ledger.expire_due()
        at = datetime.now(UTC)  # one instant for both: short grants expire while the test runs
        for who in users:
            assert ledger.rebuild(who, at) == ledger.balance(who, at), (step, action, who)


def test_concurrent_holds_accept_exactly_what_the_balance_covers(pg_engine: Engine, ledger: CreditLedger) -> None:
    user = _user(pg_engine, "crowd")  # 500 trial credits: ten holds of 50
    accepted: list[int] = []
    refused: list[int] = []
    barrier = threading.Barrier(20)

    def attempt(first_item: int) -> None:
        barrier.wait()
        for item in range(first_item, first_item + 5):
            try:
                ledger.hold(user, [(item, 50)])
                accepted.append(item)
            except InsufficientCredits:
                refused.append(item)

    threads = [threading.Thread(target=attempt, args=(5000 + 5 * n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(accepted), len(refused)) == (10, 90)
    balance = ledger.balance(user)
    assert (balance.available, balance.held) == (0, 500)
    assert ledger.rebuild(user) == balance


def test_credits_for_rounds_seconds_up_then_applies_the_multiplier() -> None:
    assert credits_for(0) == 0
    assert credits_for(0.2) == 1
    assert credits_for(3.0) == 3
    assert credits_for(3.01, 1.5) == 6
    assert credits_for(2.5, 0.5) == 2
    with pytest.raises(ValueError):
        credits_for(-1)


def test_plans_are_seeded_and_overrides_shape_a_subscriptions_limits(pg_engine: Engine) -> None:
    service = PlanService(pg_engine)
    public = [(p.plan_id, p.price_cents, p.limits.monthly_credits) for p in service.list_plans()]
    assert public == [
        ("trial", 0, 500),
        ("starter", 2500, 5000),
        ("pro", 7500, 15000),
        ("studio", 15000, 30000),
        ("enterprise", None, None),
    ]
    tester = service.get_plan("tester")
    assert tester is not None and not tester.public and tester.limits.monthly_credits == 50000
    assert "tester" in [p.plan_id for p in service.list_plans(include_internal=True)]
    assert service.get_plan("nope") is None

    user = _user(pg_engine, "enterprise-customer")
    with pg_engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE subscriptions SET plan_id = 'enterprise', status = 'active', "
                'overrides = \'{"monthly_credits": 250000, "concurrent_jobs": 16, "unknown": 1}\' WHERE user_id = :u'
            ),
            {"u": user},
        )
    sub = service.subscription(user)
    assert sub is not None and sub.plan.plan_id == "enterprise" and sub.status == "active"
    assert (sub.limits.monthly_credits, sub.limits.concurrent_jobs) == (250000, 16)
    assert sub.limits.max_batch_size == sub.plan.limits.max_batch_size  # not overridden: the plan's value
    assert service.subscription("nobody") is None
