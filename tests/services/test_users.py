"""UserService: stock SQLite (``UserService``) vs PostgreSQL (``UserServicePostgres``), same behaviour."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
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
from invokeai.app.services.users.users_default import UserService
from passlib.context import CryptContext
from sqlalchemy import Engine, text

from invokeai_saas.services.users.users_postgres import UserServicePostgres
from tests.services.conftest import Backend
from tests.support.sql_counter import count_statements

# Stock's own context (bcrypt at its default cost), kept before any test swaps in the fast one.
STOCK_PWD_CONTEXT = password_utils.pwd_context
PASSWORD = "Sup3rSecret"
OTHER_PASSWORD = "An0therSecret"


@pytest.fixture(autouse=True)
def fast_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """bcrypt at its minimum cost: both backends hash through stock's ``password_utils``, so this changes the cost
    for both alike (a hash of any cost verifies). ``test_stock_hashes_log_in_on_postgres`` restores stock's."""
    fast = CryptContext(schemes=["bcrypt"], deprecated="auto", bcrypt__truncate_error=False, bcrypt__rounds=4)
    monkeypatch.setattr(password_utils, "pwd_context", fast)


@pytest.fixture()
def service(backend: Backend) -> UserServiceBase:
    if backend.is_postgres:
        return UserServicePostgres(backend.engine)
    return UserService(backend.db)


def request_for(name: str, password: str = PASSWORD, is_admin: bool = False) -> UserCreateRequest:
    return UserCreateRequest(
        email=f"{name}@example.com", display_name=name.title(), password=password, is_admin=is_admin
    )


def assert_stock_timestamp(value: datetime) -> None:
    """Stock parses SQLite's millisecond UTC text: a naive datetime, whole milliseconds, about now."""
    assert value.tzinfo is None
    assert value.microsecond % 1000 == 0
    assert abs(datetime.now(UTC).replace(tzinfo=None) - value) < timedelta(minutes=5)


def expected_dto(created: UserDTO, **changes: Any) -> UserDTO:
    return created.model_copy(update=changes)


def set_password_hash(backend: Backend, user_id: str, password_hash: str) -> None:
    """Write a password hash behind the service's back (direct SQL, as an old instance or an operator might)."""
    if backend.is_postgres:
        with backend.engine.begin() as conn:
            conn.execute(
                text("UPDATE users SET password_hash = :h WHERE user_id = :u"), {"h": password_hash, "u": user_id}
            )
    else:
        with backend.db.transaction() as cursor:
            cursor.execute("UPDATE users SET password_hash = ? WHERE user_id = ?", (password_hash, user_id))


