"""The worker fleet in the API: the queue status route reports it, and admins list the workers.

- ``GET /api/v1/queue/{queue_id}/status`` (stock's ``get_queue_status``, same operation id, parameters and fields)
  adds ``fleet``: live workers, how many are busy or idle, and whether the processor is paused. Counts only, so
  every signed-in user may see them, as they see the queue's global counts.
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


class SessionQueueProcessorAndFleetStatus(SessionQueueAndProcessorStatus):
    """Stock's queue and processor status, plus the worker fleet that runs the queue."""

    fleet: FleetSummary = Field(description="The worker processes that run this deployment's queue")


queue_status_router = APIRouter(prefix="/v1/queue", tags=["queue"])
workers_router = APIRouter(prefix="/api/v1/saas", tags=["saas"])


def _processor() -> RemoteSessionProcessor:
    processor = ApiDependencies.invoker.services.session_processor
    if not isinstance(processor, RemoteSessionProcessor):
        raise HTTPException(status_code=503, detail="This server does not dispatch to workers")
    return processor


def _status(queue_id: str, user_id: str, is_admin: bool) -> SessionQueueProcessorAndFleetStatus:
    processor = _processor()
    queue = ApiDependencies.invoker.services.session_queue.get_queue_status(
        queue_id, user_id=user_id, is_admin=is_admin
    )
    fleet = processor.fleet()  # read once: the processor's status is derived from it
    return SessionQueueProcessorAndFleetStatus(queue=queue, processor=processor.status_of(fleet), fleet=fleet)


@queue_status_router.get(
    "/{queue_id}/status",
    operation_id="get_queue_status",
    responses={200: {"model": SessionQueueProcessorAndFleetStatus}},
)
async def get_queue_status(
    current_user: CurrentUserOrDefault,
    queue_id: str = Path(description="The queue id to perform this operation on"),
) -> SessionQueueProcessorAndFleetStatus:
    """Gets the status of the session queue (as stock: global counts, plus the user's own pending/in_progress
    counts; the current item's identifiers only for its owner or an admin), plus the worker fleet."""
    return await asyncio.to_thread(_status, queue_id, current_user.user_id, current_user.is_admin)


@workers_router.get("/workers", operation_id="list_saas_workers", response_model=list[WorkerStatus])
async def list_workers(
    current_user: AdminUser,
    include_stopped: bool = Query(default=False, description="Also list workers that exited or stopped beating"),
) -> list[WorkerStatus]:
    """The worker processes of this deployment (admins only)."""
    processor = _processor()
    return await asyncio.to_thread(processor.registry.list, include_stopped)
