"""A third-party plugin as a real distribution would ship it: found through the ``invokeai_saas``
entry-point group (see the .dist-info beside this file), it swaps one InvokeAI service."""

from __future__ import annotations

from logging import Logger
from typing import Any

from invokeai.app.services.client_state_persistence.client_state_persistence_base import ClientStatePersistenceABC

from invokeai_saas.plugins import hookimpl

MARKER_KEY = "saas-test-plugin"
MARKER_VALUE = "swapped by the entry-point plugin"


class MarkedClientState(ClientStatePersistenceABC):
    """Delegates to the stock service, except for one key whose value proves the swap happened."""

    def __init__(self, inner: ClientStatePersistenceABC) -> None:
        self._inner = inner

    def start(self, invoker: Any) -> None:
        start = getattr(self._inner, "start", None)
        if callable(start):
            start(invoker)

    def set_by_key(self, user_id: str, key: str, value: str) -> str:
        return self._inner.set_by_key(user_id, key, value)

    def get_by_key(self, user_id: str, key: str) -> str | None:
        if key == MARKER_KEY:
            return MARKER_VALUE
        return self._inner.get_by_key(user_id, key)

    def get_keys_by_prefix(self, user_id: str, prefix: str) -> list[str]:
        return self._inner.get_keys_by_prefix(user_id, prefix)

    def delete_by_key(self, user_id: str, key: str) -> None:
        self._inner.delete_by_key(user_id, key)

    def delete(self, user_id: str) -> None:
        self._inner.delete(user_id)


@hookimpl
def saas_swap_services(invokeai_config: Any, saas_config: Any, services: dict[str, Any], logger: Logger) -> None:
    services["client_state_persistence"] = MarkedClientState(services["client_state_persistence"])
