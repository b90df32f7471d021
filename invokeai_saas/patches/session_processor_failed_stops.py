"""Upstream: ``invokeai.app.services.session_processor.session_processor_default.DefaultSessionProcessor
._on_queue_item_status_changed``. Checked on 6.14.2: an async handler of ``queue_item_status_changed``, registered
on the event bus by ``start()``; it sets the cancel event of the processor thread running the item only when the new
status is ``canceled`` (for ``failed`` and ``completed`` it just polls).

The spending cap (``invokeai_saas.credits.cap``) stops a running item by failing it from another thread or process
(``OutOfCredits``, ``RunTimeLimitExceeded``); with stock's handler the run would go on to its end. Wrapping the
handler sets the thread's cancel event as well when the item failed with one of the given error types, so the
runner stops at its next cancellation check (between nodes, or a node's own check) exactly as for a cancel. Other
failures are left alone: they are the run's own (the runner failed the item itself and is ending anyway).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import wrapt
from invokeai.app.services.session_processor import session_processor_default

_APPLIED = "_invokeai_saas_failed_stops_applied"


def apply(error_types: Iterable[str]) -> None:
    """Wrap the handler once per process (a second call changes nothing); before the processor starts, which is
    when it binds the handler to the event bus."""
    cls = session_processor_default.DefaultSessionProcessor
    if vars(cls).get(_APPLIED, False):
        return
    stopping = frozenset(error_types)

    async def on_status_changed(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        result = await wrapped(*args, **kwargs)
        event = (kwargs["event"] if "event" in kwargs else args[0])[1]
        if event.status == "failed" and event.error_type in stopping:
            for worker in getattr(instance, "_workers", []):
                queue_item = worker.queue_item  # bound once: the worker thread may clear it (as stock's handler)
                if queue_item is not None and queue_item.item_id == event.item_id:
                    worker.cancel_event.set()
        return result

    wrapt.wrap_function_wrapper(cls, "_on_queue_item_status_changed", on_status_changed)
    setattr(cls, _APPLIED, True)
