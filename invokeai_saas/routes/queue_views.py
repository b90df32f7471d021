"""Stock's queue views under stock's contract, each holding only the signed-in user's items (saas mode).

Stock shows every user's queue items to everybody: other users' items redacted (status, times, device and
sequential ids still visible), ``list_all`` every item of the deployment. Here every view reads the caller's own
items in SQL (``invokeai_saas.services.session_queue.owner_views``) — same paths, operation ids, parameters and
response models, so the studio and generated clients are unchanged:

- ``list_all``, ``item_ids``, ``items_by_ids``, ``item_summaries_by_ids``, ``current``, ``next``: the caller's items;
  an id of someone else's item is skipped as an unknown id is;
- ``GET /i/{item_id}``: the owner's item; someone else's answers 404, the same answer as an id that does not exist
  (stock answers a redacted copy, which confirms the item exists and shows its status and times; a 403 would
  still confirm it exists). Canceling or deleting someone else's item answers the same 404 (stock: 403), from a
  guard before stock's handler (``not_found_for_others``), so those routes stay stock's;
- ``b/{batch_id}/status`` and ``counts_by_destination``: the caller's items (stock counts every user's for admins).

Administrators are users here too: the studio is their own workspace and shows their own items (a fleet view
belongs to the admin routes). They may still fetch any item by id, as they may cancel or delete any item by id in
stock: they need to see what they act on. The status route is ``invokeai_saas.routes.queue_fleet``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query
from invokeai.app.api.auth_dependencies import CurrentUserOrDefault
from invokeai.app.api.dependencies import ApiDependencies
from invokeai.app.api.routers.session_queue import MAX_QUEUE_ITEM_IDS_PER_REQUEST
from invokeai.app.services.session_queue.session_queue_common import (
    BatchStatus,
    ItemIdsResult,
    SessionQueueCountsByDestination,
    SessionQueueItem,
    SessionQueueItemNotFoundError,
    SessionQueueItemSummary,
)
from invokeai.app.services.shared.sqlite.sqlite_common import SQLiteDirection

from invokeai_saas.services.session_queue.owner_views import OwnerQueueViews
from invokeai_saas.services.session_queue.session_queue_postgres import PostgresSessionQueue

queue_views_router = APIRouter(prefix="/v1/queue", tags=["queue"])  # the stock router's own prefix

QueueId = Annotated[str, Path(description="The queue id to perform this operation on")]
ItemIds = Annotated[
    list[int],
    Body(
        embed=True,
        max_length=MAX_QUEUE_ITEM_IDS_PER_REQUEST,
        description="Object containing list of queue item ids to fetch queue items for",
    ),
]


def _queue() -> PostgresSessionQueue:
    queue = ApiDependencies.invoker.services.session_queue
    if not isinstance(queue, PostgresSessionQueue):  # the plugin installs these routes only on PostgreSQL
        raise HTTPException(status_code=503, detail="The queue views need the PostgreSQL session queue")
    return queue


def _views() -> OwnerQueueViews:
    return OwnerQueueViews(_queue())


def _not_found(queue_id: str, item_id: int) -> HTTPException:
    return HTTPException(status_code=404, detail=f"Queue item with id {item_id} not found in queue {queue_id}")


def _visible(queue_item: SessionQueueItem, queue_id: str, user_id: str, is_admin: bool) -> bool:
    return queue_item.queue_id == queue_id and (queue_item.user_id == user_id or is_admin)


def not_found_for_others(
    current_user: CurrentUserOrDefault,
    queue_id: QueueId,
    item_id: int = Path(description="The queue item"),
) -> None:
    """Route guard for stock's cancel and delete of one item: someone else's item answers as a missing one (an
    item of a workflow call has its root's owner, as stock's delete checks)."""
    queue = _queue()
    try:
        queue_item = queue.get_queue_item(item_id=item_id)
        if queue_item.root_item_id is not None:
            queue_item = queue.get_queue_item(item_id=queue_item.root_item_id)
    except SessionQueueItemNotFoundError:
        return  # stock's handler answers its own 404
    if not _visible(queue_item, queue_id, current_user.user_id, current_user.is_admin):
        raise _not_found(queue_id, item_id)


def owner_route_guards() -> list[Any]:
    """The guards of stock's single-item write routes (``invokeai_saas.patches.api_app_route_guards``)."""
    from invokeai_saas.patches.api_app_route_guards import RouteGuard

    return [
        RouteGuard("/v1/queue/{queue_id}/i/{item_id}", frozenset({"DELETE"}), not_found_for_others),
        RouteGuard("/v1/queue/{queue_id}/i/{item_id}/cancel", frozenset({"PUT"}), not_found_for_others),
    ]


