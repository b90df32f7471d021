"""SessionQueue: stock SQLite vs PostgreSQL, same behaviour — plus what only PostgreSQL must add: claims that
are atomic across threads and processes, bounded statements for the lists, and a startup that leaves
other processes' running items alone.

Sessions are real ``GraphExecutionState`` objects built by upstream's batch expansion from real graphs
(``add`` → ``sub`` math nodes, ``string`` primitives). The only test double is the event bus: a
``EventServiceBase`` that records what the queue emits, so each suite can compare event sequences.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from invokeai.app.invocations.math import AddInvocation, SubtractInvocation
from invokeai.app.invocations.primitives import StringInvocation
from invokeai.app.services.config.config_default import InvokeAIAppConfig
from invokeai.app.services.events.events_base import EventServiceBase
from invokeai.app.services.events.events_common import EventBase
from invokeai.app.services.invocation_services import InvocationServices
from invokeai.app.services.invoker import Invoker
from invokeai.app.services.session_queue.session_queue_base import SessionQueueBase
from invokeai.app.services.session_queue.session_queue_common import (
    Batch,
    BatchDatum,
    BatchStatus,
    EnqueueBatchResult,
    ItemIdsResult,
    NodeFieldValue,
    SessionQueueCountsByDestination,
    SessionQueueItem,
    SessionQueueItemNotFoundError,
    SessionQueueStatus,
    TooManySessionsError,
)
from invokeai.app.services.session_queue.session_queue_sqlite import SqliteSessionQueue
from invokeai.app.services.shared.graph import Edge, EdgeConnection, Graph, GraphExecutionState, WorkflowCallExecution
from invokeai.app.services.shared.sqlite.sqlite_common import SQLiteDirection
from sqlalchemy import Engine, create_engine, text

from invokeai_saas.services.session_queue.session_queue_postgres import PostgresSessionQueue
from tests.services.conftest import Backend
from tests.services.helpers import add_user
from tests.support.sql_counter import count_statements

Q = "default"
TIME_FIELDS = ("created_at", "updated_at", "started_at", "completed_at")
SYSTEM = {"user_id": "system", "user_display_name": "System", "user_email": "system@system.invokeai"}


# region harness


class RecordingEvents(EventServiceBase):
    """The event bus double: records every event the queue emits, in order."""

    def __init__(self) -> None:
        self.events: list[EventBase] = []

    def dispatch(self, event: EventBase) -> None:
        self.events.append(event)

    def take(self) -> list[EventBase]:
        events, self.events = self.events, []
        return events


class WarmCache:
    """Stands in for a device's ModelCache: only ``cached_model_keys`` is read by the queue."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = keys

    def cached_model_keys(self) -> list[str]:
        return list(self._keys)


@dataclass
class Harness:
    queue: SessionQueueBase
    events: RecordingEvents
    backend: Backend


def build_queue(backend: Backend) -> SessionQueueBase:
    return PostgresSessionQueue(backend.engine) if backend.is_postgres else SqliteSessionQueue(backend.db)


def start_queue(
    backend: Backend, queue: SessionQueueBase | None = None, warm: dict[str, list[str]] | None = None, **config: Any
) -> Harness:
    events = RecordingEvents()
    model_manager = SimpleNamespace(
        load=SimpleNamespace(ram_caches={device: WarmCache(keys) for device, keys in (warm or {}).items()})
    )
    services = SimpleNamespace(
        events=events,
        configuration=InvokeAIAppConfig(**config),
        logger=logging.getLogger("test-session-queue"),
        model_manager=model_manager,
    )
    queue = queue or build_queue(backend)
    queue.start(Invoker(cast(InvocationServices, services)))
    return Harness(queue, events, backend)


@pytest.fixture()
def h(backend: Backend) -> Harness:
    add_user(backend, "alice")
    add_user(backend, "bob")
    return start_queue(backend)


@pytest.fixture()
def multi(backend: Backend) -> Harness:
    """Multiuser mode: round-robin dequeue across users."""
    add_user(backend, "alice")
    add_user(backend, "bob")
    add_user(backend, "carol")
    return start_queue(backend, multiuser=True)


def add_graph(a: int = 1, b: int = 2) -> Graph:
    graph = Graph()
    graph.add_node(AddInvocation(id="add", a=a, b=b))
    graph.add_node(SubtractInvocation(id="sub", b=1))
    graph.add_edge(
        Edge(source=EdgeConnection(node_id="add", field="value"), destination=EdgeConnection(node_id="sub", field="a"))
    )
    return graph


def make_batch(
    values: list[int] | None = None,
    *,
    batch_id: str,
    origin: str | None = "canvas",
    destination: str | None = "gallery",
    runs: int = 1,
    data: list[list[BatchDatum]] | None = None,
) -> Batch:
    if data is None and values is not None:
        data = [[BatchDatum(node_path="add", field_name="a", items=list(values))]]
    return Batch(batch_id=batch_id, origin=origin, destination=destination, graph=add_graph(), data=data, runs=runs)


def enqueue(
    h: Harness, batch: Batch, user_id: str = "system", prepend: bool = False, queue_id: str = Q
) -> EnqueueBatchResult:
    return asyncio.run(h.queue.enqueue_batch(queue_id, batch, prepend, user_id))


def seed(h: Harness, count: int, *, batch_id: str = "b1", user_id: str = "system", **kwargs: Any) -> list[int]:
    """``count`` items in one batch, ids ascending."""
    return sorted(enqueue(h, make_batch(list(range(count)), batch_id=batch_id, **kwargs), user_id).item_ids)


def set_status(h: Harness, item_id: int, status: str) -> None:
    """Drive an item to a state the way the processor does (events are consumed and discarded)."""
    if status == "completed":
        h.queue.complete_queue_item(item_id)
    elif status == "failed":
        h.queue.fail_queue_item(item_id, "E", "boom", "tb")
    elif status == "canceled":
        h.queue.cancel_queue_item(item_id)
    h.events.take()


def set_created_at(backend: Backend, stamps: dict[int, str]) -> None:
    """Pin creation times (``HH:MM:SS.ffffff`` on one day, UTC); SQLite keeps stock's millisecond text."""
    for item_id, stamp in stamps.items():
        if backend.is_postgres:
            with backend.engine.begin() as conn:
                conn.execute(
                    text("UPDATE session_queue SET created_at = CAST(:stamp AS timestamptz) WHERE item_id = :item_id"),
                    {"stamp": f"2026-01-01 {stamp}+00", "item_id": item_id},
                )
        else:
            with backend.db.transaction() as cursor:
                cursor.execute(
                    "UPDATE session_queue SET created_at = ? WHERE item_id = ?", (f"2026-01-01 {stamp[:12]}", item_id)
                )


def session_view(session: GraphExecutionState) -> dict[str, Any]:
    """A session without its random ids (its own, its graphs', a parked workflow call's parent session)."""
    return cast(dict[str, Any], scrub(session.model_dump(mode="json", exclude={"id"})))


def graph_with(a: int) -> dict[str, Any]:
    return session_view(GraphExecutionState(graph=add_graph(a=a)))


def view(item: SessionQueueItem) -> dict[str, Any]:
    """The whole DTO, with only random (session ids) and time-dependent values normalised."""
    assert item.session.id == item.session_id
    data = item.model_dump(mode="json")
    for name in TIME_FIELDS:
        assert data[name] is None or isinstance(data[name], str)
        data[name] = "<t>" if data[name] is not None else None
    data["session_id"] = "<sid>"
    if data["parent_session_id"] is not None:
        data["parent_session_id"] = "<sid>"
    data["session"] = session_view(item.session)
    return data


def expected_item(
    item_id: int,
    a: int,
    *,
    batch_id: str = "b1",
    user: str = "system",
    status: str = "pending",
    status_sequence: int = 0,
    priority: int = 0,
    origin: str | None = "canvas",
    destination: str | None = "gallery",
    started: bool = False,
    completed: bool = False,
    field_values: Any = "auto",
    **overrides: Any,
) -> dict[str, Any]:
    owner = (
        SYSTEM
        if user == "system"
        else {"user_id": user, "user_display_name": user, "user_email": f"{user}@example.com"}
    )
    data: dict[str, Any] = {
        "item_id": item_id,
        "status": status,
        "status_sequence": status_sequence,
        "priority": priority,
        "batch_id": batch_id,
        "origin": origin,
        "destination": destination,
        "session_id": "<sid>",
        "error_type": None,
        "error_message": None,
        "error_traceback": None,
        "created_at": "<t>",
        "updated_at": "<t>",
        "started_at": "<t>" if started else None,
        "completed_at": "<t>" if completed else None,
        "queue_id": Q,
        **owner,
        "field_values": [{"node_path": "add", "field_name": "a", "value": a}]
        if field_values == "auto"
        else field_values,
        "retried_from_item_id": None,
        "device": None,
        "workflow_call_id": None,
        "parent_item_id": None,
        "parent_session_id": None,
        "root_item_id": None,
        "workflow_call_depth": None,
        "session": graph_with(a),
        "workflow": None,
    }
    data.update(overrides)
    return data


