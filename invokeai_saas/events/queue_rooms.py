"""Who gets a queue event in saas mode: the owner of the item it is about, and nobody else.

Stock (``invokeai.app.api.sockets.SocketIO._handle_queue_event``) sends each queue event in full to its owner and
to every administrator, and a redacted copy to everybody else in the queue room (status, times, item ids: what
other users' queue lists were built from). In saas mode every queue view holds only the user's own items
(``invokeai_saas.routes.queue_views``), so the redacted copies have nothing left to refresh and only tell one
tenant about another's activity; the administrators' copies would flood every admin's studio with the whole
deployment's traffic (their lists show their own items too; a fleet view belongs to the admin routes). So:

- an event about items goes to the room of each owner (``user:{id}``), each owner getting only their own item ids
  in a bulk event (canceled, retried);
- an event that names no owner goes to the queue room as stock sends it: an unscoped clear (an administrator's,
  which removed everyone's items, so everyone refreshes), and any future identity-free event.

Every API process routes the events it replays from the others the same way (``invokeai_saas.events.relay``).
"""

from __future__ import annotations

import logging
from typing import Any

from invokeai.app.services.events.events_common import (
    FastAPIEvent,
    QueueClearedEvent,
    QueueEventBase,
    QueueItemsCanceledEvent,
    QueueItemsRetriedEvent,
)

logger = logging.getLogger("invokeai_saas.events")

# Bulk events: the field with every item id, and the field with the ids per owner.
_BULK_FIELDS: dict[type[QueueEventBase], tuple[str, str]] = {
    QueueItemsCanceledEvent: ("canceled_item_ids", "canceled_item_ids_by_user"),
    QueueItemsRetriedEvent: ("retried_item_ids", "retried_item_ids_by_user"),
}


def _owners(event: QueueEventBase) -> list[str]:
    """The users an event is about: ``user_id`` and/or ``user_ids`` (bulk events), in order, once each."""
    owners = list(getattr(event, "user_ids", None) or [])
    single = getattr(event, "user_id", None)
    if single is not None:
        owners.append(single)
    return list(dict.fromkeys(str(owner) for owner in owners))


def owner_copies(event: QueueEventBase) -> list[tuple[str | None, QueueEventBase]]:
    """``(owner, event as that owner gets it)`` for each recipient; owner None: the whole queue room."""
    if isinstance(event, QueueClearedEvent) and event.user_id is None:
        return [(None, event)]
    owners = _owners(event)
    if not owners:
        return [(None, event)]
    fields = next((fields for kind, fields in _BULK_FIELDS.items() if isinstance(event, kind)), None)
    if fields is None:
        return [(owner, event) for owner in owners]
    ids_field, by_user_field = fields
    by_user: dict[str, list[int]] = getattr(event, by_user_field) or {}
    copies: list[tuple[str | None, QueueEventBase]] = []
    for owner in owners:
        own_ids = by_user.get(owner, [])
        update = {ids_field: own_ids, "user_ids": [owner], by_user_field: {owner: own_ids}}
        copies.append((owner, event.model_copy(update=update)))
    return copies


async def route_queue_event(sio: Any, event: FastAPIEvent[QueueEventBase]) -> None:
    """Emit ``event`` on the python-socketio server ``sio`` to its owners' rooms only (see the module docstring).
    Never raises: like stock's handler, a failure is logged rather than ending the dispatch."""
    event_name, event_data = event
    try:
        for owner, copy in owner_copies(event_data):
            room = event_data.queue_id if owner is None else f"user:{owner}"
            await sio.emit(event=event_name, data=copy.model_dump(mode="json"), room=room)
    except Exception:
        logger.exception(f"Error routing queue event {event_name}")
