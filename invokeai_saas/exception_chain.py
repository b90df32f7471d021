"""Finding the cause of a stock route's error response.

Stock routes turn exceptions into ``HTTPException(500, ...)`` (or let them escape), so a saas-level cause — an
object-store outage, a credit or plan refusal — reaches the app's exception handlers only inside the chain:
``HTTPException.__context__`` → the service's exception → its ``__cause__``. The handlers that answer such causes
properly (``invokeai_saas.storage.http_errors``, ``invokeai_saas.credits.http_errors``) walk it with this.
"""

from __future__ import annotations

from typing import TypeVar

_MAX_CHAIN = 64  # exceptions inspected per chain: chains are short; this only bounds a pathological one

E = TypeVar("E", bound=BaseException)


def find_in_chain(error: BaseException | None, kind: type[E]) -> E | None:
    """The first ``kind`` in ``error``'s cause/context chain (and exception groups), if any."""
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending and len(seen) < _MAX_CHAIN:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend((current.__context__, current.__cause__))
    return None
