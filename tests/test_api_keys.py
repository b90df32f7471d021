"""API keys and the plan's API access, through the real API (``saas_web``): a plan without API access cannot create
keys and its keys stop working; a key acts as its owner on stock's routes and nobody else's; keys are managed only
by a signed-in user, are revoked at once, and never reveal their secret after creation."""

from __future__ import annotations

import io
import uuid
from typing import Any

import httpx
import pytest
from invokeai.app.services.auth.token_service import TokenData
from PIL import Image
from sqlalchemy import Engine, text

from invokeai_saas.devstack.web import InvokeAIWebServer
from invokeai_saas.patches import auth_dependencies_api_keys
from tests.support.credits import saas_user, set_plan
from tests.support.invokeai import add_graph_batch, admin_token, upload_image

KEYS = "/api/v1/saas/me/api-keys"


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _get(web: InvokeAIWebServer, path: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{web.url}{path}", headers=headers, timeout=30)


def _create(web: InvokeAIWebServer, headers: dict[str, str], name: str = "render script") -> httpx.Response:
    return httpx.post(f"{web.url}{KEYS}", json={"name": name}, headers=headers, timeout=30)


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def _no_internals(response: httpx.Response) -> None:
    assert "Traceback" not in response.text and "/site-packages/" not in response.text
    assert "SELECT" not in response.text


def _pro_user_with_key(web: InvokeAIWebServer, engine: Engine, name: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    user_id, headers = saas_user(web, name)
    set_plan(engine, user_id, "pro")
    created = _create(web, headers)
    assert created.status_code == 201, created.text
    return user_id, headers, created.json()


def test_a_plan_without_api_access_cannot_create_a_key(saas_web: InvokeAIWebServer, saas_db: Engine) -> None:
    user_id, headers = saas_user(saas_web, "no-api")  # Trial: no API access
    refused = _create(saas_web, headers)
    assert refused.status_code == 403, refused.text
    detail = refused.json()["detail"]
    assert "Your plan (Trial) does not include API access" in detail and "/api/v1/saas/plans" in detail
    _no_internals(refused)
    listed = _get(saas_web, KEYS, headers)
    assert listed.status_code == 200 and listed.json() == []


def test_a_key_acts_as_its_owner_on_stock_routes_and_is_listed_without_its_secret(
    saas_web: InvokeAIWebServer, saas_db: Engine
) -> None:
    user_id, headers, key = _pro_user_with_key(saas_web, saas_db, "api-owner")
    secret = key["secret"]
    assert secret.startswith("isk_") and len(secret) > 40 and secret.startswith(key["prefix"])

    me = _get(saas_web, "/api/v1/auth/me", _bearer(secret))
    assert me.status_code == 200 and me.json()["user_id"] == user_id
    plan = _get(saas_web, "/api/v1/saas/me/plan", _bearer(secret))
    assert plan.status_code == 200 and plan.json()["plan_id"] == "pro"
    batch = add_graph_batch(a=int(uuid.uuid4().int % 1000))
    enqueued = httpx.post(
        f"{saas_web.url}/api/v1/queue/default/enqueue_batch", json=batch, headers=_bearer(secret), timeout=60
    )
    assert enqueued.status_code == 200, enqueued.text
    item_id = enqueued.json()["item_ids"][0]
    item = _get(saas_web, f"/api/v1/queue/default/i/{item_id}", headers)  # the studio session sees the key's item
    assert item.status_code == 200 and item.json()["user_id"] == user_id

    listed = _get(saas_web, KEYS, headers)
    assert listed.status_code == 200
    (info,) = listed.json()
    assert info["key_id"] == key["key_id"] and info["name"] == "render script" and "secret" not in info
    assert secret not in listed.text and info["last_used_at"] is not None
    with saas_db.connect() as conn:
        stored = conn.execute(text("SELECT * FROM api_keys WHERE key_id = :k"), {"k": key["key_id"]}).one()
    assert secret not in [str(v) for v in stored]  # only the digest is kept


def test_another_user_can_neither_see_nor_revoke_a_key_nor_read_through_it_what_is_not_the_owners(
    saas_web: InvokeAIWebServer, saas_db: Engine
) -> None:
    owner_id, owner_headers, key = _pro_user_with_key(saas_web, saas_db, "key-owner")
    other_id, other_headers = saas_user(saas_web, "key-stranger")
    set_plan(saas_db, other_id, "pro")

    assert _get(saas_web, KEYS, other_headers).json() == []
    revoke = httpx.delete(f"{saas_web.url}{KEYS}/{key['key_id']}", headers=other_headers, timeout=30)
    assert revoke.status_code == 404 and revoke.json()["detail"] == "No such API key."
    assert _get(saas_web, "/api/v1/auth/me", _bearer(key["secret"])).status_code == 200  # still works

    # The key reads what its owner reads, and the other user's image stays theirs; admin routes stay closed.
    through_key = _get(saas_web, "/api/v1/saas/me/ledger", _bearer(key["secret"]))
    assert through_key.status_code == 200 and through_key.json()["total"] >= 1
    assert through_key.json() == _get(saas_web, "/api/v1/saas/me/ledger", owner_headers).json()
    uploaded = upload_image(saas_web.url, other_headers, _png())
    assert uploaded.status_code == 201, uploaded.text
    name = uploaded.json()["image_name"]
    assert _get(saas_web, f"/api/v1/images/i/{name}", other_headers).status_code == 200
    for path in (f"/api/v1/images/i/{name}", f"/api/v1/images/i/{name}/full", f"/api/v1/images/i/{name}/metadata"):
        assert _get(saas_web, path, _bearer(key["secret"])).status_code in (403, 404), path
    deleted = httpx.delete(f"{saas_web.url}/api/v1/images/i/{name}", headers=_bearer(key["secret"]), timeout=30)
    assert deleted.status_code in (403, 404)
    assert _get(saas_web, f"/api/v1/images/i/{name}", other_headers).status_code == 200  # still there
    users = _get(saas_web, "/api/v1/auth/users", _bearer(key["secret"]))
    assert users.status_code == 403


def test_administrators_cannot_use_keys(saas_web: InvokeAIWebServer, saas_db: Engine) -> None:
    """Stock takes the admin flag from the account: an administrator's key would carry every admin right."""
    admin = {"Authorization": f"Bearer {admin_token(saas_web.url)}"}
    refused = _create(saas_web, admin)
    assert refused.status_code == 403 and "Administrator accounts cannot use API keys" in refused.json()["detail"]
    # A user promoted after making a key: the key stops working while they are an administrator.
    user_id, _, key = _pro_user_with_key(saas_web, saas_db, "promoted")
    promote = httpx.patch(f"{saas_web.url}/api/v1/auth/users/{user_id}", json={"is_admin": True}, headers=admin)
    assert promote.status_code == 200, promote.text
    try:
        as_admin = _get(saas_web, "/api/v1/auth/users", _bearer(key["secret"]))
        assert as_admin.status_code == 403 and "Administrator accounts" in as_admin.json()["detail"]
    finally:
        demote = httpx.patch(f"{saas_web.url}/api/v1/auth/users/{user_id}", json={"is_admin": False}, headers=admin)
        assert demote.status_code == 200
    assert _get(saas_web, "/api/v1/auth/me", _bearer(key["secret"])).status_code == 200


def test_an_expired_subscription_has_no_api_access(saas_web: InvokeAIWebServer, saas_db: Engine) -> None:
    user_id, _, key = _pro_user_with_key(saas_web, saas_db, "lapsed-pro")
    set_plan(saas_db, user_id, "pro", status="expired")
    refused = _get(saas_web, "/api/v1/saas/me/plan", _bearer(key["secret"]))
    assert refused.status_code == 403
    assert "Your expired plan (Pro, now with the free tier's limits) does not include API access" in refused.text
    set_plan(saas_db, user_id, "pro")
    assert _get(saas_web, "/api/v1/saas/me/plan", _bearer(key["secret"])).status_code == 200


def test_keys_are_managed_only_when_signed_in(saas_web: InvokeAIWebServer, saas_db: Engine) -> None:
    _, headers, key = _pro_user_with_key(saas_web, saas_db, "key-manager")
    with_key = _bearer(key["secret"])
    for response in (
        _create(saas_web, with_key, "minted by a key"),
        _get(saas_web, KEYS, with_key),
        httpx.delete(f"{saas_web.url}{KEYS}/{key['key_id']}", headers=with_key, timeout=30),
    ):
        assert response.status_code == 403, response.text
        assert "sign in to the studio" in response.json()["detail"]
    assert len(_get(saas_web, KEYS, headers).json()) == 1


def test_a_downgrade_stops_the_keys_and_an_upgrade_restores_them(saas_web: InvokeAIWebServer, saas_db: Engine) -> None:
    user_id, _, key = _pro_user_with_key(saas_web, saas_db, "downgraded")
    set_plan(saas_db, user_id, "starter")  # Starter has no API access
    refused = _get(saas_web, "/api/v1/saas/me/plan", _bearer(key["secret"]))
    assert refused.status_code == 403
    assert "Your plan (Starter) does not include API access" in refused.json()["detail"]
    _no_internals(refused)
    set_plan(saas_db, user_id, "studio")
    assert _get(saas_web, "/api/v1/saas/me/plan", _bearer(key["secret"])).status_code == 200


def test_a_revoked_or_unknown_key_is_refused_as_an_invalid_token(saas_web: InvokeAIWebServer, saas_db: Engine) -> None:
    _, headers, key = _pro_user_with_key(saas_web, saas_db, "revoker")
    revoked = httpx.delete(f"{saas_web.url}{KEYS}/{key['key_id']}", headers=headers, timeout=30)
    assert revoked.status_code == 204
    assert _get(saas_web, "/api/v1/auth/me", _bearer(key["secret"])).status_code == 401
    again = httpx.delete(f"{saas_web.url}{KEYS}/{key['key_id']}", headers=headers, timeout=30)
    assert again.status_code == 204  # revoking twice is harmless
    (info,) = _get(saas_web, KEYS, headers).json()
    assert info["revoked_at"] is not None
    unknown = _get(saas_web, "/api/v1/auth/me", _bearer("isk_" + "A" * 43))
    assert unknown.status_code == 401
    _no_internals(unknown)
    missing = httpx.delete(f"{saas_web.url}{KEYS}/{uuid.uuid4().hex}", headers=headers, timeout=30)
    assert missing.status_code == 404


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "nul\x00inside", "tab\there"])
def test_a_bad_key_name_is_a_422_and_creates_nothing(saas_web: InvokeAIWebServer, saas_db: Engine, name: str) -> None:
    user_id, headers = saas_user(saas_web, "bad-name")
    set_plan(saas_db, user_id, "pro")
    response = _create(saas_web, headers, name)
    assert response.status_code == 422
    _no_internals(response)
    assert _get(saas_web, KEYS, headers).json() == []


def test_the_seam_sends_only_api_keys_to_the_authenticator_and_applying_again_does_not_stack() -> None:
    class Module:
        @staticmethod
        def verify_token(token: str) -> TokenData | None:
            return TokenData(user_id="jwt", email="jwt@example.com", is_admin=False) if token == "jwt" else None

    seen: list[str] = []

    def authenticator(name: str) -> Any:
        def authenticate(token: str) -> TokenData:
            seen.append(f"{name}:{token}")
            return TokenData(user_id=name, email=f"{name}@example.com", is_admin=False)

        return authenticate

    module: Any = Module
    auth_dependencies_api_keys.apply(module, authenticator("first"))
    auth_dependencies_api_keys.apply(module, authenticator("second"))
    assert module.verify_token("jwt").user_id == "jwt" and module.verify_token("nope") is None
    assert module.verify_token("isk_abc").user_id == "second"
    assert seen == ["second:isk_abc"]
