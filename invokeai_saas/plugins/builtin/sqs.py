"""The sqs plugin: active when SQS is configured. Provides the queue probe (a signed ListQueues)."""

from __future__ import annotations

from typing import Any

from invokeai_saas.aws import sqs_client
from invokeai_saas.config import SaasSettings
from invokeai_saas.health.probes import BackendProbe
from invokeai_saas.plugins.markers import hookimpl


@hookimpl
def saas_health_probes(saas_config: SaasSettings, services: Any) -> list[BackendProbe]:
    if not saas_config.sqs_active:
        return []
    client = sqs_client(saas_config)
    prefix = saas_config.sqs_queue_prefix

    def check() -> str:
        urls = client.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
        return f"SQS reachable; {len(urls)} queue(s) with the configured prefix"

    return [BackendProbe("queue", "sqs", check)]
