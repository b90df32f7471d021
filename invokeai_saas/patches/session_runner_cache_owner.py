"""Upstream: ``invokeai.app.services.session_processor.session_processor_default.DefaultSessionRunner.run_node``.
Checked on 6.14.2: ``run_node(self, invocation, queue_item)`` runs one node on the runner's own thread, and every
cache look-up (``BaseInvocation.invoke_internal`` and the nodes that override it) happens inside it.

The invocation cache is asked for a key with the node alone (``create_key(invocation)``), so it cannot tell whose
run the node belongs to. Wrapping ``run_node`` sets a context variable to the queue item's ``user_id`` for the
duration of the node, which an owner-aware cache reads; the variable is handed in by the caller, so this module
needs nothing but the standard library, wrapt and InvokeAI.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import wrapt
from invokeai.app.services.session_processor import session_processor_default

_APPLIED = "_invokeai_saas_cache_owner_applied"


def apply(owner: ContextVar[str | None]) -> None:
    """Wrap ``run_node`` once per process (a second call changes nothing)."""
    cls = session_processor_default.DefaultSessionRunner
    if vars(cls).get(_APPLIED, False):
        return

    def run_node(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        queue_item = kwargs["queue_item"] if "queue_item" in kwargs else args[1]
        token = owner.set(str(queue_item.user_id))
        try:
            return wrapped(*args, **kwargs)
        finally:
            owner.reset(token)

    wrapt.wrap_function_wrapper(cls, "run_node", run_node)
    setattr(cls, _APPLIED, True)