def brief(event: EventBase) -> tuple[Any, ...]:
    """A compact, comparable view of one event."""
    name = cast(str, event.__event_name__)
    payload = event.model_dump(mode="json")
    if name == "queue_item_status_changed":
        return (name, payload["item_id"], payload["status"])
    if name == "batch_enqueued":
        return (
            name,
            payload["batch_id"],
            payload["enqueued"],
            payload["requested"],
            payload["priority"],
            payload["user_id"],
        )
    if name == "queue_items_canceled":
        return (name, payload["canceled_item_ids_by_user"])
    if name == "queue_cleared":
        return (name, payload["user_id"])
    if name == "queue_items_retried":
        return (name, payload["retried_item_ids"], payload["retried_item_ids_by_user"])
    raise AssertionError(f"unexpected event {name}")


def scrub(value: Any, key: str | None = None) -> Any:
    """Payloads with timestamps, session and graph ids normalised (for whole-payload comparisons)."""
    if isinstance(value, dict):
        scrubbed = {k: scrub(v, k) for k, v in value.items() if k != "timestamp"}
        if {"id", "nodes", "edges"} <= scrubbed.keys():  # a graph: its id is random
            scrubbed["id"] = "<gid>"
        return scrubbed
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if key in TIME_FIELDS or key in ("session_id", "parent_session_id"):
        return "<x>" if value is not None else None
    return value


def full(event: EventBase) -> tuple[str, Any]:
    """The whole payload, normalised. A bulk ``queue_items_canceled`` lists its ids in whatever order the
    rows came out of the statement — for stock, the order of the index SQLite's planner happens to pick
    (the status index puts pending ids before waiting ones; with a user filter it walks
    ``(user_id, started_at)``). Which ids, for which owners, is the contract; that order is not, so it is
    compared as sets. PostgreSQL lists them by item id."""
    name = cast(str, event.__event_name__)
    payload = scrub(event.model_dump(mode="json"))
    if name == "queue_items_canceled":
        payload["canceled_item_ids"] = sorted(payload["canceled_item_ids"])
        payload["user_ids"] = sorted(payload["user_ids"])
        payload["canceled_item_ids_by_user"] = {
            user: sorted(ids) for user, ids in sorted(payload["canceled_item_ids_by_user"].items())
        }
    return (name, payload)


def statuses(h: Harness) -> dict[int, str]:
    return {item.item_id: item.status for item in h.queue.list_all_queue_items(Q)}


# endregion

# region enqueue


def test_enqueue_batch_expands_like_stock(h: Harness) -> None:
    """Zipped data, cartesian product across groups and runs, as upstream's batch helpers expand them."""
    batch = make_batch(
        batch_id="b1",
        runs=2,
        data=[
            [
                BatchDatum(node_path="add", field_name="a", items=[1, 2]),
                BatchDatum(node_path="add", field_name="b", items=[10, 20]),
            ],
            [BatchDatum(node_path="sub", field_name="b", items=[5, 6, 7])],
        ],
    )
    result = enqueue(h, batch, user_id="alice")
    assert (
        result.model_dump()
        == EnqueueBatchResult(
            queue_id=Q, enqueued=12, requested=12, batch=batch, priority=0, item_ids=list(range(12, 0, -1))
        ).model_dump()
    )
    assert [brief(e) for e in h.events.take()] == [("batch_enqueued", "b1", 12, 12, 0, "alice")]
    items = h.queue.list_all_queue_items(Q)
    expected_values = [(a, b, s) for _ in range(2) for a, b in ((1, 10), (2, 20)) for s in (5, 6, 7)]
    assert [item.field_values for item in items] == [
        [
            NodeFieldValue(node_path="add", field_name="a", value=a),
            NodeFieldValue(node_path="add", field_name="b", value=b),
            NodeFieldValue(node_path="sub", field_name="b", value=s),
        ]
        for a, b, s in expected_values
    ]
    for item, (a, b, s) in zip(items, expected_values, strict=True):
        assert isinstance(item.session, GraphExecutionState)
        add_node = cast(AddInvocation, item.session.graph.get_node("add"))
        sub_node = cast(SubtractInvocation, item.session.graph.get_node("sub"))
        assert (add_node.a, add_node.b, sub_node.b) == (a, b, s)
    assert len({item.session_id for item in items}) == 12


def test_enqueue_whole_dto_and_workflow(h: Harness) -> None:
    from invokeai.app.services.workflow_records.workflow_records_common import WorkflowWithoutID

    workflow = WorkflowWithoutID.model_validate(
        {
            "name": "wf",
            "author": "",
            "description": "",
            "version": "1",
            "contact": "",
            "tags": "",
            "notes": "",
            "exposedFields": [],
            "meta": {"version": "3.0.0", "category": "user"},
            "nodes": [],
            "edges": [],
        }
    )
    batch = make_batch([7], batch_id="wf-batch", origin=None, destination=None)
    batch.workflow = workflow
    enqueue(h, batch, user_id="bob")
    (item,) = h.queue.list_all_queue_items(Q)
    assert view(item) == expected_item(
        1, 7, batch_id="wf-batch", user="bob", origin=None, destination=None, workflow=workflow.model_dump(mode="json")
    )
    assert view(h.queue.get_queue_item(1)) == view(item)


def test_enqueue_without_data_runs_and_prepend(h: Harness) -> None:
    result = enqueue(h, make_batch(batch_id="plain", runs=3))
    assert (result.enqueued, result.requested, result.priority, result.item_ids) == (3, 3, 0, [3, 2, 1])
    item = h.queue.get_queue_item(1)
    # No data: upstream's expansion stores an empty substitution list, not NULL.
    assert view(item) == expected_item(1, 1, batch_id="plain", field_values=[])
    # Prepending puts the batch one above the highest *pending* priority.
    first = enqueue(h, make_batch([1], batch_id="p1"), prepend=True)
    second = enqueue(h, make_batch([1], batch_id="p2"), prepend=True)
    assert (first.priority, second.priority) == (1, 2)
    assert [i.item_id for i in h.queue.list_all_queue_items(Q)] == [5, 4, 1, 2, 3]
    assert h.queue.get_next(Q).item_id == 5  # type: ignore[union-attr]


def test_enqueue_respects_max_queue_size(backend: Backend) -> None:
    h = start_queue(backend, max_queue_size=5)
    assert enqueue(h, make_batch([1, 2, 3], batch_id="x")).enqueued == 3
    result = enqueue(h, make_batch([1, 2, 3, 4], batch_id="y"))
    assert (result.requested, result.enqueued, result.item_ids) == (4, 2, [5, 4])
    assert h.queue.is_full(Q).is_full
    result = enqueue(h, make_batch([1], batch_id="z"))
    assert (result.requested, result.enqueued, result.item_ids) == (1, 0, [])
    assert [brief(e) for e in h.events.take()] == [
        ("batch_enqueued", "x", 3, 3, 0, "system"),
        ("batch_enqueued", "y", 2, 4, 0, "system"),
        ("batch_enqueued", "z", 0, 1, 0, "system"),
    ]
    # Only pending items count against the capacity of new enqueues (is_full counts everything).
    h.queue.cancel_queue_item(1)
    assert enqueue(h, make_batch([1, 2], batch_id="w")).enqueued == 1
    assert h.queue.is_full(Q).is_full


# endregion

# region dequeue


def test_dequeue_fifo_priority_then_insertion(h: Harness) -> None:
    assert h.queue.dequeue() is None
    seed(h, 2, batch_id="low")
    enqueue(h, make_batch([5], batch_id="high"), prepend=True)
    enqueue(h, make_batch([6], batch_id="other-queue"), queue_id="elsewhere")  # stock serves every queue
    h.events.take()
    claimed = [h.queue.dequeue() for _ in range(5)]
    assert [item.item_id if item else None for item in claimed] == [3, 1, 2, 4, None]
    first = claimed[0]
    assert first is not None
    assert view(first) == expected_item(
        3, 5, batch_id="high", status="in_progress", status_sequence=1, priority=1, started=True
    )
    assert [brief(e) for e in h.events.take()] == [
        ("queue_item_status_changed", 3, "in_progress"),
        ("queue_item_status_changed", 1, "in_progress"),
        ("queue_item_status_changed", 2, "in_progress"),
        ("queue_item_status_changed", 4, "in_progress"),
    ]
    assert view(h.queue.get_queue_item(3)) == view(first)


