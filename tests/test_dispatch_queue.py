"""Dispatch and claims, in one process against the real servers: the API's ``DispatchingSessionQueue`` and two
workers' ``WorkerSessionQueue`` on one PostgreSQL database and the moto SQS server. The processes of a real
deployment are covered by ``test_distributed_execution``; here each hazard is driven step by step: duplicate
messages, tiers and round robin, running caps, a lost lease and its fence, reruns, an SQS outage at enqueue,
hand-back, pause, and workflow-call chains pinned to their worker.

The only test double is the event bus (a recorder), as in the session-queue behaviour suite.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import pytest
from invokeai.app.services.config.config_default import InvokeAIAppConfig
from invokeai.app.services.events.events_base import EventServiceBase
from invokeai.app.services.events.events_common import EventBase, QueueItemStatusChangedEvent
from invokeai.app.services.invocation_services import InvocationServices
from invokeai.app.services.invoker import Invoker
from invokeai.app.services.session_queue.session_queue_common import Batch, BatchDatum, SessionQueueItem
from invokeai.app.services.shared.graph import GraphExecutionState
from sqlalchemy import Engine, text

from invokeai_saas.aws import sqs_client
from invokeai_saas.config import SaasSettings
from invokeai_saas.devstack import LocalStack
from invokeai_saas.dispatch.fleet import FleetState
from invokeai_saas.dispatch.sqs_dispatch import Runnable, SqsDispatcher
from invokeai_saas.services.session_queue.session_queue_dispatching import WORKER_LOST_ERROR, DispatchingSessionQueue
from invokeai_saas.services.session_queue.session_queue_worker import WorkerSessionQueue
from tests.services.test_session_queue import add_graph
from tests.support.workflow_calls import park_on_a_call

Q = "default"


class RecordingEvents(EventServiceBase):
    def __init__(self) -> None:
        self.events: list[EventBase] = []

    def dispatch(self, event: EventBase) -> None:
        self.events.append(event)

    def statuses(self, item_id: int) -> list[str]:
        return [e.status for e in self.events if isinstance(e, QueueItemStatusChangedEvent) and e.item_id == item_id]


@dataclass
class Deployment:
    engine: Engine
    settings: SaasSettings
    api: DispatchingSessionQueue
    workers: list[WorkerSessionQueue]
    events: RecordingEvents

    def sql(self, statement: str, **params: Any) -> Any:
        with self.engine.begin() as conn:
            return conn.execute(text(statement), params)

    def item(self, item_id: int) -> SessionQueueItem:
        return self.api.get_queue_item(item_id)

    def enqueue(self, user_id: str, count: int = 1) -> list[int]:
        batch = Batch(
            graph=add_graph(),
            data=[[BatchDatum(node_path="add", field_name="a", items=list(range(count)))]],
            runs=1,
        )
        return sorted(asyncio.run(self.api.enqueue_batch(Q, batch, False, user_id)).item_ids)

    def backlog(self) -> int:
        return sum(self.api.dispatcher.approximate_backlog().values())


def _start(queue: Any, events: RecordingEvents) -> None:
    services = SimpleNamespace(
        events=events,
        configuration=InvokeAIAppConfig(multiuser=True),
        logger=logging.getLogger("test-dispatch"),
        model_manager=SimpleNamespace(load=SimpleNamespace(ram_caches={})),
    )
    queue.start(Invoker(cast(InvocationServices, services)))


def _settings(stack: LocalStack, **overrides: Any) -> SaasSettings:
    values: dict[str, Any] = {
        "enabled": True,
        "sqs_endpoint_url": stack.sqs.endpoint_url,
        "sqs_region": stack.sqs.region,
        "sqs_access_key_id": stack.sqs.access_key_id,
        "sqs_secret_access_key": stack.sqs.secret_access_key,
        "sqs_queue_prefix": f"t-{uuid.uuid4().hex[:10]}",
        "max_running_per_user": None,
    }
    values.update(overrides)
    return SaasSettings(**values)


def _deployment(pg_engine: Engine, settings: SaasSettings, workers: int = 2) -> Deployment:
    events = RecordingEvents()
    api = DispatchingSessionQueue(pg_engine, SqsDispatcher(settings), settings)
    _start(api, events)
    api.dispatcher.ensure_queues()
    worker_queues = []
    for index in range(workers):
        worker = WorkerSessionQueue(
            pg_engine, SqsDispatcher(settings), settings, f"w{index}", range(settings.scheduling_tiers)
        )
        _start(worker, events)
        worker_queues.append(worker)
    for user in ("alice", "bob", "carol"):
        with pg_engine.begin() as conn:
            conn.execute(
                text("INSERT INTO users (user_id, email, password_hash) VALUES (:u, :u || '@example.com', 'x')"),
                {"u": user},
            )
    return Deployment(pg_engine, settings, api, worker_queues, events)


@pytest.fixture()
def d(pg_engine: Engine, stack: LocalStack) -> Iterator[Deployment]:
    yield _deployment(pg_engine, _settings(stack))


def _run(worker: WorkerSessionQueue, item: SessionQueueItem | None) -> int:
    """What stock's processor does with a claimed item: run it to completion."""
    assert item is not None
    worker.complete_queue_item(item.item_id)
    return item.item_id


