"""A database outage answers 503 with ``Retry-After`` on every route, and no server error carries SQL
(``invokeai_saas/routes/outages.py``, ``invokeai_saas/routes/tracebacks.py``). A web server of this module's own on
a PostgreSQL server of its own (media on the session's S3 under a prefix of its own), so stopping the database
disturbs no other test."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from invokeai_saas.db import migrate
from invokeai_saas.devstack import LocalStack, PostgresServer, make_temp_data_dir
from invokeai_saas.devstack.web import InvokeAIWebServer
from invokeai_saas.routes.outages import UNAVAILABLE_DETAIL
from tests.support.browser import create_user
from tests.support.deployment import web_server
from tests.support.invokeai import add_graph_batch, admin_token, upload_image

Q = "/api/v1/queue/default"
INTERNALS = ("SELECT", "UPDATE", "psycopg", "sqlalchemy", "Traceback", ".py", "[SQL", "boom-")


@pytest.fixture(scope="module")
def own(
    stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PostgresServer, InvokeAIWebServer]]:
    data_dir = make_temp_data_dir("saas-outage-pg-")
    postgres = PostgresServer(data_dir, durable=False)
    postgres.start()
    migrate.upgrade_url(postgres.url)
    s3 = {k: v for k, v in stack.saas_settings().items() if k.startswith("s3_")}
    settings = {"enabled": True, "database_url": postgres.url, **s3, "s3_prefix": f"outage-{uuid.uuid4().hex[:8]}/"}
    web = web_server(tmp_path_factory.mktemp("outage-root"), settings)
    try:
        web.start(timeout=300)
        yield postgres, web
    finally:
        web.stop(timeout=30)
        postgres.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _users(web: InvokeAIWebServer) -> tuple[dict[str, str], dict[str, str]]:
    admin = {"Authorization": f"Bearer {admin_token(web.url)}"}
    _, token = create_user(web.url, admin, f"outage-{uuid.uuid4().hex[:6]}@example.com")
    return admin, {"Authorization": f"Bearer {token}"}


def _no_internals(answer: httpx.Response) -> None:
    assert not [word for word in INTERNALS if word in answer.text], answer.text


def test_a_server_error_answers_a_generic_body_and_logs_the_detail(
    own: tuple[PostgresServer, InvokeAIWebServer],
) -> None:
    """A statement that fails for a reason of the server's own (here a trigger that raises) reached the user as
    stock's "Unexpected error while canceling queue item: (psycopg.errors.RaiseException) ... [SQL: UPDATE ...]";
    now the body is generic with a reference, and the log has the detail under that reference."""
    postgres, web = own
    admin, user = _users(web)
    httpx.put(f"{web.url}{Q}/processor/pause", headers=admin, timeout=30).raise_for_status()
    try:
        enqueued = httpx.post(f"{web.url}{Q}/enqueue_batch", json=add_graph_batch(), headers=user, timeout=30)
        assert enqueued.status_code == 200, enqueued.text
        item_id = enqueued.json()["item_ids"][0]
        with psycopg.connect(**(postgres.conninfo(admin=True) | {"dbname": postgres.database}), autocommit=True) as c:
            c.execute(
                "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'boom-%', NEW.item_id; END $$"
            )
            c.execute("CREATE TRIGGER boom BEFORE UPDATE ON session_queue FOR EACH ROW EXECUTE FUNCTION boom()")
            try:
                failed = httpx.put(f"{web.url}{Q}/i/{item_id}/cancel", headers=user, timeout=30)
            finally:
                c.execute("DROP TRIGGER boom ON session_queue")
                c.execute("DROP FUNCTION boom()")
        assert failed.status_code == 500, failed.text
        _no_internals(failed)
        detail = failed.json()["detail"]
        assert detail.startswith("Internal server error") and "reference" in detail, detail
        reference = detail.rsplit(" ", 1)[-1].strip(").")
        log = web.log_path.read_text(errors="replace")
        (line,) = [each for each in log.splitlines() if reference in each]
        assert "Unexpected error while canceling queue item" in line and f"boom-{item_id}" in line, line
        canceled = httpx.put(f"{web.url}{Q}/i/{item_id}/cancel", headers=user, timeout=30)
        assert canceled.status_code == 200 and canceled.json()["status"] == "canceled", canceled.text
    finally:
        httpx.put(f"{web.url}{Q}/processor/resume", headers=admin, timeout=30).raise_for_status()


def _requests(user: dict[str, str], admin: dict[str, str], item_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    """Routes across the API: unauthenticated, the bearer check, stock's wrapped 500s, the overridden enqueue, the
    batched image and workflow lists, the media routes, the saas routes."""
    return [
        ("POST", "/api/v1/auth/login", {"json": {"email": "nobody@example.com", "password": "x"}}),
        ("GET", "/api/v1/auth/me", {"headers": user}),
        ("POST", f"{Q}/enqueue_batch", {"json": add_graph_batch(), "headers": user}),
        ("GET", f"{Q}/i/{item_id}", {"headers": user}),
        ("PUT", f"{Q}/i/{item_id}/cancel", {"headers": user}),
        ("GET", f"{Q}/list_all", {"headers": user}),
        ("GET", f"{Q}/status", {"headers": user}),
        ("GET", "/api/v1/images/", {"params": {"limit": "10"}, "headers": user}),
        ("GET", "/api/v1/images/names", {"headers": user}),
        ("POST", "/api/v1/images/images_by_names", {"json": {"image_names": ["x.png"]}, "headers": user}),
        ("GET", "/api/v1/boards/", {"params": {"all": "true"}, "headers": user}),
        ("GET", "/api/v1/workflows/", {"headers": admin}),
        ("GET", "/api/v1/auth/users", {"headers": admin}),
        ("GET", "/api/v1/saas/me/balance", {"headers": user}),
        ("GET", "/api/v1/saas/plans", {}),
    ]


def test_a_database_outage_answers_503_with_retry_after_everywhere(
    own: tuple[PostgresServer, InvokeAIWebServer],
) -> None:
    postgres, web = own
    admin, user = _users(web)
    enqueued = httpx.post(f"{web.url}{Q}/enqueue_batch", json=add_graph_batch(), headers=user, timeout=30)
    assert enqueued.status_code == 200, enqueued.text
    item_id = enqueued.json()["item_ids"][0]
    assert upload_image(web.url, user, _png()).status_code == 201

    postgres.stop()
    try:
        answers = {
            f"{method} {path}": httpx.request(method, web.url + path, timeout=60, **kwargs)
            for method, path, kwargs in _requests(user, admin, item_id)
        }
    finally:
        postgres.start()
    wrong = {route: (a.status_code, a.text[:200]) for route, a in answers.items() if a.status_code != 503}
    assert not wrong, wrong
    for answer in answers.values():
        assert answer.headers["retry-after"] == "5" and answer.json() == {"detail": UNAVAILABLE_DETAIL}
        _no_internals(answer)

    deadline = time.monotonic() + 60  # the pool reconnects on the next checkout; poll for the server's state
    while httpx.get(f"{web.url}/api/v1/auth/me", headers=user, timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "the web server did not recover after the database came back"
        time.sleep(0.5)
    again = httpx.post(f"{web.url}{Q}/enqueue_batch", json=add_graph_batch(), headers=user, timeout=30)
    assert again.status_code == 200, again.text
    listed = httpx.get(f"{web.url}/api/v1/images/", params={"limit": "10"}, headers=user, timeout=30)
    assert listed.status_code == 200 and listed.json()["total"] == 1, listed.text


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()
