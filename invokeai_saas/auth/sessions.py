"""Signed-out tokens: what makes stock's logout end a session in every API process.

Stock's tokens are stateless JWTs and its logout only deletes the media cookie, so a token copied before the
logout (a shared computer, a leaked log, a remember-me token that lives 7 days) keeps working until it expires.
Here a logout records the token's SHA-256 in ``revoked_tokens`` (PostgreSQL, so every API process sees it on its
next request), until the moment the token would have expired anyway; the ``verify_token`` seam
(``invokeai_saas.patches.token_service_revocation``) refuses a recorded token wherever stock checks one. Rows past
their expiry are deleted by the next logout, so the table holds only tokens that are still unexpired.

One request often checks its token more than once (a route guard and the route each solve stock's auth
dependency; the refresh middleware checks again after a mutation): ``RequestTokenVerdicts``, an ASGI middleware,
gives each HTTP request a memo so the database is asked once per token per request, never across requests (a
verdict cached longer would let another process accept a signed-out token, and its refresh middleware mint a
fresh one from it).

A logout ends the token it was called with (and the media cookie's, the same JWT). Tokens the sliding-window
refresh handed out earlier in the session are separate JWTs: "sign out everywhere" is a password change, and
deactivating an account revokes all of its tokens (``token_epoch``, see ``services.users.users_postgres``).
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta

from jose import JWTError, jwt
from sqlalchemy import Engine, bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from starlette.types import Receive, Scope, Send

from invokeai_saas.db.prepared import PreparedRead
from invokeai_saas.db.tables import revoked_tokens
from invokeai_saas.http_middleware import HttpOnlyMiddleware

# What stock gives a token without an ``exp`` claim (``token_service.DEFAULT_EXPIRATION_HOURS``).
_DEFAULT_LIFETIME = timedelta(hours=24)

# Every request with a JWT runs this: a prepared primary-key read.
_IS_REVOKED = PreparedRead(
    select(revoked_tokens.c.token_sha256).where(revoked_tokens.c.token_sha256 == bindparam("token_sha256"))
)


# The current HTTP request's verdicts, token digest -> revoked. The dict is shared by reference with the threads
# FastAPI runs sync dependencies in (each copies the request's context), so what one records the next one reads.
_request_verdicts: ContextVar[dict[str, bool] | None] = ContextVar("invokeai_saas_token_verdicts", default=None)


class RequestTokenVerdicts(HttpOnlyMiddleware):
    """ASGI middleware: a fresh memo of revocation verdicts for each HTTP request (see the module)."""

    async def handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        reset = _request_verdicts.set({})
        try:
            await self.app(scope, receive, send)
        finally:
            _request_verdicts.reset(reset)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_expiry(token: str) -> datetime:
    """When a token (already verified) stops being valid by itself."""
    try:
        exp = jwt.get_unverified_claims(token).get("exp")
    except JWTError:
        exp = None
    if isinstance(exp, int | float):
        return datetime.fromtimestamp(exp, UTC)
    return datetime.now(UTC) + _DEFAULT_LIFETIME


class TokenRevocations:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def revoke(self, token: str, user_id: str) -> None:
        """Refuse ``token`` from now on, in every process; also forget revocations whose token has expired."""
        digest = token_digest(token)
        with self._engine.begin() as conn:
            conn.execute(delete(revoked_tokens).where(revoked_tokens.c.expires_at < func.clock_timestamp()))
            conn.execute(
                pg_insert(revoked_tokens)
                .values(token_sha256=digest, user_id=user_id, expires_at=token_expiry(token))
                .on_conflict_do_nothing()
            )
        verdicts = _request_verdicts.get()
        if verdicts is not None:
            verdicts[digest] = True

    def is_revoked(self, token: str) -> bool:
        """Whether ``token`` was signed out: read from the database once per request (see the module)."""
        digest = token_digest(token)
        verdicts = _request_verdicts.get()
        if verdicts is not None and digest in verdicts:
            return verdicts[digest]
        revoked = _IS_REVOKED.first(self._engine, token_sha256=digest) is not None
        if verdicts is not None:
            verdicts[digest] = revoked
        return revoked
