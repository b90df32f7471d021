"""The user's credit routes against the real ``saas_web`` server: plan, balance, ledger and usage for the signed-in
user only, the public plan catalogue, pagination, clean 422s, 401 without a token, and no way for one user to see
another's numbers. Credits are moved with ``CreditLedger`` on the server's own database, as the enqueue and
settlement paths do."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from invokeai_saas.credits.ledger import CreditLedger, Usage
from invokeai_saas.db.engine import sync_url
from invokeai_saas.devstack import LocalStack
from invokeai_saas.devstack.web import InvokeAIWebServer
from tests.support.browser import create_user
from tests.support.invokeai import admin_token

ME_ROUTES = ("/api/v1/saas/me/plan", "/api/v1/saas/me/balance", "/api/v1/saas/me/ledger", "/api/v1/saas/me/usage")
LEAKS = ("Traceback", 'File "', "site-packages", "sqlalchemy", "psycopg", "SELECT", "credit_ledger", "127.0.0.1")


@pytest.fixture(scope="module")
def engine(stack: LocalStack, saas_web: InvokeAIWebServer) -> Iterator[Engine]:
    """The server's database (migrated by ``saas_web``), for writing credits the way the server does."""
    eng = create_engine(sync_url(str(stack.saas_settings()["database_url"])))
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def ledger(engine: Engine) -> CreditLedger:
    return CreditLedger(engine)


@pytest.fixture(scope="module")
def admin(saas_web: InvokeAIWebServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_token(saas_web.url)}"}


class User:
    """A signed-in non-admin user of the server: an id and a client that sends their token."""

    def __init__(self, base_url: str, admin: dict[str, str], name: str) -> None:
        self.user_id, token = create_user(base_url, admin, f"{name}-{uuid.uuid4().hex[:8]}@example.com")
        self.client = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def get(self, path: str, **params: Any) -> Any:
        r = self.client.get(path, params=params)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture()
def new_user(saas_web: InvokeAIWebServer, admin: dict[str, str]) -> Iterator[User]:
    user = User(saas_web.url, admin, "credits")
    yield user
    user.client.close()


def _item() -> int:
    """A queue item id no other test (nor the server's own queue) uses: the ledger keys holds and usage by it."""
    return 10**12 + uuid.uuid4().int % 10**12


def test_the_plan_catalogue_is_public(saas_web: InvokeAIWebServer) -> None:
    r = httpx.get(f"{saas_web.url}/api/v1/saas/plans", timeout=30)
    assert r.status_code == 200, r.text
    plans = r.json()
    assert [p["name"] for p in plans] == ["Trial", "Starter", "Pro", "Studio", "Enterprise"]  # Tester is internal
    starter = plans[1]
    assert (starter["price_cents"], starter["limits"]["monthly_credits"]) == (2500, 5000)
    assert all(p["public"] for p in plans)


def test_a_new_user_sees_trial_and_its_grant(new_user: User) -> None:
    plan = new_user.get("/api/v1/saas/me/plan")
    assert (plan["plan_id"], plan["name"], plan["status"], plan["price_cents"]) == ("trial", "Trial", "trialing", 0)
    assert date.fromisoformat(plan["period_end"][:10]) - date.fromisoformat(plan["period_start"][:10]) == timedelta(
        days=7
    )
    assert plan["limits"]["model_access"] == "sd_only" and plan["limits"]["monthly_credits"] == 500

    balance = new_user.get("/api/v1/saas/me/balance")
    assert (balance["available"], balance["held"], balance["debt"]) == (500, 0, 0)
    (grant,) = balance["grants"]
    assert (grant["source"], grant["granted"], grant["remaining"]) == ("trial", 500, 500)
    assert grant["valid_until"] is not None

    history = new_user.get("/api/v1/saas/me/ledger")
    assert (history["total"], history["offset"], history["limit"]) == (1, 0, 50)
    (entry,) = history["entries"]
    assert (entry["entry_id"], entry["kind"], entry["source"], entry["credits"]) == (
        grant["entry_id"],
        "grant",
        "trial",
        500,
    )
    assert entry["description"] == "Trial credits"
    assert "natural_key" not in entry and "details" not in entry

    usage = new_user.get("/api/v1/saas/me/usage")
    assert (usage["days"], usage["items"], usage["seconds"], usage["credits"]) == (30, 0, 0.0, 0)
    assert len(usage["by_day"]) == 30 and all(d["items"] == d["credits"] == 0 for d in usage["by_day"])
    assert usage["by_day"][-1]["day"] == usage["end"] and usage["by_day"][0]["day"] == usage["start"]


def _usage_day(engine: Engine, item_id: int) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                text("SELECT (created_at AT TIME ZONE 'UTC')::date FROM credit_usage WHERE item_id = :i"),
                {"i": item_id},
            ).scalar_one()
        )


