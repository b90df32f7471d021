"""Upstream: ``invokeai.app.api.dependencies.ApiDependencies.initialize`` and ``.shutdown``.
Checked on 6.14.2.

Three changes, all around the stock call:
- ``initialize`` receives the loop created at ``api_app`` import; under a server started any other
  way (another uvicorn entry point, a test client) that is not the running loop and events are
  never dispatched. When a loop is running, it is used instead.
- once the services exist, they are recorded on the saas runtime (the health probes use them) and
  the ``saas_startup`` hook runs;
- ``shutdown`` runs the ``saas_shutdown`` hook before InvokeAI stops its services.
"""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any

import wrapt

from invokeai_saas.runtime import SaasRuntime


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def apply(dependencies_module: ModuleType, runtime: SaasRuntime) -> None:
    api_dependencies = dependencies_module.ApiDependencies

    def initialize(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        loop = _running_loop()
        if loop is not None:
            if len(args) >= 3:
                args = (*args[:2], loop, *args[3:])
            else:
                kwargs["loop"] = loop
        result = wrapped(*args, **kwargs)
        runtime.services = api_dependencies.invoker.services
        runtime.plugin_manager.hook.saas_startup(
            saas_config=runtime.settings, services=runtime.services, logger=runtime.logger
        )
        return result

    def shutdown(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            runtime.plugin_manager.hook.saas_shutdown(saas_config=runtime.settings, logger=runtime.logger)
        except Exception:
            # InvokeAI's own shutdown (finishing model installs, stopping the queue) must still run.
            runtime.logger.exception("a saas_shutdown hook failed")
        return wrapped(*args, **kwargs)

    wrapt.wrap_function_wrapper(dependencies_module, "ApiDependencies.initialize", initialize)
    wrapt.wrap_function_wrapper(dependencies_module, "ApiDependencies.shutdown", shutdown)
