"""At most ``max_workflows_per_user`` workflows per user in the library: ``POST /api/v1/workflows/`` is refused (403)
once the user has that many.

Why a count and not the storage quota: the storage quota counts media in the object store (``user_storage_usage``),
while a workflow is a JSON document in PostgreSQL. Each document is bounded by the request body limit
(``max_json_body_bytes``, see ``invokeai_saas.routes.request_limits``), so a count bounds what one user can store
(count × body limit) without a second accounting. Updating, opening or deleting a workflow is never refused, and
deleting one makes room. The count is read per request (one indexed ``count``); two creates racing at the limit may
both pass, leaving the user one over, which the next create then meets.
"""

from fastapi import HTTPException
from sqlalchemy import Engine, func, select

from invokeai_saas.db.tables import workflow_library
from invokeai_saas.patches.api_app_route_guards import RouteGuard

# Stock's create route (``invokeai/app/api/routers/workflows.py``, the router's prefix included).
CREATE_WORKFLOW = ("POST", "/v1/workflows/")


def workflow_count(engine: Engine, user_id: str) -> int:
    with engine.connect() as conn:
        statement = select(func.count()).select_from(workflow_library).where(workflow_library.c.user_id == user_id)
        return int(conn.execute(statement).scalar_one())


def workflow_limit_guard(engine: Engine, limit: int) -> RouteGuard:
    """The guard for ``invokeai_saas.patches.api_app_route_guards.apply``; call when the API app is built (it
    imports stock's auth dependency). No ``from __future__ import annotations`` here: FastAPI reads the guard's
    annotation as an object."""
    from invokeai.app.api.auth_dependencies import CurrentUserOrDefault

    def limit_workflows(current_user: CurrentUserOrDefault) -> None:
        if workflow_count(engine, current_user.user_id) >= limit:
            raise HTTPException(
                status_code=403,
                detail=f"Your library holds the most workflows an account may keep ({limit}); "
                "delete workflows to save new ones.",
            )

    method, path = CREATE_WORKFLOW
    return RouteGuard(path, frozenset({method}), limit_workflows)
