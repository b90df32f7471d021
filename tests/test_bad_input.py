"""Bad input gets a clear 4xx, in one place for every route (``invokeai_saas/routes/bad_input.py``,
``request_limits.py``, ``outages.py``): NUL characters, lone surrogates, integers past ``bigint``, ``NaN`` and
infinities in query, path and JSON bodies; negative paging on the replaced workflow list; a file name too long for
the file system (``file_name_errors.py``); oversized non-upload bodies (413). Uploads pass untouched. The content
limits: a per-user workflow count and a per-user retained queue history. Each was a 500 (most with the SQL
statement in ``detail``), or an unbounded store, before.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import Engine, insert, select, text

from invokeai_saas.db.tables import session_queue
from invokeai_saas.devstack.web import InvokeAIWebServer
from invokeai_saas.routes.bad_input import BadInput, check_parameter, strict_json_loads
from invokeai_saas.services.session_queue.session_queue_retention import prune_queue_history
from tests.support.credits import saas_user, set_plan
from tests.support.invokeai import admin_token, empty_workflow

BIG = 2**64  # past bigint
INTERNALS = ("SELECT", "INSERT", "psycopg", "sqlalchemy", "Traceback", ".py", "[SQL")


@pytest.fixture(scope="module")
def user(saas_web: InvokeAIWebServer, saas_db: Engine) -> dict[str, Any]:
    """A user on the Tester plan (node editor included), with a board of its own."""
    user_id, headers = saas_user(saas_web, "bad-input")
    set_plan(saas_db, user_id, "tester")
    board = httpx.post(f"{saas_web.url}/api/v1/boards/", params={"board_name": "mine"}, headers=headers)
    assert board.status_code in (200, 201), board.text
    return {"id": user_id, "headers": headers, "board_id": board.json()["board_id"]}


def _raw(body: str) -> dict[str, Any]:
    """A JSON body sent as written (``NaN``, ``\\ud800`` and the like cannot come from ``json=``)."""
    return {"content": body.encode(), "headers": {"content-type": "application/json"}}


def _batch(node: dict[str, Any]) -> dict[str, Any]:
    return {"prepend": False, "batch": {"graph": {"id": "g", "nodes": {node["id"]: node}, "edges": []}, "runs": 1}}


Q = "/api/v1/queue/default"
# (case, method, path, request arguments); ``{board}`` is the user's board.
REFUSED: list[tuple[str, str, str, dict[str, Any]]] = [
    ("nul-query", "POST", "/api/v1/boards/", {"params": {"board_name": "a\x00b"}}),
    ("nul-path", "GET", "/api/v1/images/i/a%00b.png", {}),
    ("nul-body", "PATCH", "/api/v1/boards/{board}", {"json": {"board_name": "a\x00b"}}),
    ("nul-body-key", "PATCH", "/api/v1/boards/{board}", {"json": {"board_name\x00": "x"}}),
    ("nul-enqueue", "POST", f"{Q}/enqueue_batch", {"json": _batch({"id": "s", "type": "string", "value": "a\x00"})}),
    ("nul-workflow", "POST", "/api/v1/workflows/", {"json": {"workflow": empty_workflow("a\x00b")}}),
    ("bigint-get", "GET", f"{Q}/i/{BIG}", {}),
    ("bigint-cancel", "PUT", f"{Q}/i/{BIG}/cancel", {}),
    ("bigint-delete", "DELETE", f"{Q}/i/{BIG}", {}),
    ("bigint-retry", "PUT", f"{Q}/retry_items_by_id", {"json": [BIG]}),
    ("bigint-items", "POST", f"{Q}/items_by_ids", {"json": {"item_ids": [BIG]}}),
    ("bigint-offset", "GET", "/api/v1/images/", {"params": {"offset": str(2**63)}}),
    ("bigint-board-offset", "GET", "/api/v1/boards/", {"params": {"offset": str(BIG), "limit": "5"}}),
    ("nan-enqueue", "POST", f"{Q}/enqueue_batch", _raw('{"prepend": false, "batch": {"graph": {"id": "g", "nodes": '
                                                       '{"f": {"id": "f", "type": "float", "value": NaN}}, '
                                                       '"edges": []}, "runs": 1}}')),
    ("infinity-body", "PATCH", "/api/v1/boards/{board}", _raw('{"board_name": "x", "archived": Infinity}')),
    ("huge-float-body", "PATCH", "/api/v1/boards/{board}", _raw('{"board_name": "x", "archived": 1e400}')),
    ("surrogate-name", "PATCH", "/api/v1/boards/{board}", _raw('{"board_name": "a\\ud800b"}')),
    ("surrogate-workflow", "POST", "/api/v1/workflows/",
     _raw(json.dumps({"workflow": empty_workflow("NAME")}).replace("NAME", "a\\udfffb"))),
    ("file-name-too-long", "GET", "/api/v1/utilities/fonts/" + "y" * 300 + ".ttf", {}),
    ("per-page-negative", "GET", "/api/v1/workflows/", {"params": {"per_page": "-1"}}),
    ("page-negative", "GET", "/api/v1/workflows/", {"params": {"page": "-1", "per_page": "5"}}),
]  # fmt: skip


@pytest.mark.parametrize(("case", "method", "path", "kwargs"), REFUSED, ids=[c[0] for c in REFUSED])
def test_bad_input_is_refused_with_422_and_no_internals(
    saas_web: InvokeAIWebServer, user: dict[str, Any], case: str, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    arguments = dict(kwargs)
    headers = {**user["headers"], **arguments.pop("headers", {})}
    answer = httpx.request(
        method, saas_web.url + path.format(board=user["board_id"]), headers=headers, timeout=30, **arguments
    )
    assert answer.status_code == 422, answer.text
    assert not [word for word in INTERNALS if word in answer.text], answer.text


@pytest.mark.parametrize("body", ['{"email": "a@example.com", "password": NaN}', '{"email": "a@example.com", '
                                  '"password": "x", "remember_me": Infinity}', '{"email": "a\\u0000@example.com", '
                                  '"password": "x"}'])  # fmt: skip
def test_the_unauthenticated_login_refuses_bad_json_too(saas_web: InvokeAIWebServer, body: str) -> None:
    answer = httpx.post(f"{saas_web.url}/api/v1/auth/login", timeout=30, **_raw(body))
    assert answer.status_code == 422, answer.text


def test_good_input_still_passes(saas_web: InvokeAIWebServer, user: dict[str, Any]) -> None:
    """Plain values, big integers within bigint, text with every other control character, and a multipart upload
    (a PNG is full of NUL bytes: uploads are never inspected)."""
    headers, url = user["headers"], saas_web.url
    renamed = httpx.patch(
        f"{url}/api/v1/boards/{user['board_id']}", json={"board_name": "tab\there ünï 𝄞"}, headers=headers
    )
    assert renamed.status_code == 201 and renamed.json()["board_name"] == "tab\there ünï 𝄞", renamed.text
    missing = httpx.get(f"{url}{Q}/i/{2**63 - 1}", headers=headers)
    assert missing.status_code == 404, missing.text
    listed = httpx.get(f"{url}/api/v1/boards/", params={"offset": "0", "limit": "5"}, headers=headers)
    assert listed.status_code == 200, listed.text
    png = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 0, 0)).save(png, format="PNG")
    assert b"\x00" in png.getvalue()
    uploaded = httpx.post(
        f"{url}/api/v1/images/upload",
        params={"image_category": "user", "is_intermediate": "false", "board_id": user["board_id"]},
        files={"file": ("black.png", png.getvalue(), "image/png")},
        headers=headers,
        timeout=60,
    )
    assert uploaded.status_code == 201, uploaded.text


def test_bodies_other_than_uploads_are_bounded(saas_web: InvokeAIWebServer, user: dict[str, Any]) -> None:
    """The default limit is 4 MiB: a 5 MB workflow is refused (413) whether its length is announced or it arrives
    chunked; a 3 MB one is stored."""
    url, headers = f"{saas_web.url}/api/v1/workflows/", user["headers"]

    def workflow(size: int) -> bytes:
        document = empty_workflow("big")
        document["notes"] = "x" * size
        return json.dumps({"workflow": document}).encode()

    announced = httpx.post(url, content=workflow(5_000_000), headers={**headers, "content-type": "application/json"})
    assert announced.status_code == 413 and "too large" in announced.json()["detail"], announced.text

    def chunks() -> Iterator[bytes]:
        body = workflow(5_000_000)
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    chunked = httpx.post(url, content=chunks(), headers={**headers, "content-type": "application/json"}, timeout=60)
    assert chunked.status_code == 413, chunked.text
    stored = httpx.post(url, content=workflow(3_000_000), headers={**headers, "content-type": "application/json"})
    assert stored.status_code == 200, stored.text[:300]


def test_workflows_per_user_are_counted(saas_web: InvokeAIWebServer, saas_db: Engine, user: dict[str, Any]) -> None:
    """At the limit (1000 by default) a user cannot create another; another user can; deleting one makes room."""
    limited_id, limited = saas_user(saas_web, "many-workflows")
    set_plan(saas_db, limited_id, "tester")
    with saas_db.begin() as conn:  # 999 workflows, as if saved one by one
        conn.execute(
            text(
                "INSERT INTO workflow_library (workflow_id, workflow, user_id) "
                "SELECT :prefix || n, CAST(:doc AS jsonb), :user FROM generate_series(1, 999) AS n"
            ),
            {"prefix": f"wf-{uuid.uuid4().hex[:8]}-", "doc": json.dumps(empty_workflow("filler")), "user": limited_id},
        )
    url = f"{saas_web.url}/api/v1/workflows/"
    last = httpx.post(url, json={"workflow": empty_workflow("the thousandth")}, headers=limited)
    assert last.status_code == 200, last.text
    refused = httpx.post(url, json={"workflow": empty_workflow("one more")}, headers=limited)
    assert refused.status_code == 403 and "(1000)" in refused.json()["detail"], refused.text
    others = httpx.post(url, json={"workflow": empty_workflow("someone else's")}, headers=user["headers"])
    assert others.status_code == 200, others.text  # the count is per user
    deleted = httpx.delete(f"{saas_web.url}/api/v1/workflows/i/{last.json()['workflow_id']}", headers=limited)
    assert deleted.status_code == 200, deleted.text
    again = httpx.post(url, json={"workflow": empty_workflow("room again")}, headers=limited)
    assert again.status_code == 200, again.text


def test_the_workflow_list_is_still_per_user(
    saas_web: InvokeAIWebServer, saas_db: Engine, user: dict[str, Any]
) -> None:
    """The replaced list route with valid paging: a user never sees another's private workflows."""
    url = f"{saas_web.url}/api/v1/workflows/"
    name = f"private to one {uuid.uuid4().hex[:6]}"
    mine = httpx.post(url, json={"workflow": empty_workflow(name)}, headers=user["headers"])
    assert mine.status_code == 200, mine.text
    other_id, other = saas_user(saas_web, "other-lister")
    set_plan(saas_db, other_id, "tester")
    for params in ({"per_page": "50", "page": "0", "categories": "user"}, {"query": name}):
        listed = httpx.get(url, params=params, headers=other)
        assert listed.status_code == 200, listed.text
        assert mine.json()["workflow_id"] not in {w["workflow_id"] for w in listed.json()["items"]}
    own = httpx.get(url, params={"per_page": "1", "page": "0", "query": name}, headers=user["headers"])
    assert own.status_code == 200 and [w["workflow_id"] for w in own.json()["items"]] == [mine.json()["workflow_id"]]