def run_together(*calls: Callable[[], Any]) -> tuple[list[Any], list[BaseException]]:
    """Run the calls at the same instant on separate threads (separate connections); results and errors."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            result = call()
            with lock:
                results.append(result)
        except BaseException as e:  # noqa: BLE001 - returned to the test
            with lock:
                errors.append(e)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


# --- create / get ------------------------------------------------------------------------------------------------


def test_create_and_get(service: UserServiceBase) -> None:
    created = service.create(request_for("alice"))
    assert created == UserDTO(
        user_id=created.user_id,
        email="alice@example.com",
        display_name="Alice",
        is_admin=False,
        is_active=True,
        created_at=created.created_at,
        updated_at=created.updated_at,
        last_login_at=None,
        token_epoch=0,
    )
    assert len(created.user_id) == 36  # a uuid4, as stock
    assert_stock_timestamp(created.created_at)
    assert created.updated_at == created.created_at
    assert service.get(created.user_id) == created
    assert service.get_by_email("alice@example.com") == created
    assert service.get("nope") is None
    assert service.get_by_email("nobody@example.com") is None

    admin = service.create(request_for("root", is_admin=True))
    assert admin.is_admin is True and service.get(admin.user_id) == admin
    no_name = service.create(UserCreateRequest(email="anon@example.com", password=PASSWORD))
    assert no_name.display_name is None


def test_create_strict_password_checking(service: UserServiceBase) -> None:
    with pytest.raises(ValueError, match="^Password must be at least 8 characters long$"):
        service.create(request_for("a", password="Sh0rt"))
    with pytest.raises(ValueError, match="^Password must contain uppercase, lowercase, and numbers$"):
        service.create(request_for("b", password="alllowercase1"))
    with pytest.raises(ValueError, match="^Password must be at least 8 characters long$"):
        service.create_admin(request_for("c", password="x"))
    # Lenient: anything non-empty.
    assert service.create(request_for("d", password="x"), strict_password_checking=False).email == "d@example.com"
    with pytest.raises(ValueError, match="^Password cannot be empty$"):
        service.create(request_for("e", password=""), strict_password_checking=False)
    with pytest.raises(ValueError, match="^Password cannot be empty$"):
        service.create_admin(request_for("f", password=""), strict_password_checking=False)
    assert [u.email for u in service.list_users() if u.user_id != SYSTEM_USER_ID] == ["d@example.com"]


def test_create_duplicate_email(service: UserServiceBase, backend: Backend) -> None:
    service.create(request_for("alice"))
    with pytest.raises(ValueError, match="^User with email alice@example.com already exists$"):
        service.create(request_for("alice", password=OTHER_PASSWORD))
    with pytest.raises(ValueError, match="^User with email alice@example.com already exists$"):
        service.create_admin(request_for("alice"))
    if backend.is_postgres:
        # Saas mode: one account per address whatever its case; the address keeps the case it was created with.
        with pytest.raises(ValueError, match="^User with email Alice@example.com already exists$"):
            service.create(UserCreateRequest(email="Alice@EXAMPLE.com", password=PASSWORD))
        alice = service.get_by_email("ALICE@example.com")
        assert alice is not None and alice.email == "alice@example.com"
        return
    # Stock: the local part keeps its case (only the domain is normalised), and emails match exactly.
    upper = service.create(UserCreateRequest(email="Alice@EXAMPLE.com", password=PASSWORD))
    assert upper.email == "Alice@example.com"
    assert service.get_by_email("Alice@example.com") == upper
    assert service.get_by_email("ALICE@example.com") is None


def test_get_many(service: UserServiceBase) -> None:
    alice = service.create(request_for("alice"))
    bob = service.create(request_for("bob"))
    bob = service.update(bob.user_id, UserUpdateRequest(password=OTHER_PASSWORD))  # token_epoch 1 must come back
    assert bob.token_epoch == 1
    assert service.get_many([]) == {}
    assert service.get_many(["nope"]) == {}
    assert service.get_many([bob.user_id, alice.user_id, bob.user_id, "nope"]) == {
        alice.user_id: alice,
        bob.user_id: bob,
    }
    system = service.get(SYSTEM_USER_ID)
    assert system is not None and service.get_many([SYSTEM_USER_ID]) == {SYSTEM_USER_ID: system}


# --- create_admin / has_admin / count_admins / get_admin_email ---------------------------------------------------


def test_create_admin_only_while_there_is_none(service: UserServiceBase) -> None:
    assert service.has_admin() is False and service.count_admins() == 0 and service.get_admin_email() is None
    # Only *active* administrators count: an inactive one does not close the setup window.
    dormant = service.create(request_for("dormant"))
    service.update(dormant.user_id, UserUpdateRequest(is_active=False))
    assert service.update(dormant.user_id, UserUpdateRequest(is_admin=True)).is_admin is True
    assert service.has_admin() is False and service.count_admins() == 0 and service.get_admin_email() is None

    # is_admin is forced on, whatever the request says.
    first = service.create_admin(UserCreateRequest(email="root@example.com", password=PASSWORD, is_admin=False))
    assert first == UserDTO(
        user_id=first.user_id,
        email="root@example.com",
        display_name=None,
        is_admin=True,
        is_active=True,
        created_at=first.created_at,
        updated_at=first.updated_at,
        last_login_at=None,
        token_epoch=0,
    )
    assert service.get(first.user_id) == first
    assert service.has_admin() is True and service.count_admins() == 1
    assert service.get_admin_email() == "root@example.com"
    with pytest.raises(ValueError, match="^Admin user already exists$"):
        service.create_admin(request_for("second"))
    assert service.get_by_email("second@example.com") is None
    # Plain create may still add administrators (an admin does that through the user routes).
    assert service.create(request_for("third", is_admin=True)).is_admin is True
    assert service.count_admins() == 2


def test_get_admin_email_is_the_oldest_active_admin(service: UserServiceBase) -> None:
    service.create(request_for("member"))
    time.sleep(0.002)
    first = service.create(request_for("first", is_admin=True))
    time.sleep(0.002)
    service.create(request_for("second", is_admin=True))
    assert service.count_admins() == 2
    assert service.get_admin_email() == "first@example.com"
    service.update(first.user_id, UserUpdateRequest(is_active=False))
    assert service.get_admin_email() == "second@example.com"
    assert service.count_admins() == 1


def test_concurrent_first_admin_setup_creates_one_admin(service: UserServiceBase) -> None:
    """Several API processes answering ``/auth/setup`` at once: exactly one administrator results."""
    results, errors = run_together(*(lambda i=i: service.create_admin(request_for(f"admin{i}")) for i in range(4)))
    assert len(results) == 1
    assert len(errors) == 3 and all(str(e) == "Admin user already exists" for e in errors), errors
    assert all(type(e) is ValueError for e in errors)
    assert service.count_admins() == 1
    assert service.get_admin_email() == results[0].email


def test_concurrent_demotions_keep_one_admin(service: UserServiceBase) -> None:
    a = service.create(request_for("a", is_admin=True))
    b = service.create(request_for("b", is_admin=True))
    results, errors = run_together(
        lambda: service.update(a.user_id, UserUpdateRequest(is_admin=False)),
        lambda: service.delete(b.user_id),
    )
    assert len(results) == 1 and len(errors) == 1
    assert isinstance(errors[0], LastAdministratorError) and str(errors[0]) == LAST_ADMIN_DETAIL
    assert service.count_admins() == 1


# --- update ------------------------------------------------------------------------------------------------------


def test_update_fields_and_token_epoch(service: UserServiceBase, backend: Backend) -> None:
    created = service.create(request_for("alice"))
    time.sleep(0.002)
    renamed = service.update(created.user_id, UserUpdateRequest(display_name="Alice B."))
    assert renamed == expected_dto(created, display_name="Alice B.", updated_at=renamed.updated_at)
    assert renamed.updated_at > created.updated_at
    assert_stock_timestamp(renamed.updated_at)
    assert service.get(created.user_id) == renamed

    # Admin changes do not revoke tokens; a new password does. Stock bumps on passwords only; saas mode also bumps
    # on deactivation, so reactivating an account does not bring its old tokens back.
    deactivation_bump = 1 if backend.is_postgres else 0
    promoted = service.update(created.user_id, UserUpdateRequest(is_admin=True, is_active=False))
    assert (promoted.is_admin, promoted.is_active, promoted.token_epoch) == (True, False, deactivation_bump)
    repassworded = service.update(created.user_id, UserUpdateRequest(password=OTHER_PASSWORD))
    assert repassworded.token_epoch == 1 + deactivation_bump
    again = service.update(created.user_id, UserUpdateRequest(password="x"), strict_password_checking=False)
    assert again.token_epoch == 2 + deactivation_bump
    assert service.get(created.user_id) == again
    assert again == expected_dto(
        created,
        display_name="Alice B.",
        is_admin=True,
        is_active=False,
        token_epoch=2 + deactivation_bump,
        updated_at=again.updated_at,
    )

    # Nothing to change: the user comes back untouched (no write, updated_at kept).
    assert service.update(created.user_id, UserUpdateRequest()) == again


def test_update_password_rules_and_login(service: UserServiceBase) -> None:
    created = service.create(request_for("alice"))
    with pytest.raises(ValueError, match="^Password must be at least 8 characters long$"):
        service.update(created.user_id, UserUpdateRequest(password="short"))
    with pytest.raises(ValueError, match="^Password must contain uppercase, lowercase, and numbers$"):
        service.update(created.user_id, UserUpdateRequest(password="NOLOWERCASE1"))
    with pytest.raises(ValueError, match="^Password cannot be empty$"):
        service.update(created.user_id, UserUpdateRequest(password=""), strict_password_checking=False)
    assert service.get(created.user_id) == created  # nothing written by a refused change

    service.update(created.user_id, UserUpdateRequest(password=OTHER_PASSWORD))
    assert service.authenticate("alice@example.com", PASSWORD) is None
    assert service.authenticate("alice@example.com", OTHER_PASSWORD) is not None


def test_update_unknown_user(service: UserServiceBase) -> None:
    with pytest.raises(ValueError, match="^User nope not found$"):
        service.update("nope", UserUpdateRequest(display_name="x"))


def test_last_admin_cannot_be_removed(service: UserServiceBase) -> None:
    root = service.create(request_for("root", is_admin=True))
    for change in (UserUpdateRequest(is_admin=False), UserUpdateRequest(is_active=False)):
        with pytest.raises(LastAdministratorError, match=f"^{LAST_ADMIN_DETAIL}$"):
            service.update(root.user_id, change)
    with pytest.raises(LastAdministratorError):
        service.delete(root.user_id)
    assert service.get(root.user_id) == root
    # Changes that keep them an active admin stay allowed.
    renamed = service.update(
        root.user_id, UserUpdateRequest(display_name="Root", password=OTHER_PASSWORD, is_admin=True, is_active=True)
    )
    assert (renamed.display_name, renamed.is_admin, renamed.is_active, renamed.token_epoch) == ("Root", True, True, 1)

    # With a second active admin, one may go; then the other is the last again.
    other = service.create(request_for("other", is_admin=True))
    service.update(root.user_id, UserUpdateRequest(is_admin=False))
    with pytest.raises(LastAdministratorError):
        service.update(other.user_id, UserUpdateRequest(is_active=False))
    # An inactive admin does not count and may be removed freely.
    service.update(root.user_id, UserUpdateRequest(is_admin=True, is_active=False))
    assert service.count_admins() == 1
    service.update(root.user_id, UserUpdateRequest(is_admin=False))
    service.delete(root.user_id)
    assert service.get(root.user_id) is None


# --- the system account ------------------------------------------------------------------------------------------


def test_system_user_rules(backend: Backend, service: UserServiceBase) -> None:
    system = service.get(SYSTEM_USER_ID)
    assert system is not None
    assert system == UserDTO(
        user_id="system",
        email="system@system.invokeai",
        display_name="System",
        is_admin=False,
        is_active=True,
        created_at=system.created_at,
        updated_at=system.updated_at,
        last_login_at=None,
        token_epoch=0,
    )
    assert_stock_timestamp(system.created_at)
    assert service.get_by_email("system@system.invokeai") == system
    assert service.count_admins() == 0  # the system account is never an administrator

    for change in (
        UserUpdateRequest(is_admin=True),
        UserUpdateRequest(is_active=False),
        UserUpdateRequest(password=PASSWORD),
        UserUpdateRequest(display_name="fine", password=PASSWORD),
    ):
        with pytest.raises(SystemUserProtectedError, match=f"^{SYSTEM_USER_PROTECTED_DETAIL}$"):
            service.update(SYSTEM_USER_ID, change)
    with pytest.raises(SystemUserProtectedError):
        service.delete(SYSTEM_USER_ID)
    assert service.get(SYSTEM_USER_ID) == system

    # Harmless changes are allowed.
    renamed = service.update(SYSTEM_USER_ID, UserUpdateRequest(display_name="Legacy", is_admin=False, is_active=True))
    assert renamed.display_name == "Legacy" and renamed.is_admin is False

    # Never a login account, whatever its row holds.
    set_password_hash(backend, SYSTEM_USER_ID, password_utils.hash_password(PASSWORD))
    assert service.authenticate("system@system.invokeai", PASSWORD) is None


# --- delete ------------------------------------------------------------------------------------------------------


def test_delete(backend: Backend, service: UserServiceBase) -> None:
    alice = service.create(request_for("alice"))
    bob = service.create(request_for("bob"))
    # Per-user rows referencing the user go with it (ON DELETE CASCADE on both backends).
    if backend.is_postgres:
        with backend.engine.begin() as conn:
            conn.execute(
                text("INSERT INTO client_state (user_id, key, value) VALUES (:u, 'k', 'v')"), {"u": alice.user_id}
            )
    else:
        with backend.db.transaction() as cursor:
            cursor.execute("INSERT INTO client_state (user_id, key, value) VALUES (?, 'k', 'v')", (alice.user_id,))
    service.delete(alice.user_id)
    assert service.get(alice.user_id) is None
    assert service.get_by_email("alice@example.com") is None
    assert service.get(bob.user_id) == bob
    if backend.is_postgres:
        with backend.engine.connect() as conn:
            left = conn.execute(text("SELECT count(*) FROM client_state")).scalar_one()
    else:
        with backend.db.transaction() as cursor:
            left = cursor.execute("SELECT count(*) FROM client_state").fetchone()[0]
    assert left == 0
    with pytest.raises(ValueError, match=f"^User {alice.user_id} not found$"):
        service.delete(alice.user_id)
    # The email is free again.
    assert service.create(request_for("alice")).user_id != alice.user_id


# --- authenticate ------------------------------------------------------------------------------------------------


def test_authenticate(service: UserServiceBase, backend: Backend) -> None:
    alice = service.create(request_for("alice"))
    assert service.authenticate("alice@example.com", "wrong") is None
    assert service.authenticate("nobody@example.com", PASSWORD) is None
    if backend.is_postgres:  # saas mode: an address matches whatever its case
        assert service.authenticate("ALICE@example.com", "wrong") is None
        assert service.authenticate("ALICE@example.com", PASSWORD) is not None
        alice = service.get(alice.user_id) or alice  # with the login just recorded
    else:
        assert service.authenticate("ALICE@example.com", PASSWORD) is None  # stock: emails match exactly
    assert service.get(alice.user_id) == alice  # failed logins record nothing

    before = datetime.now(UTC)
    time.sleep(0.002)
    logged_in = service.authenticate("alice@example.com", PASSWORD)
    assert logged_in is not None
    assert logged_in.last_login_at is not None
    assert logged_in.last_login_at.utcoffset() == timedelta(0)  # aware UTC, as stock parses its ISO text
    assert before < logged_in.last_login_at <= datetime.now(UTC)
    # The DTO is the row as read, with the login just recorded.
    assert logged_in == expected_dto(alice, last_login_at=logged_in.last_login_at)
    stored = service.get(alice.user_id)
    assert stored is not None
    assert stored.last_login_at == logged_in.last_login_at
    assert stored.updated_at > alice.updated_at  # recording the login is an update

    # An inactive account still authenticates here: the routes refuse it (as in stock).
    service.update(alice.user_id, UserUpdateRequest(is_active=False))
    inactive = service.authenticate("alice@example.com", PASSWORD)
    assert inactive is not None and inactive.is_active is False


def test_long_passwords_truncate_like_stock(service: UserServiceBase) -> None:
    """bcrypt reads 72 bytes: stock's helpers truncate on both hash and verify."""
    long_password = "Aa1" + "x" * 80
    service.create(request_for("long", password=long_password))
    assert service.authenticate("long@example.com", long_password) is not None
    assert service.authenticate("long@example.com", long_password[:72] + "different") is not None
    assert service.authenticate("long@example.com", long_password[:71]) is None


