"""API keys: how a script or an integration calls the API without a password, and what the plan's ``api_access``
limit governs.

The studio signs in with stock's login (a JWT that slides while the browser is active). Programmatic use needs a
credential that does not expire every day and can be revoked on its own: an API key, ``Authorization: Bearer
isk_...`` on any route that accepts stock's bearer token. A key acts as its owner (the owner's own data), only
while the owner's plan includes API access — a plan without it cannot create keys, and the keys of a user who moves
to such a plan stop working (HTTP 403 saying so) until they move back — and never for an administrator: stock
takes the admin flag from the account, so an administrator's key would carry every administrator right. Keys
survive password changes, as personal access tokens do elsewhere; revoking is explicit, or deactivating the account,
which revokes all of its keys for good (``services.users.users_postgres``: reactivating brings none back).

The secret is 32 random bytes (``isk_`` + base64url), shown once at creation; the table keeps its SHA-256 digest,
a display prefix and the key's name. A lookup stamps ``last_used_at`` (at most once a minute per key, so a busy
script does not write a row per request) and reads the owner with the key.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.tables import api_keys, users

KEY_SCHEME = "isk_"
MAX_ACTIVE_KEYS = 25
_PREFIX_LENGTH = len(KEY_SCHEME) + 8
_LAST_USED_RESOLUTION_SECONDS = 60


def is_api_key(token: str) -> bool:
    """Whether a bearer token is an API key rather than stock's JWT (JWTs start with ``eyJ``)."""
    return token.startswith(KEY_SCHEME)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    user_id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class ApiKeyOwner:
    """Who a key acts as, read with the key in one statement: what stock's token data carries."""

    user_id: str
    email: str
    is_admin: bool
    token_epoch: int


class TooManyApiKeys(Exception):
    """The user already has ``MAX_ACTIVE_KEYS`` unrevoked keys."""


_COLUMNS = (
    api_keys.c.key_id,
    api_keys.c.user_id,
    api_keys.c.name,
    api_keys.c.prefix,
    api_keys.c.created_at,
    api_keys.c.last_used_at,
    api_keys.c.revoked_at,
)


class ApiKeyService:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._reads = autocommit_reads(engine)

    def create(self, user_id: str, name: str) -> tuple[ApiKeyRecord, str]:
        """A new key for ``user_id``; returns its record and the secret, which is never readable again."""
        secret = KEY_SCHEME + secrets.token_urlsafe(32)
        with self._engine.begin() as conn:
            # Serialise one user's creations on their user row, so two at once cannot both pass the count.
            conn.execute(select(users.c.user_id).where(users.c.user_id == user_id).with_for_update(key_share=True))
            active = conn.execute(
                select(func.count())
                .select_from(api_keys)
                .where(api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None))
            ).scalar_one()
            if active >= MAX_ACTIVE_KEYS:
                raise TooManyApiKeys(f"You have {active} API keys; revoke one before creating another.")
            row = conn.execute(
                pg_insert(api_keys)
                .values(
                    key_id=uuid.uuid4().hex,
                    user_id=user_id,
                    name=name,
                    prefix=secret[:_PREFIX_LENGTH],
                    secret_sha256=_digest(secret),
                )
                .returning(*_COLUMNS)
            ).one()
        return ApiKeyRecord(**row._mapping), secret

    def list_keys(self, user_id: str) -> list[ApiKeyRecord]:
        """The user's keys, newest first, revoked ones included (so a revoked key's last use stays visible)."""
        with self._reads.connect() as conn:
            rows = conn.execute(
                select(*_COLUMNS).where(api_keys.c.user_id == user_id).order_by(api_keys.c.created_at.desc())
            ).all()
        return [ApiKeyRecord(**row._mapping) for row in rows]

    def revoke(self, user_id: str, key_id: str) -> bool:
        """Revoke one of the user's keys; False when the user has no such key (another user's key included)."""
        with self._engine.begin() as conn:
            result = conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.user_id == user_id)
                .values(revoked_at=func.coalesce(api_keys.c.revoked_at, func.clock_timestamp()))
                .returning(api_keys.c.key_id)
            ).first()
        return result is not None

    def authenticate(self, secret: str) -> ApiKeyOwner | None:
        """The owner of an unrevoked key with this secret, or None; stamps the key's last use."""
        digest = _digest(secret)
        stale = or_(
            api_keys.c.last_used_at.is_(None),
            api_keys.c.last_used_at
            < func.clock_timestamp() - func.make_interval(0, 0, 0, 0, 0, 0, _LAST_USED_RESOLUTION_SECONDS),
        )
        live = and_(api_keys.c.secret_sha256 == digest, api_keys.c.revoked_at.is_(None))
        owner = select(users.c.user_id, users.c.email, users.c.is_admin, users.c.token_epoch)
        with self._engine.begin() as conn:
            conn.execute(update(api_keys).where(live, stale).values(last_used_at=func.clock_timestamp()))
            row = conn.execute(owner.join(api_keys, api_keys.c.user_id == users.c.user_id).where(live)).first()
        return ApiKeyOwner(**row._mapping) if row is not None else None
