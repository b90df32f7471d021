"""The signed-in user's API keys, under ``/api/v1/saas/me/api-keys``.

- ``GET``: the caller's keys, newest first, revoked ones included; never a secret (only its display prefix).
- ``POST``: a new key, answered once with its secret (201). Refused with 403 when the plan has no API access (with
  plan limits enforced) or the caller is an administrator (see ``api_key_auth``), and 409 at ``MAX_ACTIVE_KEYS``
  unrevoked keys.
- ``DELETE /{key_id}``: revoke; 404 for a key the caller does not own, whoever owns it, so key ids cannot be probed.

Managing keys needs a studio sign-in: a request authenticated by an API key is refused (403), so a leaked key
cannot mint more keys or revoke the owner's others. Like the other ``/me`` routes, no parameter names a user.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, status
from fastapi.security import HTTPAuthorizationCredentials
from invokeai.app.api.auth_dependencies import CurrentUser, security
from invokeai.app.services.auth.token_service import TokenData
from pydantic import BaseModel, Field, StringConstraints

from invokeai_saas.auth.api_key_auth import admin_keys_refusal, require_api_access
from invokeai_saas.auth.api_keys import ApiKeyRecord, ApiKeyService, TooManyApiKeys, is_api_key
from invokeai_saas.credits.plans import PlanService
from invokeai_saas.db.engine import get_engine
from invokeai_saas.runtime import current_runtime

api_keys_router = APIRouter(prefix="/api/v1/saas/me/api-keys", tags=["saas"])

# Printable text only: PostgreSQL text refuses NUL, and control characters have no place in a label.
KeyName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
]


class ApiKeyInfo(BaseModel):
    key_id: str
    name: str
    prefix: str = Field(description="The secret's first characters, to tell keys apart; never the secret")
    created_at: datetime
    last_used_at: datetime | None = Field(description="Last authenticated use, to the minute")
    revoked_at: datetime | None


class CreatedApiKey(ApiKeyInfo):
    secret: str = Field(description="The key itself, shown only in this answer: send it as 'Authorization: Bearer'")


class NewApiKey(BaseModel):
    name: KeyName = Field(description="What the key is for, e.g. the script that uses it")


def _info(record: ApiKeyRecord) -> ApiKeyInfo:
    return ApiKeyInfo(
        key_id=record.key_id,
        name=record.name,
        prefix=record.prefix,
        created_at=record.created_at,
        last_used_at=record.last_used_at,
        revoked_at=record.revoked_at,
    )


def _keys() -> ApiKeyService:
    return ApiKeyService(get_engine(current_runtime().settings))


def _signed_in(
    current_user: CurrentUser,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(security)],
) -> TokenData:
    """The caller, when they signed in (a JWT), not when they call with an API key."""
    if credentials is not None and is_api_key(credentials.credentials):
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail="API keys cannot manage API keys: sign in to the studio to create or revoke them.",
        )
    return current_user


SignedInUser = Annotated[TokenData, Depends(_signed_in)]


def _create(current_user: TokenData, name: str) -> CreatedApiKey:
    if current_user.is_admin:
        raise admin_keys_refusal()
    user_id = current_user.user_id
    settings = current_runtime().settings
    if settings.credits_enforced:
        require_api_access(PlanService(get_engine(settings)), user_id)
    try:
        record, secret = _keys().create(user_id, name)
    except TooManyApiKeys as e:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(e)) from e
    return CreatedApiKey(**_info(record).model_dump(), secret=secret)


@api_keys_router.get("", operation_id="list_my_api_keys", response_model=list[ApiKeyInfo])
async def list_my_api_keys(user: SignedInUser) -> list[ApiKeyInfo]:
    """The caller's API keys (never their secrets)."""
    return [_info(record) for record in await asyncio.to_thread(_keys().list_keys, user.user_id)]


@api_keys_router.post(
    "",
    operation_id="create_my_api_key",
    response_model=CreatedApiKey,
    status_code=status.HTTP_201_CREATED,
    responses={
        status.HTTP_403_FORBIDDEN: {"description": "The plan has no API access, or the caller used an API key"},
        status.HTTP_409_CONFLICT: {"description": "Too many unrevoked keys"},
    },
)
async def create_my_api_key(
    user: SignedInUser,
    body: NewApiKey,
) -> CreatedApiKey:
    """Create an API key; its secret is in this answer only."""
    return await asyncio.to_thread(_create, user, body.name)


@api_keys_router.delete(
    "/{key_id}",
    operation_id="revoke_my_api_key",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={status.HTTP_404_NOT_FOUND: {"description": "No such key among the caller's"}},
)
async def revoke_my_api_key(
    user: SignedInUser,
    key_id: str = Path(pattern=r"^[0-9a-f]{32}$", description="The key's id, as the list gives it"),
) -> None:
    """Revoke one of the caller's API keys: it stops working at once."""
    if not await asyncio.to_thread(_keys().revoke, user.user_id, key_id):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="No such API key.")
