"""The stripe_billing plugin: active when ``stripe_api_key`` is set. Provides the billing probe (an
authenticated list call, so a revoked key shows as unreachable)."""

from __future__ import annotations

from typing import Any

from invokeai_saas.billing.stripe_client import stripe_client
from invokeai_saas.config import SaasSettings
from invokeai_saas.health.probes import BackendProbe
from invokeai_saas.plugins.markers import hookimpl


@hookimpl
def saas_health_probes(saas_config: SaasSettings, services: Any) -> list[BackendProbe]:
    if saas_config.stripe_api_key is None:
        return []
    client = stripe_client(saas_config)

    def check() -> str:
        client.v1.customers.list(params={"limit": 1})
        return "Stripe API reachable"

    return [BackendProbe("billing", "stripe", check)]
