"""One tenant's malformed batch must not break the shared queue (issue 12, item 6).

- A batch value its node refuses (``width: -5`` in ``data``) answers 422 naming the node and field, on the metered
  enqueue route (``saas_web``: credits on) and on stock's (a deployment without credits or workers), and nothing is
  stored. Stock stored it, and from then on every user's ``list_all`` answered 500.
- A stored row that no longer parses (stored before the check, or its node pack removed) is read as a placeholder
  item: every list answers 200, the item can be fetched, canceled and deleted, and a claim fails it cleanly (by a
  worker, or by the API process's own processor) while the next item runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from invokeai.app.invocations.math import AddInvocation
from invokeai.app.services.session_queue.session_queue_common import Batch, BatchDatum
from invokeai.app.services.shared.graph import Graph
from sqlalchemy import Engine, text

from invokeai_saas.config import write_settings
from invokeai_saas.devstack import PostgresServer
from invokeai_saas.devstack.web import InvokeAIWebServer
from invokeai_saas.services.session_queue.batch_values import InvalidBatchValues, check_batch_values
from invokeai_saas.services.session_queue.stored_items import UNREADABLE_ERROR_TYPE
from tests.support.credits import saas_user
from tests.support.databases import fresh_database
from tests.support.invokeai import add_graph_batch, admin_token, run_marked_python
from tests.support.queue_api import enqueue, item_when_status, queue_url


def _noise_batch(*widths: int) -> dict[str, Any]:
    return {
        "prepend": False,
        "batch": {
            "graph": {"id": "g", "nodes": {"noise": {"id": "noise", "type": "noise"}}, "edges": []},
            "data": [[{"node_path": "noise", "field_name": "width", "items": list(widths)}]],
            "runs": 1,
        },
    }


def _no_internals(response: httpx.Response) -> None:
    assert "Traceback" not in response.text and "/site-packages/" not in response.text
    assert "SELECT" not in response.text and "psycopg" not in response.text


def _get(web: InvokeAIWebServer, path: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(queue_url(web, path), headers=headers, timeout=30)


def _enqueue(web: InvokeAIWebServer, headers: dict[str, str], batch: dict[str, Any]) -> int:
    (item_id,) = enqueue(web, headers, batch)
    return item_id


def _break_session(engine: Engine, item_id: int) -> None:
    """What an operator removing a node pack does to a stored item: its node type no longer exists."""
    with engine.begin() as conn:
        conn.execute(
            text("""UPDATE session_queue SET session = replace(session, '"type": "add"', '"type": "gone"')
                    WHERE item_id = :i"""),
            {"i": item_id},
        )


def test_each_bad_value_is_named_with_its_node_and_field() -> None:
    graph = Graph()
    graph.add_node(AddInvocation(id="add"))
    good = Batch(graph=graph, data=[[BatchDatum(node_path="add", field_name="a", items=[1, 2, 3])]])
    check_batch_values(good)
    bad = Batch(
        graph=graph,
        data=[
            [BatchDatum(node_path="add", field_name="a", items=[1, 2])],
            [BatchDatum(node_path="add", field_name="b", items=["x", "y", "x"])],
        ],
    )
    with pytest.raises(InvalidBatchValues) as refused:
        check_batch_values(bad)
    # Each distinct bad value once, located in the request body.
    assert [e["loc"] for e in refused.value.errors] == [
        ["body", "batch", "data", 1, 0, "items", 0],
        ["body", "batch", "data", 1, 0, "items", 1],
    ]
    assert all(
        e["msg"].startswith("Node 'add' field 'b': Input should be a valid integer") for e in refused.value.errors
    )


def test_a_metered_enqueue_refuses_an_out_of_range_value_with_422(saas_web: InvokeAIWebServer) -> None:
    _, headers = saas_user(saas_web, "bad-batch")
    refused = httpx.post(queue_url(saas_web, "/enqueue_batch"), json=_noise_batch(64, -5), headers=headers, timeout=60)
    assert refused.status_code == 422, refused.text
    (error,) = refused.json()["detail"]
    assert error["loc"] == ["body", "batch", "data", 0, 0, "items", 1]
    assert error["msg"].startswith("Node 'noise' field 'width': ")
    _no_internals(refused)
    listed = _get(saas_web, "/list_all", headers)
    assert listed.status_code == 200 and listed.json() == []  # nothing was stored, no credits held


@pytest.fixture(scope="module")
def unmetered(postgres: PostgresServer, pg_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root: Path = tmp_path_factory.mktemp("unmetered-queue")
    with fresh_database(postgres, pg_template) as engine:
        settings = {
            "enabled": True,
            "database_url": engine.url.render_as_string(hide_password=False),
            "credits_enforced": False,
        }
        write_settings(root / "saas.yaml", settings)
        yield run_marked_python(
            ["-m", "tests.support.queue_without_workers", str(root)], "QUEUE_WITHOUT_WORKERS", timeout=400
        )


def test_stocks_enqueue_route_refuses_it_too_and_the_api_processor_fails_an_unreadable_row(unmetered: Any) -> None:
    """Without credits the enqueue route is stock's (every exception a 500); without workers the API process's own
    processor claims the items."""
    assert unmetered["refused"]["status"] == 422, unmetered["refused"]
    (error,) = unmetered["refused"]["body"]["detail"]
    assert error["msg"].startswith("Node 'noise' field 'width': ")
    assert unmetered["stored_after_refusal"] == 0
    assert unmetered["list_all"]["status"] == 200
    (listed,) = unmetered["list_all"]["items"]
    assert listed["status"] == "pending" and listed["error_type"] == UNREADABLE_ERROR_TYPE
    assert unmetered["pending_placeholder"]["error_type"] == UNREADABLE_ERROR_TYPE
    claimed = unmetered["claimed"]
    assert claimed["status"] == "failed" and claimed["error_type"] == UNREADABLE_ERROR_TYPE
    assert "gone" in claimed["error_message"]  # pydantic's reason: the unknown node type
    assert unmetered["next_item"]["status"] == "completed"  # the processor survived the bad row


def test_a_stored_row_that_no_longer_parses_breaks_nobodys_list_and_a_worker_fails_it(
    saas_web: InvokeAIWebServer, saas_db: Engine
) -> None:
    admin = {"Authorization": f"Bearer {admin_token(saas_web.url)}"}
    _, owner = saas_user(saas_web, "broken-owner")
    _, other = saas_user(saas_web, "bystander")
    seed = uuid.uuid4().int % 10_000
    pause = httpx.put(queue_url(saas_web, "/processor/pause"), headers=admin, timeout=30)
    assert pause.status_code == 200, pause.text
    try:
        broken = _enqueue(saas_web, owner, add_graph_batch(seed, 1))
        doomed = _enqueue(saas_web, owner, add_graph_batch(seed, 2))
        deleted = _enqueue(saas_web, owner, add_graph_batch(seed, 3))
        for item_id in (broken, doomed, deleted):
            _break_session(saas_db, item_id)

        for headers in (owner, other, admin):
            listed = _get(saas_web, "/list_all", headers)
            assert listed.status_code == 200, listed.text
        listed_ids = {i["item_id"]: i for i in _get(saas_web, "/list_all", owner).json()}
        assert {broken, doomed, deleted} <= set(listed_ids)
        placeholder = listed_ids[broken]
        assert placeholder["status"] == "pending" and placeholder["error_type"] == UNREADABLE_ERROR_TYPE
        assert "gone" not in str(placeholder["session"])  # the stored JSON is not echoed
        summaries = httpx.post(
            queue_url(saas_web, "/item_summaries_by_ids"), json={"item_ids": [broken]}, headers=owner, timeout=30
        )
        assert summaries.status_code == 200 and [s["item_id"] for s in summaries.json()] == [broken]
        fetched = _get(saas_web, f"/i/{broken}", owner)
        assert fetched.status_code == 200 and fetched.json()["error_type"] == UNREADABLE_ERROR_TYPE

        canceled = httpx.put(queue_url(saas_web, f"/i/{doomed}/cancel"), headers=owner, timeout=30)
        assert canceled.status_code == 200 and canceled.json()["status"] == "canceled", canceled.text
        removed = httpx.delete(queue_url(saas_web, f"/i/{deleted}"), headers=owner, timeout=30)
        assert removed.status_code == 200, removed.text
        assert _get(saas_web, f"/i/{deleted}", owner).status_code == 404
        retried = httpx.put(queue_url(saas_web, "/retry_items_by_id"), json=[doomed], headers=owner, timeout=30)
        assert retried.status_code == 200 and retried.json()["retried_item_ids"] == []  # nothing to run again
    finally:
        httpx.put(queue_url(saas_web, "/processor/resume"), headers=admin, timeout=30)

    claimed = item_when_status(saas_web, owner, broken, "failed", "completed", "canceled")
    assert claimed["status"] == "failed" and claimed["error_type"] == UNREADABLE_ERROR_TYPE, claimed
    after = _enqueue(saas_web, owner, add_graph_batch(seed, 4))
    # The worker goes on.
    assert item_when_status(saas_web, owner, after, "completed", "failed")["status"] == "completed"