def test_enqueue_sends_one_message_per_item_in_the_owners_tier(d: Deployment, stack: LocalStack) -> None:
    d.sql("INSERT INTO user_scheduling (user_id, tier) VALUES ('alice', 2)")
    alice = d.enqueue("alice", 3)
    bob = d.enqueue("bob", 1)
    client = sqs_client(d.settings)
    received: dict[int, list[dict[str, Any]]] = {}
    for tier in range(3):
        url = client.get_queue_url(QueueName=d.api.dispatcher.queue_name(tier))["QueueUrl"]
        messages = client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["MessageGroupId"]
        ).get("Messages", [])
        received[tier] = [{**json.loads(m["Body"]), "group": m["Attributes"]["MessageGroupId"]} for m in messages]
    assert sorted(m["item_id"] for m in received[2]) == alice
    assert {m["group"] for m in received[2]} == {"alice"}
    assert [m["item_id"] for m in received[0]] == bob and received[0][0]["group"] == "bob"
    assert received[1] == []
    # The redrive policy sends a message to the dead-letter queue after sqs_max_receives receives.
    url = client.get_queue_url(QueueName=d.api.dispatcher.queue_name(0))["QueueUrl"]
    redrive = json.loads(
        client.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"]
    )
    assert redrive["maxReceiveCount"] == d.settings.sqs_max_receives
    assert redrive["deadLetterTargetArn"].endswith(d.api.dispatcher.dead_letter_queue_name)


def test_a_duplicate_message_runs_the_item_once(d: Deployment) -> None:
    (item_id,) = d.enqueue("alice")
    d.api.send_dispatch([Runnable(item_id, "alice", Q, 0)])  # SQS delivers at least once: a second copy
    w0, w1 = d.workers
    first = w0.dequeue()
    assert first is not None and first.item_id == item_id
    assert w1.dequeue() is None  # the copy finds nothing to claim and is deleted
    _run(w0, first)
    assert w0.dequeue() is None
    item = d.item(item_id)
    assert item.status == "completed"
    assert d.sql("SELECT attempts FROM session_queue WHERE item_id = :i", i=item_id).scalar() == 1
    assert d.events.statuses(item_id) == ["in_progress", "completed"]
    assert d.backlog() == 0


def test_higher_tiers_start_first_then_round_robin_across_users(d: Deployment) -> None:
    d.sql("INSERT INTO user_scheduling (user_id, tier) VALUES ('carol', 1)")
    alice = d.enqueue("alice", 3)
    bob = d.enqueue("bob", 2)
    carol = d.enqueue("carol", 2)
    worker = d.workers[0]
    order = []
    for _ in range(7):
        order.append(_run(worker, worker.dequeue()))
    assert worker.dequeue() is None
    # Carol's tier first; then alice and bob in turns (alice first: enqueued first, neither served before).
    assert order == [carol[0], carol[1], alice[0], bob[0], alice[1], bob[1], alice[2]]
    assert d.backlog() == 0


def test_a_worker_serves_only_its_tiers(pg_engine: Engine, stack: LocalStack) -> None:
    d = _deployment(pg_engine, _settings(stack), workers=0)
    d.sql("INSERT INTO user_scheduling (user_id, tier) VALUES ('alice', 2)")
    low = WorkerSessionQueue(pg_engine, SqsDispatcher(d.settings), d.settings, "low", [0])
    _start(low, d.events)
    (premium,) = d.enqueue("alice")
    (basic,) = d.enqueue("bob")
    assert _run(low, low.dequeue()) == basic
    assert low.dequeue() is None
    assert d.item(premium).status == "pending"


