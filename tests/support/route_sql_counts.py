"""Run the real InvokeAI app in saas mode in this process (FastAPI TestClient: real routers, real services,
real PostgreSQL) and print, as JSON, how many SQL statements each list route sends at two page sizes.

Used by tests/test_route_statement_counts.py in a subprocess, so the app's import-time patching and global
state never touch the test runner. Usage: python route_sql_counts.py ROOT (saas settings in ROOT/saas.yaml).
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

SMALL, LARGE = 5, 40


def main(root: str) -> None:
    sys.argv = ["invokeai-web", "--root", root]
    from invokeai.frontend.cli.arg_parser import InvokeAIArgs

    InvokeAIArgs.parse_args()
    from fastapi.testclient import TestClient
    from invokeai.app.api.dependencies import ApiDependencies
    from invokeai.app.api_app import app
    from invokeai.app.services.image_records.image_records_common import ImageCategory, ResourceOrigin
    from sqlalchemy import event, text

    from invokeai_saas.db.engine import get_engine
    from invokeai_saas.periodic import THREAD_PREFIX
    from invokeai_saas.runtime import current_runtime

    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # The background passes (the spending cap's runs every second) are not the request's statements.
        if not threading.current_thread().name.startswith(THREAD_PREFIX):
            statements.append(statement)

    event.listen(get_engine(current_runtime().settings), "before_cursor_execute", record)

    with TestClient(app) as client:
        email, password = "counter@example.com", "Counting-statements-42"
        client.post("/api/v1/auth/setup", json={"email": email, "display_name": "C", "password": password})
        token = client.post("/api/v1/auth/login", json={"email": email, "password": password}).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        client.put("/api/v1/queue/default/processor/pause", headers=headers)
        services: Any = ApiDependencies.invoker.services
        user_id = client.get("/api/v1/auth/me", headers=headers).json()["user_id"]
        with get_engine(current_runtime().settings).begin() as conn:  # workflows need the node editor: Tester
            conn.execute(text("UPDATE subscriptions SET plan_id = 'tester' WHERE user_id = :u"), {"u": user_id})

        names = [f"img-{i:03d}.png" for i in range(LARGE)]
        board_ids = [
            client.post("/api/v1/boards/", params={"board_name": f"b{i}"}, headers=headers).json()["board_id"]
            for i in range(LARGE)
        ]
        for i, name in enumerate(names):
            services.image_records.save(
                image_name=name,
                image_origin=ResourceOrigin.INTERNAL,
                image_category=ImageCategory.GENERAL,
                width=8,
                height=8,
                has_workflow=False,
                user_id=user_id,
            )
            services.board_image_records.add_image_to_board(board_ids[i], name)
            services.video_records.save(
                video_name=f"vid-{i:03d}.mp4",
                video_origin=ResourceOrigin.INTERNAL,
                video_category=ImageCategory.GENERAL,
                width=8,
                height=8,
                duration=1.0,
                fps=24.0,
                has_workflow=False,
                user_id=user_id,
            )
            services.board_video_records.add_video_to_board(board_ids[i], f"vid-{i:03d}.mp4")

        def count(method: str, url: str, **kwargs: Any) -> int:
            statements.clear()
            response = client.request(method, url, headers=headers, **kwargs)
            assert response.status_code == 200, (url, response.status_code, response.text[:200])
            return len(statements)

        def queue_with(items: int) -> int:
            client.delete("/api/v1/queue/default/clear", headers=headers)
            graph = {"id": "g", "nodes": {"add": {"id": "add", "type": "add", "a": 1, "b": 2}}, "edges": []}
            client.post(
                "/api/v1/queue/default/enqueue_batch",
                json={"prepend": False, "batch": {"graph": graph, "runs": items}},
                headers=headers,
            )
            return count("GET", "/api/v1/queue/default/list_all")

        results: dict[str, list[int]] = {}
        for size in (SMALL, LARGE):
            for route, n in (
                ("images", count("GET", "/api/v1/images/", params={"limit": size, "categories": "general"})),
                (
                    "images_by_names",
                    count("POST", "/api/v1/images/images_by_names", json={"image_names": names[:size]}),
                ),
                ("boards", count("GET", "/api/v1/boards/", params={"offset": 0, "limit": size})),
                ("videos", count("GET", "/api/v1/videos/", params={"limit": size})),
                ("workflows", count("GET", "/api/v1/workflows/", params={"page": 0, "per_page": size})),
                ("queue_items", queue_with(size)),
            ):
                results.setdefault(route, []).append(n)
        print("ROUTE_SQL_COUNTS " + json.dumps(results), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