def test_dequeue_records_device_and_emits_full_event(h: Harness) -> None:
    seed(h, 2, user_id="alice")
    h.events.take()
    item = h.queue.dequeue(device="cuda:1")
    assert item is not None and item.device == "cuda:1"
    (event,) = h.events.take()
    payload = scrub(event.model_dump(mode="json"))
    assert payload == {
        "queue_id": Q,
        "item_id": 1,
        "batch_id": "b1",
        "origin": "canvas",
        "destination": "gallery",
        "user_id": "alice",
        "status": "in_progress",
        "status_sequence": 1,
        "error_type": None,
        "error_message": None,
        "error_traceback": None,
        "created_at": "<x>",
        "updated_at": "<x>",
        "started_at": "<x>",
        "completed_at": None,
        "batch_status": BatchStatus(
            queue_id=Q,
            batch_id="b1",
            origin="canvas",
            destination="gallery",
            pending=1,
            in_progress=1,
            waiting=0,
            completed=0,
            failed=0,
            canceled=0,
            total=2,
        ).model_dump(mode="json"),
        "queue_status": {
            **SessionQueueStatus(
                queue_id=Q,
                item_id=1,
                batch_id="b1",
                session_id="x",
                pending=1,
                in_progress=1,
                waiting=0,
                completed=0,
                failed=0,
                canceled=0,
                total=2,
                user_pending=1,
                user_in_progress=1,
            ).model_dump(mode="json"),
            "session_id": "<x>",
        },
        "session_id": "<x>",
    }
    # A later transition without a device keeps the recorded one.
    assert h.queue.complete_queue_item(1).device == "cuda:1"


def test_round_robin_serves_users_in_turn(multi: Harness) -> None:
    h = multi
    seed(h, 3, batch_id="a", user_id="alice")  # 1, 2, 3
    seed(h, 2, batch_id="b", user_id="bob")  # 4, 5
    enqueue(h, make_batch([9], batch_id="c"), user_id="carol", prepend=True)  # 6, priority 1
    h.events.take()
    served = []
    for _ in range(7):
        item = h.queue.dequeue()
        served.append((item.user_id, item.item_id) if item else None)
        time.sleep(0.003)  # distinct started_at milliseconds: stock's turn order compares them
    # Nobody served yet: ties on the epoch go to the user whose best item is oldest (alice's 1, bob's 4,
    # carol's 6 — her priority does not jump the rotation); then least recently served first.
    assert served == [("alice", 1), ("bob", 4), ("carol", 6), ("alice", 2), ("bob", 5), ("alice", 3), None]


def test_round_robin_priority_orders_within_a_user_and_history_counts(multi: Harness) -> None:
    h = multi
    seed(h, 1, batch_id="old", user_id="bob")  # 1
    assert h.queue.dequeue().item_id == 1  # type: ignore[union-attr]
    h.queue.complete_queue_item(1)
    time.sleep(0.003)
    seed(h, 2, batch_id="a", user_id="alice")  # 2, 3
    seed(h, 1, batch_id="b", user_id="bob")  # 4
    enqueue(h, make_batch([1], batch_id="a-urgent"), user_id="alice", prepend=True)  # 5, priority 1
    # alice was never served: her best (highest priority) item first; bob, served before, waits his turn.
    order = []
    for _ in range(4):
        item = h.queue.dequeue()
        order.append(item.item_id if item else None)
        time.sleep(0.003)
    assert order == [5, 4, 2, 3]


def test_single_user_mode_is_fifo_even_with_several_users(h: Harness) -> None:
    seed(h, 2, batch_id="a", user_id="alice")
    seed(h, 2, batch_id="b", user_id="bob")
    assert [h.queue.dequeue().item_id for _ in range(4)] == [1, 2, 3, 4]  # type: ignore[union-attr]


def test_device_affinity_prefers_warm_models(backend: Backend) -> None:
    h = start_queue(backend, warm={"cuda:1": ["model-key-x", "model-key-y"]})
    graph = Graph()
    graph.add_node(StringInvocation(id="s", value=""))
    batch = Batch(
        batch_id="s",
        graph=graph,
        data=[[BatchDatum(node_path="s", field_name="value", items=["cold", "uses model-key-y", "cold too"])]],
    )
    enqueue(h, batch)
    h.events.take()
    # Same user and priority: the warm item (2) jumps the cold candidate (1) on the warm device.
    assert h.queue.dequeue(device="cuda:1").item_id == 2  # type: ignore[union-attr]
    # No warm item left: the fairness candidate; a device without a cache gets plain order.
    assert h.queue.dequeue(device="cuda:0").item_id == 1  # type: ignore[union-attr]
    assert h.queue.dequeue(device="cuda:1").item_id == 3  # type: ignore[union-attr]
    assert [brief(e) for e in h.events.take()] == [
        ("queue_item_status_changed", 2, "in_progress"),
        ("queue_item_status_changed", 1, "in_progress"),
        ("queue_item_status_changed", 3, "in_progress"),
    ]


def test_fifo_mode_disables_device_affinity(backend: Backend) -> None:
    h = start_queue(backend, warm={"cuda:1": ["model-key-y"]}, session_queue_mode="FIFO")
    graph = Graph()
    graph.add_node(StringInvocation(id="s", value=""))
    enqueue(
        h,
        Batch(
            batch_id="s",
            graph=graph,
            data=[[BatchDatum(node_path="s", field_name="value", items=["a", "model-key-y"])]],
        ),
    )
    assert h.queue.dequeue(device="cuda:1").item_id == 1  # type: ignore[union-attr]


def test_get_next_and_get_current(h: Harness) -> None:
    assert h.queue.get_next(Q) is None and h.queue.get_current(Q) is None
    seed(h, 2)
    set_created_at(h.backend, {1: "12:00:00.123900", 2: "12:00:00.123100"})  # same millisecond: insertion order
    enqueue(h, make_batch([4], batch_id="elsewhere"), queue_id="other")
    assert view(h.queue.get_next(Q)) == expected_item(1, 0)  # type: ignore[arg-type]
    assert h.queue.get_next("other").item_id == 3  # type: ignore[union-attr]
    h.queue.dequeue()
    assert view(h.queue.get_current(Q)) == expected_item(1, 0, status="in_progress", status_sequence=1, started=True)  # type: ignore[arg-type]
    assert h.queue.get_next(Q).item_id == 2  # type: ignore[union-attr]
    assert h.queue.get_current("other") is None


# endregion

# region single-item transitions


def test_status_transitions_and_terminal_guard(h: Harness) -> None:
    seed(h, 3)
    h.events.take()
    h.queue.dequeue()
    done = h.queue.complete_queue_item(1)
    assert view(done) == expected_item(1, 0, status="completed", status_sequence=2, started=True, completed=True)
    failed = h.queue.fail_queue_item(2, "ValueError", "bad", "Traceback...")
    assert view(failed) == expected_item(
        2,
        1,
        status="failed",
        status_sequence=1,
        completed=True,
        error_type="ValueError",
        error_message="bad",
        error_traceback="Traceback...",
    )
    assert [brief(e) for e in h.events.take()] == [
        ("queue_item_status_changed", 1, "in_progress"),
        ("queue_item_status_changed", 1, "completed"),
        ("queue_item_status_changed", 2, "failed"),
    ]
    # Finished items do not move again, and nothing is emitted.
    again = h.queue.cancel_queue_item(1)
    assert view(again) == view(done)
    assert view(h.queue.fail_queue_item(1, "x", "y", "z")) == view(done)
    assert view(h.queue.complete_queue_item(2)) == view(failed)
    assert h.events.take() == []
    # suspend / resume (the workflow-call parking states) count as unfinished.
    assert h.queue.suspend_queue_item(3).status == "waiting"
    resumed = h.queue.resume_queue_item(3)
    assert view(resumed) == expected_item(3, 2, status="pending", status_sequence=2)
    assert [brief(e) for e in h.events.take()] == [
        ("queue_item_status_changed", 3, "waiting"),
        ("queue_item_status_changed", 3, "pending"),
    ]


