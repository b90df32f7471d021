"""AppSettingsService: stock SQLite vs PostgreSQL (``AppSettingsServicePostgres``), same behaviour."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import pytest
from invokeai.app.services.app_settings.app_settings_service import AppSettingsService
from sqlalchemy import create_engine, text

from invokeai_saas.db.convert import stock_ms
from invokeai_saas.services.app_settings.app_settings_postgres import AppSettingsServicePostgres
from tests.services.conftest import Backend

MISSING_SECRET = (
    "JWT secret not found in database. This should have been created during database migration. "
    "Please ensure database migrations have been run successfully."
)


@pytest.fixture()
def service(backend: Backend) -> AppSettingsService:
    if backend.is_postgres:
        return AppSettingsServicePostgres(backend.engine)
    return AppSettingsService(db=backend.db)


def raw_row(backend: Backend, key: str) -> tuple[str, str, str] | None:
    """(value, created_at, updated_at) as stock's text (PostgreSQL timestamps rendered the way SQLite stores
    them), read behind the service's back."""
    if backend.is_postgres:
        with backend.engine.connect() as conn:
            row = conn.execute(
                text("SELECT value, created_at, updated_at FROM app_settings WHERE key = :k"), {"k": key}
            ).first()
        return None if row is None else (row[0], stock_ms(row[1]) or "", stock_ms(row[2]) or "")
    with backend.db.transaction() as cursor:
        found: Any = cursor.execute(
            "SELECT value, created_at, updated_at FROM app_settings WHERE key = ?", (key,)
        ).fetchone()
    return None if found is None else (found[0], found[1], found[2])


def delete_setting(backend: Backend, key: str) -> None:
    if backend.is_postgres:
        with backend.engine.begin() as conn:
            conn.execute(text("DELETE FROM app_settings WHERE key = :k"), {"k": key})
    else:
        with backend.db.transaction() as cursor:
            cursor.execute("DELETE FROM app_settings WHERE key = ?", (key,))


def test_is_a_stock_app_settings_service(service: AppSettingsService) -> None:
    assert isinstance(service, AppSettingsService)


def test_get_set_overwrite(service: AppSettingsService) -> None:
    assert service.get("theme") is None
    service.set("theme", "dark")
    assert service.get("theme") == "dark"
    service.set("theme", "light")
    assert service.get("theme") == "light"
    service.set("empty", "")
    assert service.get("empty") == ""
    service.set("ünïcode ✨", "välue\nwith newline")
    assert service.get("ünïcode ✨") == "välue\nwith newline"
    assert service.get("Theme") is None  # keys are case-sensitive


def test_overwrite_keeps_created_at_and_stamps_updated_at(backend: Backend, service: AppSettingsService) -> None:
    service.set("k", "v1")
    first = raw_row(backend, "k")
    assert first is not None and first[0] == "v1" and first[1] == first[2]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", first[1])
    time.sleep(0.002)
    service.set("k", "v2")
    second = raw_row(backend, "k")
    assert second is not None
    assert second[0] == "v2"
    assert second[1] == first[1]  # created_at kept
    assert second[2] > first[2]  # updated_at stamped


def test_jwt_secret_is_seeded_by_the_migration(service: AppSettingsService) -> None:
    secret = service.get_jwt_secret()
    assert re.fullmatch(r"[0-9a-f]{64}", secret)  # 256 bits, hex, as stock's migration 27 generates
    assert service.get("jwt_secret") == secret
    assert service.get_jwt_secret() == secret  # stable


def test_jwt_secret_missing_or_replaced(backend: Backend, service: AppSettingsService) -> None:
    delete_setting(backend, "jwt_secret")
    with pytest.raises(RuntimeError) as missing:
        service.get_jwt_secret()
    assert str(missing.value) == MISSING_SECRET
    service.set("jwt_secret", "rotated")
    assert service.get_jwt_secret() == "rotated"


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_every_process_shares_one_jwt_secret(backend: Backend) -> None:
    """Two API processes (two engines, two pools) on one database sign with the same secret."""
    other_engine = create_engine(backend.engine.url)
    try:
        first = AppSettingsServicePostgres(backend.engine)
        second = AppSettingsServicePostgres(other_engine)
        assert first.get_jwt_secret() == second.get_jwt_secret()
        first.set("jwt_secret", "rotated-by-one")
        assert second.get_jwt_secret() == "rotated-by-one"
    finally:
        other_engine.dispose()


def test_get_answers_none_when_the_database_fails(backend: Backend, service: AppSettingsService) -> None:
    """Stock swallows a failing read and answers None (get_jwt_secret then reports the secret missing)."""
    broken_engine = create_engine(backend.engine.url.set(database="no_such_database")) if backend.is_postgres else None
    if broken_engine is not None:
        broken: AppSettingsService = AppSettingsServicePostgres(broken_engine)
    else:
        backend.db._conn.close()
        broken = service
    try:
        assert broken.get("jwt_secret") is None
        with pytest.raises(RuntimeError, match="JWT secret not found"):
            broken.get_jwt_secret()
    finally:
        if broken_engine is not None:
            broken_engine.dispose()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_concurrent_sets_of_one_key(service: AppSettingsService) -> None:
    values = [f"value-{i}" for i in range(8)]
    barrier = threading.Barrier(len(values))
    errors: list[BaseException] = []

    def write(value: str) -> None:
        try:
            barrier.wait()
            service.set("contended", value)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(v,)) for v in values]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert service.get("contended") in values
