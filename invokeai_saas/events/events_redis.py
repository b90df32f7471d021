"""An InvokeAI event service that also publishes every event to Redis, for the other processes of the deployment.

Why events are relayed as objects and not emitted through python-socketio's Redis manager: stock routing
(``invokeai.app.api.sockets.SocketIO``) sends the full event to the owner's and the admins' rooms and a redacted
copy to the rest of the queue room, skipping the owner and admin sockets it finds in *its own* connection list.
Through a Redis client manager those emits would reach every process's rooms, but the skip list would hold only
the emitting process's sockets, so an owner or admin connected elsewhere would get both copies, and a worker
(which has no connections at all) would redact for everybody. So each event is published once, and every API
process replays it through stock's own dispatch (``RedisEventRelay``), where stock routing decides for the
connections that process holds. Replaying through the whole dispatch, not only the socket handlers, also gives
the other in-process listeners (the session processor's cancel-on-status-change, the sockets' re-authorisation
on ``user_access_changed``) the view a single stock process would have had.

Delivery to the emitting process's own listeners stays local and immediate, and the relay skips messages that
carry this process's origin. The alternative, publishing only and delivering everything through the
subscription, would give one order across processes, but a Redis outage would then also silence the emitting
process's own browsers and its own session processor (which wakes on ``batch_enqueued``); with local delivery a
Redis outage degrades a deployment to what each process alone would do, never below stock.

Publishing happens on a background thread: events are emitted from the generation thread (progress images
included), which must not wait on the network. The thread publishes in emission order; while Redis is
unreachable it keeps retrying the oldest event and keeps at most ``max_pending`` of the newest behind it, so a
long outage neither grows memory without bound nor loses the final status changes that matter most.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import redis
from invokeai.app.services.events.events_base import EventServiceBase
from invokeai.app.services.events.events_common import EventBase

from invokeai_saas.events.codec import encode_event

if TYPE_CHECKING:
    from invokeai.app.services.invoker import Invoker

    from invokeai_saas.config import SaasSettings

logger = logging.getLogger("invokeai_saas.events")

CHANNEL_PREFIX = "invokeai-saas:events"
DEFAULT_MAX_PENDING = 10_000
RETRY_MIN_SECONDS = 0.1
RETRY_MAX_SECONDS = 2.0
FLUSH_SECONDS = 3.0


def events_channel(redis_url: str) -> str:
    """The pub/sub channel of the deployment that uses ``redis_url``.

    Redis pub/sub ignores database numbers: a channel is server-wide. Deployments that share one Redis server
    already keep their keys apart with database numbers (``redis://host/3``), so the number is part of the
    channel name and their events stay apart too.
    """
    db = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs.get("db", 0)
    return f"{CHANNEL_PREFIX}:db{db}"


def new_origin() -> str:
    """A process-unique id for tagging published events: host and pid for the logs, a random part because pids
    repeat across hosts and containers."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class RedisEventPublisher:
    """Publishes events to one channel from a background thread, in the order ``publish`` was called."""

    def __init__(self, redis_url: str, channel: str, origin: str, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.channel = channel
        self.origin = origin
        self.redis_url = redis_url
        self._pending: collections.deque[EventBase] = collections.deque(maxlen=max_pending)
        self._dropped = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._stopped = threading.Event()  # wakes a retry wait at once; new events must not (they would spin it)
        self._flush_deadline = 0.0
        self._thread: threading.Thread | None = None
        self._client: redis.Redis | None = None

    def publish(self, event: EventBase) -> None:
        """Queue ``event`` for publishing; never blocks on Redis. Starts the thread on first use, so building the
        service (e.g. through ``swap_services`` in a test) costs no thread until an event is emitted."""
        with self._cond:
            if self._stopping:
                return
            if len(self._pending) == self._pending.maxlen:
                self._dropped += 1
            self._pending.append(event)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="saas-events-publisher", daemon=True)
                self._thread.start()
            self._cond.notify()

    def stop(self, flush_seconds: float = FLUSH_SECONDS) -> None:
        """Publish what is still queued (for up to ``flush_seconds``), then stop the thread and close the client."""
        with self._cond:
            self._stopping = True
            self._flush_deadline = time.monotonic() + flush_seconds
            self._cond.notify()
            thread = self._thread
        self._stopped.set()
        if thread is not None:
            thread.join(flush_seconds + 2.0)
        if self._client is not None:
            self._client.close()
            self._client = None

    def _connect(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=3, socket_timeout=5)
        return self._client

    def _next(self) -> EventBase | None:
        """The oldest queued event, waiting for one; None once stopping and drained (or past the flush deadline)."""
        with self._cond:
            while not self._pending and not self._stopping:
                self._cond.wait()
            if self._dropped:
                logger.warning(f"Redis events: {self._dropped} event(s) dropped while Redis was unreachable")
                self._dropped = 0
            if not self._pending or (self._stopping and time.monotonic() > self._flush_deadline):
                return None
            return self._pending.popleft()

    def _run(self) -> None:
        unreachable_since: float | None = None
        while (event := self._next()) is not None:
            try:
                data = encode_event(event, self.origin)
            except Exception:
                logger.exception(f"Redis events: cannot serialise {getattr(event, '__event_name__', event)}; skipped")
                continue
            delay = RETRY_MIN_SECONDS
            while True:
                try:
                    self._connect().publish(self.channel, data)
                except (redis.RedisError, OSError) as e:
                    if unreachable_since is None:
                        unreachable_since = time.monotonic()
                        logger.warning(f"Redis events: cannot publish ({type(e).__name__}); retrying")
                    if self._stopping:
                        remaining = self._flush_deadline - time.monotonic()
                        if remaining <= 0:
                            return
                        time.sleep(min(delay, remaining))
                    else:
                        self._stopped.wait(delay)
                    delay = min(delay * 2, RETRY_MAX_SECONDS)
                    continue
                if unreachable_since is not None:
                    logger.warning(
                        f"Redis events: publishing again after {time.monotonic() - unreachable_since:.1f}s unreachable"
                    )
                    unreachable_since = None
                break


class RedisEventService(EventServiceBase):
    """Hands every event to ``local`` (stock's in-process dispatch; absent in a process without listeners, such as
    a worker) and publishes it for the deployment's other processes.

    All ``emit_*`` methods of ``EventServiceBase`` funnel into ``dispatch``, so overriding it covers every event.
    Attributes this class does not define are looked up on ``local``, so code that reaches for the stock
    service's own attributes keeps working.
    """

    def __init__(self, local: EventServiceBase | None, publisher: RedisEventPublisher) -> None:
        self.local = local
        self.publisher = publisher
        super().__init__()

    @property
    def origin(self) -> str:
        return self.publisher.origin

    def dispatch(self, event: EventBase) -> None:
        if self.local is not None:
            self.local.dispatch(event)
        self.publisher.publish(event)

    def deliver_locally(self, event: EventBase) -> None:
        """Hand an event from another process to this process's listeners only (never published again)."""
        if self.local is not None:
            self.local.dispatch(event)

    def start(self, invoker: Invoker) -> None:
        start = getattr(self.local, "start", None)
        if callable(start):
            start(invoker)

    def stop(self, *args: Any, **kwargs: Any) -> None:
        """Publish what is queued, then stop the local service (InvokeAI stops services after its shutdown hooks,
        so the last status changes of a stopping session processor still go out)."""
        self.publisher.stop()
        stop = getattr(self.local, "stop", None)
        if callable(stop):
            stop(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        local = self.__dict__.get("local")
        if local is None:
            raise AttributeError(name)
        return getattr(local, name)


def build_redis_event_service(settings: SaasSettings, local: EventServiceBase | None) -> RedisEventService:
    """The event service for any process of a deployment with ``redis_url`` set: wrap the process's own bus (or
    None where nothing listens in-process) and publish to the deployment's channel."""
    if settings.redis_url is None:
        raise ValueError("redis_url is not configured")
    publisher = RedisEventPublisher(settings.redis_url, events_channel(settings.redis_url), new_origin())
    return RedisEventService(local, publisher)