def test_supplied_queue_item_is_patched_in_place(h: Harness) -> None:
    seed(h, 1)
    item = h.queue.dequeue()
    assert item is not None
    # The caller's item carries a session it advanced in memory; the queue patches only the status columns.
    item.session.graph.get_node("add").b = 99  # type: ignore[attr-defined]
    returned = h.queue.complete_queue_item(1, queue_item=item)
    assert returned is item
    assert (item.status, item.status_sequence, item.completed_at is not None) == ("completed", 2, True)
    assert cast(AddInvocation, item.session.graph.get_node("add")).b == 99
    with pytest.raises(ValueError):
        h.queue.complete_queue_item(2, queue_item=item)
    # Already finished: the stored item comes back, not the caller's object.
    stored = h.queue.complete_queue_item(1, queue_item=item)
    assert stored is not item and cast(AddInvocation, stored.session.graph.get_node("add")).b == 2


def test_missing_items_raise(h: Harness) -> None:
    for call in (
        lambda: h.queue.get_queue_item(404),
        lambda: h.queue.complete_queue_item(404),
        lambda: h.queue.fail_queue_item(404, "a", "b", "c"),
        lambda: h.queue.cancel_queue_item(404),
        lambda: h.queue.suspend_queue_item(404),
        lambda: h.queue.resume_queue_item(404),
        lambda: h.queue.delete_queue_item(404),
        lambda: h.queue.save_queue_item_session(404, GraphExecutionState(graph=add_graph())),
        lambda: h.queue.set_queue_item_session(404, GraphExecutionState(graph=add_graph())),
    ):
        with pytest.raises(SessionQueueItemNotFoundError):
            call()
    assert h.events.take() == []


def test_set_and_save_queue_item_session(h: Harness) -> None:
    seed(h, 2)
    item = h.queue.get_queue_item(1)
    session = item.session
    session.graph.get_node("add").b = 41  # type: ignore[attr-defined]
    updated = h.queue.set_queue_item_session(1, session)
    assert view(updated) == {**expected_item(1, 0), "session": session_view(session)}
    assert updated.session_id == item.session_id
    session2 = h.queue.get_queue_item(2).session
    session2.graph.get_node("sub").b = 8  # type: ignore[attr-defined]
    assert h.queue.save_queue_item_session(2, session2) is None
    assert cast(SubtractInvocation, h.queue.get_queue_item(2).session.graph.get_node("sub")).b == 8
    assert [brief(e) for e in h.events.take()] == [("batch_enqueued", "b1", 2, 2, 0, "system")]


def test_cancel_queue_item(h: Harness) -> None:
    seed(h, 2)
    h.events.take()
    h.queue.dequeue()
    canceled = h.queue.cancel_queue_item(1)
    assert view(canceled) == expected_item(1, 0, status="canceled", status_sequence=2, started=True, completed=True)
    assert view(h.queue.cancel_queue_item(2)) == expected_item(
        2, 1, status="canceled", status_sequence=1, completed=True
    )
    assert [brief(e) for e in h.events.take()] == [
        ("queue_item_status_changed", 1, "in_progress"),
        ("queue_item_status_changed", 1, "canceled"),
        ("queue_item_status_changed", 2, "canceled"),
    ]


def test_delete_queue_item_and_items_by_id(h: Harness) -> None:
    seed(h, 5)
    h.events.take()
    h.queue.complete_queue_item(1)
    h.events.take()
    h.queue.delete_queue_item(1)  # finished: deleted without an event
    assert h.events.take() == []
    h.queue.dequeue()
    h.events.take()
    h.queue.delete_queue_item(2)  # running: canceled first, so its worker is signalled
    assert [brief(e) for e in h.events.take()] == [("queue_item_status_changed", 2, "canceled")]
    h.queue.delete_queue_items_by_id([])
    h.queue.delete_queue_items_by_id([3, 5, 404])
    assert statuses(h) == {4: "pending"}
    assert h.events.take() == []


# endregion

# region bulk operations


def _mixed_queue(h: Harness) -> None:
    """alice: 1-3 (batch a, dest gallery); bob: 4-5 (batch b, dest canvas); system 6 (batch c, gallery).
    1 running, 2 completed, 4 failed."""
    seed(h, 3, batch_id="a", user_id="alice")
    seed(h, 2, batch_id="b", user_id="bob", destination="canvas")
    enqueue(h, make_batch([1], batch_id="c"))
    h.queue.dequeue()
    h.queue.dequeue()
    h.queue.complete_queue_item(2)
    h.queue.fail_queue_item(4, "E", "m", "t")
    h.events.take()


def test_cancel_by_batch_ids(h: Harness) -> None:
    _mixed_queue(h)
    assert h.queue.cancel_by_batch_ids(Q, ["a", "b"], user_id="bob").canceled == 1
    assert [brief(e) for e in h.events.take()] == [("queue_items_canceled", {"bob": [5]})]
    assert h.queue.cancel_by_batch_ids(Q, ["a", "b"]).canceled == 2
    assert [brief(e) for e in h.events.take()] == [
        ("queue_item_status_changed", 1, "canceled"),
        ("queue_items_canceled", {"alice": [3]}),
    ]
    assert h.queue.cancel_by_batch_ids(Q, ["a", "b"]).canceled == 0
    assert h.queue.cancel_by_batch_ids(Q, []).canceled == 0
    assert h.queue.cancel_by_batch_ids("other", ["c"]).canceled == 0
    assert h.events.take() == []
    assert statuses(h) == {1: "canceled", 2: "completed", 3: "canceled", 4: "failed", 5: "canceled", 6: "pending"}
    assert h.queue.get_queue_item(3).status_sequence == 1


def test_cancel_by_destination_and_queue_id(h: Harness) -> None:
    _mixed_queue(h)
    assert h.queue.cancel_by_destination(Q, "gallery", user_id="bob").canceled == 0
    assert h.queue.cancel_by_destination(Q, "canvas").canceled == 1
    assert [brief(e) for e in h.events.take()] == [("queue_items_canceled", {"bob": [5]})]
    assert h.queue.cancel_by_destination(Q, "gallery", user_id="alice").canceled == 2
    assert [brief(e) for e in h.events.take()] == [
        ("queue_item_status_changed", 1, "canceled"),
        ("queue_items_canceled", {"alice": [3]}),
    ]
    assert h.queue.cancel_by_queue_id(Q).canceled == 1
    assert [brief(e) for e in h.events.take()] == [("queue_items_canceled", {"system": [6]})]
    assert statuses(h) == {1: "canceled", 2: "completed", 3: "canceled", 4: "failed", 5: "canceled", 6: "canceled"}


def test_cancel_by_queue_id_signals_running_items(h: Harness) -> None:
    _mixed_queue(h)
    assert h.queue.cancel_by_queue_id(Q).canceled == 4
    assert [brief(e) for e in h.events.take()] == [
        ("queue_item_status_changed", 1, "canceled"),
        ("queue_items_canceled", {"alice": [3], "bob": [5], "system": [6]}),
    ]


def test_delete_by_destination(h: Harness) -> None:
    _mixed_queue(h)
    assert h.queue.delete_by_destination(Q, "gallery", user_id="bob").deleted == 0
    assert h.events.take() == []
    assert h.queue.delete_by_destination(Q, "gallery").deleted == 4
    # The running item is signalled by its own event and not listed again in the bulk one.
    assert [brief(e) for e in h.events.take()] == [
        ("queue_item_status_changed", 1, "canceled"),
        ("queue_items_canceled", {"alice": [2, 3], "system": [6]}),
    ]
    assert statuses(h) == {4: "failed", 5: "pending"}


def test_cancel_and_delete_all_except_current(h: Harness) -> None:
    _mixed_queue(h)
    assert h.queue.cancel_all_except_current(Q, user_id="bob").canceled == 1
    assert [brief(e) for e in h.events.take()] == [("queue_items_canceled", {"bob": [5]})]
    assert h.queue.cancel_all_except_current(Q).canceled == 2
    assert [brief(e) for e in h.events.take()] == [("queue_items_canceled", {"alice": [3], "system": [6]})]
    assert statuses(h)[1] == "in_progress"
    seed(h, 2, batch_id="d", user_id="alice")  # 7, 8
    h.events.take()
    assert h.queue.delete_all_except_current(Q, user_id="bob").deleted == 0
    assert h.events.take() == []
    assert h.queue.delete_all_except_current(Q).deleted == 2
    assert [brief(e) for e in h.events.take()] == [("queue_items_canceled", {"alice": [7, 8]})]
    assert statuses(h) == {1: "in_progress", 2: "completed", 3: "canceled", 4: "failed", 5: "canceled", 6: "canceled"}


