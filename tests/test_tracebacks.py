"""No answer carries a stack trace (``invokeai_saas/routes/tracebacks.py``): a failed item's owner gets its error
type and message from the queue routes and the live events, never the traceback, which stays in the database and
the log for operators. The filter seam keeps stock's contract (sync and async handlers, the same schema)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from invokeai.app.services.events.events_common import InvocationErrorEvent, QueueItemStatusChangedEvent
from pydantic import BaseModel
from sqlalchemy import Engine, text

from invokeai_saas.devstack.web import InvokeAIWebServer
from invokeai_saas.patches.api_app_route_guards import RouteFilter, apply
from invokeai_saas.routes.tracebacks import without_traceback
from tests.support.browser import Browser
from tests.support.credits import saas_user

Q = "default"


def _failing_batch() -> dict[str, Any]:
    """A graph that fails where it runs: a size over Trial's 1024 pixels reaches a denoiser through an edge, so the
    worker's plan check refuses the node (any node failure would do; this one needs no model weights)."""
    nodes = {
        "size": {"id": "size", "type": "integer", "value": 2048 + uuid.uuid4().int % 100},
        "gen": {"id": "gen", "type": "saas_test_denoise", "width": 512, "height": 512},
    }
    edges = [{"source": {"node_id": "size", "field": "value"}, "destination": {"node_id": "gen", "field": "width"}}]
    return {"prepend": False, "batch": {"graph": {"id": "g", "nodes": nodes, "edges": edges}, "runs": 1}}


def test_a_failed_items_owner_gets_the_error_but_never_the_traceback(
    saas_web: InvokeAIWebServer, saas_db: Engine
) -> None:
    _, headers = saas_user(saas_web, "traceback")
    browser = Browser(saas_web.url, headers["Authorization"].removeprefix("Bearer "))
    try:
        enqueued = httpx.post(f"{saas_web.url}/api/v1/queue/{Q}/enqueue_batch", json=_failing_batch(), headers=headers)
        assert enqueued.status_code == 200, enqueued.text
        item_id = enqueued.json()["item_ids"][0]

        def failed(events: list[tuple[str, dict[str, Any]]]) -> bool:
            """Both events: stock fails the item (its status event) before it emits ``invocation_error``."""
            return any(n == "queue_item_status_changed" and d["item_id"] == item_id and d["status"] == "failed"
                       for n, d in events) and any(n == "invocation_error" and d["item_id"] == item_id
                                                   for n, d in events)  # fmt: skip

        assert browser.wait_for(failed), browser.events
    finally:
        browser.close()

    (status_event,) = [d for d in browser.named("queue_item_status_changed", item_id) if d["status"] == "failed"]
    assert status_event["error_type"] == "PlanLimitExceeded" and "1024 pixels" in status_event["error_message"]
    assert status_event["error_traceback"] is None
    (error_event,) = browser.named("invocation_error", item_id)
    assert error_event["error_type"] == "PlanLimitExceeded" and error_event["error_traceback"] == ""

    base = f"{saas_web.url}/api/v1/queue/{Q}"
    answers = [
        httpx.get(f"{base}/i/{item_id}", headers=headers),
        httpx.get(f"{base}/list_all", headers=headers),
        httpx.post(f"{base}/items_by_ids", json={"item_ids": [item_id]}, headers=headers),
        httpx.put(f"{base}/i/{item_id}/cancel", headers=headers),  # a finished item: answered as it is
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert "Traceback" not in answer.text and ".py" not in answer.text, answer.text
        items = answer.json() if isinstance(answer.json(), list) else [answer.json()]
        mine = [i for i in items if i["item_id"] == item_id]
        assert len(mine) == 1 and mine[0]["error_type"] == "PlanLimitExceeded", answer.text
        assert mine[0].get("error_traceback") is None
    with saas_db.connect() as conn:  # the operators' copy is kept, as stock keeps it
        stored = conn.execute(text("SELECT error_traceback FROM session_queue WHERE item_id = :i"), {"i": item_id})
        assert "Traceback" in stored.scalar_one()


class _Item(BaseModel):
    item_id: int
    error_traceback: str | None = None


def test_without_traceback_empties_the_field_and_leaves_the_rest() -> None:
    item = _Item(item_id=1, error_traceback="Traceback (most recent call last): ...")
    assert without_traceback(item) == _Item(item_id=1)
    assert item.error_traceback is not None  # a copy: what the caller holds is unchanged
    assert without_traceback([item, None, 3]) == [_Item(item_id=1), None, 3]
    status_fields = QueueItemStatusChangedEvent.model_fields["error_traceback"]
    error_fields = InvocationErrorEvent.model_fields["error_traceback"]
    assert not status_fields.is_required() and error_fields.is_required()  # hence None for one, "" for the other


def test_a_filter_keeps_the_contract_of_sync_and_async_routes() -> None:
    def build(filtered: bool) -> FastAPI:
        router = APIRouter(prefix="/v1/items")

        @router.get("/sync/{item_id}", operation_id="get_sync", response_model=_Item)
        def get_sync(item_id: int, verbose: bool = False) -> _Item:
            return _Item(item_id=item_id, error_traceback="trace" if verbose else None)

        @router.get("/async", operation_id="list_async", response_model=list[_Item])
        async def list_async() -> list[_Item]:
            return [_Item(item_id=1, error_traceback="trace")]

        app = FastAPI()
        app.include_router(router, prefix="/api")
        if filtered:
            apply(
                app,
                [],
                [
                    RouteFilter("/v1/items/sync/{item_id}", frozenset({"GET"}), without_traceback),
                    RouteFilter("/v1/items/async", frozenset({"GET"}), without_traceback),
                ],
            )
        return app

    stock, filtered = build(False), build(True)
    assert filtered.openapi() == stock.openapi()
    with TestClient(stock) as plain, TestClient(filtered) as client:
        assert plain.get("/api/v1/items/sync/5", params={"verbose": True}).json()["error_traceback"] == "trace"
        assert client.get("/api/v1/items/sync/5", params={"verbose": True}).json() == {
            "item_id": 5,
            "error_traceback": None,
        }
        assert client.get("/api/v1/items/sync/x").status_code == 422  # parameters validated as before
        assert client.get("/api/v1/items/async").json() == [{"item_id": 1, "error_traceback": None}]