def test_stock_hashes_log_in_on_postgres(sqlite_db: Any, pg_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user created by stock (stock's real bcrypt cost) can log in on PostgreSQL with the same stored hash, and
    the other way round."""
    monkeypatch.setattr(password_utils, "pwd_context", STOCK_PWD_CONTEXT)
    stock = UserService(sqlite_db)
    ours = UserServicePostgres(pg_engine)
    from_stock = stock.create(request_for("alice"))
    from_ours = ours.create(request_for("bob", password=OTHER_PASSWORD))

    with sqlite_db.transaction() as cursor:
        stock_hash = cursor.execute(
            "SELECT password_hash FROM users WHERE user_id = ?", (from_stock.user_id,)
        ).fetchone()[0]
    with pg_engine.connect() as conn:
        our_hash = conn.execute(
            text("SELECT password_hash FROM users WHERE user_id = :u"), {"u": from_ours.user_id}
        ).scalar_one()
    assert stock_hash.startswith("$2b$12$") and our_hash.startswith("$2b$12$")

    ours.create(UserCreateRequest(email="alice@example.com", password="placeholder", is_admin=False), False)
    with pg_engine.begin() as conn:
        conn.execute(text("UPDATE users SET password_hash = :h WHERE email = 'alice@example.com'"), {"h": stock_hash})
    assert ours.authenticate("alice@example.com", PASSWORD) is not None

    stock.create(UserCreateRequest(email="bob@example.com", password="placeholder"), False)
    with sqlite_db.transaction() as cursor:
        cursor.execute("UPDATE users SET password_hash = ? WHERE email = 'bob@example.com'", (our_hash,))
    assert stock.authenticate("bob@example.com", OTHER_PASSWORD) is not None


# --- list_users --------------------------------------------------------------------------------------------------


def test_list_users_newest_first_with_pagination(service: UserServiceBase) -> None:
    system = service.get(SYSTEM_USER_ID)
    created = []
    for name in ("u1", "u2", "u3", "u4", "u5"):
        time.sleep(0.002)  # distinct millisecond created_at: stock's order is then defined
        created.append(service.create(request_for(name)))
    everyone = [*reversed(created), system]
    assert service.list_users() == everyone  # the system account is listed (the routes hide it)
    assert service.list_users(limit=2) == everyone[:2]
    assert service.list_users(limit=2, offset=2) == everyone[2:4]
    assert service.list_users(limit=10, offset=5) == [system]
    assert service.list_users(offset=6) == []
    assert service.list_users(limit=0) == []
    assert service.list_users(limit=-1, offset=1) == everyone[1:]  # SQLite: a negative limit is no limit
    assert service.list_users(limit=2, offset=-3) == everyone[:2]  # and a negative offset is none


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_list_and_get_many_run_bounded_statements(backend: Backend, service: UserServiceBase) -> None:
    ids = [service.create(request_for(f"u{i}")).user_id for i in range(12)]
    counts: list[int] = []
    for limit in (2, 12):
        with count_statements(backend.engine) as log:
            assert len(service.list_users(limit=limit)) == limit
        counts.append(log.count)
    for wanted in (ids[:2], ids + [f"missing-{i}" for i in range(300)]):
        with count_statements(backend.engine) as log:
            assert len(service.get_many(wanted)) == min(len(wanted), 12)
        counts.append(log.count)
    assert counts == [1, 1, 1, 1]
