"""The saas runtime of this process: settings, plugin manager, and the running InvokeAI services.

Created once by activation (inside ``invokeai-web``) and read by the saas routes. Kept separate from
activation so routes and plugins never import the patching machinery.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pluggy

from invokeai_saas.config import SaasSettings

if TYPE_CHECKING:
    from invokeai.app.services.invocation_services import InvocationServices

    from invokeai_saas.health.probes import BackendProbe


@dataclass
class SaasRuntime:
    settings: SaasSettings
    plugin_manager: pluggy.PluginManager
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("invokeai_saas"))
    services: InvocationServices | None = None
    _probes: list[BackendProbe] | None = None

    def health_probes(self) -> list[BackendProbe]:
        """Stock fallbacks first, then the plugins' probes (later ones win). Built once services exist,
        so clients the probes hold (connection pools) are reused across health requests."""
        if self._probes is not None:
            return self._probes
        from invokeai_saas.health.stock_probes import stock_probes

        probes = stock_probes(self.services)
        for plugin_probes in self.plugin_manager.hook.saas_health_probes(
            saas_config=self.settings, services=self.services
        ):
            probes.extend(plugin_probes or [])
        if self.services is not None:
            self._probes = probes
        return probes


_runtime: SaasRuntime | None = None


def set_runtime(runtime: SaasRuntime | None) -> None:
    global _runtime
    _runtime = runtime


def current_runtime() -> SaasRuntime:
    if _runtime is None:
        raise RuntimeError("saas mode is not active in this process")
    return _runtime


@dataclass(frozen=True)
class WorkerRole:
    """Set by ``invokeai-saas worker`` before InvokeAI's services are built: the plugins then build a worker's
    services (the claiming session queue) instead of an API process's (the dispatching one)."""

    worker_id: str
    tiers: tuple[int, ...]


_worker_role: WorkerRole | None = None


def set_worker_role(role: WorkerRole | None) -> None:
    global _worker_role
    _worker_role = role


def worker_role() -> WorkerRole | None:
    return _worker_role
