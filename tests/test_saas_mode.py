"""Stock ``invokeai-web`` with saas mode configured: the overlay is active, end to end."""

from __future__ import annotations

import json
import threading
import time

import httpx
import socketio

from invokeai_saas.devstack import LocalStack
from invokeai_saas.devstack.web import InvokeAIWebServer
from tests.support.entry_point_plugin.saas_test_swap_plugin import MARKER_KEY, MARKER_VALUE
from tests.support.invokeai import add_graph_batch, admin_token


def test_health_reports_every_backend_reachable_without_auth(saas_web: InvokeAIWebServer) -> None:
    r = httpx.get(f"{saas_web.url}/api/v1/saas/health", timeout=30)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["invokeai_version"] == "6.14.2"
    assert body["version"]
    implementations = {name: b["implementation"] for name, b in body["backends"].items()}
    assert implementations == {
        "database": "postgres",
        "object_store": "s3",
        "queue": "sqs",
        "events": "redis",
        "billing": "stripe",
    }
    assert all(b["reachable"] is True for b in body["backends"].values()), body
    assert body["backends"]["database"]["detail"].startswith("PostgreSQL ")


def test_health_reveals_no_secrets_or_hosts(saas_web: InvokeAIWebServer, stack: LocalStack) -> None:
    text = httpx.get(f"{saas_web.url}/api/v1/saas/health", timeout=30).text
    settings = stack.saas_settings()
    secrets = [
        str(settings["s3_secret_access_key"]),
        str(settings["s3_access_key_id"]),
        str(settings["sqs_secret_access_key"]),
        str(settings["stripe_api_key"]),
        str(settings["database_url"]),
        str(settings["redis_url"]),
    ]
    for secret in secrets:
        assert secret not in text
    for leak in ("127.0.0.1", "localhost", "Traceback", str(stack.ports["postgres"]), str(stack.ports["redis"])):
        assert leak not in text


def test_saas_route_sits_before_the_ui_catch_all(saas_web: InvokeAIWebServer) -> None:
    schema = httpx.get(f"{saas_web.url}/openapi.json", timeout=30).json()
    assert "/api/v1/saas/health" in schema["paths"]
    # The UI mount still serves the studio at / and unknown paths still fall through to it, as in stock.
    index = httpx.get(f"{saas_web.url}/", timeout=30)
    assert index.status_code == 200 and "<html" in index.text.lower()


def test_saas_mode_forces_multiuser(saas_web: InvokeAIWebServer) -> None:
    status = httpx.get(f"{saas_web.url}/api/v1/auth/status", timeout=30).json()
    assert status["multiuser_enabled"] is True
    # Anonymous requests to user data are refused, as in InvokeAI's multiuser mode.
    assert httpx.get(f"{saas_web.url}/api/v1/boards/?all=true", timeout=30).status_code == 401


def test_entry_point_plugin_swapped_a_service(saas_web: InvokeAIWebServer) -> None:
    token = admin_token(saas_web.url)
    r = httpx.get(
        f"{saas_web.url}/api/v1/client_state/default/get_by_key",
        params={"key": MARKER_KEY},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert r.status_code == 200
    assert r.json() == MARKER_VALUE
    # Everything else still reaches the stock service underneath.
    headers = {"Authorization": f"Bearer {token}"}
    r = httpx.post(
        f"{saas_web.url}/api/v1/client_state/default/set_by_key",
        params={"key": "other"},
        json="kept",
        headers=headers,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    r = httpx.get(
        f"{saas_web.url}/api/v1/client_state/default/get_by_key", params={"key": "other"}, headers=headers, timeout=30
    )
    assert r.json() == "kept"


def test_socketio_handshake_with_gzip_and_a_queue_event(saas_web: InvokeAIWebServer) -> None:
    """The studio's live events: a real Socket.IO client that accepts gzip (as every browser does)."""
    raw = httpx.get(
        f"{saas_web.url}/ws/socket.io/",
        params={"EIO": "4", "transport": "polling"},
        headers={"Accept-Encoding": "gzip"},
        timeout=30,
    )
    assert raw.status_code == 200, raw.text
    assert raw.text.startswith("0{") and "sid" in json.loads(raw.text[1:])

    token = admin_token(saas_web.url)
    events: list[dict] = []
    completed = threading.Event()
    client = socketio.Client(reconnection=False)

    @client.on("queue_item_status_changed", namespace="/")
    def on_status(data: dict) -> None:
        events.append(data)
        if data.get("status") == "completed":
            completed.set()

    client.connect(
        saas_web.url,
        socketio_path="/ws/socket.io",
        transports=["polling"],
        headers={"Accept-Encoding": "gzip"},
        auth={"token": token},
        wait_timeout=30,
    )
    try:
        client.emit("subscribe_queue", {"queue_id": "default"})
        time.sleep(0.5)  # the subscription is processed before the enqueue below
        r = httpx.post(
            f"{saas_web.url}/api/v1/queue/default/enqueue_batch",
            json=add_graph_batch(),
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        batch_id = r.json()["batch"]["batch_id"]
        assert completed.wait(60), f"no completed event; got {events}"
    finally:
        client.disconnect()
    statuses = [e["status"] for e in events if e["batch_id"] == batch_id]
    assert statuses[0] in ("pending", "in_progress")
    assert statuses[-1] == "completed"
