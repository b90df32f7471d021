"""The redis_events plugin: active when ``redis_url`` is set. Provides the events probe (PING)."""

from __future__ import annotations

from typing import Any

from invokeai_saas.config import SaasSettings
from invokeai_saas.events.redis_client import redis_client
from invokeai_saas.health.probes import BackendProbe
from invokeai_saas.plugins.markers import hookimpl


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
