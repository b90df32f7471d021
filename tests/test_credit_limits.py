"""Plan limits at enqueue, through the real API (``saas_web``): every refusal has its status and says what the
plan allows, enqueues nothing and holds nothing; one user at their limit never limits another. New users are on
Trial: batches of 4, 1024 pixels, SD models only, 10 queued items."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from invokeai_saas.credits.ledger import CreditLedger
from invokeai_saas.devstack.web import InvokeAIWebServer
from tests.support.credits import saas_user as _user
from tests.support.credits import set_plan
from tests.support.invokeai import add_graph_batch, admin_token

Q = "default"


@pytest.fixture(scope="module")
def engine(saas_db: Engine) -> Engine:
    return saas_db


def _enqueue(web: InvokeAIWebServer, headers: dict[str, str], body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{web.url}/api/v1/queue/{Q}/enqueue_batch", json=body, headers=headers, timeout=60)


def _graph_batch(nodes: dict[str, Any], runs: int = 1) -> dict[str, Any]:
    return {"prepend": False, "batch": {"graph": {"id": "g", "nodes": nodes, "edges": []}, "runs": runs}}


def _queued(engine: Engine, user_id: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(text("SELECT count(*) FROM session_queue WHERE user_id = :u"), {"u": user_id}).scalar_one()
        )


def _refused(response: httpx.Response, status: int, *phrases: str) -> None:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    for phrase in phrases:
        assert phrase in detail, detail
    assert "Traceback" not in response.text and "/api/v1/saas/plans" in detail


def test_batch_size_resolution_and_model_access_are_refused_with_what_the_plan_allows(
    saas_web: InvokeAIWebServer, engine: Engine
) -> None:
    user_id, headers = _user(saas_web, "limited")
    _refused(_enqueue(saas_web, headers, add_graph_batch() | {"batch": {**add_graph_batch()["batch"], "runs": 5}}),
             403, "Trial", "batches of up to 4 items", "has 5")  # fmt: skip
    big = {"noise": {"id": "noise", "type": "noise", "seed": 1, "width": 2048, "height": 512}}
    _refused(_enqueue(saas_web, headers, _graph_batch(big)), 403, "up to 1024 pixels", "asks for 2048")
    flux = {
        "model": {
            "id": "model",
            "type": "main_model_loader",
            "model": {"key": str(uuid.uuid4()), "hash": "x", "name": "some-flux", "base": "flux", "type": "main"},
        }
    }
    _refused(_enqueue(saas_web, headers, _graph_batch(flux)), 403, "does not include flux models")
    assert _queued(engine, user_id) == 0
    balance = CreditLedger(engine).balance(user_id)
    assert (balance.available, balance.held) == (500, 0)  # refused requests hold nothing
    # Within the limits the same user is served.
    ok = {"noise": {"id": "noise", "type": "noise", "seed": 1, "width": 1024, "height": 1024}}
    assert _enqueue(saas_web, headers, _graph_batch(ok)).status_code == 200


def test_the_queue_size_limit_is_per_user(saas_web: InvokeAIWebServer, engine: Engine) -> None:
    full_id, full = _user(saas_web, "queue-full")
    _, other = _user(saas_web, "queue-other")
    admin = {"Authorization": f"Bearer {admin_token(saas_web.url)}"}
    httpx.put(f"{saas_web.url}/api/v1/queue/{Q}/processor/pause", headers=admin, timeout=30).raise_for_status()
    try:
        for runs in (4, 4, 2):  # Trial: 10 queued items, in batches of at most 4
            body = add_graph_batch() | {"batch": {**add_graph_batch()["batch"], "runs": runs}}
            assert _enqueue(saas_web, full, body).status_code == 200
        _refused(_enqueue(saas_web, full, add_graph_batch()), 429, "allows 10 queued items")
        assert _queued(engine, full_id) == 10
        assert _enqueue(saas_web, other, add_graph_batch()).status_code == 200  # another user is not affected
    finally:
        for headers in (full, other):
            httpx.put(f"{saas_web.url}/api/v1/queue/{Q}/clear", headers=headers, timeout=30).raise_for_status()
        httpx.put(f"{saas_web.url}/api/v1/queue/{Q}/processor/resume", headers=admin, timeout=30).raise_for_status()


def test_a_larger_plan_lifts_the_limits_at_once(saas_web: InvokeAIWebServer, engine: Engine) -> None:
    user_id, headers = _user(saas_web, "upgraded")
    body = add_graph_batch() | {"batch": {**add_graph_batch()["batch"], "runs": 6}}
    assert _enqueue(saas_web, headers, body).status_code == 403
    set_plan(engine, user_id, "pro")
    assert _enqueue(saas_web, headers, body).status_code == 200  # Pro: batches of 16


def test_a_full_storage_quota_refuses_new_generations(saas_web: InvokeAIWebServer, engine: Engine) -> None:
    user_id, headers = _user(saas_web, "hoarder")
    with engine.begin() as conn:  # Trial includes 2 GB; this user's media fill it (the usage row the index keeps)
        conn.execute(
            text("INSERT INTO user_storage_usage (user_id, bytes, objects) VALUES (:u, :b, 1)"),
            {"u": user_id, "b": 2 * 1024**3},
        )
    try:
        _refused(_enqueue(saas_web, headers, add_graph_batch()), 403, "2 GB of storage and it is full")
        assert _queued(engine, user_id) == 0
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM user_storage_usage WHERE user_id = :u"), {"u": user_id})
    assert _enqueue(saas_web, headers, add_graph_batch()).status_code == 200


def _finished(web: InvokeAIWebServer, headers: dict[str, str], item_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while (item := _item(web, headers, item_id))["status"] not in ("completed", "failed", "canceled"):
        assert time.monotonic() < deadline, item
        time.sleep(0.2)
    return item


def _sized_by_an_edge(node_type: str, size: int) -> dict[str, Any]:
    nodes = {
        "size": {"id": "size", "type": "integer", "value": size},
        "gen": {"id": "gen", "type": node_type, "width": 512, "height": 512},
    }
    edges = [{"source": {"node_id": "size", "field": "value"}, "destination": {"node_id": "gen", "field": "width"}}]
    return {"prepend": False, "batch": {"graph": {"id": "g", "nodes": nodes, "edges": edges}, "runs": 1}}


def test_a_denoiser_size_the_enqueue_cannot_read_is_refused_where_it_runs(
    saas_web: InvokeAIWebServer, engine: Engine
) -> None:
    """A width that reaches a denoiser through an edge is only known when the node runs: the worker's runner checks
    each node on the values it got, fails the item with the plan's message, and charges the seconds it ran."""
    user_id, headers = _user(saas_web, "edge-width")
    accepted = _enqueue(saas_web, headers, _sized_by_an_edge("saas_test_denoise", 2048))
    assert accepted.status_code == 200, accepted.text  # the literal sizes are within Trial's 1024
    item_id = accepted.json()["item_ids"][0]
    item = _finished(saas_web, headers, item_id)
    assert item["status"] == "failed" and item["error_type"] == "PlanLimitExceeded", item
    assert "Your plan (Trial) allows images up to 1024 pixels" in item["error_message"]
    assert "asks for 2048" in item["error_message"]
    ledger = CreditLedger(engine)
    deadline = time.monotonic() + 30
    while (balance := ledger.balance(user_id)).held:  # settled from the seconds it ran, not released
        assert time.monotonic() < deadline, balance
        time.sleep(0.2)
    with engine.connect() as conn:
        charged = conn.execute(text("SELECT credits FROM credit_usage WHERE item_id = :i"), {"i": item_id}).scalar()
    assert charged is not None and charged >= 1 and balance.available == 500 - charged