def test_running_cap_parks_the_message_and_the_end_of_a_run_hands_it_out(pg_engine: Engine, stack: LocalStack) -> None:
    d = _deployment(pg_engine, _settings(stack, max_running_per_user=1))
    first, second = d.enqueue("alice", 2)
    w0, w1 = d.workers
    running = w0.dequeue()
    assert running is not None and running.item_id == first
    assert w1.dequeue() is None  # alice is at her cap: the message is parked, not lost
    assert d.sql("SELECT tokens FROM dispatch_parked WHERE tier = 0").scalar() == 1
    assert d.item(second).status == "pending"
    _run(w0, running)
    # The processor asks for its next item as soon as one ends: the end of alice's run gives the parked message
    # back first, and it claims her second item.
    nxt = w0.dequeue()
    assert nxt is not None and nxt.item_id == second
    assert d.sql("SELECT tokens FROM dispatch_parked WHERE tier = 0").scalar() == 0
    # A per-user row overrides the default cap.
    d.sql("INSERT INTO user_scheduling (user_id, tier, max_running) VALUES ('bob', 0, 2)")
    bob = d.enqueue("bob", 2)
    assert {w0.dequeue().item_id, w0.dequeue().item_id} == set(bob)  # type: ignore[union-attr]


def test_a_lost_lease_is_taken_over_and_the_old_workers_writes_change_nothing(d: Deployment) -> None:
    (item_id,) = d.enqueue("alice")
    w0, w1 = d.workers
    claimed = w0.dequeue()
    assert claimed is not None
    d.sql("UPDATE session_queue_leases SET lease_expires_at = now() - interval '1 hour'")
    result = d.api.reap()
    assert result.ran and result.requeued == [item_id]
    assert d.item(item_id).status == "pending"
    # The old worker learns it lost the item and must stop it.
    assert [(s.item_id, s.reason) for s in w0.beat()] == [(item_id, "taken over")]
    w0.complete_queue_item(item_id)  # a late write from the old run is fenced out
    assert d.item(item_id).status == "pending"
    again = w1.dequeue()  # the reaper re-dispatched it
    assert again is not None and again.item_id == item_id
    _run(w1, again)
    assert d.item(item_id).status == "completed"
    assert d.sql("SELECT attempts FROM session_queue WHERE item_id = :i", i=item_id).scalar() == 2


def test_an_item_lost_more_often_than_its_reruns_fails_clearly(d: Deployment) -> None:
    (item_id,) = d.enqueue("alice")
    for worker in d.workers:  # worker_lost_item_reruns=1: the first loss re-runs it, the second fails it
        assert worker.dequeue() is not None
        d.sql("UPDATE session_queue_leases SET lease_expires_at = now() - interval '1 hour'")
        d.api.reap()
    item = d.item(item_id)
    assert item.status == "failed"
    assert item.error_type == WORKER_LOST_ERROR
    assert "stopped before finishing it" in (item.error_message or "")
    assert d.sql("SELECT count(*) FROM session_queue_leases").scalar() == 0


def test_items_enqueued_while_sqs_is_down_are_dispatched_by_the_reaper(pg_engine: Engine, stack: LocalStack) -> None:
    d = _deployment(pg_engine, _settings(stack))
    down = SqsDispatcher(d.settings.model_copy(update={"sqs_endpoint_url": "http://127.0.0.1:1"}))
    offline_api = DispatchingSessionQueue(pg_engine, down, d.settings)
    _start(offline_api, d.events)
    batch = Batch(graph=add_graph(), data=[[BatchDatum(node_path="add", field_name="a", items=[1, 2])]], runs=1)
    items = sorted(asyncio.run(offline_api.enqueue_batch(Q, batch, False, "alice")).item_ids)  # still accepted
    assert [d.item(i).status for i in items] == ["pending", "pending"]
    assert d.workers[0].dequeue() is None  # no message was sent
    d.sql("UPDATE session_queue SET created_at = created_at - interval '1 minute'")
    assert d.api.reap(reconcile=True).redispatched == 2
    assert sorted(_run(d.workers[0], d.workers[0].dequeue()) for _ in items) == items


def test_hand_back_puts_the_item_back_for_another_worker_at_once(d: Deployment) -> None:
    (item_id,) = d.enqueue("alice")
    w0, w1 = d.workers
    assert w0.dequeue() is not None
    assert w0.hand_back(item_id)
    assert d.item(item_id).status == "pending"
    assert d.sql("SELECT attempts FROM session_queue WHERE item_id = :i", i=item_id).scalar() == 0
    again = w1.dequeue()  # the released message is visible again without waiting for its timeout
    assert again is not None and again.item_id == item_id


