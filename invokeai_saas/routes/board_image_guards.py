"""Removing someone else's image from its board answers 404, as an image that does not exist does.

Stock's ``DELETE /api/v1/board_images/`` checks write access only to the board the image is on. For another
user's image that is on no board it answers 201 and lists the name as "removed": nothing changes, but the answer
confirms that an image of that name exists, which a tenant must not learn about another's media. This guard runs
before stock's handler (``invokeai_saas.patches.api_app_route_guards``): the image's owner and administrators
pass; anyone else gets the answer a missing image gets (``invokeai_saas.routes.not_found_errors``), and an unknown
name is left to stock's handler, which answers that 404 itself.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from invokeai.app.api.auth_dependencies import CurrentUserOrDefault
from invokeai.app.api.dependencies import ApiDependencies

from invokeai_saas.routes.not_found_errors import NOT_FOUND_DETAIL


async def owner_or_not_found(current_user: CurrentUserOrDefault, request: Request) -> None:
    """Guards see no body parameters, so the body is read here (starlette keeps it for stock's handler); a body
    that does not parse, or has no string ``image_name``, is left to stock's handler, which refuses it."""
    if current_user.is_admin:
        return
    try:
        body = await request.json()
    except Exception:  # not JSON, or JSON the request checks refuse: stock's handler answers the 422
        return
    image_name = body.get("image_name") if isinstance(body, dict) else None
    if not isinstance(image_name, str):
        return
    owner = await run_in_threadpool(ApiDependencies.invoker.services.image_records.get_user_id, image_name)
    if owner is not None and owner != current_user.user_id:
        raise HTTPException(status_code=404, detail=NOT_FOUND_DETAIL)


def board_image_route_guards() -> list[Any]:
    """The guard of stock's single-image remove route."""
    from invokeai_saas.patches.api_app_route_guards import RouteGuard

    return [RouteGuard("/v1/board_images/", frozenset({"DELETE"}), owner_or_not_found)]
