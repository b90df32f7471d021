"""Upstream: ``invokeai.app.services.events.events_fastapievents.FastAPIEventService.dispatch``. Checked on 6.14.2.

Every event an API process delivers to its sockets passes through this one method: those it emits itself and,
with the Redis relay, those replayed from workers and other API processes (``RedisEventService`` hands both to the
stock service inside it). Wrapping it takes ``error_traceback`` out of every event before any socket sees it
(``invokeai_saas.routes.tracebacks``); the Redis bus between processes still carries the whole event.
"""

from __future__ import annotations

from typing import Any

import wrapt
from invokeai.app.services.events import events_fastapievents

from invokeai_saas.routes.tracebacks import without_traceback

_APPLIED = "_invokeai_saas_tracebacks_applied"


def apply() -> None:
    """Wrap the class's ``dispatch`` once per process (a second call changes nothing)."""
    cls = events_fastapievents.FastAPIEventService
    if vars(cls).get(_APPLIED, False):
        return

    def dispatch(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args:
            args = (without_traceback(args[0]), *args[1:])
        elif "event" in kwargs:
            kwargs = {**kwargs, "event": without_traceback(kwargs["event"])}
        return wrapped(*args, **kwargs)

    wrapt.wrap_function_wrapper(cls, "dispatch", dispatch)
    setattr(cls, _APPLIED, True)
