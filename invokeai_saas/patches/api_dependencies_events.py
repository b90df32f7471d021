"""Upstream: the name ``FastAPIEventService`` inside ``invokeai.app.api.dependencies``, which
``ApiDependencies.initialize`` calls once to build the process's event service. Checked on 6.14.2.

Stock hands that one object to ``DownloadQueueService`` and ``ModelManagerService.build_model_manager`` before it
reaches ``InvocationServices``, so replacing ``services["events"]`` in the dependency-swap hook would leave model
download, install and load events on the unpublished original. Wrapping the constructor's name makes the one
object every service holds the Redis-publishing one (``invokeai_saas.events.events_redis``), with stock's own
service inside it for in-process delivery. Only that module's reference is wrapped; the class is untouched.
Applied only when ``redis_url`` is set and the ``redis_events`` plugin is enabled.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import wrapt

from invokeai_saas.events.events_redis import build_redis_event_service
from invokeai_saas.runtime import SaasRuntime


def apply(dependencies_module: ModuleType, runtime: SaasRuntime) -> None:
    def build_events(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return build_redis_event_service(runtime.settings, wrapped(*args, **kwargs))

    wrapt.wrap_function_wrapper(dependencies_module, "FastAPIEventService", build_events)
