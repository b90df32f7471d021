"""The core plugin: what every saas deployment has (the health route, the refusal of stock routes a hosted
service must not serve, no stack traces in answers: ``invokeai_saas/routes/tracebacks.py``)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from invokeai_saas.config import SaasSettings
from invokeai_saas.health.router import health_router
from invokeai_saas.plugins.markers import hookimpl


@hookimpl
def saas_routers(saas_config: SaasSettings) -> list[APIRouter]:
    return [health_router]


@hookimpl
def saas_route_overrides(saas_config: SaasSettings) -> list[APIRouter]:
    from invokeai_saas.routes.refused_routes import refusal_overrides  # imports stock routers: only at app import

    return refusal_overrides(saas_config)


@hookimpl
def saas_configure_app(saas_config: SaasSettings, app: FastAPI) -> None:
    from invokeai_saas.patches import api_app_route_guards, events_fastapievents_tracebacks
    from invokeai_saas.routes.tracebacks import queue_item_route_filters

    api_app_route_guards.apply(app, [], queue_item_route_filters())
    events_fastapievents_tracebacks.apply()
