"""Sessions that end for real, on real API processes sharing one PostgreSQL database (``saas_web`` and a second
``invokeai-web`` beside it): a logout is refused by every process, a deactivated account's tokens and API keys
stay refused after it is reactivated, every route that sets a password holds to the CLI's rule, and an email
address is one account whatever its case."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import socketio
from sqlalchemy import Engine, text

from invokeai_saas.devstack import LocalStack
from invokeai_saas.devstack.group import start_together
from invokeai_saas.devstack.web import InvokeAIWebServer
from tests.support.browser import create_user
from tests.support.credits import set_plan
from tests.support.deployment import web_server
from tests.support.invokeai import ADMIN_EMAIL, admin_token

PASSWORD = "Events-user-password-42"  # what create_user gives
WEAK_PASSWORDS = ("x", "short1A", "alllowercase1")


@pytest.fixture(scope="module")
def second_api(
    stack: LocalStack, saas_web: InvokeAIWebServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Another API process of the same deployment (same database, Redis, object store and queue): its base URL."""
    web = web_server(tmp_path_factory.mktemp("sessions-second-api"), {"enabled": True, **stack.saas_settings()})
    start_together([web], timeout=300)
    try:
        yield web.url
    finally:
        web.stop(timeout=30)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _me(base_url: str, token: str) -> int:
    return httpx.get(f"{base_url}/api/v1/auth/me", headers=_bearer(token), timeout=30).status_code


def _login(base_url: str, email: str, password: str = PASSWORD, remember_me: bool = False) -> httpx.Response:
    body = {"email": email, "password": password, "remember_me": remember_me}
    return httpx.post(f"{base_url}/api/v1/auth/login", json=body, timeout=30)


def _socket_accepted(base_url: str, token: str) -> bool:
    client = socketio.Client(reconnection=False)
    try:
        client.connect(
            base_url, socketio_path="/ws/socket.io", transports=["polling"], auth={"token": token}, wait_timeout=30
        )
    except socketio.exceptions.ConnectionError:
        return False
    client.disconnect()
    return True


def _admin(base_url: str) -> dict[str, str]:
    return _bearer(admin_token(base_url))


def _new_user(base_url: str, name: str) -> tuple[str, str, str]:
    """(user_id, email, token) of a new non-admin user."""
    email = f"{name}-{uuid.uuid4().hex[:6]}@example.com"
    user_id, token = create_user(base_url, _admin(base_url), email)
    return user_id, email, token


def test_logout_revokes_the_token_on_every_api_process(saas_web: InvokeAIWebServer, second_api: str) -> None:
    a, b = saas_web.url, second_api
    _, email, _ = _new_user(a, "logout")
    login = _login(a, email, remember_me=True)
    assert login.status_code == 200, login.text
    token = login.json()["token"]
    other_session = _login(b, email).json()["token"]
    assert _me(a, token) == 200 and _me(b, token) == 200 and _socket_accepted(b, token)

    out = httpx.post(f"{b}/api/v1/auth/logout", headers=_bearer(token), timeout=30)
    assert out.status_code == 200 and out.json() == {"success": True}

    for base_url in (a, b):
        assert _me(base_url, token) == 401
        # The media routes (cookie) and the cookie refresh refuse it too, and no process mints a new token from it.
        media = httpx.post(f"{base_url}/api/v1/auth/media-cookie", headers=_bearer(token), timeout=30)
        assert media.status_code == 401
        cookie = httpx.get(
            f"{base_url}/api/v1/images/i/nothing.png/full", cookies={"invokeai_media_token": token}, timeout=30
        )
        assert cookie.status_code == 401
        assert not _socket_accepted(base_url, token)
    again = httpx.post(f"{a}/api/v1/auth/logout", headers=_bearer(token), timeout=30)
    assert again.status_code == 401 and "X-Refreshed-Token" not in again.headers

    # Only that session ended: the account's other session and a fresh login work on both processes.
    assert _me(a, other_session) == 200 and _me(b, other_session) == 200
    fresh = _login(b, email).json()["token"]
    assert _me(a, fresh) == 200


def test_a_reactivated_account_gets_neither_its_old_tokens_nor_its_api_keys_back(
    saas_web: InvokeAIWebServer, second_api: str, saas_db: Engine
) -> None:
    a, b = saas_web.url, second_api
    admin = _admin(a)
    user_id, email, token = _new_user(a, "reactivated")
    set_plan(saas_db, user_id, "pro")  # a plan with API access
    created = httpx.post(f"{a}/api/v1/saas/me/api-keys", json={"name": "script"}, headers=_bearer(token), timeout=30)
    assert created.status_code == 201, created.text
    key = created.json()["secret"]
    assert _me(b, token) == 200 and _me(b, key) == 200

    for is_active in (False, True):
        r = httpx.patch(f"{a}/api/v1/auth/users/{user_id}", json={"is_active": is_active}, headers=admin, timeout=30)
        assert r.status_code == 200, r.text

    for base_url in (a, b):
        assert _me(base_url, token) == 401, "a token issued before the deactivation works again"
        assert _me(base_url, key) == 401, "an API key of before the deactivation works again"
        assert not _socket_accepted(base_url, token)
    fresh = _login(b, email)
    assert fresh.status_code == 200, fresh.text
    assert _me(a, fresh.json()["token"]) == 200
    keys = httpx.get(f"{a}/api/v1/saas/me/api-keys", headers=_bearer(fresh.json()["token"]), timeout=30).json()
    assert [k["revoked_at"] is not None for k in keys] == [True]