def test_the_routes_follow_holds_settlements_and_usage(new_user: User, ledger: CreditLedger, engine: Engine) -> None:
    user = new_user.user_id
    trial_id = new_user.get("/api/v1/saas/me/balance")["grants"][0]["entry_id"]
    purchase_id = ledger.grant(user, 1000, "purchase", f"purchase:test-{uuid.uuid4().hex}", details={"pi": "pi_x"})
    ran, canceled, queued, earlier = _item(), _item(), _item(), _item()
    ledger.hold(user, [(ran, 100), (canceled, 50)])
    ledger.settle(user, ran, 30, Usage(seconds=29.2, gpu_tier="standard", model="sd-1.5", steps=20))
    ledger.release(user, canceled, "canceled before start")
    ledger.hold(user, [(queued, 40)])
    ledger.settle(user, earlier, 12, Usage(seconds=11.5, gpu_tier="standard"))
    with engine.begin() as conn:  # as if ``earlier`` had run three days ago
        conn.execute(
            text("UPDATE credit_usage SET created_at = created_at - interval '3 days' WHERE item_id = :i"),
            {"i": earlier},
        )

    balance = new_user.get("/api/v1/saas/me/balance")
    # Earliest expiry first: the trial grant paid for both runs; the open-ended purchase is untouched.
    assert (balance["available"], balance["held"], balance["debt"]) == (500 + 1000 - 42 - 40, 40, 0)
    assert [(g["entry_id"], g["source"], g["granted"], g["remaining"]) for g in balance["grants"]] == [
        (trial_id, "trial", 500, 458),
        (purchase_id, "purchase", 1000, 1000),
    ]
    assert balance["grants"][1]["valid_until"] is None
    expected = ledger.balance(user)
    assert (balance["available"], balance["held"], balance["debt"]) == (
        expected.available,
        expected.held,
        expected.debt,
    )

    history = new_user.get("/api/v1/saas/me/ledger")
    entries = history["entries"]
    assert history["total"] == len(entries) == 9
    # Newest first; within one transaction, the later entry first (a settlement's release follows its charge).
    assert [(e["kind"], e["item_id"], e["credits"]) for e in entries] == [
        ("settle", earlier, 12),  # settled without a hold: no release entry
        ("hold", queued, 40),
        ("release", canceled, 50),
        ("release", ran, 70),
        ("settle", ran, 30),
        ("hold", canceled, 50),
        ("hold", ran, 100),
        ("grant", None, 1000),
        ("grant", None, 500),
    ]
    by_kind = {(e["kind"], e["item_id"]): e for e in entries}
    settle = by_kind[("settle", ran)]
    assert settle["grant_entry_id"] == trial_id and settle["description"] == f"Charged for queue item {ran}"
    release = by_kind[("release", canceled)]
    assert release["reason"] == "canceled before start"
    assert release["description"] == f"Released the hold for queue item {canceled} (canceled before start)"
    assert by_kind[("release", ran)]["reason"] == "settled"
    purchase = next(e for e in entries if e["entry_id"] == purchase_id)
    assert purchase["source"] == "purchase" and purchase["valid_until"] is None and purchase["reason"] is None
    assert all("details" not in e and "natural_key" not in e for e in entries)  # the payment reference stays inside
    created = [datetime.fromisoformat(e["created_at"]) for e in entries]
    assert created == sorted(created, reverse=True)

    usage = new_user.get("/api/v1/saas/me/usage")
    days = {d["day"]: d for d in usage["by_day"]}
    assert days[_usage_day(engine, ran)] == {"day": _usage_day(engine, ran), "items": 1, "seconds": 29.2, "credits": 30}
    assert days[_usage_day(engine, earlier)] == {
        "day": _usage_day(engine, earlier),
        "items": 1,
        "seconds": 11.5,
        "credits": 12,
    }
    assert (usage["items"], usage["credits"]) == (2, 42) and usage["seconds"] == pytest.approx(40.7)
    recent = new_user.get("/api/v1/saas/me/usage", days=2)
    assert len(recent["by_day"]) == 2 and (recent["items"], recent["credits"]) == (1, 30)


def test_debt_shows_when_a_run_costs_more_than_is_left(new_user: User, ledger: CreditLedger) -> None:
    item = _item()
    ledger.settle(new_user.user_id, item, 600, Usage(seconds=600.0, gpu_tier="standard"))
    balance = new_user.get("/api/v1/saas/me/balance")
    assert (balance["available"], balance["held"], balance["debt"], balance["grants"]) == (-100, 0, 100, [])
    settles = [e for e in new_user.get("/api/v1/saas/me/ledger")["entries"] if e["kind"] == "settle"]
    assert sorted((e["grant_entry_id"] is None, e["credits"]) for e in settles) == [(False, 500), (True, 100)]
    uncovered = next(e for e in settles if e["grant_entry_id"] is None)
    assert uncovered["description"] == f"Charged for queue item {item}, beyond the grants (added to debt)"