def test_clear(h: Harness) -> None:
    _mixed_queue(h)
    enqueue(h, make_batch([1], batch_id="x"), queue_id="other")
    h.events.take()
    assert h.queue.clear(Q, user_id="bob").deleted == 2
    assert [brief(e) for e in h.events.take()] == [("queue_cleared", "bob")]
    assert h.queue.clear(Q).deleted == 4
    assert [brief(e) for e in h.events.take()] == [
        ("queue_item_status_changed", 1, "canceled"),
        ("queue_cleared", None),
    ]
    assert h.queue.is_empty(Q).is_empty and not h.queue.is_empty("other").is_empty
    assert h.queue.clear(Q).deleted == 0


def test_clear_by_user_cancels_only_that_users_running_items(h: Harness) -> None:
    seed(h, 1, batch_id="a", user_id="alice")
    seed(h, 1, batch_id="b", user_id="bob")
    h.queue.dequeue()
    h.queue.dequeue()
    h.events.take()
    assert h.queue.clear(Q, user_id="bob").deleted == 1
    assert [brief(e) for e in h.events.take()] == [
        ("queue_item_status_changed", 2, "canceled"),
        ("queue_cleared", "bob"),
    ]
    assert statuses(h) == {1: "in_progress"}


def test_prune(h: Harness) -> None:
    _mixed_queue(h)
    h.queue.cancel_queue_item(5)
    h.events.take()
    assert h.queue.prune(Q, user_id="alice").deleted == 1
    assert h.queue.prune(Q).deleted == 2
    assert h.queue.prune(Q).deleted == 0
    assert statuses(h) == {1: "in_progress", 3: "pending", 6: "pending"}
    assert h.events.take() == []


def test_is_empty_and_is_full(backend: Backend) -> None:
    h = start_queue(backend, max_queue_size=2)
    assert h.queue.is_empty(Q).is_empty and not h.queue.is_full(Q).is_full
    seed(h, 1)
    assert not h.queue.is_empty(Q).is_empty and not h.queue.is_full(Q).is_full
    h.queue.complete_queue_item(1)
    seed(h, 1, batch_id="b2")
    assert h.queue.is_full(Q).is_full  # finished items count too
    assert h.queue.is_empty("other").is_empty


# endregion

# region status and lists


def test_get_queue_status_counts_and_redaction(h: Harness) -> None:
    _mixed_queue(h)  # alice's 1 is running
    base = dict(queue_id=Q, pending=3, in_progress=1, waiting=0, completed=1, failed=1, canceled=0, total=6)
    running = h.queue.get_queue_item(1)
    current = dict(item_id=1, batch_id="a", session_id=running.session_id)
    hidden = dict(item_id=None, batch_id=None, session_id=None)
    assert h.queue.get_queue_status(Q) == SessionQueueStatus(
        **base, **current, user_pending=None, user_in_progress=None
    )
    assert h.queue.get_queue_status(Q, user_id="alice") == SessionQueueStatus(
        **base, **current, user_pending=1, user_in_progress=1
    )
    # Another user sees the global counts, their own counts, and no identifiers of alice's running item.
    assert h.queue.get_queue_status(Q, user_id="bob") == SessionQueueStatus(
        **base, **hidden, user_pending=1, user_in_progress=0
    )
    assert h.queue.get_queue_status(Q, user_id="bob", is_admin=True) == SessionQueueStatus(
        **base, **current, user_pending=1, user_in_progress=0
    )
    assert h.queue.get_queue_status(Q, acting_user_id="bob") == SessionQueueStatus(
        **base, **hidden, user_pending=None, user_in_progress=None
    )
    assert h.queue.get_queue_status(Q, user_id="bob", acting_user_id="alice") == SessionQueueStatus(
        **base, **current, user_pending=1, user_in_progress=0
    )
    empty = dict(queue_id="other", pending=0, in_progress=0, waiting=0, completed=0, failed=0, canceled=0, total=0)
    assert h.queue.get_queue_status("other", user_id="bob") == SessionQueueStatus(
        **empty, **hidden, user_pending=0, user_in_progress=0
    )


def test_get_batch_status_and_counts_by_destination(h: Harness) -> None:
    _mixed_queue(h)
    assert h.queue.get_batch_status(Q, "a") == BatchStatus(
        queue_id=Q,
        batch_id="a",
        origin="canvas",
        destination="gallery",
        pending=1,
        in_progress=1,
        waiting=0,
        completed=1,
        failed=0,
        canceled=0,
        total=3,
    )
    assert h.queue.get_batch_status(Q, "a", user_id="bob") == BatchStatus(
        queue_id=Q,
        batch_id="a",
        origin=None,
        destination=None,
        pending=0,
        in_progress=0,
        waiting=0,
        completed=0,
        failed=0,
        canceled=0,
        total=0,
    )
    assert h.queue.get_batch_status(Q, "b", user_id="bob") == BatchStatus(
        queue_id=Q,
        batch_id="b",
        origin="canvas",
        destination="canvas",
        pending=1,
        in_progress=0,
        waiting=0,
        completed=0,
        failed=1,
        canceled=0,
        total=2,
    )
    assert h.queue.get_counts_by_destination(Q, "gallery") == SessionQueueCountsByDestination(
        queue_id=Q,
        destination="gallery",
        pending=2,
        in_progress=1,
        waiting=0,
        completed=1,
        failed=0,
        canceled=0,
        total=4,
    )
    assert h.queue.get_counts_by_destination(Q, "gallery", user_id="alice") == SessionQueueCountsByDestination(
        queue_id=Q,
        destination="gallery",
        pending=1,
        in_progress=1,
        waiting=0,
        completed=1,
        failed=0,
        canceled=0,
        total=3,
    )
    assert h.queue.get_counts_by_destination("other", "gallery").total == 0


def test_list_all_queue_items(h: Harness) -> None:
    seed(h, 2, batch_id="a", user_id="alice")
    seed(h, 1, batch_id="b", user_id="bob", destination="canvas")
    enqueue(h, make_batch([5], batch_id="p"), prepend=True)
    enqueue(h, make_batch([6], batch_id="z"), queue_id="other")
    assert [view(i) for i in h.queue.list_all_queue_items(Q)] == [
        expected_item(4, 5, batch_id="p", priority=1),
        expected_item(1, 0, batch_id="a", user="alice"),
        expected_item(2, 1, batch_id="a", user="alice"),
        expected_item(3, 0, batch_id="b", user="bob", destination="canvas"),
    ]
    assert [i.item_id for i in h.queue.list_all_queue_items(Q, destination="canvas")] == [3]
    assert [i.item_id for i in h.queue.list_all_queue_items("other")] == [5]
    assert h.queue.list_all_queue_items("nope") == []


def test_list_queue_items_pages(h: Harness) -> None:
    seed(h, 4, batch_id="a", user_id="alice")  # 1-4
    enqueue(h, make_batch([7, 8], batch_id="p"), prepend=True)  # 5, 6 at priority 1
    page = h.queue.list_queue_items(Q, limit=3, priority=0)
    assert (page.limit, page.has_more) == (3, True)
    # Stock reads session_queue alone here: no user display name or email on these items.
    no_user = {"user_display_name": None, "user_email": None}
    assert [view(i) for i in page.items] == [
        expected_item(5, 7, batch_id="p", priority=1, **no_user),
        expected_item(6, 8, batch_id="p", priority=1, **no_user),
        expected_item(1, 0, batch_id="a", user="alice", **no_user),
    ]
    last = page.items[-1]
    page = h.queue.list_queue_items(Q, limit=3, priority=last.priority, cursor=last.item_id)
    assert ([i.item_id for i in page.items], page.has_more) == ([2, 3, 4], False)
    page = h.queue.list_queue_items(Q, limit=10, priority=1, cursor=5)
    assert ([i.item_id for i in page.items], page.has_more) == ([6, 1, 2, 3, 4], False)
    assert h.queue.list_queue_items(Q, limit=2, priority=0, status="pending", destination="gallery").has_more


def test_list_queue_items_filters_on_later_pages(h: Harness) -> None:
    """Stock's cursor clause ``AND (priority < ?) OR (priority = ? AND item_id > ?)`` lets items of other
    statuses/destinations/queues through on every page after the first (AND binds tighter than OR).
    PostgreSQL keeps the filters (documented on ``PostgresSessionQueue.list_queue_items``)."""
    seed(h, 4)  # 1-4
    enqueue(h, make_batch([1], batch_id="o"), queue_id="other")  # 5
    h.queue.complete_queue_item(2)
    first = h.queue.list_queue_items(Q, limit=1, priority=0, status="pending")
    assert [i.item_id for i in first.items] == [1]
    later = h.queue.list_queue_items(Q, limit=10, priority=0, cursor=1, status="pending")
    if h.backend.is_postgres:
        assert [(i.item_id, i.status) for i in later.items] == [(3, "pending"), (4, "pending")]
    else:
        assert [(i.item_id, i.status, i.queue_id) for i in later.items] == [
            (2, "completed", Q),
            (3, "pending", Q),
            (4, "pending", Q),
            (5, "pending", "other"),
        ]


