"""The core plugin: the saas routes every deployment has (health)."""

from __future__ import annotations

from fastapi import APIRouter

from invokeai_saas.config import SaasSettings
from invokeai_saas.health.router import health_router
from invokeai_saas.plugins.markers import hookimpl


@hookimpl
def saas_routers(saas_config: SaasSettings) -> list[APIRouter]:
    return [health_router]