def test_the_ledger_pages_newest_first(new_user: User, ledger: CreditLedger) -> None:
    for n in range(12):
        ledger.grant(new_user.user_id, n + 1, "test", f"test:pages-{new_user.user_id}-{n}")
    everything = new_user.get("/api/v1/saas/me/ledger", limit=200)
    assert everything["total"] == 13 and len(everything["entries"]) == 13
    assert [e["credits"] for e in everything["entries"]] == [*range(12, 0, -1), 500]
    pages = [new_user.get("/api/v1/saas/me/ledger", offset=offset, limit=5) for offset in (0, 5, 10)]
    assert [len(p["entries"]) for p in pages] == [5, 5, 3] and {p["total"] for p in pages} == {13}
    assert [e["entry_id"] for p in pages for e in p["entries"]] == [e["entry_id"] for e in everything["entries"]]
    beyond = new_user.get("/api/v1/saas/me/ledger", offset=13)
    assert (beyond["total"], beyond["entries"]) == (13, [])


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/saas/me/ledger", {"limit": 0}),
        ("/api/v1/saas/me/ledger", {"limit": 201}),
        ("/api/v1/saas/me/ledger", {"limit": "many"}),
        ("/api/v1/saas/me/ledger", {"offset": -1}),
        ("/api/v1/saas/me/ledger", {"offset": 2**63}),
        ("/api/v1/saas/me/usage", {"days": 0}),
        ("/api/v1/saas/me/usage", {"days": 367}),
        ("/api/v1/saas/me/usage", {"days": "1; DROP TABLE credit_ledger"}),
    ],
)
def test_bad_parameters_are_422_without_internals(new_user: User, path: str, params: dict[str, Any]) -> None:
    r = new_user.client.get(path, params=params)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][0] == "query"
    for leak in LEAKS:
        assert leak not in r.text.replace("1; DROP TABLE credit_ledger", "")


def test_anonymous_and_bad_tokens_get_401(saas_web: InvokeAIWebServer) -> None:
    for path in ME_ROUTES:
        assert httpx.get(f"{saas_web.url}{path}", timeout=30).status_code == 401
        r = httpx.get(f"{saas_web.url}{path}", headers={"Authorization": "Bearer not-a-token"}, timeout=30)
        assert r.status_code == 401


def test_one_user_never_sees_anothers_numbers(
    saas_web: InvokeAIWebServer, admin: dict[str, str], ledger: CreditLedger
) -> None:
    a, b = User(saas_web.url, admin, "tenant-a"), User(saas_web.url, admin, "tenant-b")
    try:
        ledger.grant(a.user_id, 7777, "purchase", f"purchase:tenant-a-{a.user_id}")
        held = _item()
        ledger.hold(a.user_id, [(held, 300)])
        ledger.settle(a.user_id, _item(), 99, Usage(seconds=98.0, gpu_tier="standard"))
        a_ids = {e["entry_id"] for e in a.get("/api/v1/saas/me/ledger", limit=200)["entries"]}
        assert a.get("/api/v1/saas/me/balance")["available"] == 500 + 7777 - 99 - 300

        # B's routes answer with B's own numbers, whatever B adds to the request.
        for params in ({}, {"user_id": a.user_id}, {"user": a.user_id, "owner_id": a.user_id}):
            balance = b.get("/api/v1/saas/me/balance", **params)
            assert (balance["available"], balance["held"], balance["debt"]) == (500, 0, 0)
            assert [g["source"] for g in balance["grants"]] == ["trial"]
            history = b.get("/api/v1/saas/me/ledger", **params, limit=200)
            assert history["total"] == 1 and not {e["entry_id"] for e in history["entries"]} & a_ids
            assert b.get("/api/v1/saas/me/usage", **params)["credits"] == 0
            assert b.get("/api/v1/saas/me/plan", **params)["plan_id"] == "trial"
        assert a.get("/api/v1/saas/me/usage")["credits"] == 99
    finally:
        a.client.close()
        b.client.close()


def test_the_routes_are_in_the_schema_with_no_user_parameter(saas_web: InvokeAIWebServer) -> None:
    schema = httpx.get(f"{saas_web.url}/openapi.json", timeout=30).json()
    expected = {
        "/api/v1/saas/me/plan": ("get_my_saas_plan", set()),
        "/api/v1/saas/me/balance": ("get_my_credit_balance", set()),
        "/api/v1/saas/me/ledger": ("list_my_credit_ledger", {"offset", "limit"}),
        "/api/v1/saas/me/usage": ("get_my_credit_usage", {"days"}),
        "/api/v1/saas/plans": ("list_saas_plans", set()),
    }
    for path, (operation_id, params) in expected.items():
        op = schema["paths"][path]["get"]
        assert op["operationId"] == operation_id and op["tags"] == ["saas"]
        assert {p["name"] for p in op.get("parameters", [])} == params
        assert "$ref" in str(op["responses"]["200"]["content"]["application/json"]["schema"])
    for model in ("MyPlan", "PlanLimits", "CreditBalance", "CreditLedgerPage", "CreditUsage", "Plan"):
        assert model in schema["components"]["schemas"]
