"""The Redis event relay, service level, against a real Redis: what one process emits reaches every other
process's stock dispatch once and in order, never its own twice, and survives a Redis restart."""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from invokeai.app.invocations.math import AddInvocation
from invokeai.app.invocations.primitives import IntegerOutput
from invokeai.app.services.events.events_base import EventServiceBase
from invokeai.app.services.events.events_common import (
    BatchEnqueuedEvent,
    BulkDownloadCompleteEvent,
    DownloadProgressEvent,
    EventBase,
    InvocationCompleteEvent,
    InvocationProgressEvent,
    InvocationStartedEvent,
    QueueClearedEvent,
    QueueItemsCanceledEvent,
    QueueItemStatusChangedEvent,
    RecallParametersUpdatedEvent,
    UserAccessChangedEvent,
    WorkflowUpdatedEvent,
)
from invokeai.app.services.events.events_fastapievents import FastAPIEventService
from invokeai.app.services.session_processor.session_processor_common import ProgressImage
from invokeai.app.services.session_queue.session_queue_common import BatchStatus, SessionQueueStatus
from starlette.types import Receive, Scope, Send

from invokeai_saas import swap_services
from invokeai_saas.config import SaasSettings
from invokeai_saas.devstack import RedisServer, make_temp_data_dir
from invokeai_saas.events.codec import UndecodableEvent, decode_event, encode_event
from invokeai_saas.events.events_redis import (
    RedisEventPublisher,
    RedisEventService,
    build_redis_event_service,
    events_channel,
)
from invokeai_saas.events.relay import RedisEventRelay
from invokeai_saas.plugins.builtin import redis_events
from tests.support.servers import temporary_server

WAIT = 30.0


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A Redis of this module's own, so restarting it disturbs no other suite."""
    with temporary_server(lambda data_dir: RedisServer(data_dir, durable=False), "saas-test-events-redis-") as server:
        yield server


def _db_url(server: RedisServer, db: int) -> str:
    return server.url.rsplit("/", 1)[0] + f"/{db}"


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The middleware below is only built to register its handlers, never called."""


class StockBus:
    """Stock's in-process event path, wired as ``invokeai.app.api_app`` wires it: a ``FastAPIEventService`` on a
    running loop dispatching through fastapi_events to a handler store. The handler records what reaches it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.received: list[EventBase] = []
        self._cond = threading.Condition()
        handler = LocalHandler()
        handler.register(self._record, event_name="*")
        self._middleware = EventHandlerASGIMiddleware(app=_no_app, handlers=[handler], middleware_id=id(self))

        async def build() -> FastAPIEventService:
            return FastAPIEventService(id(self), loop=self.loop)

        self.service = asyncio.run_coroutine_threadsafe(build(), self.loop).result(WAIT)

    async def _record(self, event: tuple[str, EventBase]) -> None:
        with self._cond:
            self.received.append(event[1])
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[EventBase]], bool]) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.received), WAIT)

    def batch_ids(self) -> list[str]:
        with self._cond:
            return [e.batch_id for e in self.received if isinstance(e, BatchEnqueuedEvent)]

    def close(self) -> None:
        self.service.stop()

        async def drain() -> None:
            # Let stock's dispatch task see the stop and end, rather than destroying it pending with the loop.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if tasks:
                await asyncio.wait(tasks, timeout=WAIT)

        asyncio.run_coroutine_threadsafe(drain(), self.loop).result(WAIT + 5)
        self._middleware.deregister_handlers()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(WAIT)
        self.loop.close()


def _batch(label: str) -> BatchEnqueuedEvent:
    return BatchEnqueuedEvent(
        queue_id="default", batch_id=label, enqueued=1, requested=1, priority=0, origin=None, user_id="u1"
    )


def _service(url: str, local: EventServiceBase | None) -> RedisEventService:
    return build_redis_event_service(SaasSettings(enabled=True, redis_url=url), local)


def _relay(service: RedisEventService) -> RedisEventRelay:
    relay = RedisEventRelay(
        service.publisher.redis_url, service.publisher.channel, service.origin, service.deliver_locally
    )
    relay.start()
    assert relay.wait_subscribed(WAIT)
    return relay


