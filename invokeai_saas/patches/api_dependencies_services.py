"""Upstream: the name ``InvocationServices`` inside ``invokeai.app.api.dependencies``, which
``ApiDependencies.initialize`` calls with every service as a keyword argument. Checked on 6.14.2.

This is the dependency-swap seam: the call is wrapped (wrapt) so the keyword arguments pass through
the ``saas_swap_services`` hook first, and plugins can replace any service before the ``Invoker``
starts them. Only that module's reference is wrapped; ``InvocationServices`` itself is untouched.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import wrapt

from invokeai_saas.plugins.manager import swap_services
from invokeai_saas.runtime import SaasRuntime


def apply(dependencies_module: ModuleType, runtime: SaasRuntime) -> None:
    def build_services(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args:  # upstream passes keywords only; positional use means the upstream code changed
            raise RuntimeError("invokeai-saas: InvocationServices was called positionally; this InvokeAI is unverified")
        services = dict(kwargs)
        swap_services(services["configuration"], runtime.settings, services, runtime.logger, runtime.plugin_manager)
        return wrapped(**services)

    wrapt.wrap_function_wrapper(dependencies_module, "InvocationServices", build_services)