def test_queue_history_is_bounded_per_user(pg_engine: Engine) -> None:
    """Each user keeps their ``keep`` most recently finished items; pending items and young ones are kept."""
    now = datetime.now(UTC)

    def add(user_id: str, status: str, minutes_ago: int) -> int:
        with pg_engine.begin() as conn:
            return int(
                conn.execute(
                    insert(session_queue)
                    .values(
                        batch_id="b",
                        queue_id="default",
                        session_id=uuid.uuid4().hex,
                        session="{}",
                        status=status,
                        user_id=user_id,
                        completed_at=None if status == "pending" else now - timedelta(minutes=minutes_ago),
                    )
                    .returning(session_queue.c.item_id)
                ).scalar_one()
            )

    old_a = [add("a", status, 60 + i) for i, status in enumerate(["completed", "failed", "canceled", "completed"])]
    young_a = add("a", "completed", 1)
    pending_a = add("a", "pending", 0)
    old_b = [add("b", "completed", 60 + i) for i in range(2)]
    deleted = prune_queue_history(pg_engine, keep=2)
    with pg_engine.connect() as conn:
        left = set(conn.execute(select(session_queue.c.item_id)).scalars())
    # a: the young one and the newest old one are its two newest finished; the three older go. b keeps both.
    assert deleted == 3
    assert left == {young_a, pending_a, old_a[0], *old_b}