def _sample_events() -> list[EventBase]:
    """One event of each shape stock routes differently, built with real InvokeAI models."""
    add = AddInvocation(id="add-1", a=2, b=3)
    item = {"queue_id": "default", "item_id": 7, "batch_id": "b-1", "user_id": "u1", "session_id": "s-1"}
    batch_status = BatchStatus(
        queue_id="default",
        batch_id="b-1",
        origin="canvas",
        destination="gallery",
        pending=0,
        in_progress=1,
        waiting=0,
        completed=0,
        failed=0,
        canceled=0,
        total=1,
    )
    queue_status = SessionQueueStatus(
        queue_id="default",
        item_id=7,
        batch_id="b-1",
        session_id="s-1",
        pending=0,
        in_progress=1,
        waiting=0,
        completed=0,
        failed=0,
        canceled=0,
        total=1,
        user_pending=0,
        user_in_progress=1,
    )
    return [
        InvocationStartedEvent(**item, origin="canvas", invocation=add, invocation_source_id="add"),
        InvocationProgressEvent(
            **item,
            invocation=add,
            invocation_source_id="add",
            message="step 1/2",
            percentage=0.5,
            image=ProgressImage(width=8, height=8, dataURL="data:image/png;base64,AAAA"),
        ),
        InvocationCompleteEvent(**item, invocation=add, invocation_source_id="add", result=IntegerOutput(value=5)),
        QueueItemStatusChangedEvent(
            **item,
            origin="canvas",
            destination="gallery",
            status="in_progress",
            status_sequence=2,
            created_at="2026-01-01 00:00:00",
            updated_at="2026-01-01 00:00:01",
            started_at="2026-01-01 00:00:01",
            batch_status=batch_status,
            queue_status=queue_status,
        ),
        _batch("b-1"),
        QueueItemsCanceledEvent.build("default", {"u1": [1, 2], "u2": [3]}),
        QueueClearedEvent.build("default", "u1"),
        RecallParametersUpdatedEvent.build("default", "u1", {"positive_prompt": "a cat", "seed": 4}),
        UserAccessChangedEvent.build("u1", is_admin=False, is_active=False, token_epoch=3),
        WorkflowUpdatedEvent(workflow_id="w-1", user_id="u1", is_public=False, old_is_public=True, new_is_public=False),
        DownloadProgressEvent(
            timestamp=1, source="https://example.com/m.safetensors", download_path="/m", current_bytes=1, total_bytes=2
        ),
        BulkDownloadCompleteEvent(
            bulk_download_id="bd-1", bulk_download_item_id="i-1", bulk_download_item_name="x.zip", user_id="u1"
        ),
    ]


def test_every_event_shape_round_trips_to_what_stock_would_send() -> None:
    for event in _sample_events():
        origin, rebuilt = decode_event(encode_event(event, "proc-1"))
        assert origin == "proc-1"
        assert type(rebuilt) is type(event)
        assert rebuilt == event
        # What stock's socket handlers emit is this dump: the browser cannot tell a relayed event apart.
        assert rebuilt.model_dump(mode="json") == event.model_dump(mode="json")


def test_foreign_or_broken_messages_are_refused() -> None:
    for data in (b"not json", b"[1]", b'{"v":1,"origin":"x","name":"no_such_event","payload":{}}'):
        with pytest.raises(UndecodableEvent):
            decode_event(data)
    with pytest.raises(UndecodableEvent):
        decode_event(b'{"v":1,"origin":"x","name":"batch_enqueued","payload":{"queue_id":"q"}}')


def test_each_process_gets_every_other_process_event_once_in_order_and_its_own_once(
    redis_server: RedisServer,
) -> None:
    url = _db_url(redis_server, 0)
    bus_a, bus_b = StockBus(), StockBus()
    a, b = _service(url, bus_a.service), _service(url, bus_b.service)
    worker = _service(url, None)  # a process without listeners, e.g. a GPU worker
    relays = [_relay(a), _relay(b)]
    try:
        from_a = [f"a-{i}" for i in range(200)]
        from_w = [f"w-{i}" for i in range(50)]
        from_b = ["b-0"]
        for label in from_a:
            a.dispatch(_batch(label))
        for label in from_w:
            worker.dispatch(_batch(label))
        b.dispatch(_batch(from_b[0]))
        everything = set(from_a + from_w + from_b)
        for bus in (bus_a, bus_b):
            assert bus.wait_for(lambda received: {getattr(e, "batch_id", None) for e in received} >= everything)

        # Barrier: everything above is in Redis now, so a message published after it reaches each relay after
        # any duplicate of it would have. Once the barrier is seen everywhere, the counts are final.
        worker.dispatch(_batch("barrier"))
        for bus in (bus_a, bus_b):
            assert bus.wait_for(lambda received: "barrier" in [getattr(e, "batch_id", None) for e in received])

        for bus in (bus_a, bus_b):
            ids = bus.batch_ids()
            assert sorted(ids) == sorted([*from_a, *from_w, *from_b, "barrier"])  # each exactly once
            for series in (from_a, from_w):
                assert [i for i in ids if i in series] == series  # in emission order
        # The emitting process's own listeners got its events first-hand, before any relayed copy could arrive.
        assert bus_a.batch_ids()[: len(from_a)] == from_a
    finally:
        for relay in relays:
            relay.stop()
        for service in (a, b, worker):
            service.stop()
        bus_a.close()
        bus_b.close()