def test_get_queue_item_ids(h: Harness) -> None:
    seed(h, 3, batch_id="a", user_id="alice")
    seed(h, 2, batch_id="b", user_id="bob")
    enqueue(h, make_batch([1], batch_id="o"), queue_id="other")
    # A batch is inserted within one millisecond, stock's precision; the microseconds PostgreSQL keeps
    # (scrambled here on purpose) must not reorder it.
    set_created_at(
        h.backend,
        {1: "12:00:00.123900", 2: "12:00:00.123100", 3: "12:00:00.123500", 4: "12:00:00.124200", 5: "12:00:00.124700"},
    )
    # Newest first; items of one batch stay in insertion order (SQLite's stable sort on equal times).
    assert h.queue.get_queue_item_ids(Q) == ItemIdsResult(item_ids=[4, 5, 1, 2, 3], total_count=5)
    assert h.queue.get_queue_item_ids(Q, SQLiteDirection.Ascending) == ItemIdsResult(
        item_ids=[1, 2, 3, 4, 5], total_count=5
    )
    assert h.queue.get_queue_item_ids(Q, user_id="alice") == ItemIdsResult(item_ids=[1, 2, 3], total_count=3)
    assert h.queue.get_queue_item_ids("nope") == ItemIdsResult(item_ids=[], total_count=0)


def test_get_queue_item_summaries_by_ids(h: Harness) -> None:
    seed(h, 2, batch_id="a", user_id="alice")
    enqueue(h, make_batch([1], batch_id="o"), queue_id="other")  # 3
    h.queue.dequeue(device="cuda:0")
    summaries = h.queue.get_queue_item_summaries_by_ids(Q, [2, 404, 3, 1, 2])
    assert [scrub(s.model_dump(mode="json")) for s in summaries] == [
        {
            "item_id": item_id,
            "created_at": "<x>",
            "status": status,
            "device": device,
            "started_at": "<x>" if device else None,
            "completed_at": None,
            "origin": "canvas",
            "destination": "gallery",
            "batch_id": "a",
            "user_id": "alice",
            "user_display_name": "alice",
            "user_email": "alice@example.com",
            "field_values": [{"node_path": "add", "field_name": "a", "value": item_id - 1}],
            "parent_item_id": None,
        }
        for item_id, status, device in ((2, "pending", None), (1, "in_progress", "cuda:0"), (2, "pending", None))
    ]
    assert h.queue.get_queue_item_summaries_by_ids(Q, []) == []


# endregion

# region retries and workflow calls


def test_retry_items_by_id(h: Harness) -> None:
    seed(h, 4, batch_id="a", user_id="alice")
    seed(h, 1, batch_id="b", user_id="bob")  # 5
    h.queue.fail_queue_item(1, "E", "m", "t")
    h.queue.cancel_queue_item(2)
    h.queue.complete_queue_item(3)
    h.queue.cancel_queue_item(5)
    h.events.take()
    result = h.queue.retry_items_by_id(Q, [1, 3, 4, 404, 2, 5, 1])
    assert result.retried_item_ids == [1, 2, 5]
    assert [brief(e) for e in h.events.take()] == [("queue_items_retried", [1, 2, 5], {"alice": [1, 2], "bob": [5]})]
    retried = h.queue.list_all_queue_items(Q)[-3:]
    assert [view(i) for i in retried] == [
        expected_item(6, 0, batch_id="a", user="alice", retried_from_item_id=1),
        expected_item(7, 1, batch_id="a", user="alice", retried_from_item_id=2),
        expected_item(8, 0, batch_id="b", user="bob", retried_from_item_id=5),
    ]
    # A retry of a retry points at the original item.
    h.queue.fail_queue_item(6, "E", "m", "t")
    assert h.queue.retry_items_by_id(Q, [6]).retried_item_ids == [6]
    assert h.queue.get_queue_item(9).retried_from_item_id == 1
    assert h.queue.retry_items_by_id("other", [7]).retried_item_ids == []


def test_retry_respects_capacity(backend: Backend) -> None:
    h = start_queue(backend, max_queue_size=3)
    seed(h, 3)
    for item_id in (1, 2, 3):
        h.queue.cancel_queue_item(item_id)
    seed(h, 2, batch_id="b2")  # 4, 5 pending: room for one more
    h.events.take()
    assert h.queue.retry_items_by_id(Q, [1, 2, 3]).retried_item_ids == [1]
    assert [brief(e) for e in h.events.take()] == [("queue_items_retried", [1], {"system": [1]})]
    assert h.queue.retry_items_by_id(Q, [2]).retried_item_ids == []  # full: no event at all
    assert h.events.take() == []


def _park_parent(h: Harness, item: SessionQueueItem, depth: int = 1) -> WorkflowCallExecution:
    """What the processor does when a node calls a saved workflow: record the call on the session."""
    execution = WorkflowCallExecution(
        id=f"call-{item.item_id}-{depth}",
        parent_session_id=item.session_id,
        prepared_call_node_id="call",
        source_call_node_id="call",
        workflow_id="saved-wf",
        depth=depth,
        status="waiting_for_child",
    )
    item.session.waiting_workflow_call_execution = execution
    return execution


def test_workflow_call_children(h: Harness) -> None:
    seed(h, 2, batch_id="a", user_id="alice", destination="canvas")  # 1, 2
    h.events.take()
    parent = h.queue.dequeue()
    assert parent is not None and parent.item_id == 1
    with pytest.raises(ValueError):
        h.queue.enqueue_workflow_call_child(parent, GraphExecutionState(graph=add_graph(a=50)))
    call = _park_parent(h, parent)
    child = h.queue.enqueue_workflow_call_child(
        parent,
        GraphExecutionState(graph=add_graph(a=50)),
        field_values=[NodeFieldValue(node_path="add", field_name="a", value=50)],
    )
    h.queue.suspend_queue_item(1, queue_item=parent)
    assert view(child) == expected_item(
        3,
        50,
        batch_id="a",
        user="alice",
        destination="canvas",
        workflow_call_id=call.id,
        parent_item_id=1,
        parent_session_id="<sid>",
        root_item_id=1,
        workflow_call_depth=1,
    )
    assert child.parent_session_id == parent.session_id and child.session_id != parent.session_id
    assert [brief(e) for e in h.events.take()] == [
        ("queue_item_status_changed", 1, "in_progress"),
        ("queue_item_status_changed", 3, "pending"),
        ("queue_item_status_changed", 1, "waiting"),
    ]
    # FIFO by item id: the batch's item 2 first, then the child.
    assert h.queue.dequeue().item_id == 2  # type: ignore[union-attr]
    running_child = h.queue.dequeue()
    assert running_child is not None and running_child.item_id == 3
    grand_call = _park_parent(h, running_child, depth=2)
    grandchild = h.queue.enqueue_workflow_call_child(running_child, GraphExecutionState(graph=add_graph(a=60)))
    assert (grandchild.parent_item_id, grandchild.root_item_id, grandchild.workflow_call_depth) == (3, 1, 2)
    assert grandchild.workflow_call_id == grand_call.id and grandchild.field_values is None
    h.queue.suspend_queue_item(3)
    h.events.take()
    # Canceling any link cancels the whole chain: ancestors nearest first, the item, then the rest.
    assert h.queue.cancel_queue_item(4).status == "canceled"
    assert [brief(e) for e in h.events.take()] == [
        ("queue_item_status_changed", 3, "canceled"),
        ("queue_item_status_changed", 1, "canceled"),
        ("queue_item_status_changed", 4, "canceled"),
    ]
    assert statuses(h) == {1: "canceled", 2: "in_progress", 3: "canceled", 4: "canceled"}
    # Retrying any link retries the root, once.
    assert h.queue.retry_items_by_id(Q, [4, 3, 1]).retried_item_ids == [1]
    # Deleting any link deletes the whole chain.
    h.queue.delete_queue_item(3)
    assert statuses(h) == {2: "in_progress", 5: "pending"}


