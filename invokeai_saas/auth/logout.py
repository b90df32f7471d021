"""``POST /api/v1/auth/logout`` in place of stock's (same path, answer and cookie handling): the token it is
called with, and the media cookie's, stop working in every API process (``invokeai_saas.auth.sessions``).

Stock's logout only deletes the media cookie ("a no-op since we use stateless JWT tokens"). A logout with an API
key signs nothing out: keys are revoked on their own (``DELETE /api/v1/saas/me/api-keys/{key_id}``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Cookie, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from invokeai.app.api.auth_dependencies import MEDIA_TOKEN_COOKIE, CurrentUser, security
from invokeai.app.api.routers.auth import LogoutResponse
from invokeai.app.services.auth import token_service

from invokeai_saas.auth.api_keys import is_api_key
from invokeai_saas.auth.sessions import TokenRevocations
from invokeai_saas.db.engine import get_engine
from invokeai_saas.runtime import current_runtime

# The stock router's own prefix (see patches.api_app_route_overrides).
logout_router = APIRouter(prefix="/v1/auth", tags=["authentication"])


@logout_router.post("/logout", response_model=LogoutResponse)
def logout(
    current_user: CurrentUser,
    request: Request,
    response: Response,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(security)],
    media_token: Annotated[str | None, Cookie(alias=MEDIA_TOKEN_COOKIE)] = None,
) -> LogoutResponse:
    """Log out: this session's token is refused from now on, and the media cookie is deleted."""
    presented = {credentials.credentials if credentials is not None else None, media_token}
    revocations = TokenRevocations(get_engine(current_runtime().settings))
    for token in presented:
        if token is None or is_api_key(token):
            continue
        token_data = token_service.verify_token(token)  # an invalid or foreign cookie is left alone
        if token_data is not None and token_data.user_id == current_user.user_id:
            revocations.revoke(token, current_user.user_id)
    # Stock's cookie attributes: the path the login set it on (behind a sub-path proxy, with its prefix).
    response.delete_cookie(MEDIA_TOKEN_COOKIE, path=request.scope.get("root_path", "") + "/api/v1")
    return LogoutResponse(success=True)
