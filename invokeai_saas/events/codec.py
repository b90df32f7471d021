"""InvokeAI event objects to bytes and back, for the trip through Redis.

An event travels as its ``__event_name__``, the id of the process that emitted it, and the payload exactly as
stock's Socket.IO handlers would serialise it (``model_dump(mode="json")``). The receiving process rebuilds the
same pydantic class from that payload, so stock's routing there sees an object equal to the one the emitter
built: the same fields drive the same rooms and the same redacted copies.

Classes are found by walking ``EventBase``'s subclasses rather than through fastapi_events' payload registry,
because server-internal events (``user_access_changed``) are deliberately left out of that registry and must
still reach every process: they re-authorise open sockets and cancel a deactivated user's running items.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from invokeai.app.services.events.events_common import EventBase

FORMAT_VERSION = 1
"""Bumped when the envelope changes, so a process of a newer release can tell an older one's messages apart."""


class UndecodableEvent(ValueError):
    """A message that is not an event this process knows (another release, a custom node not installed here)."""


_classes: dict[str, type[EventBase]] = {}
_classes_lock = threading.Lock()


def _walk(cls: type[EventBase], found: dict[str, type[EventBase]]) -> None:
    for subclass in cls.__subclasses__():
        # The name must be the subclass's own: an intermediate base (QueueEventBase...) only annotates it.
        name = subclass.__dict__.get("__event_name__")
        if isinstance(name, str):
            found.setdefault(name, subclass)
        _walk(subclass, found)


def event_class(name: str) -> type[EventBase] | None:
    """The event class named ``name``, looked up again on a miss so classes imported later are found too."""
    cls = _classes.get(name)
    if cls is None:
        with _classes_lock:
            found: dict[str, type[EventBase]] = {}
            _walk(EventBase, found)
            _classes.update(found)
            cls = _classes.get(name)
    return cls


def encode_event(event: EventBase, origin: str) -> bytes:
    """The wire form of ``event``, tagged with the emitting process's ``origin``."""
    envelope = {
        "v": FORMAT_VERSION,
        "origin": origin,
        "name": event.__event_name__,
        "payload": event.model_dump(mode="json"),
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def decode_event(data: bytes | str) -> tuple[str, EventBase]:
    """``(origin, event)`` from the wire form; raises ``UndecodableEvent`` for anything else."""
    try:
        envelope: Any = json.loads(data)
    except ValueError as e:
        raise UndecodableEvent(f"not JSON ({e})") from None
    if not isinstance(envelope, dict) or envelope.get("v") != FORMAT_VERSION:
        raise UndecodableEvent("not an invokeai-saas event envelope of this version")
    name, origin, payload = envelope.get("name"), envelope.get("origin"), envelope.get("payload")
    if not isinstance(name, str) or not isinstance(origin, str) or not isinstance(payload, dict):
        raise UndecodableEvent("envelope lacks name, origin or payload")
    cls = event_class(name)
    if cls is None:
        raise UndecodableEvent(f"unknown event {name!r}")
    try:
        return origin, cls.model_validate(payload)
    except ValueError as e:
        raise UndecodableEvent(f"payload of {name!r} does not validate: {e}") from None
