"""Credits tests: users created through ``saas_web``'s API, and balances, plans and the ledger read or set directly
in the database."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, text

from invokeai_saas.devstack.web import InvokeAIWebServer
from tests.support.browser import create_user
from tests.support.invokeai import admin_token

if TYPE_CHECKING:
    from invokeai_saas.credits.ledger import Balance, CreditLedger


def saas_user(web: InvokeAIWebServer, name: str) -> tuple[str, dict[str, str]]:
    """A new (Trial) user created by the admin; returns its id and bearer headers."""
    admin = {"Authorization": f"Bearer {admin_token(web.url)}"}
    user_id, token = create_user(web.url, admin, f"{name}-{uuid.uuid4().hex[:6]}@example.com")
    return user_id, {"Authorization": f"Bearer {token}"}


def set_plan(engine: Engine, user_id: str, plan_id: str, status: str = "active") -> None:
    """Put a user on a plan directly in the database (what billing or an operator does), the period unchanged."""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE subscriptions SET plan_id = :p, status = :s WHERE user_id = :u"),
            {"p": plan_id, "s": status, "u": user_id},
        )


def set_balance(engine: Engine, user_id: str, credits: int) -> None:
    """End every grant the user has now (entry and projection alike) and grant exactly ``credits``."""
    from invokeai_saas.credits.ledger import CreditLedger

    with engine.begin() as conn:
        for table in ("credit_ledger", "credit_grant_balances"):
            conn.execute(
                text(
                    f"UPDATE {table} SET valid_until = valid_from + interval '1 microsecond' "
                    "WHERE user_id = :u AND (valid_until IS NULL OR valid_until > clock_timestamp())"
                ),
                {"u": user_id},
            )
    CreditLedger(engine).grant(user_id, credits, "test", f"test:{user_id}:{uuid.uuid4().hex}")


def set_overrides(engine: Engine, user_id: str, overrides: str) -> None:
    """Lay per-subscription plan values (a JSON object, e.g. ``'{"max_run_seconds": 2}'``) over the user's plan."""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE subscriptions SET overrides = CAST(:o AS jsonb) WHERE user_id = :u"),
            {"o": overrides, "u": user_id},
        )


def usage(engine: Engine, item_id: int) -> Any:
    """The item's usage record (``seconds``, ``credits``), or None while it is not settled."""
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT seconds, credits FROM credit_usage WHERE item_id = :i"), {"i": item_id}
        ).first()


def settled(engine: Engine, item_id: int, timeout: float = 30.0) -> Any:
    """The item's usage record once it is settled (polled with a deadline: settlement is a server's state)."""
    deadline = time.monotonic() + timeout
    while (record := usage(engine, item_id)) is None:
        assert time.monotonic() < deadline, f"queue item {item_id} was never settled"
        time.sleep(0.1)
    return record


def item_entries(engine: Engine, item_id: int) -> list[tuple[str, int, dict[str, Any]]]:
    """The item's ledger entries (kind, credits, details), in order: a charged item has one hold, its settle
    entries (one per grant drawn from) and one release."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT kind, credits, details FROM credit_ledger WHERE item_id = :i ORDER BY entry_id"),
            {"i": item_id},
        ).all()
    return [(row.kind, int(row.credits), dict(row.details or {})) for row in rows]


def charged(engine: Engine, item_id: int) -> int:
    """What the ledger charged the item (its settle entries summed)."""
    return sum(credits for kind, credits, _ in item_entries(engine, item_id) if kind == "settle")


def backdate_start(engine: Engine, item_id: int, seconds: float) -> None:
    """Move a running item's start ``seconds`` back on the database's clock (rather than waiting them out)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE session_queue SET started_at = clock_timestamp() - make_interval(secs => :s) WHERE item_id = :i"
            ),
            {"s": seconds, "i": item_id},
        )


def assert_charged_once(engine: Engine, item_id: int, ran: float, what: str = "the stopped item") -> Any:
    """The item was charged the ``ran`` seconds it ran (within the 2 s a test takes), a credit a second rounded up,
    in its usage record and in the ledger alike; returns the usage record."""
    record = usage(engine, item_id)
    assert record is not None, f"{what} was not charged"
    assert ran <= record.seconds < ran + 2 and record.credits == math.ceil(record.seconds)
    assert charged(engine, item_id) == record.credits
    return record


def assert_stopping_again_changes_nothing(
    ledger: CreditLedger, user_id: str, item_id: int, balance: Balance, *again: Callable[[], Any]
) -> None:
    """Each of ``again`` (the stop repeated, a prune) and the worker settling the item late leave the user's
    ``balance`` as it is, in the projection and rebuilt from the ledger."""
    for call in again:
        try:
            call()
        except Exception as e:  # the item may be gone: a second delete of a missing item raises, as stock's
            assert type(e).__name__ == "SessionQueueItemNotFoundError"
    from invokeai_saas.credits.ledger import Usage

    late = ledger.settle(user_id, item_id, 60, Usage(seconds=60.0, gpu_tier="standard"))
    assert late.already_settled and late.charged == 0
    assert ledger.balance(user_id) == balance and ledger.rebuild(user_id) == balance