def test_cancel_workflow_call_children_and_resume(h: Harness) -> None:
    seed(h, 1, batch_id="a")
    parent = h.queue.dequeue()
    assert parent is not None
    call = _park_parent(h, parent)
    children = [
        h.queue.enqueue_workflow_call_child(parent, GraphExecutionState(graph=add_graph(a=a))) for a in (1, 2, 3)
    ]
    h.queue.suspend_queue_item(1, queue_item=parent)
    first = h.queue.dequeue()
    assert first is not None and first.item_id == 2
    _park_parent(h, first, depth=2)
    h.queue.enqueue_workflow_call_child(first, GraphExecutionState(graph=add_graph(a=9)))  # 5, grandchild
    h.queue.complete_queue_item(4)
    h.events.take()
    assert [c.item_id for c in children] == [2, 3, 4]
    # Each child by id followed by its descendants; excluded and finished items are skipped; parent untouched.
    assert h.queue.cancel_workflow_call_children(call.id, exclude_item_ids={3}) == [2, 5]
    assert [brief(e) for e in h.events.take()] == [
        ("queue_item_status_changed", 2, "canceled"),
        ("queue_item_status_changed", 5, "canceled"),
    ]
    assert h.queue.cancel_workflow_call_children(call.id) == [3]
    assert h.queue.cancel_workflow_call_children("no-such-call") == []
    h.events.take()
    assert view(h.queue.resume_queue_item(1)) == expected_item(
        1, 0, batch_id="a", status="pending", status_sequence=3, started=True
    )
    assert statuses(h) == {1: "pending", 2: "canceled", 3: "canceled", 4: "completed", 5: "canceled"}


def test_child_enqueue_respects_capacity(backend: Backend) -> None:
    h = start_queue(backend, max_queue_size=2)
    seed(h, 2)
    parent = h.queue.dequeue()
    assert parent is not None
    _park_parent(h, parent)
    h.queue.enqueue_workflow_call_child(parent, GraphExecutionState(graph=add_graph()))  # 1 pending + child = 2
    with pytest.raises(TooManySessionsError):
        h.queue.enqueue_workflow_call_child(parent, GraphExecutionState(graph=add_graph()))


def test_except_current_protects_running_chains(h: Harness) -> None:
    seed(h, 3, batch_id="a")  # 1, 2, 3
    parent = h.queue.dequeue()
    assert parent is not None
    _park_parent(h, parent)
    h.queue.enqueue_workflow_call_child(parent, GraphExecutionState(graph=add_graph()))  # 4
    h.queue.suspend_queue_item(1)
    h.events.take()
    # Nothing runs: the next pending child of a waiting parent keeps its chain (1 waiting, 4 pending).
    assert h.queue.cancel_all_except_current(Q).canceled == 2
    assert [brief(e) for e in h.events.take()] == [("queue_items_canceled", {"system": [2, 3]})]
    assert h.queue.dequeue().item_id == 4  # type: ignore[union-attr]
    seed(h, 1, batch_id="b")  # 5
    h.events.take()
    assert h.queue.delete_all_except_current(Q).deleted == 1
    assert [brief(e) for e in h.events.take()] == [("queue_items_canceled", {"system": [5]})]
    assert statuses(h) == {1: "waiting", 2: "canceled", 3: "canceled", 4: "in_progress"}


# endregion

# region startup


def test_start_prunes_history_to_limit(backend: Backend) -> None:
    h = start_queue(backend)
    seed(h, 5)
    for item_id in (3, 1, 4, 2):  # finish order, distinct milliseconds
        h.queue.complete_queue_item(item_id)
        time.sleep(0.003)
    again = start_queue(backend, queue=build_queue(backend), max_queue_history=2)
    assert statuses(again) == {2: "completed", 4: "completed", 5: "pending"}
    start_queue(backend, queue=build_queue(backend), max_queue_history=0)
    assert statuses(again) == {5: "pending"}


def test_start_leaves_other_processes_running_items_alone(backend: Backend) -> None:
    """Stock cancels every running/waiting chain at startup — it assumes it is the only process. With a
    shared database those rows belong to live workers elsewhere, so the PostgreSQL queue leaves them."""
    h = start_queue(backend)
    seed(h, 3)
    running = h.queue.dequeue()
    assert running is not None
    h.queue.dequeue()
    h.queue.suspend_queue_item(2)
    second_process = start_queue(backend, queue=build_queue(backend))
    if backend.is_postgres:
        assert statuses(second_process) == {1: "in_progress", 2: "waiting", 3: "pending"}
        assert second_process.events.take() == []
        # And the worker that owns item 1 can still finish it.
        assert h.queue.complete_queue_item(1, queue_item=running).status == "completed"
    else:
        assert statuses(second_process) == {1: "canceled", 2: "canceled", 3: "pending"}


def test_clear_queue_on_startup(backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    h = start_queue(backend)
    seed(h, 3)
    h.queue.complete_queue_item(1)
    with caplog.at_level(logging.WARNING, logger="test-session-queue"):
        restarted = start_queue(backend, queue=build_queue(backend), clear_queue_on_startup=True, max_queue_history=0)
    if backend.is_postgres:
        # Not honoured on a shared queue (it would wipe what other processes serve); it also disables pruning.
        assert statuses(restarted) == {1: "completed", 2: "pending", 3: "pending"}
        assert "clear_queue_on_startup is ignored" in caplog.text
    else:
        assert statuses(restarted) == {}


# endregion

# region stock vs PostgreSQL, side by side


def _scenario(h: Harness) -> list[Any]:
    """A multiuser session of queue traffic; returns every result, normalised."""
    log: list[Any] = []

    def record(value: Any) -> None:
        if isinstance(value, SessionQueueItem):
            log.append(view(value))
        elif isinstance(value, list):
            log.append(
                [view(v) if isinstance(v, SessionQueueItem) else scrub(v.model_dump(mode="json")) for v in value]
            )
        elif hasattr(value, "model_dump"):
            log.append(scrub(value.model_dump(mode="json")))
        else:
            log.append(value)

    record(enqueue(h, make_batch([1, 2, 3], batch_id="a", destination="canvas"), user_id="alice"))
    record(enqueue(h, make_batch([4, 5], batch_id="b"), user_id="bob"))
    record(enqueue(h, make_batch([6], batch_id="c"), user_id="carol", prepend=True))
    for _ in range(3):
        record(h.queue.dequeue(device="cuda:0"))
        time.sleep(0.003)
    record(h.queue.get_queue_status(Q, user_id="bob"))
    record(h.queue.get_queue_status(Q, user_id="alice", is_admin=True))
    record(h.queue.complete_queue_item(1))
    record(h.queue.fail_queue_item(4, "RuntimeError", "oops", "tb"))
    parent = h.queue.dequeue()
    assert parent is not None
    record(parent)
    _park_parent(h, parent)
    record(h.queue.enqueue_workflow_call_child(parent, GraphExecutionState(graph=add_graph(a=70))))
    record(h.queue.suspend_queue_item(parent.item_id, queue_item=parent))
    record(h.queue.get_batch_status(Q, "a"))
    record(h.queue.get_counts_by_destination(Q, "canvas", user_id="alice"))
    record(h.queue.retry_items_by_id(Q, [4]))
    record(h.queue.cancel_by_batch_ids(Q, ["b"], user_id="bob"))
    record(h.queue.cancel_all_except_current(Q))
    record(h.queue.list_all_queue_items(Q))
    record(h.queue.get_queue_item_ids(Q, SQLiteDirection.Ascending))
    record(h.queue.get_queue_item_summaries_by_ids(Q, [3, 2, 1]))
    record(h.queue.delete_by_destination(Q, "gallery", user_id="carol"))
    record(h.queue.cancel_queue_item(2))
    record(h.queue.prune(Q, user_id="alice"))
    record(h.queue.clear(Q))
    record(h.queue.get_queue_status(Q))
    return log


def _differences(left: Any, right: Any, path: str = "") -> list[str]:
    """Where two normalised results differ (readable failures for large nested payloads)."""
    if isinstance(left, dict) and isinstance(right, dict):
        return [
            d
            for key in sorted(left.keys() | right.keys(), key=str)
            for d in _differences(left.get(key), right.get(key), f"{path}.{key}")
        ]
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        return [d for i, (a, b) in enumerate(zip(left, right, strict=True)) for d in _differences(a, b, f"{path}[{i}]")]
    return [] if left == right else [f"{path}: {left!r} != {right!r}"]


def test_stock_and_postgres_side_by_side(tmp_path: Path, pg_engine: Engine) -> None:
    """The same traffic through stock's SQLite queue and ours: identical results and event sequences
    (whole payloads, with only times and session ids normalised)."""
    from tests.support.databases import stock_sqlite_database

    runs = []
    for backend in (Backend("sqlite", stock_sqlite_database(tmp_path)), Backend("postgres", pg_engine)):
        for user in ("alice", "bob", "carol"):
            add_user(backend, user)
        h = start_queue(backend, multiuser=True, warm={"cuda:0": ["no-such-model"]})
        results = _scenario(h)
        runs.append((results, [full(e) for e in h.events.take()]))
    (stock_results, stock_events), (pg_results, pg_events) = runs
    assert len(stock_events) == 16
    for index, (pg_result, stock_result) in enumerate(zip(pg_results, stock_results, strict=True)):
        assert (index, _differences(pg_result, stock_result)) == (index, [])
    assert pg_events == stock_events


# endregion

# region PostgreSQL only: concurrency and statement counts


def _process_like_queues(pg_engine: Engine, count: int, **config: Any) -> Iterator[tuple[Harness, Engine]]:
    """Queues on engines of their own, as separate processes would have."""
    url = pg_engine.url.render_as_string(hide_password=False)
    for _ in range(count):
        engine = create_engine(url, pool_size=2, max_overflow=2)
        yield start_queue(Backend("postgres", engine), **config), engine


@pytest.mark.parametrize("multiuser", [False, True], ids=["fifo", "round_robin"])
def test_concurrent_dequeue_claims_each_item_exactly_once(pg_engine: Engine, multiuser: bool) -> None:
    backend = Backend("postgres", pg_engine)
    for user in ("alice", "bob", "carol"):
        add_user(backend, user)
    h = start_queue(backend, multiuser=multiuser)
    expected: list[int] = []
    for user in ("alice", "bob", "carol"):
        expected += seed(h, 40, batch_id=f"batch-{user}", user_id=user)
    workers = list(_process_like_queues(pg_engine, 4, multiuser=multiuser))  # 4 "processes"
    claims: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def work(queue: SessionQueueBase) -> None:
        barrier.wait()
        while (item := queue.dequeue(device="cuda:0")) is not None:
            with lock:
                claims.append(item.item_id)

    try:
        with ThreadPoolExecutor(8) as pool:  # 2 threads per "process", each claim on its own connection
            for future in [pool.submit(work, w.queue) for w, _ in workers for _ in range(2)]:
                future.result()
    finally:
        for _, engine in workers:
            engine.dispose()
    assert sorted(claims) == sorted(expected)
    assert [item_id for item_id, n in Counter(claims).items() if n > 1] == []
    rows = {(i.status, i.status_sequence, i.device) for i in h.queue.list_all_queue_items(Q)}
    assert rows == {("in_progress", 1, "cuda:0")}
    # Every claim emitted exactly one status change, in whichever process made it.
    emitted = [e for w, _ in workers for e in w.events.take()]
    assert sorted(cast(Any, e).item_id for e in emitted) == sorted(expected)


def test_concurrent_cancels_transition_once(pg_engine: Engine) -> None:
    h = start_queue(Backend("postgres", pg_engine))
    seed(h, 1)
    h.queue.dequeue()
    workers = list(_process_like_queues(pg_engine, 6))
    barrier = threading.Barrier(6)

    def cancel(queue: SessionQueueBase) -> str:
        barrier.wait()
        return queue.cancel_queue_item(1).status

    try:
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(cancel, [w.queue for w, _ in workers]))
    finally:
        for _, engine in workers:
            engine.dispose()
    assert results == ["canceled"] * 6
    emitted = [brief(e) for w, _ in workers for e in w.events.take()]
    assert emitted == [("queue_item_status_changed", 1, "canceled")]
    assert h.queue.get_queue_item(1).status_sequence == 2


