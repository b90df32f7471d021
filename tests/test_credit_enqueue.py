"""Credits through the real API (``saas_web``: invokeai-web in saas mode and a worker on the full local stack): the
hold at enqueue, refused with 402 when the balance cannot cover the batch — also for 100 concurrent requests —
and settlement from the GPU time the worker measured: completed and canceled-while-running items are charged, a
failed one or one canceled before it started is not."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from invokeai_saas.credits.ledger import CreditLedger
from invokeai_saas.credits.settlement import release_unsettled
from invokeai_saas.devstack.web import InvokeAIWebServer
from tests.support.credits import saas_user as _user
from tests.support.invokeai import add_graph_batch, admin_token

Q = "default"
WAIT = 90.0


@pytest.fixture(scope="module")
def engine(saas_db: Engine) -> Engine:
    return saas_db


def _set_balance(engine: Engine, ledger: CreditLedger, user_id: str, credits: int) -> None:
    """End the sign-up trial grant now (entry and projection alike) and grant exactly ``credits``."""
    with engine.begin() as conn:
        for table in ("credit_ledger", "credit_grant_balances"):
            conn.execute(
                text(f"UPDATE {table} SET valid_until = valid_from + interval '1 microsecond' WHERE user_id = :u"),
                {"u": user_id},
            )
    ledger.grant(user_id, credits, "test", f"test:{user_id}:{credits}")


def _item(web: InvokeAIWebServer, headers: dict[str, str], item_id: int) -> dict[str, Any]:
    return dict(httpx.get(f"{web.url}/api/v1/queue/{Q}/i/{item_id}", headers=headers, timeout=30).json())


def _wait(web: InvokeAIWebServer, headers: dict[str, str], item_id: int, *statuses: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT
    while (item := _item(web, headers, item_id))["status"] not in statuses:
        assert time.monotonic() < deadline, item
        time.sleep(0.1)
    return item


def _sleep_batch(seconds: float) -> dict[str, Any]:
    graph = {"id": "sleep", "nodes": {"s": {"id": "s", "type": "saas_test_sleep", "seconds": seconds}}, "edges": []}
    return {"prepend": False, "batch": {"graph": graph, "runs": 1}}


def _enqueue(web: InvokeAIWebServer, headers: dict[str, str], body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{web.url}/api/v1/queue/{Q}/enqueue_batch", json=body, headers=headers, timeout=60)


def test_100_concurrent_enqueues_against_a_balance_for_10_accept_exactly_10(
    saas_web: InvokeAIWebServer, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = CreditLedger(engine)
    user_id, headers = _user(saas_web, "crowd")
    _set_balance(engine, ledger, user_id, 10)  # a one-node math graph holds 1 credit per item
    with engine.begin() as conn:  # the credits, not Trial's queue size (10), must be what refuses the 11th
        conn.execute(
            text("UPDATE subscriptions SET overrides = '{\"queue_size\": 1000}' WHERE user_id = :u"), {"u": user_id}
        )
    admin = {"Authorization": f"Bearer {admin_token(saas_web.url)}"}
    httpx.put(f"{saas_web.url}/api/v1/queue/{Q}/processor/pause", headers=admin, timeout=30).raise_for_status()
    responses: list[httpx.Response] = []
    lock = threading.Lock()
    barrier = threading.Barrier(100)

    def submit() -> None:
        barrier.wait()
        response = _enqueue(saas_web, headers, add_graph_batch())
        with lock:
            responses.append(response)

    try:
        threads = [threading.Thread(target=submit) for _ in range(100)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        accepted = [r for r in responses if r.status_code == 200]
        refused = [r for r in responses if r.status_code == 402]
        balance = ledger.balance(user_id)
        with capsys.disabled():
            print(
                f"\n100 concurrent enqueues, balance for 10: {len(accepted)} accepted, {len(refused)} refused (402), "
                f"final balance {balance.available} available / {balance.held} held"
            )
        assert (len(accepted), len(refused)) == (10, 90), [r.status_code for r in responses]
        for response in refused:
            detail = response.json()["detail"]
            assert "this needs 1 credits and 0 are available" in detail and "/api/v1/saas/plans" in detail
            assert "Traceback" not in response.text
        assert (balance.available, balance.held) == (0, 10)
        with engine.connect() as conn:
            pending = conn.execute(
                text("SELECT count(*) FROM session_queue WHERE user_id = :u AND status = 'pending'"), {"u": user_id}
            ).scalar()
        assert pending == 10  # refused requests enqueued nothing
        # Canceled before they started: nothing is charged; the backstop releases the holds.
        r = httpx.put(f"{saas_web.url}/api/v1/queue/{Q}/clear", headers=headers, timeout=30)
        assert r.status_code == 200, r.text
    finally:
        httpx.put(f"{saas_web.url}/api/v1/queue/{Q}/processor/resume", headers=admin, timeout=30).raise_for_status()
    time.sleep(5.5)  # the backstop leaves holds younger than 5 s alone
    release_unsettled(engine, ledger)
    balance = ledger.balance(user_id)
    assert (balance.available, balance.held) == (10, 0)
    assert ledger.rebuild(user_id) == balance


def test_a_completed_item_is_charged_the_seconds_the_worker_measured(
    saas_web: InvokeAIWebServer, engine: Engine
) -> None:
    ledger = CreditLedger(engine)
    user_id, headers = _user(saas_web, "charged")
    r = _enqueue(saas_web, headers, _sleep_batch(1.5))
    assert r.status_code == 200, r.text
    (item_id,) = r.json()["item_ids"]
    assert ledger.balance(user_id).held == 1  # the estimate: no denoising, the 1 s overhead
    assert _wait(saas_web, headers, item_id, "completed", "failed")["status"] == "completed"
    usage = _settled(engine, item_id)
    assert usage.seconds >= 1.5
    assert usage.credits == math.ceil(usage.seconds)
    balance = ledger.balance(user_id)
    assert (balance.available, balance.held) == (500 - usage.credits, 0)
    assert ledger.rebuild(user_id) == balance


def test_cancel_while_running_charges_the_seconds_used_and_a_failure_charges_nothing(
    saas_web: InvokeAIWebServer, engine: Engine
) -> None:
    ledger = CreditLedger(engine)
    user_id, headers = _user(saas_web, "partial")
    (running,) = _enqueue(saas_web, headers, _sleep_batch(120)).json()["item_ids"]
    _wait(saas_web, headers, running, "in_progress")
    time.sleep(1.2)
    httpx.put(f"{saas_web.url}/api/v1/queue/{Q}/i/{running}/cancel", headers=headers, timeout=30).raise_for_status()
    usage = _settled(engine, running)
    assert 1.2 <= usage.seconds < 60 and usage.credits == math.ceil(usage.seconds)

    # A graph that fails when it runs (an image that does not exist): its hold is released, nothing charged.
    failing = {
        "prepend": False,
        "batch": {
            "graph": {
                "id": "fails",
                "nodes": {"blur": {"id": "blur", "type": "img_blur", "image": {"image_name": "missing.png"}}},
                "edges": [],
            },
            "runs": 1,
        },
    }
    (failed,) = _enqueue(saas_web, headers, failing).json()["item_ids"]
    assert _wait(saas_web, headers, failed, "completed", "failed")["status"] == "failed"
    deadline = time.monotonic() + 30
    while ledger.balance(user_id).held:
        assert time.monotonic() < deadline, "the failed item's hold was never released"
        time.sleep(0.1)
    assert _usage(engine, failed) is None
    assert ledger.balance(user_id).available == 500 - usage.credits
    assert ledger.rebuild(user_id) == ledger.balance(user_id)


def _settled(engine: Engine, item_id: int) -> Any:
    """The item's usage record, once the worker has settled it."""
    deadline = time.monotonic() + 30
    while (usage := _usage(engine, item_id)) is None:
        assert time.monotonic() < deadline, f"item {item_id} was never settled"
        time.sleep(0.1)
    return usage


