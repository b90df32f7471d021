"""The queue status as the signed-in user sees it, with the worker fleet; and the admins' list of workers.

- ``GET /api/v1/queue/{queue_id}/status`` (stock's ``get_queue_status``, same operation id and parameters): the
  ``queue`` part is the user's own (``OwnerQueueStatus``: every count the user's items only, the user's running
  item, and ``items_ahead``, the user's place in the order workers serve), as every queue view in saas mode holds
  only the user's items (``invokeai_saas.routes.queue_views``); administrators get their own too. ``fleet`` adds
  live workers, how many are busy or idle, and whether the processor is paused: counts only, so every signed-in
  user may see them. Where the API process runs graphs itself (no SQS) there is no fleet: ``fleet`` is null and
  ``processor`` is stock's.
- ``GET /api/v1/saas/workers`` (admins): every live worker with its host, device, GPU, tiers, state, current
  item and beats; ``include_stopped`` adds workers that exited or stopped beating.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Path, Query
from invokeai.app.api.auth_dependencies import AdminUser, CurrentUserOrDefault
from invokeai.app.api.dependencies import ApiDependencies
from invokeai.app.api.routers.session_queue import SessionQueueAndProcessorStatus
from pydantic import Field

from invokeai_saas.dispatch.fleet import FleetSummary, WorkerStatus
from invokeai_saas.services.session_processor.session_processor_remote import RemoteSessionProcessor
from invokeai_saas.services.session_queue.owner_views import OwnerQueueStatus, OwnerQueueViews
from invokeai_saas.services.session_queue.session_queue_postgres import PostgresSessionQueue


class SessionQueueProcessorAndFleetStatus(SessionQueueAndProcessorStatus):
    """Stock's queue and processor status (the queue as the user sees it), plus the worker fleet that runs it."""

    queue: OwnerQueueStatus = Field(description="Your items in the queue, and your place in it")
    fleet: FleetSummary | None = Field(
        description="The worker processes that run this deployment's queue; null where the API process runs graphs"
    )


queue_status_router = APIRouter(prefix="/v1/queue", tags=["queue"])
workers_router = APIRouter(prefix="/api/v1/saas", tags=["saas"])


def _processor() -> RemoteSessionProcessor:
    processor = ApiDependencies.invoker.services.session_processor
    if not isinstance(processor, RemoteSessionProcessor):
        raise HTTPException(status_code=503, detail="This server does not dispatch to workers")
    return processor


def _status(queue_id: str, user_id: str) -> SessionQueueProcessorAndFleetStatus:
    services = ApiDependencies.invoker.services
    queue = services.session_queue
    if not isinstance(queue, PostgresSessionQueue):  # the plugin installs this route only on PostgreSQL
        raise HTTPException(status_code=503, detail="The queue status needs the PostgreSQL session queue")
    own = OwnerQueueViews(queue).status(queue_id, user_id)
    processor = services.session_processor
    if not isinstance(processor, RemoteSessionProcessor):
        return SessionQueueProcessorAndFleetStatus(queue=own, processor=processor.get_status(), fleet=None)
    fleet = processor.fleet()  # read once: the processor's status is derived from it
    return SessionQueueProcessorAndFleetStatus(queue=own, processor=processor.status_of(fleet), fleet=fleet)


@queue_status_router.get(
    "/{queue_id}/status",
    operation_id="get_queue_status",
    responses={200: {"model": SessionQueueProcessorAndFleetStatus}},
)
async def get_queue_status(
    current_user: CurrentUserOrDefault,
    queue_id: str = Path(description="The queue id to perform this operation on"),
) -> SessionQueueProcessorAndFleetStatus:
    """Gets the status of your items in the session queue (your counts, your running item, how many items are
    served before your next one), plus the worker fleet."""
    return await asyncio.to_thread(_status, queue_id, current_user.user_id)


@workers_router.get("/workers", operation_id="list_saas_workers", response_model=list[WorkerStatus])
async def list_workers(
    current_user: AdminUser,
    include_stopped: bool = Query(default=False, description="Also list workers that exited or stopped beating"),
) -> list[WorkerStatus]:
    """The worker processes of this deployment (admins only)."""
    processor = _processor()
    return await asyncio.to_thread(processor.registry.list, include_stopped)