def test_a_paused_fleet_takes_no_work_until_resumed(d: Deployment) -> None:
    (item_id,) = d.enqueue("alice")
    worker = d.workers[0]
    FleetState(d.engine).set_paused(True)
    worker.set_paused(FleetState(d.engine).is_paused())
    assert worker.dequeue() is None
    assert d.item(item_id).status == "pending"
    FleetState(d.engine).set_paused(False)
    worker.set_paused(False)
    claimed = worker.dequeue()
    assert claimed is not None and claimed.item_id == item_id


def _call_child(worker: WorkerSessionQueue, parent: SessionQueueItem) -> SessionQueueItem:
    """What the runner does when the parent's node calls a saved workflow: record the call, queue the child,
    park the parent."""
    park_on_a_call(parent)
    child = worker.enqueue_workflow_call_child(parent, GraphExecutionState(graph=add_graph(a=50)))
    worker.suspend_queue_item(parent.item_id, queue_item=parent)
    return child


def test_a_workflow_call_chain_stays_on_its_worker(d: Deployment) -> None:
    parent_id, other_id = d.enqueue("alice", 2)
    w0, w1 = d.workers
    parent = w0.dequeue()
    assert parent is not None and parent.item_id == parent_id
    child = _call_child(w0, parent)
    # Another worker takes the other item, never the child: its parent's intermediates are on w0.
    taken = w1.dequeue()
    assert taken is not None and taken.item_id == other_id
    assert w1.dequeue() is None
    running_child = w0.dequeue()  # under the chain's message, without a message of its own
    assert running_child is not None and running_child.item_id == child.item_id
    _run(w0, running_child)
    w0.resume_queue_item(parent_id)
    resumed = w0.dequeue()
    assert resumed is not None and resumed.item_id == parent_id
    _run(w0, resumed)
    assert w0.dequeue() is None
    assert d.sql("SELECT count(*) FROM session_queue WHERE pinned_worker_id = 'w0'").scalar() == 2


def test_a_chain_whose_worker_died_fails_instead_of_waiting_forever(d: Deployment) -> None:
    (parent_id,) = d.enqueue("alice")
    w0 = d.workers[0]
    parent = w0.dequeue()
    assert parent is not None
    child = _call_child(w0, parent)
    # w0 never registered a beat in this test: for the reaper it is not a live worker.
    d.api.reap()
    for item_id in (parent_id, child.item_id):
        item = d.item(item_id)
        assert item.status == "failed" and item.error_type == WORKER_LOST_ERROR


def test_the_plan_sets_the_tier_and_the_running_cap(d: Deployment) -> None:
    """Without a ``user_scheduling`` row, the subscription's plan decides: Pro (priority 1, two jobs at once)
    starts before Trial (priority 0, one job at once)."""
    d.sql("UPDATE subscriptions SET plan_id = 'pro', status = 'active' WHERE user_id = 'bob'")
    alice = d.enqueue("alice", 2)
    bob = d.enqueue("bob", 3)
    third = WorkerSessionQueue(
        d.engine, SqsDispatcher(d.settings), d.settings, "w2", range(d.settings.scheduling_tiers)
    )
    _start(third, d.events)
    claims = [worker.dequeue() for worker in (*d.workers, third)]
    assert [c.item_id for c in claims if c is not None] == [bob[0], bob[1], alice[0]]
    fourth = WorkerSessionQueue(
        d.engine, SqsDispatcher(d.settings), d.settings, "w3", range(d.settings.scheduling_tiers)
    )
    _start(fourth, d.events)
    assert fourth.dequeue() is None  # bob at 2, alice at 1: everything pending is capped


def test_an_expired_subscription_schedules_with_the_free_tiers_limits(d: Deployment) -> None:
    """An expired Pro keeps its plan row but not its priority (1) or two jobs at once: Trial's 0 and 1 apply."""
    d.sql("UPDATE subscriptions SET plan_id = 'pro', status = 'expired' WHERE user_id = 'bob'")
    with d.engine.connect() as conn:
        assert d.api.tier_of_users(conn, {"bob"}) == {"bob": 0}
    first, second = d.enqueue("bob", 2)
    w0, w1 = d.workers
    claimed = w0.dequeue()
    assert claimed is not None and claimed.item_id == first
    assert w1.dequeue() is None  # Trial's one job at once
    d.sql("UPDATE subscriptions SET status = 'active' WHERE user_id = 'bob'")
    with d.engine.connect() as conn:
        assert d.api.tier_of_users(conn, {"bob"}) == {"bob": 1}
    d.api.reap()  # hands out the message parked at the cap
    again = w1.dequeue()
    assert again is not None and again.item_id == second  # Pro's two jobs at once
