"""Run the real InvokeAI app in saas mode without workers or credits (PostgreSQL only: the API process runs graphs
with stock's processor) in this process, through FastAPI's TestClient, and print what the enqueue and queue routes
answered for a malformed batch and for a stored row that no longer parses, as JSON after ``QUEUE_WITHOUT_WORKERS``.

Used by tests/test_batch_validation.py in a subprocess, so the app's import-time patching and global state never
touch the test runner. Usage: python -m tests.support.queue_without_workers ROOT (saas settings in ROOT/saas.yaml).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

Q = "default"
WAIT_SECONDS = 60.0


def main(root: str) -> None:
    sys.argv = ["invokeai-web", "--root", root]
    from invokeai.frontend.cli.arg_parser import InvokeAIArgs

    InvokeAIArgs.parse_args()
    from fastapi.testclient import TestClient
    from invokeai.app.api_app import app
    from sqlalchemy import text

    from invokeai_saas.db.engine import get_engine
    from invokeai_saas.runtime import current_runtime
    from tests.support.invokeai import add_graph_batch

    engine = get_engine(current_runtime().settings)
    out: dict[str, Any] = {}
    with TestClient(app) as client:
        email, password = "unmetered@example.com", "Unmetered-queue-42"
        client.post("/api/v1/auth/setup", json={"email": email, "display_name": "U", "password": password})
        token = client.post("/api/v1/auth/login", json={"email": email, "password": password}).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}

        def item(item_id: int) -> dict[str, Any]:
            return dict(client.get(f"/api/v1/queue/{Q}/i/{item_id}", headers=headers).json())

        def wait_status(item_id: int, *statuses: str) -> dict[str, Any]:
            deadline = time.monotonic() + WAIT_SECONDS
            while time.monotonic() < deadline:
                current = item(item_id)
                if current.get("status") in statuses:
                    return current
                time.sleep(0.1)
            return item(item_id)

        bad = {
            "prepend": False,
            "batch": {
                "graph": {"id": "g", "nodes": {"noise": {"id": "noise", "type": "noise"}}, "edges": []},
                "data": [[{"node_path": "noise", "field_name": "width", "items": [64, -5]}]],
                "runs": 1,
            },
        }
        refused = client.post(f"/api/v1/queue/{Q}/enqueue_batch", json=bad, headers=headers)
        out["refused"] = {"status": refused.status_code, "body": refused.json()}
        out["stored_after_refusal"] = len(client.get(f"/api/v1/queue/{Q}/list_all", headers=headers).json())

        # A row stored before the check, or whose node pack the operator removed: its session no longer parses.
        client.put(f"/api/v1/queue/{Q}/processor/pause", headers=headers)
        enqueued = client.post(f"/api/v1/queue/{Q}/enqueue_batch", json=add_graph_batch(20, 1), headers=headers)
        (broken_id,) = enqueued.json()["item_ids"]
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE session_queue SET session = replace(session, '\"type\": \"add\"', '\"type\": \"gone\"')"
                     " WHERE item_id = :i"),
                {"i": broken_id},
            )  # fmt: skip
        listed = client.get(f"/api/v1/queue/{Q}/list_all", headers=headers)
        out["list_all"] = {"status": listed.status_code, "items": listed.json() if listed.status_code == 200 else None}
        out["pending_placeholder"] = item(broken_id)
        client.put(f"/api/v1/queue/{Q}/processor/resume", headers=headers)
        out["claimed"] = wait_status(broken_id, "failed", "completed", "canceled")
        later = client.post(f"/api/v1/queue/{Q}/enqueue_batch", json=add_graph_batch(21, 1), headers=headers)
        (later_id,) = later.json()["item_ids"]
        out["next_item"] = wait_status(later_id, "completed", "failed")
        client.delete(f"/api/v1/queue/{Q}/i/{broken_id}", headers=headers)
        client.put(f"/api/v1/queue/{Q}/clear", headers=headers)
    print("QUEUE_WITHOUT_WORKERS " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