def test_every_route_that_sets_a_password_holds_to_the_password_rule(
    saas_web: InvokeAIWebServer, saas_db: Engine
) -> None:
    base_url = saas_web.url
    admin = _admin(base_url)
    user_id, email, token = _new_user(base_url, "policy")
    for weak in WEAK_PASSWORDS:
        me = httpx.patch(
            f"{base_url}/api/v1/auth/me",
            json={"current_password": PASSWORD, "new_password": weak},
            headers=_bearer(token),
            timeout=30,
        )
        assert me.status_code == 400 and "Password must" in me.json()["detail"], me.text
        update = httpx.patch(
            f"{base_url}/api/v1/auth/users/{user_id}", json={"password": weak}, headers=admin, timeout=30
        )
        assert update.status_code == 400 and "Password must" in update.json()["detail"], update.text
        new = {"email": f"weak-{uuid.uuid4().hex[:6]}@example.com", "password": weak}
        create = httpx.post(f"{base_url}/api/v1/auth/users", json=new, headers=admin, timeout=30)
        assert create.status_code == 400 and "Password must" in create.json()["detail"], create.text
    assert _login(base_url, email).status_code == 200  # the refused changes changed nothing
    assert httpx.get(f"{base_url}/api/v1/auth/status", timeout=30).json()["strict_password_checking"] is True

    # The first-run setup route (open only while there is no active administrator: closed again in `finally`).
    with saas_db.begin() as conn:
        admins = conn.execute(
            text("UPDATE users SET is_active = false WHERE is_admin AND is_active RETURNING user_id")
        ).scalars()
        admin_ids = list(admins)
    try:
        for weak in WEAK_PASSWORDS:
            setup = httpx.post(
                f"{base_url}/api/v1/auth/setup",
                json={"email": f"setup-{uuid.uuid4().hex[:6]}@example.com", "password": weak},
                timeout=30,
            )
            assert setup.status_code == 400 and "Password must" in setup.json()["detail"], setup.text
    finally:
        with saas_db.begin() as conn:
            conn.execute(text("UPDATE users SET is_active = true WHERE user_id = ANY(:ids)"), {"ids": admin_ids})
    assert _login(base_url, ADMIN_EMAIL, "correct-Horse-battery-staple-42").status_code == 200


def test_an_email_address_is_one_account_whatever_its_case(saas_web: InvokeAIWebServer) -> None:
    base_url = saas_web.url
    admin = _admin(base_url)
    local = f"Case.User-{uuid.uuid4().hex[:6]}"
    first = httpx.post(
        f"{base_url}/api/v1/auth/users",
        json={"email": f"{local}@Example.com", "password": PASSWORD},
        headers=admin,
        timeout=30,
    )
    assert first.status_code == 201, first.text
    for spelling in (local.lower(), local.upper()):
        again = httpx.post(
            f"{base_url}/api/v1/auth/users",
            json={"email": f"{spelling}@example.com", "password": PASSWORD},
            headers=admin,
            timeout=30,
        )
        assert again.status_code == 400 and "already exists" in again.json()["detail"], again.text
        login = _login(base_url, f"{spelling}@EXAMPLE.COM")
        assert login.status_code == 200, login.text
        assert login.json()["user"]["user_id"] == first.json()["user_id"]
    assert _login(base_url, f"{local.lower()}@example.com", "Wrong-password-42").status_code == 401


def test_the_upgrade_names_addresses_that_differ_only_in_case_and_changes_nothing(pg_engine: Engine) -> None:
    from invokeai_saas.db import migrate

    migrate.downgrade(pg_engine, "0008_spending_caps")
    with pg_engine.begin() as conn:
        for user_id, email in (("u1", "Bob@example.com"), ("u2", "bob@example.com"), ("u3", "carol@example.com")):
            conn.execute(
                text("INSERT INTO users (user_id, email, password_hash) VALUES (:u, :e, 'x')"),
                {"u": user_id, "e": email},
            )
    url = pg_engine.url.render_as_string(hide_password=False)
    cli = str(Path(sys.executable).parent / "invokeai-saas")
    r = subprocess.run([cli, "db", "--database-url", url, "upgrade"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "Bob@example.com, bob@example.com" in r.stderr and "carol" not in r.stderr
    assert migrate.current_revision(pg_engine) == "0008_spending_caps"

    with pg_engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE user_id = 'u2'"))
    migrate.upgrade(pg_engine)
    assert migrate.current_revision(pg_engine) == migrate.head_revision()
