"""An invocation cache whose keys belong to one owner: the queue item's user.

Stock's ``MemoryInvocationCache`` keys an output by the node's inputs alone, which on a single-user box is what
makes a repeated node free. In a shared worker that key is the same for every tenant, so a node with the same inputs
answered with another tenant's output: their image names reached the second tenant's results and events (and the
next node failed on stock's access check), and the GPU work behind a hit was paid by nobody. Here the owner is part
of the key, so a tenant only ever gets back an output of their own runs. The owner is read from ``CACHE_OWNER``,
which the session runner sets around each node (``invokeai_saas.patches.session_runner_cache_owner``); a node run
outside a queue item (no owner) is never cached, since its output could not be attributed to anyone.
"""

from __future__ import annotations

from contextvars import ContextVar

from invokeai.app.invocations.baseinvocation import BaseInvocation, BaseInvocationOutput
from invokeai.app.services.invocation_cache.invocation_cache_memory import MemoryInvocationCache

# The user whose queue item is running the current node, in this thread (None outside a run).
CACHE_OWNER: ContextVar[str | None] = ContextVar("invokeai_saas_cache_owner", default=None)

# The key of a node that has no owner: ``get`` misses and ``save`` stores nothing for it.
_UNOWNED = "invokeai-saas:unowned"


class OwnerScopedInvocationCache(MemoryInvocationCache):
    """``MemoryInvocationCache`` with the running item's owner in every key (see the module docstring)."""

    def create_key(self, invocation: BaseInvocation) -> int | str:  # type: ignore[override]
        owner = CACHE_OWNER.get()
        if owner is None:
            return _UNOWNED
        return hash((owner, invocation.model_dump_json(exclude={"id"}, warnings=False)))

    def get(self, key: int | str) -> BaseInvocationOutput | None:
        if key == _UNOWNED:
            return None
        return super().get(key)

    def save(self, key: int | str, invocation_output: BaseInvocationOutput) -> None:
        if key == _UNOWNED:
            return
        super().save(key, invocation_output)
