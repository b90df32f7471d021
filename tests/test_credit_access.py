"""Node editor access and the storage quota on uploads, through the real API (``saas_web``, media on S3): a plan
without the node editor (Trial) cannot use the workflow routes or run a batch built in the editor, a plan with it
can, and stock's ownership rules still apply; an upload that the storage quota cannot take is refused before
anything is stored, for that user only. See ``invokeai_saas/credits/access.py``."""

from __future__ import annotations

import io
import time
import uuid

import httpx
import pytest
from invokeai.app.services.session_queue.session_queue_common import Batch
from PIL import Image
from sqlalchemy import Engine, text

from invokeai_saas.credits.access import enforce_node_editor
from invokeai_saas.credits.limits import BYTES_PER_GB, PlanLimitExceeded, storage_refusal
from invokeai_saas.credits.plans import PlanService, Subscription
from invokeai_saas.devstack.web import InvokeAIWebServer
from tests.support.credits import saas_user, set_plan
from tests.support.invokeai import add_graph_batch, empty_workflow, upload_image

PLANS = "/api/v1/saas/plans"


def _count(engine: Engine, table: str, user_id: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table} WHERE user_id = :u"), {"u": user_id}).scalar_one())


def _refused(response: httpx.Response, *phrases: str) -> None:
    assert response.status_code == 403, response.text
    detail = response.json()["detail"]
    for phrase in (*phrases, PLANS):
        assert phrase in detail, detail
    assert "Traceback" not in response.text and "SELECT" not in response.text


def test_a_plan_without_the_node_editor_cannot_use_workflows(saas_web: InvokeAIWebServer, saas_db: Engine) -> None:
    base = f"{saas_web.url}/api/v1/workflows"
    trial_id, trial = saas_user(saas_web, "wf-trial")
    owner_id, owner = saas_user(saas_web, "wf-owner")
    other_id, other = saas_user(saas_web, "wf-other")
    set_plan(saas_db, owner_id, "starter")
    set_plan(saas_db, other_id, "starter")
    editor = ("Trial", "does not include the node editor")

    # Trial: the editor's reads and writes are refused, and nothing is created.
    _refused(httpx.get(f"{base}/", headers=trial, timeout=30), *editor)
    _refused(httpx.post(f"{base}/", json={"workflow": empty_workflow("nope")}, headers=trial, timeout=30), *editor)
    _refused(httpx.get(f"{base}/tags", headers=trial, timeout=30), *editor)
    _refused(httpx.get(f"{base}/counts_by_category", params={"categories": "user"}, headers=trial), *editor)
    assert _count(saas_db, "workflow_library", trial_id) == 0

    # Starter: create, read and list their own workflow.
    created = httpx.post(f"{base}/", json={"workflow": empty_workflow("mine")}, headers=owner, timeout=30)
    assert created.status_code == 200, created.text
    workflow_id = created.json()["workflow_id"]
    got = httpx.get(f"{base}/i/{workflow_id}", headers=owner, timeout=30)
    assert got.status_code == 200 and got.json()["workflow"]["name"] == "mine"
    listed = httpx.get(f"{base}/", params={"categories": "user"}, headers=owner, timeout=30).json()
    assert [item["workflow_id"] for item in listed["items"]] == [workflow_id]

    # Another user with the editor still cannot see or change it: stock's ownership rules apply.
    assert httpx.get(f"{base}/i/{workflow_id}", headers=other, timeout=30).status_code == 403
    theirs = httpx.get(f"{base}/", params={"categories": "user"}, headers=other, timeout=30).json()
    assert theirs["items"] == []
    change = {"workflow": {**empty_workflow("hijacked"), "id": workflow_id}}
    assert httpx.patch(f"{base}/i/{workflow_id}", json=change, headers=other, timeout=30).status_code == 403
    assert httpx.delete(f"{base}/i/{workflow_id}", headers=other, timeout=30).status_code == 403
    # The plan comes first for a Trial user, whoever owns the workflow.
    _refused(httpx.get(f"{base}/i/{workflow_id}", headers=trial, timeout=30), *editor)

    # Moved to Trial, the owner can no longer open or update it, but can still delete it.
    set_plan(saas_db, owner_id, "trial")
    _refused(httpx.get(f"{base}/i/{workflow_id}", headers=owner, timeout=30), *editor)
    change = {"workflow": {**empty_workflow("renamed"), "id": workflow_id}}
    _refused(httpx.patch(f"{base}/i/{workflow_id}", json=change, headers=owner, timeout=30), *editor)
    with saas_db.connect() as conn:
        name = conn.execute(text("SELECT name FROM workflow_library WHERE workflow_id = :w"), {"w": workflow_id})
        assert name.scalar_one() == "mine"
    assert httpx.delete(f"{base}/i/{workflow_id}", headers=owner, timeout=30).status_code == 200
    assert _count(saas_db, "workflow_library", owner_id) == 0

    # The thumbnail route stays unauthenticated, as stock (an <img> tag sends no token): no plan is asked.
    assert httpx.get(f"{base}/i/{uuid.uuid4()}/thumbnail", timeout=30).status_code == 404


