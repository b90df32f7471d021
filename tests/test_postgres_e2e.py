"""Two real ``invokeai-web`` processes in saas mode sharing one PostgreSQL database."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image
from sqlalchemy import Engine

from invokeai_saas.db import migrate
from invokeai_saas.devstack import LocalStack
from invokeai_saas.devstack.group import start_together
from invokeai_saas.devstack.web import InvokeAIWebServer
from tests.support.credits import set_plan
from tests.support.invokeai import ADMIN_EMAIL, ADMIN_PASSWORD, TEST_ENV, add_graph_batch, admin_token


@pytest.fixture(scope="module")
def pair(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InvokeAIWebServer, ...]]:
    migrate.upgrade_url(str(stack.saas_settings()["database_url"]))
    settings = {"enabled": True, **stack.saas_settings()}
    servers = tuple(
        InvokeAIWebServer(tmp_path_factory.mktemp(f"pg-e2e-{i}"), saas_settings=settings, env=dict(TEST_ENV))
        for i in range(2)
    )
    start_together(list(servers), timeout=240)
    try:
        yield servers
    finally:
        for server in servers:
            server.stop(timeout=30)


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_user_and_token_work_on_both(pair: tuple[InvokeAIWebServer, ...]) -> None:
    a, b = pair
    token_from_a = admin_token(a.url)  # first-admin setup happens on A
    status_b = httpx.get(f"{b.url}/api/v1/auth/status", timeout=30).json()
    assert status_b["setup_required"] is False
    me = httpx.get(f"{b.url}/api/v1/auth/me", headers={"Authorization": f"Bearer {token_from_a}"}, timeout=30)
    assert me.status_code == 200 and me.json()["email"] == ADMIN_EMAIL
    login_b = httpx.post(
        f"{b.url}/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}, timeout=30
    )
    assert login_b.status_code == 200
    me_a = httpx.get(f"{a.url}/api/v1/auth/me", headers={"Authorization": f"Bearer {login_b.json()['token']}"})
    assert me_a.status_code == 200


def test_image_uploaded_on_one_lists_on_the_other(pair: tuple[InvokeAIWebServer, ...]) -> None:
    a, b = pair
    headers = {"Authorization": f"Bearer {admin_token(a.url)}"}
    r = httpx.post(
        f"{a.url}/api/v1/images/upload",
        params={"image_category": "user", "is_intermediate": "false"},
        files={"file": ("red.png", _png(), "image/png")},
        headers=headers,
        timeout=60,
    )
    assert r.status_code in (200, 201), r.text
    name = r.json()["image_name"]
    listed = httpx.get(
        f"{b.url}/api/v1/images/", params={"categories": "user", "limit": 50}, headers=headers, timeout=30
    )
    assert listed.status_code == 200
    assert name in [item["image_name"] for item in listed.json()["items"]]
    dto_b = httpx.get(f"{b.url}/api/v1/images/i/{name}", headers=headers, timeout=30)
    assert dto_b.status_code == 200 and dto_b.json()["width"] == 8


def test_batch_enqueued_on_one_runs_and_reads_the_same_on_both(pair: tuple[InvokeAIWebServer, ...]) -> None:
    a, b = pair
    headers = {"Authorization": f"Bearer {admin_token(a.url)}"}
    r = httpx.post(f"{a.url}/api/v1/queue/default/enqueue_batch", json=add_graph_batch(), headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    batch_id = r.json()["batch"]["batch_id"]
    deadline = time.monotonic() + 60
    status: dict = {}
    while time.monotonic() < deadline:
        status = httpx.get(f"{b.url}/api/v1/queue/default/b/{batch_id}/status", headers=headers, timeout=30).json()
        if status.get("completed") == 1:
            break
        time.sleep(0.3)
    assert status.get("completed") == 1, status
    status_a = httpx.get(f"{a.url}/api/v1/queue/default/b/{batch_id}/status", headers=headers, timeout=30).json()
    assert status_a == status


def test_no_sqlite_file_anywhere(pair: tuple[InvokeAIWebServer, ...]) -> None:
    for server in pair:
        leftovers = [p for p in server.root.rglob("*") if p.suffix in (".db", ".db-wal", ".db-shm", ".sqlite")]
        assert leftovers == []


def test_orphaned_model_scan_works_on_postgres(pair: tuple[InvokeAIWebServer, ...]) -> None:
    """Upstream's orphaned-model routes read model configs through the store's SQLite handle."""
    a, _ = pair
    headers = {"Authorization": f"Bearer {admin_token(a.url)}"}
    orphan = a.root / "models" / "saas-orphan"
    orphan.mkdir(parents=True, exist_ok=True)
    (orphan / "weights.safetensors").write_bytes(b"\0" * 16)
    r = httpx.get(f"{a.url}/api/v2/models/sync/orphaned", headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    assert "saas-orphan" in r.text


def _other_user_headers(base_url: str, admin_headers: dict[str, str]) -> dict[str, str]:
    email, password = "other@example.com", "Other-user-password-42"
    httpx.post(
        f"{base_url}/api/v1/auth/users",
        json={"email": email, "display_name": "Other", "password": password},
        headers=admin_headers,
        timeout=30,
    )
    r = httpx.post(f"{base_url}/api/v1/auth/login", json={"email": email, "password": password}, timeout=30)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_batched_images_by_names_keeps_tenants_apart(pair: tuple[InvokeAIWebServer, ...]) -> None:
    a, b = pair
    admin = {"Authorization": f"Bearer {admin_token(a.url)}"}
    other = _other_user_headers(a.url, admin)
    r = httpx.post(
        f"{a.url}/api/v1/images/upload",
        params={"image_category": "user", "is_intermediate": "false"},
        files={"file": ("private.png", _png(), "image/png")},
        headers=admin,
        timeout=60,
    )
    name = r.json()["image_name"]
    body = {"image_names": [name, "no-such-image.png", name]}
    as_admin = httpx.post(f"{b.url}/api/v1/images/images_by_names", json=body, headers=admin, timeout=30)
    assert [d["image_name"] for d in as_admin.json()] == [name, name]  # input order, missing skipped
    as_other = httpx.post(f"{b.url}/api/v1/images/images_by_names", json=body, headers=other, timeout=30)
    assert as_other.status_code == 200 and as_other.json() == []
    assert httpx.get(f"{b.url}/api/v1/images/i/{name}", headers=other, timeout=30).status_code == 403

    # On a public board the image becomes readable to others, as in stock.
    board = httpx.post(f"{a.url}/api/v1/boards/", params={"board_name": "public"}, headers=admin, timeout=30).json()[
        "board_id"
    ]
    r = httpx.patch(f"{a.url}/api/v1/boards/{board}", json={"board_visibility": "public"}, headers=admin, timeout=30)
    assert r.status_code in (200, 201), r.text
    r = httpx.post(
        f"{a.url}/api/v1/board_images/", json={"board_id": board, "image_name": name}, headers=admin, timeout=30
    )
    assert r.status_code in (200, 201), r.text
    as_other = httpx.post(f"{b.url}/api/v1/images/images_by_names", json=body, headers=other, timeout=30).json()
    assert [d["image_name"] for d in as_other] == [name, name] and as_other[0]["board_id"] == board


def test_batched_workflow_list_matches_stock_shape(pair: tuple[InvokeAIWebServer, ...], saas_db: Engine) -> None:
    a, _ = pair
    admin = {"Authorization": f"Bearer {admin_token(a.url)}"}
    # Workflows need a plan with the node editor (invokeai_saas/credits/access.py); staff are on Tester.
    admin_id = httpx.get(f"{a.url}/api/v1/auth/me", headers=admin, timeout=30).json()["user_id"]
    set_plan(saas_db, admin_id, "tester")
    params = {"page": 0, "per_page": 5, "categories": "default"}  # other suites add user workflows to this database
    page = httpx.get(f"{a.url}/api/v1/workflows/", params=params, headers=admin, timeout=30)
    assert page.status_code == 200
    body = page.json()
    assert len(body["items"]) == 5 and body["total"] >= 5 and body["per_page"] == 5
    for item in body["items"]:
        assert item["category"] == "default" and "call_saved_workflow_compatibility" in item
        assert item["thumbnail_url"] is None or item["thumbnail_url"].startswith("api/v1/workflows/i/")
