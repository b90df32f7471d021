"""A browser's side of a real ``invokeai-web``: users created over the API, and Socket.IO connections that record
every event the studio would receive."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import socketio

QUEUE = "default"
WAIT = 90.0


def create_user(base_url: str, admin: dict[str, str], email: str) -> tuple[str, str]:
    """Create a non-admin user; returns (user_id, token)."""
    password = "Events-user-password-42"
    r = httpx.post(
        f"{base_url}/api/v1/auth/users",
        json={"email": email, "display_name": email.split("@")[0], "password": password},
        headers=admin,
        timeout=30,
    )
    assert r.status_code in (200, 201), r.text
    r = httpx.post(f"{base_url}/api/v1/auth/login", json={"email": email, "password": password}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    return str(body["user"]["user_id"]), str(body["token"])


class Browser:
    """A Socket.IO connection as the studio opens it (polling, gzip accepted, token in ``auth``), subscribed to the
    queue room, recording every event it receives."""

    def __init__(self, base_url: str, token: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._cond = threading.Condition()
        self._client = socketio.Client(reconnection=False)
        self._client.on("*", handler=self._record)
        self._client.connect(
            base_url,
            socketio_path="/ws/socket.io",
            transports=["polling"],
            headers={"Accept-Encoding": "gzip"},
            auth={"token": token},
            wait_timeout=30,
        )
        # `call` waits for the server's acknowledgement, so the subscription is in place when it returns.
        self._client.call("subscribe_queue", {"queue_id": QUEUE}, timeout=30)

    def _record(self, event: str, data: Any) -> None:
        with self._cond:
            self.events.append((event, data))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[tuple[str, dict[str, Any]]]], bool]) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.events), WAIT)

    def named(self, name: str, item_id: int | None = None) -> list[dict[str, Any]]:
        with self._cond:
            return [d for n, d in self.events if n == name and (item_id is None or d.get("item_id") == item_id)]

    def close(self) -> None:
        self._client.disconnect()
