"""The tenant_queue plugin: active when ``database_url`` is set (the shared PostgreSQL session queue).

In a shared queue each tenant sees only their own work, and one tenant's bad input cannot break the queue for the
others:

- ``saas_swap_services``: the session queue (whichever the postgres or sqs plugin installed) puts each owner's own
  queue status into the events about their items (``PostgresSessionQueue.scope_views_to_owners``).
- ``saas_route_overrides``: stock's queue views hold only the caller's items (``invokeai_saas.routes.queue_views``),
  and the status route reports the caller's counts, place in the queue and the worker fleet
  (``invokeai_saas.routes.queue_fleet``).
- ``saas_configure_app``: a batch value its node refuses answers 422 naming the node and field
  (``invokeai_saas.routes.batch_value_errors``); the queue refuses it before storing anything. Canceling or
  deleting someone else's item answers 404, as fetching it does (a guard on stock's routes).
- Live events: the Socket.IO queue room carries each item's events to its owner only
  (``invokeai_saas.patches.sockets_queue_events``, applied by activation when this plugin is enabled, because
  stock registers the socket handlers when ``invokeai.app.api_app`` is imported, before any hook runs).

Runs after the postgres and sqs plugins, whose queue it configures.
"""

from __future__ import annotations

from logging import Logger
from typing import Any

from fastapi import APIRouter, FastAPI

from invokeai_saas.config import SaasSettings
from invokeai_saas.plugins.markers import hookimpl


def active(saas_config: SaasSettings) -> bool:
    return saas_config.database_url is not None


@hookimpl
def saas_swap_services(
    invokeai_config: Any, saas_config: SaasSettings, services: dict[str, Any], logger: Logger
) -> None:
    if not active(saas_config):
        return
    from invokeai_saas.services.session_queue.session_queue_postgres import PostgresSessionQueue

    queue = services.get("session_queue")
    if isinstance(queue, PostgresSessionQueue):
        queue.scope_views_to_owners()


@hookimpl
def saas_route_overrides(saas_config: SaasSettings) -> list[APIRouter]:
    if not active(saas_config):
        return []
    from invokeai_saas.routes.queue_fleet import queue_status_router  # imports stock routers: only at app import
    from invokeai_saas.routes.queue_views import queue_views_router

    return [queue_views_router, queue_status_router]


@hookimpl
def saas_configure_app(saas_config: SaasSettings, app: FastAPI) -> None:
    if not active(saas_config):
        return
    from invokeai_saas.patches import api_app_route_guards
    from invokeai_saas.routes.batch_value_errors import install_batch_value_error_handler
    from invokeai_saas.routes.queue_views import owner_route_guards

    install_batch_value_error_handler(app)
    api_app_route_guards.apply(app, owner_route_guards())