def test_the_rules_name_what_they_refuse() -> None:
    with pytest.raises(BadInput, match="NUL"):
        check_parameter(("query", "q"), "a\x00")
    with pytest.raises(BadInput, match="out of range"):
        check_parameter(("path", "item_id"), str(2**63))
    check_parameter(("path", "item_id"), str(2**63 - 1))
    check_parameter(("query", "q"), "-" + str(2**63))
    with pytest.raises(BadInput, match="nested too deeply"):
        strict_json_loads("[" * 100_000 + "]" * 100_000)
    assert strict_json_loads(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}


def test_an_unknown_object_is_not_found_rather_than_a_server_error(
    saas_web: InvokeAIWebServer, user: dict[str, Any]
) -> None:
    """Stock's ``remove_image_from_board`` answered 500 "Failed to remove image from board" for an image that does
    not exist (``not_found_errors.py``)."""
    url, headers = saas_web.url, user["headers"]
    unknown = httpx.request("DELETE", f"{url}/api/v1/board_images/", json={"image_name": "nope.png"}, headers=headers)
    assert unknown.status_code == 404, unknown.text


def test_someone_elses_image_cannot_be_probed_through_its_board(
    saas_web: InvokeAIWebServer, user: dict[str, Any]
) -> None:
    """Stock answered another user's image on no board with 201 "removed", which confirms the name exists; it
    now answers what an unknown name answers (``board_image_guards.py``)."""
    url = saas_web.url
    png = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(png, format="PNG")
    uploaded = httpx.post(
        f"{url}/api/v1/images/upload",
        params={"image_category": "user", "is_intermediate": "false"},
        files={"file": ("mine.png", png.getvalue(), "image/png")},
        headers=user["headers"],
        timeout=60,
    )
    assert uploaded.status_code == 201, uploaded.text
    name = uploaded.json()["image_name"]
    _, other = saas_user(saas_web, "prober")
    unknown = httpx.request("DELETE", f"{url}/api/v1/board_images/", json={"image_name": "nope.png"}, headers=other)
    probed = httpx.request("DELETE", f"{url}/api/v1/board_images/", json={"image_name": name}, headers=other)
    assert probed.status_code == unknown.status_code == 404, probed.text
    assert probed.json() == unknown.json()
    as_json = {**other, "content-type": "application/json"}
    garbled = httpx.request("DELETE", f"{url}/api/v1/board_images/", content=b"{not json", headers=as_json)
    assert garbled.status_code == 422, garbled.text  # the guard leaves a body it cannot read to stock's refusal
    own = httpx.request("DELETE", f"{url}/api/v1/board_images/", json={"image_name": name}, headers=user["headers"])
    assert own.status_code == 201, own.text