def _usage(engine: Engine, item_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT seconds, credits FROM credit_usage WHERE item_id = :i"), {"i": item_id}
        ).first()


def test_a_retry_the_balance_cannot_cover_is_refused_with_402(saas_web: InvokeAIWebServer, engine: Engine) -> None:
    """Retrying makes a new item runnable, so it holds credits too; stock's retry route would turn the refusal
    into a 500 carrying the exception's text."""
    ledger = CreditLedger(engine)
    user_id, headers = _user(saas_web, "retrier")
    _set_balance(engine, ledger, user_id, 1)
    admin = {"Authorization": f"Bearer {admin_token(saas_web.url)}"}
    httpx.put(f"{saas_web.url}/api/v1/queue/{Q}/processor/pause", headers=admin, timeout=30).raise_for_status()
    try:
        (item_id,) = _enqueue(saas_web, headers, add_graph_batch()).json()["item_ids"]
        httpx.put(f"{saas_web.url}/api/v1/queue/{Q}/i/{item_id}/cancel", headers=headers, timeout=30).raise_for_status()
        # Its hold is still there (the backstop releases holds after 5 s): nothing left for the retry.
        r = httpx.put(f"{saas_web.url}/api/v1/queue/{Q}/retry_items_by_id", json=[item_id], headers=headers, timeout=30)
        assert r.status_code == 402, r.text
        assert r.json() == {"detail": r.json()["detail"]} and "this needs 1 credits and 0 are available" in r.text
        with engine.connect() as conn:
            retried = conn.execute(
                text("SELECT count(*) FROM session_queue WHERE retried_from_item_id = :i"), {"i": item_id}
            ).scalar()
        assert retried == 0
    finally:
        httpx.put(f"{saas_web.url}/api/v1/queue/{Q}/processor/resume", headers=admin, timeout=30).raise_for_status()
