"""The redis_events plugin: active when ``redis_url`` is set. Relays InvokeAI events between the processes of a
deployment through Redis, and provides the events probe (PING).

- Inside ``invokeai-web`` the event service InvokeAI builds is wrapped where it is built
  (``invokeai_saas.patches.api_dependencies_events``), because stock hands that one object to the download queue
  and the model manager before the dependency-swap hook runs; swapping only ``services["events"]`` would leave
  model download, install and load events unpublished.
- ``saas_swap_services`` wraps the event service of a process built any other way (``swap_services`` in tests or
  a worker), so every process with InvokeAI services can publish.
- ``saas_startup`` starts this process's relay, which replays the other processes' events through stock routing;
  ``saas_shutdown`` stops it. See ``invokeai_saas.events.events_redis`` for the design.
"""

from __future__ import annotations

from logging import Logger
from typing import Any

from invokeai_saas.config import SaasSettings
from invokeai_saas.events.redis_client import redis_client
from invokeai_saas.health.probes import BackendProbe
from invokeai_saas.plugins.markers import hookimpl

# The event modules import InvokeAI's event classes: imported inside the hooks, so that loading the plugin (which
# activation does before InvokeAI's services exist) stays as light as the other built-ins.

# How long startup waits for the relay's subscription: a server that answers before it is subscribed would miss
# the events other processes publish in the meantime. Startup goes on without it if Redis is down (the relay
# keeps reconnecting), so a Redis outage never stops an API process from serving.
SUBSCRIBE_WAIT_SECONDS = 10.0

_state: dict[str, Any] = {}


@hookimpl
def saas_swap_services(
    invokeai_config: Any, saas_config: SaasSettings, services: dict[str, Any], logger: Logger
) -> None:
    if saas_config.redis_url is None:
        return
    from invokeai_saas.events.events_redis import RedisEventService, build_redis_event_service

    events = services.get("events")
    if events is None or isinstance(events, RedisEventService):
        return
    services["events"] = build_redis_event_service(saas_config, events)


@hookimpl
def saas_startup(saas_config: SaasSettings, services: Any, logger: Logger) -> None:
    if saas_config.redis_url is None or "relay" in _state:
        return
    from invokeai_saas.events.events_redis import RedisEventService
    from invokeai_saas.events.relay import RedisEventRelay

    events = getattr(services, "events", None)
    if not isinstance(events, RedisEventService):
        return
    relay = RedisEventRelay(saas_config.redis_url, events.publisher.channel, events.origin, events.deliver_locally)
    relay.start()
    _state["relay"] = relay
    if not relay.wait_subscribed(SUBSCRIBE_WAIT_SECONDS):
        logger.warning("Redis events: not subscribed yet; events from other processes arrive once Redis answers")


@hookimpl
def saas_shutdown(saas_config: SaasSettings, logger: Logger) -> None:
    relay = _state.pop("relay", None)
    if relay is not None:
        relay.stop()


@hookimpl
def saas_health_probes(saas_config: SaasSettings, services: Any) -> list[BackendProbe]:
    if saas_config.redis_url is None:
        return []
    client = redis_client(saas_config)

    def check() -> str:
        client.ping()
        version = client.info("server").get("redis_version", "unknown")
        return f"Redis {version}"

    return [BackendProbe("events", "redis", check)]
