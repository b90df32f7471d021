"""PostgreSQL implementation of ``UserServiceBase`` (stock: ``UserService`` in ``users_default.py``).

Passwords are hashed and verified with stock's own helpers (``invokeai.app.services.auth.password_utils``:
bcrypt through passlib), so a hash written by either backend logs in on the other, and the strength rules are
stock's.

Administrator invariants. Stock makes its check-then-write steps atomic with ``BEGIN IMMEDIATE`` (SQLite's
write lock) plus a process-wide lock: "create the first admin only while there is none" and "never remove the
last active admin". Several API processes share this database, so here every transaction that reads the admin
count to decide a write first takes one transaction-scoped advisory lock (``_lock_admin_set``); the count is
read after the lock is granted (a new snapshot under READ COMMITTED), so it includes whatever the previous
holder committed. Two processes running ``/auth/setup`` at once therefore create exactly one administrator,
and two admins demoting each other cannot leave none. Writes that can only add administrators (creating a
non-first admin, promoting) also take the lock when they create one, so the admin set changes one transaction
at a time.

Where saas mode departs from stock, on purpose:

- Email addresses are one account whatever their case (stock keeps the local part's case and matches exactly, so
  ``ALICE@example.com`` and ``alice@example.com`` were two accounts): lookups and sign-in match ``lower(email)``,
  and a unique index on it (revision 0009) settles two concurrent creations.
- Deactivating an account revokes its credentials for good: the ``token_epoch`` bump a password change makes, so
  every token issued before is refused, and ``revoked_at`` on its API keys. Reactivating it brings none of them
  back (a stolen token of a compromised account must not work again); the owner signs in afresh.

Timestamps are handed out as stock hands them out: ``created_at``/``updated_at`` are millisecond defaults in
SQLite, parsed into naive UTC datetimes; ``last_login_at`` is written by stock as an aware ISO string with
microseconds and parsed back aware.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from invokeai.app.services.auth import password_utils
from invokeai.app.services.users.users_base import UserServiceBase
from invokeai.app.services.users.users_common import (
    LAST_ADMIN_DETAIL,
    SYSTEM_USER_ID,
    SYSTEM_USER_PROTECTED_DETAIL,
    LastAdministratorError,
    SystemUserProtectedError,
    UserCreateRequest,
    UserDTO,
    UserUpdateRequest,
)
from sqlalchemy import Connection, Engine, Row, Text, any_, bindparam, delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import ARRAY, insert

from invokeai_saas.db.convert import stock_ms
from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.prepared import PreparedRead
from invokeai_saas.db.tables import api_keys, users

# Every query producing a UserDTO selects these columns and maps them with ``_user_dto`` (stock keeps its
# projection and mapper together for the same reason: a DTO field added later cannot be missed by one query).
_DTO_COLUMNS = (
    users.c.user_id,
    users.c.email,
    users.c.display_name,
    users.c.is_admin,
    users.c.is_active,
    users.c.created_at,
    users.c.updated_at,
    users.c.last_login_at,
    users.c.token_epoch,
)

# Namespaced so it cannot collide with advisory locks other services take (the key is a hash of this text).
_ADMIN_LOCK_NAME = "invokeai_saas.users.admin_set"

_ACTIVE_ADMIN = (users.c.is_admin.is_(True), users.c.is_active.is_(True))


def _same_email(email: str) -> Any:
    """The row whose address is ``email`` without regard to case (served by ``uq_users_email_lower``)."""
    return func.lower(users.c.email) == func.lower(email)


def _stock_datetime(value: datetime) -> datetime:
    """The naive UTC millisecond datetime stock parses out of its ``STRFTIME('%Y-%m-%d %H:%M:%f')`` text."""
    text = stock_ms(value)
    assert text is not None
    return datetime.fromisoformat(text)


_GET_USER = PreparedRead(select(*_DTO_COLUMNS).where(users.c.user_id == bindparam("user_id")))


def _user_dto(row: Row[Any]) -> UserDTO:
    """A UserDTO from a row selected with ``_DTO_COLUMNS``."""
    return UserDTO(
        user_id=row.user_id,
        email=row.email,
        display_name=row.display_name,
        is_admin=bool(row.is_admin),
        is_active=bool(row.is_active),
        created_at=_stock_datetime(row.created_at),
        updated_at=_stock_datetime(row.updated_at),
        last_login_at=row.last_login_at.astimezone(UTC) if row.last_login_at is not None else None,
        token_epoch=int(row.token_epoch),
    )


def _check_password(password: str, strict_password_checking: bool) -> None:
    """Stock's password rules: its strength check when strict, otherwise only non-empty."""
    if strict_password_checking:
        is_valid, error_msg = password_utils.validate_password_strength(password)
        if not is_valid:
            raise ValueError(error_msg)
    elif not password:
        raise ValueError("Password cannot be empty")


