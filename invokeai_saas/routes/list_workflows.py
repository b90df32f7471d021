"""``GET /api/v1/workflows/`` in a bounded number of queries.

Stock lists a page and then fetches every listed workflow again, one query per row, to compute its
call compatibility. This replacement keeps stock's contract (path, operation id, parameters, response,
paging and the ``callable`` filter, copied from InvokeAI 6.14.2's ``list_workflows``) and fetches the
page's documents with one statement (``get_by_ids`` of the PostgreSQL workflow records).

One change to the contract: ``page`` must be at least 0 and ``per_page`` at least 1 (422 otherwise). Stock takes
any integer, and ``per_page=-1`` answered every workflow at once while a negative page reached the database as a
negative ``OFFSET`` (a 500). Leaving ``per_page`` out still lists all, as stock.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Query
from invokeai.app.api.auth_dependencies import CurrentUserOrDefault
from invokeai.app.api.dependencies import ApiDependencies
from invokeai.app.services.shared.pagination import PaginatedResults
from invokeai.app.services.shared.sqlite.sqlite_common import SQLiteDirection
from invokeai.app.services.shared.workflow_call_compatibility import get_workflow_call_compatibility
from invokeai.app.services.workflow_records.workflow_records_common import (
    WorkflowCategory,
    WorkflowRecordDTO,
    WorkflowRecordListItemWithThumbnailDTO,
    WorkflowRecordOrderBy,
)


def _thumbnail_urls(thumbnails: Any, records: list[WorkflowRecordDTO]) -> dict[str, str | None]:
    """Without a per-row query when the thumbnail service can use the records already read: the S3 storage
    answers a whole page from one index query, the record-aware disk storage from the file system."""
    if hasattr(thumbnails, "get_urls_for_records"):
        return thumbnails.get_urls_for_records(records)
    if hasattr(thumbnails, "get_url_for_record"):
        return {record.workflow_id: thumbnails.get_url_for_record(record) for record in records}
    return {record.workflow_id: thumbnails.get_url(record.workflow_id) for record in records}


list_workflows_router = APIRouter(prefix="/v1/workflows", tags=["workflows"])  # the stock router's own prefix


@list_workflows_router.get(
    "/",
    operation_id="list_workflows",
    responses={200: {"model": PaginatedResults[WorkflowRecordListItemWithThumbnailDTO]}},
)
def list_workflows(
    current_user: CurrentUserOrDefault,
    page: int = Query(default=0, ge=0, description="The page to get"),  # noqa: B008 - FastAPI's idiom, as upstream
    per_page: int | None = Query(default=None, ge=1, description="The number of workflows per page"),  # noqa: B008
    order_by: WorkflowRecordOrderBy = Query(  # noqa: B008
        default=WorkflowRecordOrderBy.Name, description="The attribute to order by"
    ),
    direction: SQLiteDirection = Query(  # noqa: B008
        default=SQLiteDirection.Ascending, description="The direction to order by"
    ),
    categories: list[WorkflowCategory] | None = Query(  # noqa: B008
        default=None, description="The categories of workflow to get"
    ),
    tags: list[str] | None = Query(default=None, description="The tags of workflow to get"),  # noqa: B008
    query: str | None = Query(  # noqa: B008
        default=None, description="The text to query by (matches name and description)"
    ),
    has_been_opened: bool | None = Query(  # noqa: B008
        default=None, description="Whether to include/exclude recent workflows"
    ),
    is_public: bool | None = Query(default=None, description="Filter by public/shared status"),  # noqa: B008
    is_callable: bool | None = Query(  # noqa: B008
        default=None,
        alias="callable",
        description="Filter by whether workflows are callable by call_saved_workflow",
    ),
) -> PaginatedResults[WorkflowRecordListItemWithThumbnailDTO]:
    """Gets a page of workflows"""
    services: Any = ApiDependencies.invoker.services
    config = services.configuration

    # As stock: in multiuser mode, non-admins see their own user-category workflows unless asking for shared ones.
    user_id_filter: str | None = None
    if config.multiuser and not current_user.is_admin:
        has_user_category = not categories or WorkflowCategory.User in categories
        if has_user_category and is_public is not True:
            user_id_filter = current_user.user_id

    workflows = services.workflow_records.get_many(
        order_by=order_by,
        direction=direction,
        page=page,
        per_page=None if is_callable is not None else per_page,
        query=query,
        categories=categories,
        tags=tags,
        has_been_opened=has_been_opened,
        user_id=user_id_filter,
        is_public=is_public,
    )
    full_workflows = services.workflow_records.get_by_ids([w.workflow_id for w in workflows.items])
    thumbnail_urls = _thumbnail_urls(services.workflow_thumbnails, list(full_workflows.values()))
    items: list[WorkflowRecordListItemWithThumbnailDTO] = []
    skipped_missing_workflows = 0
    for workflow in workflows.items:
        full_workflow = full_workflows.get(workflow.workflow_id)
        if full_workflow is None:  # deleted between the page query and this one, as stock tolerates
            skipped_missing_workflows += 1
            continue
        compatibility = get_workflow_call_compatibility(
            workflow=full_workflow.workflow.model_dump(),
            workflow_id=full_workflow.workflow_id,
            services=services,
            user_id=current_user.user_id,
            maximum_children=config.max_queue_size,
            resolve_generator_items=False,
        )
        if is_callable is not None and compatibility.is_callable != is_callable:
            continue
        items.append(
            WorkflowRecordListItemWithThumbnailDTO(
                thumbnail_url=thumbnail_urls.get(full_workflow.workflow_id),
                call_saved_workflow_compatibility=compatibility,
                **workflow.model_dump(),
            )
        )

    if is_callable is not None:
        total = len(items)
        if per_page:
            start = page * per_page
            page_items = items[start : start + per_page]
            pages = math.ceil(total / per_page)
        else:
            page_items = items
            pages = 1
        return PaginatedResults[WorkflowRecordListItemWithThumbnailDTO](
            items=page_items, total=total, page=page, pages=pages, per_page=per_page if per_page else total
        )

    return PaginatedResults[WorkflowRecordListItemWithThumbnailDTO](
        items=items,
        total=max(len(items), workflows.total - skipped_missing_workflows),
        page=workflows.page,
        pages=workflows.pages,
        per_page=workflows.per_page,
    )
