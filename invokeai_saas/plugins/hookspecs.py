"""Hook specifications: the manual for plugin authors.

A plugin is a module (or object) with functions decorated by ``invokeai_saas.plugins.hookimpl`` and
named like the specs below. Built-in plugins are registered by the manager; third-party plugins are
found through the ``invokeai_saas`` entry-point group::

    [project.entry-points.invokeai_saas]
    my_plugin = "my_package.my_plugin"

Call order: third-party implementations run *after* the built-in ones (pluggy calls the most
recently registered first, and the manager registers entry points before built-ins), so a
third-party plugin sees — and may replace — what a built-in installed. ``tryfirst``/``trylast``
on a hookimpl adjust this as usual.
"""

from __future__ import annotations

from logging import Logger
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI

from invokeai_saas.plugins.markers import hookspec

if TYPE_CHECKING:
    from invokeai.app.services.config.config_default import InvokeAIAppConfig
    from invokeai.app.services.invocation_services import InvocationServices

    from invokeai_saas.config import SaasSettings
    from invokeai_saas.health.probes import BackendProbe


@hookspec
def saas_swap_services(
    invokeai_config: InvokeAIAppConfig,
    saas_config: SaasSettings,
    services: dict[str, Any],
    logger: Logger,
) -> None:
    """Replace InvokeAI services before they are assembled into ``InvocationServices``.

    ``services`` holds the keyword arguments stock ``ApiDependencies.initialize`` passes to
    ``InvocationServices`` (``image_records``, ``session_queue``, ``events``...). Assign a new object
    to a key to replace that service; the replacement must implement the same InvokeAI base class.
    Return nothing. Called once per process, before ``Invoker(services)`` starts the services, and
    also by ``invokeai_saas.swap_services()`` outside any server.
    """


@hookspec
def saas_routers(saas_config: SaasSettings) -> list[APIRouter]:
    """Return FastAPI routers to add to the app, ahead of InvokeAI's catch-all UI mount.

    Paths are used as given: put saas routes under ``/api/v1/saas/``.
    """


@hookspec
def saas_route_overrides(saas_config: SaasSettings) -> list[APIRouter]:
    """Return routers whose routes replace stock routes with the same path and methods, in place.

    For answering a stock route differently under the same contract (e.g. in fewer queries); the
    overriding route keeps the stock operation id, parameters and response model. A route without a
    stock counterpart is an error: add new routes with ``saas_routers``.
    """


@hookspec
def saas_configure_app(saas_config: SaasSettings, app: FastAPI) -> None:
    """Adjust the FastAPI app once its routes are in place: exception handlers, middleware.

    For behaviour that spans many stock routes (e.g. answering 503 whenever a backend outage is behind an
    error) where overriding each route would copy upstream code. Called once per process.
    """


@hookspec
def saas_health_probes(saas_config: SaasSettings, services: InvocationServices | None) -> list[BackendProbe]:
    """Return probes for the backends this plugin provides (``database``, ``object_store``, ``queue``,
    ``events``, ``billing``). When several plugins probe the same backend, the one called last wins.

    ``services`` is the running InvokeAI services, or None when called before they exist.
    """


@hookspec
def saas_startup(saas_config: SaasSettings, services: InvocationServices, logger: Logger) -> None:
    """Called once the InvokeAI services have started (after ``Invoker(services)``)."""


@hookspec
def saas_shutdown(saas_config: SaasSettings, logger: Logger) -> None:
    """Called when the server shuts down, before InvokeAI stops its services. Release resources here."""
