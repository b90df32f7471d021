"""Probes for InvokeAI's own implementations, used for every backend no plugin has taken over.

They go through the public service interfaces, so the probe exercises whatever implementation is
actually serving (a query on the real database, a write in the real outputs folder).
"""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING

from invokeai_saas.health.probes import BackendProbe

if TYPE_CHECKING:
    from invokeai.app.services.invocation_services import InvocationServices


class ServicesNotReady(RuntimeError):
    """The InvokeAI services have not been started yet (the server is still starting up)."""


def _require(services: InvocationServices | None) -> InvocationServices:
    if services is None:
        raise ServicesNotReady()
    return services


def stock_probes(services: InvocationServices | None) -> list[BackendProbe]:
    def database() -> str:
        admins = _require(services).users.count_admins()
        return "query ok" if admins else "query ok; no administrator yet"

    def object_store() -> str:
        folder = _require(services).configuration.outputs_path
        if folder is None:
            raise ServicesNotReady()
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".saas-health-", delete=True) as f:
            f.write(b"ok")
            f.flush()
            os.fsync(f.fileno())
        return "outputs folder writable"

    def queue() -> str:
        s = _require(services)
        s.session_queue.get_queue_status("default")
        status = s.session_processor.get_status()
        return "processor started" if status.is_started else "processor stopped"

    def events() -> str:
        _require(services)
        return "in-process"

    def billing() -> str:
        return "billing is not configured"

    return [
        BackendProbe("database", "sqlite", database),
        BackendProbe("object_store", "disk", object_store),
        BackendProbe("queue", "in-process", queue),
        BackendProbe("events", "in-process", events),
        BackendProbe("billing", "disabled", billing),
    ]