def test_sizes_that_are_not_generation_sizes_are_not_limited(saas_web: InvokeAIWebServer, engine: Engine) -> None:
    """A resize, crop or ideal-size node's size is not what is generated, and a noise size reached through an edge
    is how stock's Upscaling tab sizes tiled MultiDiffusion over an upscaled image: neither is refused."""
    _, headers = _user(saas_web, "not-generation")
    resize = {"resize": {"id": "resize", "type": "img_resize", "image": {"image_name": "none.png"}, "width": 4096,
                         "height": 4096}}  # fmt: skip
    assert _enqueue(saas_web, headers, _graph_batch(resize)).status_code == 200
    upscale_sized = _enqueue(saas_web, headers, _sized_by_an_edge("noise", 2048))
    assert upscale_sized.status_code == 200, upscale_sized.text
    item = _finished(saas_web, headers, upscale_sized.json()["item_ids"][0])
    assert item["status"] == "completed", item


def test_a_size_in_batch_data_counts_even_as_text(saas_web: InvokeAIWebServer, engine: Engine) -> None:
    """Batch data is kept as sent and the node validates "2048" to 2048 when it runs: the enqueue reads it so."""
    user_id, headers = _user(saas_web, "text-width")
    body = _graph_batch({"noise": {"id": "noise", "type": "noise", "seed": 3, "width": 512, "height": 512}})
    body["batch"]["data"] = [[{"node_path": "noise", "field_name": "width", "items": ["2048"]}]]
    _refused(_enqueue(saas_web, headers, body), 403, "up to 1024 pixels", "asks for 2048")
    assert _queued(engine, user_id) == 0


def _item(web: InvokeAIWebServer, headers: dict[str, str], item_id: int) -> dict[str, Any]:
    return dict(httpx.get(f"{web.url}/api/v1/queue/{Q}/i/{item_id}", headers=headers, timeout=30).json())