def test_an_unknown_board_to_download_is_not_found(saas_web: InvokeAIWebServer) -> None:
    """Stock's bulk download names the archive after the board before anything checks the board exists, and its
    not-found exception escaped the route as a 500 (an administrator passes the board access check)."""
    admin = {"Authorization": f"Bearer {admin_token(saas_web.url)}"}
    r = httpx.post(f"{saas_web.url}/api/v1/images/download", json={"board_id": "no-such-board"}, headers=admin)
    assert r.status_code == 404, r.text
    assert r.json() == {"detail": "Not found: the request names an object that does not exist."}


def test_a_failed_model_install_shows_no_traceback(saas_web: InvokeAIWebServer) -> None:
    """Install jobs carry the failed install's traceback in stock; the install routes are filtered
    (``tracebacks.py``)."""
    admin = {"Authorization": f"Bearer {admin_token(saas_web.url)}"}
    base = f"{saas_web.url}/api/v2/models/install"
    started = httpx.post(base, params={"source": "."}, json={}, headers=admin, timeout=30)
    assert started.status_code in (200, 201), started.text
    job_id = started.json()["id"]
    deadline = time.monotonic() + 60
    while (job := httpx.get(f"{base}/{job_id}", headers=admin, timeout=30).json())["status"] != "error":
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["error_reason"] and job["error_traceback"] is None, job
    listed = httpx.get(base, headers=admin, timeout=30)
    assert listed.status_code == 200 and "Traceback" not in listed.text, listed.text[:500]
