"""ClientStatePersistence: stock SQLite vs PostgreSQL, same behaviour."""

from __future__ import annotations

import time

import pytest
from invokeai.app.services.client_state_persistence.client_state_persistence_base import ClientStatePersistenceABC
from invokeai.app.services.client_state_persistence.client_state_persistence_sqlite import (
    ClientStatePersistenceSqlite,
)

from invokeai_saas.services.client_state_persistence.client_state_persistence_postgres import (
    ClientStatePersistencePostgres,
)
from tests.services.conftest import Backend
from tests.services.helpers import add_user


@pytest.fixture()
def service(backend: Backend) -> ClientStatePersistenceABC:
    if backend.is_postgres:
        return ClientStatePersistencePostgres(backend.engine)
    return ClientStatePersistenceSqlite(backend.db)


@pytest.fixture()
def users(backend: Backend) -> tuple[str, str]:
    return add_user(backend, "alice"), add_user(backend, "bob")


def test_set_get_overwrite(service: ClientStatePersistenceABC, users: tuple[str, str]) -> None:
    alice, _ = users
    assert service.get_by_key(alice, "k") is None
    assert service.set_by_key(alice, "k", "v1") == "v1"
    assert service.get_by_key(alice, "k") == "v1"
    assert service.set_by_key(alice, "k", "v2") == "v2"
    assert service.get_by_key(alice, "k") == "v2"


def test_users_never_see_each_other(service: ClientStatePersistenceABC, users: tuple[str, str]) -> None:
    alice, bob = users
    service.set_by_key(alice, "shared-name", "alice's")
    assert service.get_by_key(bob, "shared-name") is None
    assert service.get_keys_by_prefix(bob, "") == []
    service.delete(bob)
    assert service.get_by_key(alice, "shared-name") == "alice's"
    service.delete_by_key(bob, "shared-name")
    assert service.get_by_key(alice, "shared-name") == "alice's"


def test_prefix_is_literal_and_newest_first(service: ClientStatePersistenceABC, users: tuple[str, str]) -> None:
    alice, _ = users
    service.set_by_key(alice, "a_1", "x")
    time.sleep(1.05)  # stock keeps second precision here; distinct seconds make the order well defined
    service.set_by_key(alice, "a%2", "x")
    time.sleep(1.05)
    service.set_by_key(alice, "ab", "x")
    assert service.get_keys_by_prefix(alice, "a") == ["ab", "a%2", "a_1"]
    assert service.get_keys_by_prefix(alice, "a_") == ["a_1"]  # '_' is not a wildcard
    assert service.get_keys_by_prefix(alice, "a%") == ["a%2"]  # nor is '%'
    assert service.get_keys_by_prefix(alice, "zzz") == []


def test_delete_by_key_and_delete_all(service: ClientStatePersistenceABC, users: tuple[str, str]) -> None:
    alice, _ = users
    service.set_by_key(alice, "one", "1")
    service.set_by_key(alice, "two", "2")
    service.delete_by_key(alice, "one")
    assert service.get_by_key(alice, "one") is None and service.get_by_key(alice, "two") == "2"
    service.delete_by_key(alice, "missing")  # no error, as stock
    service.delete(alice)
    assert service.get_keys_by_prefix(alice, "") == []


def test_unknown_user_is_refused(service: ClientStatePersistenceABC) -> None:
    """The table references users: both backends refuse state for a user that does not exist."""
    with pytest.raises(Exception):  # noqa: B017 - sqlite3.IntegrityError vs sqlalchemy IntegrityError
        service.set_by_key("no-such-user", "k", "v")