def test_a_batch_built_in_the_editor_needs_the_node_editor(saas_web: InvokeAIWebServer, saas_db: Engine) -> None:
    url = f"{saas_web.url}/api/v1/queue/default/enqueue_batch"
    trial_id, trial = saas_user(saas_web, "wf-run-trial")
    starter_id, starter = saas_user(saas_web, "wf-run-starter")
    set_plan(saas_db, starter_id, "starter")
    from_editor = add_graph_batch()
    from_editor["batch"]["workflow"] = empty_workflow("run me")

    _refused(httpx.post(url, json=from_editor, headers=trial, timeout=60), "Trial", "node editor")
    assert _count(saas_db, "session_queue", trial_id) == 0
    # The Generate and Canvas tabs send no workflow: the same graph is served on Trial.
    assert httpx.post(url, json=add_graph_batch(), headers=trial, timeout=60).status_code == 200
    assert httpx.post(url, json=from_editor, headers=starter, timeout=60).status_code == 200


def test_retrying_an_editor_batch_after_a_downgrade_needs_the_node_editor(
    saas_web: InvokeAIWebServer, saas_db: Engine
) -> None:
    queue = f"{saas_web.url}/api/v1/queue/default"
    user_id, headers = saas_user(saas_web, "wf-retry")
    set_plan(saas_db, user_id, "starter")
    from_editor = add_graph_batch(a=int(uuid.uuid4().int % 10_000))
    from_editor["batch"]["workflow"] = empty_workflow("retry me")
    enqueued = httpx.post(f"{queue}/enqueue_batch", json=from_editor, headers=headers, timeout=60)
    assert enqueued.status_code == 200, enqueued.text
    item_id = enqueued.json()["item_ids"][0]
    httpx.put(f"{queue}/i/{item_id}/cancel", headers=headers, timeout=30).raise_for_status()
    deadline = time.monotonic() + 60
    while (status := httpx.get(f"{queue}/i/{item_id}", headers=headers, timeout=30).json()["status"]) not in (
        "completed",
        "failed",
        "canceled",
    ):
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    if status == "completed":  # it ran before the cancel: make it retryable as a failed one would be
        with saas_db.begin() as conn:
            conn.execute(text("UPDATE session_queue SET status = 'canceled' WHERE item_id = :i"), {"i": item_id})
    set_plan(saas_db, user_id, "trial", status="trialing")
    before = _count(saas_db, "session_queue", user_id)
    _refused(httpx.put(f"{queue}/retry_items_by_id", json=[item_id], headers=headers, timeout=60), "node editor")
    assert _count(saas_db, "session_queue", user_id) == before


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 40 + seed).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _set_used(engine: Engine, user_id: str, used: int | None) -> None:
    """Pretend the user stores ``used`` bytes; None puts back the exact count of what they store."""
    with engine.begin() as conn:
        if used is None:
            conn.execute(
                text(
                    "UPDATE user_storage_usage SET bytes = s.bytes, objects = s.objects FROM (SELECT "
                    "coalesce(sum(bytes), 0) AS bytes, count(*) AS objects FROM storage_objects WHERE user_id = :u) s "
                    "WHERE user_id = :u"
                ),
                {"u": user_id},
            )
        else:
            conn.execute(
                text(
                    "INSERT INTO user_storage_usage (user_id, bytes, objects) VALUES (:u, :b, 0) "
                    "ON CONFLICT (user_id) DO UPDATE SET bytes = :b"
                ),
                {"u": user_id, "b": used},
            )