@queue_views_router.get(
    "/{queue_id}/list_all", operation_id="list_all_queue_items", responses={200: {"model": list[SessionQueueItem]}}
)
def list_all_queue_items(
    current_user: CurrentUserOrDefault,
    queue_id: QueueId,
    destination: str | None = Query(default=None, description="The destination of queue items to fetch"),
) -> list[SessionQueueItem]:
    """Gets all of your queue items"""
    return _views().list_items(queue_id, current_user.user_id, destination)


@queue_views_router.get(
    "/{queue_id}/item_ids", operation_id="get_queue_item_ids", responses={200: {"model": ItemIdsResult}}
)
def get_queue_item_ids(
    current_user: CurrentUserOrDefault,
    queue_id: QueueId,
    order_dir: Annotated[SQLiteDirection, Query(description="The order of sort")] = SQLiteDirection.Descending,
) -> ItemIdsResult:
    """Gets the ids of your queue items, by creation time"""
    return _queue().get_queue_item_ids(queue_id=queue_id, order_dir=order_dir, user_id=current_user.user_id)


@queue_views_router.post(
    "/{queue_id}/items_by_ids",
    operation_id="get_queue_items_by_item_ids",
    responses={200: {"model": list[SessionQueueItem]}},
)
def get_queue_items_by_item_ids(
    current_user: CurrentUserOrDefault, queue_id: QueueId, item_ids: ItemIds
) -> list[SessionQueueItem]:
    """Gets your queue items among the given ids, in their order (others' and unknown ids are skipped)"""
    return _views().items_by_ids(queue_id, current_user.user_id, item_ids)


@queue_views_router.post(
    "/{queue_id}/item_summaries_by_ids",
    operation_id="get_queue_item_summaries_by_ids",
    responses={200: {"model": list[SessionQueueItemSummary]}},
)
def get_queue_item_summaries_by_ids(
    current_user: CurrentUserOrDefault, queue_id: QueueId, item_ids: ItemIds
) -> list[SessionQueueItemSummary]:
    """Gets lightweight summaries of your queue items among the given ids, in their order"""
    return _views().summaries_by_ids(queue_id, current_user.user_id, item_ids)


@queue_views_router.get(
    "/{queue_id}/current", operation_id="get_current_queue_item", responses={200: {"model": SessionQueueItem | None}}
)
def get_current_queue_item(current_user: CurrentUserOrDefault, queue_id: QueueId) -> SessionQueueItem | None:
    """Gets your queue item that is running (the first, when several run)"""
    return _views().current(queue_id, current_user.user_id)


@queue_views_router.get(
    "/{queue_id}/next", operation_id="get_next_queue_item", responses={200: {"model": SessionQueueItem | None}}
)
def get_next_queue_item(current_user: CurrentUserOrDefault, queue_id: QueueId) -> SessionQueueItem | None:
    """Gets your next pending queue item, without executing it"""
    return _views().next(queue_id, current_user.user_id)


@queue_views_router.get(
    "/{queue_id}/b/{batch_id}/status", operation_id="get_batch_status", responses={200: {"model": BatchStatus}}
)
def get_batch_status(
    current_user: CurrentUserOrDefault,
    queue_id: QueueId,
    batch_id: str = Path(description="The batch to get the status of"),
) -> BatchStatus:
    """Gets the status of one of your batches"""
    return _queue().get_batch_status(queue_id=queue_id, batch_id=batch_id, user_id=current_user.user_id)


@queue_views_router.get(
    "/{queue_id}/counts_by_destination",
    operation_id="counts_by_destination",
    responses={200: {"model": SessionQueueCountsByDestination}},
)
def counts_by_destination(
    current_user: CurrentUserOrDefault,
    queue_id: str = Path(description="The queue id to query"),
    destination: str = Query(description="The destination to query"),
) -> SessionQueueCountsByDestination:
    """Gets the counts of your queue items by destination"""
    return _queue().get_counts_by_destination(queue_id=queue_id, destination=destination, user_id=current_user.user_id)


@queue_views_router.get(
    "/{queue_id}/i/{item_id}",
    operation_id="get_queue_item",
    responses={200: {"model": SessionQueueItem}},
    response_model_exclude_none=True,
)
def get_queue_item(
    current_user: CurrentUserOrDefault,
    queue_id: QueueId,
    item_id: int = Path(description="The queue item to get"),
) -> SessionQueueItem:
    """Gets one of your queue items (administrators: any item)"""
    try:
        queue_item = _queue().get_queue_item(item_id=item_id)
    except SessionQueueItemNotFoundError:
        raise _not_found(queue_id, item_id) from None
    if not _visible(queue_item, queue_id, current_user.user_id, current_user.is_admin):
        raise _not_found(queue_id, item_id)
    return queue_item