def _lock_admin_set(conn: Connection) -> None:
    """Serialise transactions that decide a write from the number of active administrators (held to commit)."""
    conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(_ADMIN_LOCK_NAME, 0))))


def _count_active_admins(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(users).where(*_ACTIVE_ADMIN)).scalar_one())


class UserServicePostgres(UserServiceBase):
    """Users in PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._reads = autocommit_reads(engine)

    def create(self, user_data: UserCreateRequest, strict_password_checking: bool = True) -> UserDTO:
        return self._create(user_data, strict_password_checking=strict_password_checking, require_no_admin=False)

    def create_admin(self, user_data: UserCreateRequest, strict_password_checking: bool = True) -> UserDTO:
        """Create the first administrator; refused (``ValueError``) once an active administrator exists.

        The "no admin yet" check runs in the INSERT's transaction, under the admin-set lock: ``POST /auth/setup``
        is unauthenticated during the first-run window, and two requests — in two API processes — must not both
        create an administrator.
        """
        admin_data = UserCreateRequest(
            email=user_data.email,
            display_name=user_data.display_name,
            password=user_data.password,
            is_admin=True,
        )
        return self._create(admin_data, strict_password_checking=strict_password_checking, require_no_admin=True)

    def _create(self, user_data: UserCreateRequest, strict_password_checking: bool, require_no_admin: bool) -> UserDTO:
        _check_password(user_data.password, strict_password_checking)
        # Checked before hashing, as stock does: the common mistake gets its answer without paying for bcrypt.
        if self.get_by_email(user_data.email) is not None:
            raise ValueError(f"User with email {user_data.email} already exists")
        # Hashing is deliberately slow: done before the transaction so no lock is held meanwhile.
        password_hash = password_utils.hash_password(user_data.password)

        statement = (
            insert(users)
            .values(
                user_id=str(uuid4()),
                email=user_data.email,
                display_name=user_data.display_name,
                password_hash=password_hash,
                is_admin=user_data.is_admin,
            )
            .on_conflict_do_nothing()  # the address (any case: uq_users_email_lower); user_id is a fresh uuid
            .returning(*_DTO_COLUMNS)
        )
        with self._engine.begin() as conn:
            if user_data.is_admin:
                _lock_admin_set(conn)
            if require_no_admin and _count_active_admins(conn) > 0:
                raise ValueError("Admin user already exists")
            row = conn.execute(statement).first()
        if row is None:
            # Another process took the email between the check above and the INSERT.
            raise ValueError(f"User with email {user_data.email} already exists")
        return _user_dto(row)

    def get(self, user_id: str) -> UserDTO | None:
        # Every authenticated request calls this (stock's auth dependency re-reads the user): a prepared read.
        row = _GET_USER.first(self._engine, user_id=user_id)
        return _user_dto(row) if row is not None else None

    def get_many(self, user_ids: Sequence[str]) -> dict[str, UserDTO]:
        """Users by id in one statement (one array parameter, whatever the number of ids)."""
        unique_ids = list(dict.fromkeys(user_ids))
        if not unique_ids:
            return {}
        with self._reads.connect() as conn:
            rows = conn.execute(
                select(*_DTO_COLUMNS).where(users.c.user_id == any_(literal(unique_ids, ARRAY(Text))))
            ).all()
        return {row.user_id: _user_dto(row) for row in rows}

    def get_by_email(self, email: str) -> UserDTO | None:
        with self._reads.connect() as conn:
            row = conn.execute(select(*_DTO_COLUMNS).where(_same_email(email))).first()
        return _user_dto(row) if row is not None else None

    def update(self, user_id: str, changes: UserUpdateRequest, strict_password_checking: bool = True) -> UserDTO:
        """Apply the given (non-``None``) changes, with stock's checks in stock's order.

        A new password bumps ``token_epoch`` in SQL (``token_epoch + 1``), revoking every token minted under the
        old one without a read-modify-write race; so does deactivating, which also revokes the account's API keys
        in the same transaction (see the module). Demoting or deactivating takes the admin-set lock and refuses
        to remove the last active administrator.
        """
        user = self.get(user_id)
        if user is None:
            raise ValueError(f"User {user_id} not found")
        _assert_system_user_protected(
            user_id, is_admin=changes.is_admin, is_active=changes.is_active, password=changes.password
        )
        if changes.password is not None:
            _check_password(changes.password, strict_password_checking)

        values: dict[str, Any] = {}
        if changes.display_name is not None:
            values["display_name"] = changes.display_name
        if changes.password is not None:
            values["password_hash"] = password_utils.hash_password(changes.password)
        if changes.password is not None or changes.is_active is False:
            values["token_epoch"] = users.c.token_epoch + 1
        if changes.is_admin is not None:
            values["is_admin"] = changes.is_admin
        if changes.is_active is not None:
            values["is_active"] = changes.is_active
        if not values:
            return user

        with self._engine.begin() as conn:
            if changes.is_admin is False or changes.is_active is False:
                _lock_admin_set(conn)
                _assert_not_last_admin(conn, user_id, is_admin=changes.is_admin, is_active=changes.is_active)
            elif changes.is_admin or changes.is_active:
                _lock_admin_set(conn)  # may add an administrator: keep admin-set changes one at a time
            row = conn.execute(
                update(users).where(users.c.user_id == user_id).values(**values).returning(*_DTO_COLUMNS)
            ).first()
            if changes.is_active is False:
                conn.execute(
                    update(api_keys)
                    .where(api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None))
                    .values(revoked_at=func.clock_timestamp())
                )
        if row is None:
            raise RuntimeError("Failed to retrieve updated user")
        return _user_dto(row)

    def delete(self, user_id: str) -> None:
        """Delete a user (their client state, sessions and invitations go with them: ``ON DELETE CASCADE``)."""
        if self.get(user_id) is None:
            raise ValueError(f"User {user_id} not found")
        _assert_system_user_protected(user_id, is_deleting=True)
        with self._engine.begin() as conn:
            _lock_admin_set(conn)
            _assert_not_last_admin(conn, user_id, is_deleting=True)
            conn.execute(delete(users).where(users.c.user_id == user_id))

    def authenticate(self, email: str, password: str) -> UserDTO | None:
        """The user whose email and password match, recording the login; ``None`` otherwise.

        The address matches without regard to case. As in stock, the ``system`` account never authenticates whatever
        its row holds, an inactive account is returned (the routes refuse it), and the DTO returned carries the login
        just recorded.
        """
        with self._reads.connect() as conn:
            row = conn.execute(select(*_DTO_COLUMNS, users.c.password_hash).where(_same_email(email))).first()
        if row is None or row.user_id == SYSTEM_USER_ID:
            return None
        if not password_utils.verify_password(password, row.password_hash):
            return None
        last_login_at = datetime.now(UTC)
        with self._engine.begin() as conn:
            conn.execute(update(users).where(users.c.user_id == row.user_id).values(last_login_at=last_login_at))
        return _user_dto(row).model_copy(update={"last_login_at": last_login_at})

    def has_admin(self) -> bool:
        return self.count_admins() > 0

    def list_users(self, limit: int = 100, offset: int = 0) -> list[UserDTO]:
        """Newest first, the ``system`` account included (stock's service lists it; the routes hide it)."""
        statement = select(*_DTO_COLUMNS).order_by(users.c.created_at.desc(), users.c.user_id.collate("C"))
        # SQLite reads a negative LIMIT as "no limit" and a negative OFFSET as none.
        if limit >= 0:
            statement = statement.limit(limit)
        if offset > 0:
            statement = statement.offset(offset)
        with self._reads.connect() as conn:
            return [_user_dto(row) for row in conn.execute(statement)]

    def get_admin_email(self) -> str | None:
        """The email of the longest-standing active administrator."""
        with self._reads.connect() as conn:
            return conn.execute(
                select(users.c.email)
                .where(*_ACTIVE_ADMIN)
                .order_by(users.c.created_at.asc(), users.c.user_id.collate("C"))
                .limit(1)
            ).scalar_one_or_none()

    def count_admins(self) -> int:
        with self._reads.connect() as conn:
            return _count_active_admins(conn)


def _assert_not_last_admin(
    conn: Connection,
    user_id: str,
    *,
    is_deleting: bool = False,
    is_admin: bool | None = None,
    is_active: bool | None = None,
) -> None:
    """Stock's last-administrator guard; the caller holds the admin-set lock in the writing transaction.

    Only a change that revokes an *active* administrator's status is checked, so renaming the last admin, or
    removing an administrator who is already inactive, stays allowed.
    """
    row = conn.execute(select(users.c.is_admin, users.c.is_active).where(users.c.user_id == user_id)).first()
    if row is None or not (row.is_admin and row.is_active):
        return
    if not (is_deleting or is_admin is False or is_active is False):
        return
    if _count_active_admins(conn) <= 1:
        raise LastAdministratorError(LAST_ADMIN_DETAIL)


def _assert_system_user_protected(
    user_id: str,
    *,
    is_deleting: bool = False,
    is_admin: bool | None = None,
    is_active: bool | None = None,
    password: str | None = None,
) -> None:
    """Stock's rule: the ``system`` account (owner of all pre-multiuser content) cannot be deleted, deactivated,
    promoted or given a password — see ``UserService._assert_system_user_protected``."""
    if user_id != SYSTEM_USER_ID:
        return
    if is_deleting or is_active is False or is_admin is True or password is not None:
        raise SystemUserProtectedError(SYSTEM_USER_PROTECTED_DETAIL)
