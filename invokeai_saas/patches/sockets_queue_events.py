"""Upstream: ``invokeai.app.api.sockets.SocketIO._handle_queue_event``, the routing of every queue event (status
changes, invocation events, enqueues, cancels, retries, clears) to Socket.IO rooms. Checked on 6.14.2.

Stock sends each event in full to the owner and the administrators and a redacted copy to the rest of the queue
room. In saas mode each queue event goes to its owner only (``invokeai_saas.events.queue_rooms`` says why). The
method is replaced on the class, before ``invokeai.app.api_app`` builds its ``SocketIO`` (whose ``__init__``
registers the bound method with the event bus): activation applies this when ``invokeai.app.api.dependencies`` is
imported, which ``api_app`` does first. Applied once per process; only with the tenant_queue plugin enabled.
"""

from __future__ import annotations

from typing import Any

from invokeai_saas.events.queue_rooms import route_queue_event

_APPLIED = "_invokeai_saas_queue_rooms_applied"


def apply() -> None:
    from invokeai.app.api import sockets

    cls = sockets.SocketIO
    if vars(cls).get(_APPLIED, False):
        return

    async def _handle_queue_event(self: Any, event: Any) -> None:
        """Queue events to their owners' rooms only (saas mode: ``invokeai_saas.events.queue_rooms``)."""
        await route_queue_event(self._sio, event)

    cls._handle_queue_event = _handle_queue_event  # type: ignore[method-assign]
    setattr(cls, _APPLIED, True)
