"""``POST /api/v1/queue/{queue_id}/enqueue_batch`` under stock's contract, with credit refusals as HTTP 402.

Stock's route turns every exception into HTTP 500 with the exception's text in the detail, so a refusal raised
inside the queue (where the hold must happen: in the transaction that inserts the items) would reach the user as a
server error. This override is stock's route (same operation id, body, parameters, response model, auth) that
answers ``InsufficientCredits`` with 402, a plan limit with its 403 or 429, and a message saying how many credits
are needed and how to get more, and any other failure with a 500 that carries no internals (the cause is logged)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Body, HTTPException, Path, status
from invokeai.app.api.auth_dependencies import CurrentUserOrDefault
from invokeai.app.api.dependencies import ApiDependencies
from invokeai.app.api.routers.image_move_maintenance import assert_image_move_maintenance_inactive
from invokeai.app.services.session_queue.session_queue_common import Batch, EnqueueBatchResult

from invokeai_saas.credits.ledger import InsufficientCredits
from invokeai_saas.credits.limits import PlanLimitExceeded

logger = logging.getLogger("invokeai_saas.credits")

enqueue_router = APIRouter(prefix="/v1/queue", tags=["queue"])


@enqueue_router.post(
    "/{queue_id}/enqueue_batch",
    operation_id="enqueue_batch",
    responses={
        201: {"model": EnqueueBatchResult},
        status.HTTP_402_PAYMENT_REQUIRED: {"description": "The balance cannot cover the batch; nothing was enqueued"},
        status.HTTP_403_FORBIDDEN: {"description": "The plan does not allow this batch (size, resolution, model)"},
        status.HTTP_429_TOO_MANY_REQUESTS: {"description": "The plan's queue size is reached"},
    },
)
async def enqueue_batch(
    current_user: CurrentUserOrDefault,
    queue_id: str = Path(description="The queue id to perform this operation on"),
    batch: Batch = Body(description="Batch to process"),  # noqa: B008 - FastAPI's idiom, as upstream
    prepend: bool = Body(default=False, description="Whether or not to prepend this batch in the queue"),
) -> EnqueueBatchResult:
    """Processes a batch and enqueues the output graphs for execution for the current user, holding the credits
    each item is estimated to cost (refused with 402, enqueuing nothing, when the balance cannot cover them)."""
    await asyncio.to_thread(assert_image_move_maintenance_inactive)
    try:
        return await ApiDependencies.invoker.services.session_queue.enqueue_batch(
            queue_id=queue_id, batch=batch, prepend=prepend, user_id=current_user.user_id
        )
    except PlanLimitExceeded as e:
        raise HTTPException(status_code=e.status_code, detail=e.detail) from e
    except InsufficientCredits as e:
        raise HTTPException(status_code=status.HTTP_402_PAYMENT_REQUIRED, detail=str(e)) from e
    except Exception as e:
        logger.exception("enqueue_batch failed")
        raise HTTPException(status_code=500, detail="Unexpected error while enqueuing batch") from e
