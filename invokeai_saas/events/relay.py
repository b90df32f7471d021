"""The subscriber side of the event relay: events other processes published, replayed into this process.

Each API process runs one relay. It rebuilds every event from the deployment's channel and hands it to stock's
in-process dispatch, so ``invokeai.app.api.sockets.SocketIO`` routes it to this process's own connections exactly
as if it had been emitted here (see ``invokeai_saas.events.events_redis`` for why that, and not a Socket.IO Redis
manager, is what gives every browser the copy stock would give it, once). Messages carrying this process's own
origin are skipped: those were already delivered locally when they were emitted.

The relay runs on a thread with a blocking client, like the publisher, so it needs no event loop of its own and
works in any process; stock's ``FastAPIEventService.dispatch`` is thread-safe (it hops onto the server's loop).
When Redis goes away the relay reconnects with backoff and subscribes again. Pub/sub keeps no history, so events
published while it was disconnected are not replayed: browsers see the same gap as after a dropped socket, and
the studio refetches queue state on its own when items finish.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from invokeai.app.services.events.events_common import EventBase

from invokeai_saas.events.codec import UndecodableEvent, decode_event

logger = logging.getLogger("invokeai_saas.events")

POLL_SECONDS = 0.5
HEALTH_CHECK_SECONDS = 10
RETRY_MIN_SECONDS = 0.1
RETRY_MAX_SECONDS = 2.0


class RedisEventRelay:
    """Subscribes to ``channel`` and calls ``deliver`` with every event whose origin is not ``origin``, in order."""

    def __init__(self, redis_url: str, channel: str, origin: str, deliver: Callable[[EventBase], None]) -> None:
        self.channel = channel
        self.origin = origin
        self._redis_url = redis_url
        self._deliver = deliver
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def subscribed(self) -> bool:
        """Whether the relay is subscribed right now (False while it reconnects)."""
        return self._subscribed.is_set()

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="saas-events-relay", daemon=True)
        self._thread.start()

    def wait_subscribed(self, timeout: float) -> bool:
        """Wait until the subscription is active: events published before that are not seen by this process."""
        return self._subscribed.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._subscribed.clear()

    def _run(self) -> None:
        delay = RETRY_MIN_SECONDS
        lost_since: float | None = None
        while not self._stop.is_set():
            client = redis.Redis.from_url(
                self._redis_url,
                socket_connect_timeout=3,
                socket_timeout=5,
                health_check_interval=HEALTH_CHECK_SECONDS,  # notices a silently dead connection while idle
            )
            pubsub = client.pubsub()
            try:
                pubsub.subscribe(self.channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=POLL_SECONDS)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self._subscribed.set()
                        delay = RETRY_MIN_SECONDS
                        if lost_since is not None:
                            logger.warning(
                                f"Redis events: relay subscribed again after {time.monotonic() - lost_since:.1f}s"
                            )
                            lost_since = None
                    elif message["type"] == "message":
                        self._handle(message["data"])
            except (redis.RedisError, OSError) as e:
                self._subscribed.clear()
                if lost_since is None:
                    lost_since = time.monotonic()
                    logger.warning(f"Redis events: relay lost its subscription ({type(e).__name__}); reconnecting")
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
            finally:
                self._subscribed.clear()
                try:
                    pubsub.close()
                    client.close()
                except (redis.RedisError, OSError):
                    pass

    def _handle(self, data: bytes) -> None:
        try:
            origin, event = decode_event(data)
        except UndecodableEvent as e:
            logger.warning(f"Redis events: ignoring a message on {self.channel}: {e}")
            return
        if origin == self.origin:
            return
        try:
            self._deliver(event)
        except Exception:
            # One listener's failure must not end the subscription for every later event.
            logger.exception(f"Redis events: delivering {event.__event_name__} failed")
