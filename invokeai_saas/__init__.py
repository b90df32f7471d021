"""invokeai-saas: run a stock InvokeAI install as a hosted, multi-tenant service.

This module is imported at every interpreter start (through the activation ``.pth`` file), so it
must stay free of imports: the public helpers are resolved lazily by ``__getattr__``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "swap_services", "get_plugin_manager", "SaasSettings", "load_settings"]


def __getattr__(name: str) -> object:
    if name in ("swap_services", "get_plugin_manager"):
        from invokeai_saas.plugins import manager

        return getattr(manager, name)
    if name in ("SaasSettings", "load_settings"):
        from invokeai_saas import config

        return getattr(config, name)
    raise AttributeError(f"module 'invokeai_saas' has no attribute {name!r}")