def test_uploads_past_the_storage_quota_are_refused_and_store_nothing(
    saas_web: InvokeAIWebServer, saas_db: Engine
) -> None:
    full_id, full = saas_user(saas_web, "quota-full")
    other_id, other = saas_user(saas_web, "quota-other")
    quota = 2 * BYTES_PER_GB  # Trial's storage_gb
    stored = (_count(saas_db, "images", full_id), _count(saas_db, "storage_objects", full_id))
    try:
        _set_used(saas_db, full_id, quota)
        _refused(upload_image(saas_web.url, full, _png(1)), "Trial", "2 GB of storage and it is full", "delete")
        video = httpx.post(
            f"{saas_web.url}/api/v1/videos/upload",
            params={"video_category": "user", "is_intermediate": "false"},
            files={"file": ("clip.mp4", b"\x00" * 4096, "video/mp4")},
            headers=full,
            timeout=60,
        )
        _refused(video, "2 GB of storage and it is full")
        # Room for less than the request: refused from its Content-Length, before the body is read.
        _set_used(saas_db, full_id, quota - 200)
        _refused(upload_image(saas_web.url, full, _png(2)), "would go over it", "Delete images or videos")
        assert (_count(saas_db, "images", full_id), _count(saas_db, "storage_objects", full_id)) == stored
        assert _count(saas_db, "videos", full_id) == 0

        # Another user is not limited by this one's quota.
        assert upload_image(saas_web.url, other, _png(3)).status_code == 201
    finally:
        _set_used(saas_db, full_id, None)
    # Below the quota again (media deleted, or a larger plan), the same user uploads as before.
    uploaded = upload_image(saas_web.url, full, _png(4))
    assert uploaded.status_code == 201, uploaded.text
    assert _count(saas_db, "images", full_id) == stored[0] + 1


@pytest.fixture(scope="module")
def plans(saas_db: Engine) -> PlanService:
    return PlanService(saas_db)


def _subscription(plans: PlanService, plan_id: str) -> Subscription:
    plan = plans.get_plan(plan_id)
    assert plan is not None
    return Subscription(user_id="u", plan=plan, status="active", period_start="2026-01-01T00:00:00Z",
                        period_end=None, limits=plan.limits)  # fmt: skip


def test_enforce_node_editor_refuses_only_editor_batches_on_plans_without_it(plans: PlanService) -> None:
    graph_only = Batch.model_validate(add_graph_batch()["batch"])
    from_editor = Batch.model_validate({**add_graph_batch()["batch"], "workflow": empty_workflow("w")})
    trial = _subscription(plans, "trial")
    enforce_node_editor(trial, graph_only)
    with pytest.raises(PlanLimitExceeded) as refused:
        enforce_node_editor(trial, from_editor)
    assert refused.value.status_code == 403 and "Your plan (Trial) does not include the node editor" in str(
        refused.value
    )
    for plan_id in ("starter", "pro", "studio", "enterprise", "tester"):
        enforce_node_editor(_subscription(plans, plan_id), from_editor)


def test_storage_refusal_counts_what_is_stored_and_what_is_coming(plans: PlanService) -> None:
    starter = _subscription(plans, "starter")
    quota = starter.limits.storage_gb * BYTES_PER_GB
    assert storage_refusal(starter, 0, None, "upload more") is None
    assert storage_refusal(starter, quota - 10, 10, "upload more") is None  # exactly to the quota fits
    assert storage_refusal(starter, quota - 10, None, "upload more") is None  # unknown length: stored bytes decide
    over = storage_refusal(starter, quota - 10, 11, "upload more")
    assert over is not None and over.status_code == 403 and "would go over it" in over.detail
    full = storage_refusal(starter, quota, 0, "upload more")
    assert full is not None and f"{starter.limits.storage_gb} GB of storage and it is full" in full.detail
    assert "delete images or videos to upload more" in full.detail