def test_concurrent_enqueues_never_exceed_capacity(pg_engine: Engine) -> None:
    workers = list(_process_like_queues(pg_engine, 6, max_queue_size=10))
    barrier = threading.Barrier(6)

    def push(index_and_harness: tuple[int, Harness]) -> int:
        index, harness = index_and_harness
        barrier.wait()
        return enqueue(harness, make_batch([1, 2, 3], batch_id=f"b{index}"), prepend=True).enqueued

    try:
        with ThreadPoolExecutor(6) as pool:
            enqueued = list(pool.map(push, enumerate(w for w, _ in workers)))
    finally:
        for _, engine in workers:
            engine.dispose()
    assert sum(enqueued) == 10
    with pg_engine.connect() as conn:
        priorities = conn.execute(text("SELECT DISTINCT priority FROM session_queue ORDER BY 1")).scalars().all()
    # Prepends were serialised: each batch got its own priority above the previous one.
    assert len(priorities) == len([n for n in enqueued if n])


def test_concurrent_bulk_cancels_move_each_item_once(pg_engine: Engine) -> None:
    """Overlapping bulk cancels racing from several processes: no deadlock, and every item is counted and
    announced by exactly one of them."""
    backend = Backend("postgres", pg_engine)
    for user in ("alice", "bob"):
        add_user(backend, user)
    h = start_queue(backend)
    ids = seed(h, 60, batch_id="a", user_id="alice") + seed(h, 60, batch_id="b", user_id="bob", destination="canvas")
    ids += seed(h, 60, batch_id="c")
    pairs = list(_process_like_queues(pg_engine, 6))
    workers = [w for w, _ in pairs]
    calls: list[Callable[[SessionQueueBase], int]] = [
        lambda q: q.cancel_by_batch_ids(Q, ["c", "b", "a"]).canceled,
        lambda q: q.cancel_by_queue_id(Q).canceled,
        lambda q: q.cancel_all_except_current(Q).canceled,
        lambda q: q.cancel_by_destination(Q, "gallery").canceled,
        lambda q: q.cancel_by_batch_ids(Q, ["b"], user_id="bob").canceled,
        lambda q: q.cancel_all_except_current(Q, user_id="alice").canceled,
    ]
    barrier = threading.Barrier(len(calls))

    def run(index: int) -> int:
        barrier.wait()
        return calls[index](workers[index].queue)

    try:
        with ThreadPoolExecutor(len(calls)) as pool:
            counts = list(pool.map(run, range(len(calls))))
    finally:
        for _, engine in pairs:
            engine.dispose()
    assert sum(counts) == len(ids)
    announced = [i for w in workers for e in w.events.take() for i in cast(Any, e).canceled_item_ids]
    assert sorted(announced) == sorted(ids)
    assert {(i.status, i.status_sequence) for i in h.queue.list_all_queue_items(Q)} == {("canceled", 1)}


def _bounded(engine: Engine, call: Callable[[], object]) -> int:
    with count_statements(engine) as log:
        call()
    return log.count


def test_list_methods_run_a_bounded_number_of_statements(pg_engine: Engine) -> None:
    backend = Backend("postgres", pg_engine)
    h = start_queue(backend)
    seed(h, 3, batch_id="small")
    small = {
        "list_all": _bounded(pg_engine, lambda: h.queue.list_all_queue_items(Q)),
        "page": _bounded(pg_engine, lambda: h.queue.list_queue_items(Q, limit=2, priority=0)),
        "ids": _bounded(pg_engine, lambda: h.queue.get_queue_item_ids(Q)),
        "summaries": _bounded(pg_engine, lambda: h.queue.get_queue_item_summaries_by_ids(Q, [1, 2])),
        "status": _bounded(pg_engine, lambda: h.queue.get_queue_status(Q, user_id="system")),
    }
    seed(h, 60, batch_id="large")
    large = {
        "list_all": _bounded(pg_engine, lambda: h.queue.list_all_queue_items(Q)),
        "page": _bounded(pg_engine, lambda: h.queue.list_queue_items(Q, limit=50, priority=0)),
        "ids": _bounded(pg_engine, lambda: h.queue.get_queue_item_ids(Q)),
        "summaries": _bounded(pg_engine, lambda: h.queue.get_queue_item_summaries_by_ids(Q, list(range(1, 61)))),
        "status": _bounded(pg_engine, lambda: h.queue.get_queue_status(Q, user_id="system")),
    }
    assert small == large == {"list_all": 1, "page": 1, "ids": 1, "summaries": 1, "status": 1}


def test_chain_walks_are_bounded_whatever_the_depth(pg_engine: Engine) -> None:
    h = start_queue(Backend("postgres", pg_engine))
    seed(h, 1)
    item = h.queue.dequeue()
    assert item is not None
    for depth in range(1, 6):
        _park_parent(h, item, depth=depth)
        child = h.queue.enqueue_workflow_call_child(item, GraphExecutionState(graph=add_graph()))
        h.queue.suspend_queue_item(item.item_id)
        item = child
    queue = cast(PostgresSessionQueue, h.queue)
    with count_statements(pg_engine) as log:
        chain = queue._workflow_call_chain(6)
    assert chain == [5, 4, 3, 2, 1, 6] and log.count == 2
    with count_statements(pg_engine) as log:
        chain = queue._workflow_call_chain(1)
    assert chain == [1, 2, 3, 4, 5, 6] and log.count == 2


# endregion
