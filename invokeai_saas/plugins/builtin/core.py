"""The core plugin: what every saas deployment has (the health route, the refusal of stock routes a hosted
service must not serve, no stack traces or internals in answers: ``invokeai_saas/routes/tracebacks.py``, bad input
and oversized bodies refused before any route: ``invokeai_saas/routes/request_limits.py``, and an invocation
cache whose entries belong to one owner: ``invokeai_saas/services/invocation_cache/invocation_cache_owner.py``)."""

from __future__ import annotations

from logging import Logger
from typing import Any

from fastapi import APIRouter, FastAPI

from invokeai_saas.config import SaasSettings
from invokeai_saas.health.router import health_router
from invokeai_saas.plugins.markers import hookimpl


@hookimpl
def saas_swap_services(
    invokeai_config: Any, saas_config: SaasSettings, services: dict[str, Any], logger: Logger
) -> None:
    # Every process that runs graphs shares one cache among all tenants: the owner goes into each key. Only stock's
    # cache is replaced: ``swap_services`` may be called with any subset of services, or after another plugin's swap.
    from invokeai.app.services.invocation_cache.invocation_cache_memory import MemoryInvocationCache

    from invokeai_saas.patches import session_runner_cache_owner
    from invokeai_saas.services.invocation_cache.invocation_cache_owner import CACHE_OWNER, OwnerScopedInvocationCache

    stock = services.get("invocation_cache")
    if type(stock) is not MemoryInvocationCache:
        return
    session_runner_cache_owner.apply(CACHE_OWNER)
    # Sized as stock sizes the cache it replaces (``ApiDependencies.initialize``: ``node_cache_size``).
    services["invocation_cache"] = OwnerScopedInvocationCache(max_cache_size=invokeai_config.node_cache_size)


@hookimpl
def saas_routers(saas_config: SaasSettings) -> list[APIRouter]:
    return [health_router]


@hookimpl
def saas_route_overrides(saas_config: SaasSettings) -> list[APIRouter]:
    from invokeai_saas.routes.refused_routes import refusal_overrides  # imports stock routers: only at app import

    return refusal_overrides(saas_config)


@hookimpl
def saas_configure_app(saas_config: SaasSettings, app: FastAPI) -> None:
    from invokeai_saas.patches import api_app_route_guards, events_fastapievents_tracebacks, starlette_request_json
    from invokeai_saas.routes.board_image_guards import board_image_route_guards
    from invokeai_saas.routes.file_name_errors import install_file_name_error_handlers
    from invokeai_saas.routes.not_found_errors import install_not_found_handler
    from invokeai_saas.routes.request_limits import install_request_limits
    from invokeai_saas.routes.tracebacks import install_server_error_bodies, queue_item_route_filters

    api_app_route_guards.apply(app, board_image_route_guards(), queue_item_route_filters())
    events_fastapievents_tracebacks.apply()
    # Bad input is refused (422) and bodies bounded (413) before any route; no 5xx body carries internals
    # (invokeai_saas/routes/bad_input.py, request_limits.py, tracebacks.py). Called first of all plugins, so the
    # others' exception handlers fall back to the generic one.
    starlette_request_json.apply()
    install_request_limits(app, saas_config.max_json_body_bytes)
    install_server_error_bodies(app)
    install_file_name_error_handlers(app)  # a name too long for the file system: 422 (routes/file_name_errors.py)
    install_not_found_handler(app)  # stock's 500 for an object that does not exist: 404 (routes/not_found_errors.py)