def test_deployments_on_other_database_numbers_do_not_hear_each_other(redis_server: RedisServer) -> None:
    assert events_channel(_db_url(redis_server, 0)) != events_channel(_db_url(redis_server, 3))
    bus = StockBus()
    listener = _service(_db_url(redis_server, 3), bus.service)
    relay = _relay(listener)
    other_deployment = _service(_db_url(redis_server, 0), None)
    same_deployment = _service(_db_url(redis_server, 3), None)
    try:
        other_deployment.dispatch(_batch("elsewhere"))
        other_deployment.stop()  # flushes: published before the next one
        same_deployment.dispatch(_batch("here"))
        assert bus.wait_for(lambda received: len(received) >= 1)
        assert bus.batch_ids() == ["here"]
    finally:
        relay.stop()
        same_deployment.stop()
        listener.stop()
        bus.close()


def test_relay_and_publisher_recover_when_redis_restarts() -> None:
    data_dir = make_temp_data_dir("saas-test-events-restart-")
    server = RedisServer(data_dir, durable=False)
    server.start()
    bus = StockBus()
    listener = _service(server.url, bus.service)
    emitter = _service(server.url, None)
    relay = _relay(listener)
    try:
        emitter.dispatch(_batch("before"))
        assert bus.wait_for(lambda received: bus.batch_ids() == ["before"])

        server.stop()
        deadline = time.monotonic() + WAIT
        while relay.subscribed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not relay.subscribed
        server.start()
        assert relay.wait_subscribed(WAIT)

        emitter.dispatch(_batch("after"))
        assert bus.wait_for(lambda received: "after" in bus.batch_ids())
        assert bus.batch_ids().count("after") == 1
    finally:
        relay.stop()
        emitter.stop()
        listener.stop()
        bus.close()
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_publisher_keeps_the_newest_events_while_redis_is_unreachable() -> None:
    publisher = RedisEventPublisher("redis://127.0.0.1:9/0", "invokeai-saas:events:test", "proc", max_pending=3)
    try:
        for i in range(10):
            publisher.publish(_batch(f"e-{i}"))
        with publisher._cond:
            pending = [e.batch_id for e in publisher._pending]
        assert pending[-3:] == ["e-7", "e-8", "e-9"] and len(pending) <= 3
    finally:
        publisher.stop(flush_seconds=0.2)


def test_plugin_wraps_any_event_service_and_runs_the_relay(redis_server: RedisServer) -> None:
    settings = SaasSettings(enabled=True, redis_url=_db_url(redis_server, 5))
    bus = StockBus()
    services = swap_services(None, settings, {"events": bus.service})  # type: ignore[arg-type]
    events = services["events"]
    assert isinstance(events, RedisEventService) and events.local is bus.service
    swap_services(None, settings, services)  # type: ignore[arg-type]
    assert services["events"] is events  # already publishing: not wrapped twice
    logger = logging.getLogger("test-events")
    redis_events.saas_startup(saas_config=settings, services=SimpleNamespace(events=events), logger=logger)
    emitter = _service(settings.redis_url or "", None)
    try:
        emitter.dispatch(_batch("via-plugin-relay"))
        assert bus.wait_for(lambda received: bus.batch_ids() == ["via-plugin-relay"])
    finally:
        redis_events.saas_shutdown(saas_config=settings, logger=logger)
        emitter.stop()
        events.stop()
        bus.close()
