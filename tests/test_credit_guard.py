"""The enqueue guard in one process, against a real PostgreSQL: stock's session queue API on
``PostgresSessionQueue`` with ``CreditHoldGuard``, no scheduler running, so each effect is the guard's own.

- A subscription whose period ended a moment ago is rolled inside the enqueue: its new allotment pays for the batch
  instead of a 402 for credits the next 60 s pass would have granted.
- A workflow-call child holds its own estimate when its parent creates it; a parent that cannot cover it gets the
  user-facing message and no child is left behind; so does a child outside the plan's models.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from invokeai.app.services.session_queue.session_queue_common import Batch, SessionQueueItem
from invokeai.app.services.shared.graph import Graph, GraphExecutionState
from sqlalchemy import Engine, text

from invokeai_saas.config import SaasSettings
from invokeai_saas.credits.estimate import CreditEstimator
from invokeai_saas.credits.ledger import CreditLedger, InsufficientCredits
from invokeai_saas.credits.limits import PlanLimitExceeded
from invokeai_saas.credits.periods import SubscriptionPeriods, subscription_grant_key
from invokeai_saas.credits.plans import PlanService
from invokeai_saas.credits.settlement import CreditHoldGuard
from invokeai_saas.services.session_queue.session_queue_postgres import PostgresSessionQueue
from tests.services.test_session_queue import add_graph
from tests.support.workflow_calls import park_on_a_call
from tests.test_credit_periods import _subscribe, _subscription, _user
from tests.test_dispatch_queue import RecordingEvents, _start

Q = "default"


@pytest.fixture()
def ledger(pg_engine: Engine) -> CreditLedger:
    return CreditLedger(pg_engine)


@pytest.fixture()
def queue(pg_engine: Engine, ledger: CreditLedger) -> PostgresSessionQueue:
    settings = SaasSettings()
    estimator = CreditEstimator(settings.credit_estimate_overhead_seconds, settings.credit_estimate_step_seconds)
    queue = PostgresSessionQueue(pg_engine)
    queue.add_enqueue_guard(
        CreditHoldGuard(ledger, PlanService(pg_engine), estimator, SubscriptionPeriods(pg_engine, ledger))
    )
    _start(queue, RecordingEvents())
    return queue


def _enqueue(queue: PostgresSessionQueue, user_id: str, runs: int = 1) -> list[int]:
    batch = Batch(graph=add_graph(), runs=runs)
    return sorted(asyncio.run(queue.enqueue_batch(Q, batch, False, user_id)).item_ids)


def _holds(engine: Engine, user_id: str) -> dict[int, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT item_id, held FROM credit_holds WHERE user_id = :u"), {"u": user_id})
        return {int(row.item_id): int(row.held) for row in rows}


def _items(engine: Engine, user_id: str) -> list[int]:
    with engine.connect() as conn:
        return [
            int(i)
            for i in conn.execute(
                text("SELECT item_id FROM session_queue WHERE user_id = :u ORDER BY item_id"), {"u": user_id}
            ).scalars()
        ]


def test_an_enqueue_just_after_the_period_ended_is_paid_by_the_new_allotment(
    pg_engine: Engine, ledger: CreditLedger, queue: PostgresSessionQueue
) -> None:
    user = _user(pg_engine, "renewing")  # its trial grant is over: nothing but the subscription pays
    now = datetime.now(UTC)
    start, end = now - timedelta(days=30), now - timedelta(seconds=30)
    _subscribe(pg_engine, user, "starter", start, end)
    ledger.grant(user, 5000, "subscription", subscription_grant_key(user, start), start, end)
    assert ledger.balance(user).available == 0  # the ended period's allotment counts for nothing now

    item_ids = _enqueue(queue, user, runs=2)

    assert len(item_ids) == 2 and set(_holds(pg_engine, user)) == set(item_ids)
    subscription = _subscription(pg_engine, user)
    assert subscription.period_start == end and subscription.period_end > now
    at = datetime.now(UTC)
    balance = ledger.balance(user, at)
    assert balance.held == sum(_holds(pg_engine, user).values())
    assert balance.available == 5000 - balance.held
    assert ledger.rebuild(user, at) == balance


def test_a_refused_enqueue_leaves_the_roll_to_the_pass_and_enqueues_nothing(
    pg_engine: Engine, ledger: CreditLedger, queue: PostgresSessionQueue
) -> None:
    """A Trial that ended is expired by the roll and grants nothing: the enqueue is refused (402's exception), and
    its transaction, roll included, leaves no trace; the pass expires the trial as before."""
    user = _user(pg_engine, "lapsed")
    now = datetime.now(UTC)
    _subscribe(pg_engine, user, "trial", now - timedelta(days=7), now - timedelta(seconds=30), status="trialing")
    with pytest.raises(InsufficientCredits) as refused:
        _enqueue(queue, user)
    assert "Not enough credits" in str(refused.value) and "/api/v1/saas/plans" in str(refused.value)
    assert _items(pg_engine, user) == [] and _holds(pg_engine, user) == {}
    assert _subscription(pg_engine, user).status == "trialing"
    SubscriptionPeriods(pg_engine, ledger).roll_due()
    assert _subscription(pg_engine, user).status == "expired"


def _running_parent(pg_engine: Engine, queue: PostgresSessionQueue, user_id: str) -> SessionQueueItem:
    (parent_id,) = _enqueue(queue, user_id)
    parent = queue.dequeue()
    assert parent is not None and parent.item_id == parent_id
    park_on_a_call(parent)
    return parent


def _set_available(pg_engine: Engine, ledger: CreditLedger, user_id: str, credits: int) -> None:
    """Leave exactly ``credits`` available, whatever is held: the rest of the trial grant is consumed."""
    balance = ledger.balance(user_id)
    with pg_engine.begin() as conn:
        conn.execute(
            text("UPDATE credit_grant_balances SET remaining = remaining - :d WHERE user_id = :u"),
            {"d": balance.available - credits, "u": user_id},
        )
    assert ledger.balance(user_id).available == credits


def test_a_workflow_call_child_holds_its_estimate_when_its_parent_creates_it(
    pg_engine: Engine, ledger: CreditLedger, queue: PostgresSessionQueue
) -> None:
    user = _user(pg_engine, "caller", keep_trial=True)
    parent = _running_parent(pg_engine, queue, user)
    held_for_parent = ledger.balance(user).held

    child = queue.enqueue_workflow_call_child(parent, GraphExecutionState(graph=add_graph(a=7)))

    holds = _holds(pg_engine, user)
    assert set(holds) == {parent.item_id, child.item_id} and holds[child.item_id] >= 1
    assert ledger.balance(user).held == held_for_parent + holds[child.item_id]


def test_a_parent_that_cannot_cover_its_child_leaves_no_child_and_says_why(
    pg_engine: Engine, ledger: CreditLedger, queue: PostgresSessionQueue
) -> None:
    user = _user(pg_engine, "short", keep_trial=True)
    parent = _running_parent(pg_engine, queue, user)
    _set_available(pg_engine, ledger, user, 0)
    before: dict[str, Any] = {"items": _items(pg_engine, user), "holds": _holds(pg_engine, user)}

    with pytest.raises(InsufficientCredits) as refused:
        queue.enqueue_workflow_call_child(parent, GraphExecutionState(graph=add_graph(a=8)))

    assert refused.value.available == 0 and refused.value.needed >= 1
    assert str(refused.value).startswith("Not enough credits: this needs")
    assert {"items": _items(pg_engine, user), "holds": _holds(pg_engine, user)} == before


def test_a_child_outside_the_plans_models_is_refused_like_an_enqueue(
    pg_engine: Engine, ledger: CreditLedger, queue: PostgresSessionQueue
) -> None:
    """A called workflow is the caller's generation too: Trial's SD-only access applies to it."""
    user = _user(pg_engine, "flux-caller", keep_trial=True)
    parent = _running_parent(pg_engine, queue, user)
    flux_lora = {"key": "flux-lora-key", "hash": "h", "name": "flux lora", "base": "flux", "type": "lora"}
    graph = Graph.model_validate(
        {"id": "child", "nodes": {"lora": {"id": "lora", "type": "lora_loader", "lora": flux_lora}}, "edges": []}
    )
    before = {"items": _items(pg_engine, user), "holds": _holds(pg_engine, user)}

    with pytest.raises(PlanLimitExceeded) as refused:
        queue.enqueue_workflow_call_child(parent, GraphExecutionState(graph=graph))

    assert refused.value.status_code == 403 and "Your plan (Trial) does not include flux models" in str(refused.value)
    assert {"items": _items(pg_engine, user), "holds": _holds(pg_engine, user)} == before
