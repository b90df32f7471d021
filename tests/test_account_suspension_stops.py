"""Suspending an account stops its running item at once and charges the time it ran, once (issue 12, item 1).

End to end through ``saas_web`` (its API process and a real SQS worker): a user's step-less node runs for a minute,
and the account is deactivated, by an administrator's ``PATCH /api/v1/auth/users/{id}`` or by the operator's
``invokeai-saas user modify --deactivate`` (another process, which runs no queue). The item is canceled within a
few seconds, not when its node ends, and is charged the seconds it ran until then; the worker is free again.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from invokeai.app.services.session_queue.session_queue_common import Batch
from sqlalchemy import Engine, text

from invokeai_saas.credits.ledger import CreditLedger
from invokeai_saas.devstack.web import InvokeAIWebServer
from invokeai_saas.services.session_queue.session_queue_suspensions import SuspendedOwnerStops
from tests.services.test_session_queue import add_graph
from tests.support.credits import charged, saas_user, set_balance, settled, usage
from tests.support.invokeai import admin_token
from tests.support.queue_api import enqueue, sleep_batch, wait_for_status
from tests.test_credit_parked_stops import EARLIER, parked_parent
from tests.test_credit_periods import _user
from tests.test_credit_stops import BALANCE, metered_queue, start_running

CLI = str(Path(sys.executable).parent / "invokeai-saas")
RAN = 2.0  # seconds the item runs before its owner is deactivated
RAN_HERE = 5.0  # seconds the running item ran before the pass, in one process (its start moved back)
STOPPED_WITHIN = 10.0  # seconds after the deactivation by which the item must be canceled (the node runs 60)


def _status(engine: Engine, item_id: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(text("SELECT status FROM session_queue WHERE item_id = :i"), {"i": item_id}).scalar()


def _deactivate_by_route(web: InvokeAIWebServer, engine: Engine, user_id: str, email: str) -> None:
    admin = {"Authorization": f"Bearer {admin_token(web.url)}"}
    r = httpx.patch(f"{web.url}/api/v1/auth/users/{user_id}", json={"is_active": False}, headers=admin, timeout=30)
    assert r.status_code == 200, r.text


def _deactivate_by_cli(web: InvokeAIWebServer, engine: Engine, user_id: str, email: str) -> None:
    url = engine.url.render_as_string(hide_password=False)
    r = subprocess.run(
        [CLI, "user", "--database-url", url, "modify", "--email", email, "--deactivate"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stderr


DEACTIVATIONS: dict[str, Callable[[InvokeAIWebServer, Engine, str, str], None]] = {
    "PATCH /api/v1/auth/users/{id}": _deactivate_by_route,
    "invokeai-saas user modify --deactivate": _deactivate_by_cli,
}


def _email(engine: Engine, user_id: str) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT email FROM users WHERE user_id = :u"), {"u": user_id}).scalar_one())


@pytest.mark.parametrize("how", list(DEACTIVATIONS))
def test_deactivating_an_account_stops_its_running_item_and_charges_the_time_it_ran_once(
    saas_web: InvokeAIWebServer, saas_db: Engine, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    ledger = CreditLedger(saas_db)
    user_id, headers = saas_user(saas_web, "suspended")
    set_balance(saas_db, user_id, BALANCE)
    (item_id,) = enqueue(saas_web, headers, sleep_batch(60))
    (queued_id,) = enqueue(saas_web, headers, sleep_batch(60))  # waits behind it (one item at a time on Trial)
    wait_for_status(saas_web, headers, item_id, "in_progress")
    time.sleep(RAN)
    queued_was_pending = _status(saas_db, queued_id) == "pending"

    DEACTIVATIONS[how](saas_web, saas_db, user_id, _email(saas_db, user_id))
    deactivated = time.monotonic()
    while (status := _status(saas_db, item_id)) == "in_progress":
        assert time.monotonic() - deactivated < STOPPED_WITHIN, "the item ran on after its owner was deactivated"
        time.sleep(0.05)
    stopped_after = time.monotonic() - deactivated
    assert status == "canceled"
    record = settled(saas_db, item_id)
    assert RAN <= record.seconds < RAN + STOPPED_WITHIN and record.credits == math.ceil(record.seconds)

    # A queued item is canceled too, and one that had not started is not charged; the worker is free for other
    # users; nothing more is charged.
    other_id, other_headers = saas_user(saas_web, "after-suspension")
    (probe,) = enqueue(saas_web, other_headers, sleep_batch(0))
    assert wait_for_status(saas_web, other_headers, probe, "completed", "failed")["status"] == "completed"
    settled(saas_db, probe)
    assert _status(saas_db, queued_id) == "canceled"
    if queued_was_pending:
        assert usage(saas_db, queued_id) is None
    assert charged(saas_db, item_id) == record.credits
    deadline = time.monotonic() + 60  # the queued item's hold is released by the backstop pass (every 10 s)
    while (balance := ledger.balance(user_id)).held:
        assert time.monotonic() < deadline, balance
        time.sleep(0.2)
    queued = usage(saas_db, queued_id)
    assert (balance.available, balance.debt) == (BALANCE - record.credits - (queued.credits if queued else 0), 0)
    assert ledger.rebuild(user_id) == balance
    with capsys.disabled():
        print(
            f"\n{how}: canceled {stopped_after:.2f} s after the deactivation; ran {record.seconds:.2f} s, "
            f"charged {record.credits} credits (once)"
        )


# region in one process: the pass and the claim, against a real PostgreSQL


def _set_active(engine: Engine, user_id: str, active: bool) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE users SET is_active = :a WHERE user_id = :u"), {"a": active, "u": user_id})


def test_the_pass_cancels_a_suspended_accounts_work_charging_what_ran_and_claims_skip_it(pg_engine: Engine) -> None:
    ledger = CreditLedger(pg_engine)
    queue = metered_queue(pg_engine, ledger)
    user_id = _user(pg_engine, "suspended-here")
    other = _user(pg_engine, "still-active")
    for user in (user_id, other):
        set_balance(pg_engine, user, BALANCE)
    running = start_running(pg_engine, queue, user_id, RAN_HERE)
    parent, child = parked_parent(pg_engine, queue, user_id)
    (pending_id,) = asyncio.run(queue.enqueue_batch("default", Batch(graph=add_graph()), False, user_id)).item_ids

    _set_active(pg_engine, user_id, False)  # as the CLI does it: in the database, no event, no queue
    assert queue.dequeue() is None  # the child and the pending item are skipped: their owner may not run
    (others_id,) = asyncio.run(queue.enqueue_batch("default", Batch(graph=add_graph()), False, other)).item_ids
    claimed = queue.dequeue()
    assert claimed is not None and claimed.item_id == others_id
    canceled = SuspendedOwnerStops(pg_engine, queue).run_once()

    assert {running.item_id, parent.item_id, child.item_id, pending_id} <= set(canceled)
    for item_id in (running.item_id, parent.item_id, child.item_id, pending_id):
        assert queue.get_queue_item(item_id).status == "canceled"
    ran = usage(pg_engine, running.item_id)
    assert RAN_HERE <= ran.seconds < RAN_HERE + 2 and ran.credits == math.ceil(ran.seconds)
    parked = usage(pg_engine, parent.item_id)
    assert EARLIER <= parked.seconds < EARLIER + 2 and parked.credits == math.ceil(parked.seconds)
    assert usage(pg_engine, child.item_id) is None and usage(pg_engine, pending_id) is None
    assert SuspendedOwnerStops(pg_engine, queue).run_once() == []  # once
    assert charged(pg_engine, running.item_id) == ran.credits and charged(pg_engine, parent.item_id) == parked.credits
    assert queue.get_queue_item(others_id).status == "in_progress"  # another account's work goes on

    _set_active(pg_engine, user_id, True)  # reactivated: new work runs again
    (again,) = asyncio.run(queue.enqueue_batch("default", Batch(graph=add_graph()), False, user_id)).item_ids
    reclaimed = queue.dequeue()
    assert reclaimed is not None and reclaimed.item_id == again


# endregion
