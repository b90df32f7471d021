"""The plugin manager, and ``swap_services``: the dependency-swap hook as a plain function.

``swap_services`` is public API: test suites (ours and third parties' conformance suites) call it to
build saas services without starting a server::

    from invokeai_saas import load_settings, swap_services

    services = {...}  # the keyword arguments for InvocationServices, e.g. from your own fixtures
    swap_services(invokeai_config, load_settings(database_url=...), services)
    # services["image_records"] is now whatever the enabled plugins installed
"""

from __future__ import annotations

import importlib
import logging
from logging import Logger
from typing import TYPE_CHECKING, Any

import pluggy

from invokeai_saas.plugins import hookspecs
from invokeai_saas.plugins.markers import PROJECT_NAME

if TYPE_CHECKING:
    from invokeai.app.services.config.config_default import InvokeAIAppConfig

    from invokeai_saas.config import SaasSettings

BUILTIN_PLUGINS: tuple[str, ...] = (
    "invokeai_saas.plugins.builtin.core",
    "invokeai_saas.plugins.builtin.postgres",
    "invokeai_saas.plugins.builtin.s3",
    "invokeai_saas.plugins.builtin.sqs",
    # After postgres and sqs: it configures the session queue they build.
    "invokeai_saas.plugins.builtin.tenant_queue",
    # After postgres and sqs: it extends the session queue they build and the processor that runs graphs.
    "invokeai_saas.plugins.builtin.credits",
    "invokeai_saas.plugins.builtin.api_keys",
    "invokeai_saas.plugins.builtin.redis_events",
    "invokeai_saas.plugins.builtin.stripe_billing",
)
"""Built-in plugins in the order their hooks are called; registered under their last dotted name."""


class SaasPluginError(RuntimeError):
    """A plugin could not be loaded; the message names it."""


def builtin_name(module_path: str) -> str:
    return module_path.rsplit(".", 1)[-1]


def get_plugin_manager(saas_config: SaasSettings) -> pluggy.PluginManager:
    """A manager with the hookspecs, the third-party entry-point plugins and the built-ins, minus
    ``saas_config.disabled_plugins``. Entry points are registered first so that they are called last."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in saas_config.disabled_plugins:
        pm.set_blocked(name)
    try:
        pm.load_setuptools_entrypoints(PROJECT_NAME)
    except Exception as e:
        raise SaasPluginError(f"a plugin in the '{PROJECT_NAME}' entry-point group failed to load: {e}") from e
    for module_path in reversed(BUILTIN_PLUGINS):
        name = builtin_name(module_path)
        if pm.is_blocked(name):
            continue
        pm.register(importlib.import_module(module_path), name=name)
    return pm


def swap_services(
    invokeai_config: InvokeAIAppConfig,
    saas_config: SaasSettings,
    services: dict[str, Any],
    logger: Logger | None = None,
    plugin_manager: pluggy.PluginManager | None = None,
) -> dict[str, Any]:
    """Run the dependency-swap hook over ``services`` (the ``InvocationServices`` keyword arguments).

    Mutates and returns ``services``. Works outside any server; pass ``plugin_manager`` to use a
    manager you built (e.g. with extra plugins registered by hand), else one is built from config.
    """
    pm = plugin_manager if plugin_manager is not None else get_plugin_manager(saas_config)
    pm.hook.saas_swap_services(
        invokeai_config=invokeai_config,
        saas_config=saas_config,
        services=services,
        logger=logger if logger is not None else logging.getLogger("invokeai_saas"),
    )
    return services
