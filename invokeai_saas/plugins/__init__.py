"""The pluggy plugin system: hookspecs (the plugin author's manual), the manager, built-in plugins."""

from invokeai_saas.plugins.markers import PROJECT_NAME, hookimpl, hookspec

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]
