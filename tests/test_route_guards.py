"""The route-guard seam (``invokeai_saas.patches.api_app_route_guards``) on small FastAPI apps built like stock's
(routers with their own prefix, included lazily under ``/api``), and on stock InvokeAI's own app in a subprocess:
the schema stays stock's, a guard runs before the handler and before the body is read, refuses or lets through,
and a target without a stock route is refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Body, Depends, FastAPI, Header, HTTPException, Query, Request, UploadFile
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from invokeai_saas.patches.api_app_route_guards import GuardedAPIRoute, RouteGuard, UnmatchedRouteGuard, apply
from tests.support.invokeai import run_marked_python


class Thing(BaseModel):
    name: str


def _user(authorization: Annotated[str | None, Header()] = None) -> str:
    """A stand-in for stock's bearer auth: the user id is the header's value."""
    if authorization is None:
        raise HTTPException(status_code=401, detail="Missing authentication credentials")
    return authorization


User = Annotated[str, Depends(_user)]


class Calls:
    def __init__(self) -> None:
        self.endpoint: list[str] = []
        self.guard: list[str] = []


def _app(calls: Calls) -> FastAPI:
    """Two stock-like routers (own prefix, included under /api, as api_app does)."""
    things = APIRouter(prefix="/v1/things", tags=["things"])

    @things.get("/i/{thing_id}", operation_id="get_thing", response_model=Thing)
    def get_thing(user: User, thing_id: str, verbose: bool = Query(default=False)) -> Thing:  # noqa: B008
        """Gets a thing"""
        calls.endpoint.append(f"get {thing_id} {user}")
        return Thing(name=thing_id)

    @things.post("/", operation_id="create_thing", status_code=201)
    def create_thing(user: User, thing: Thing = Body(embed=True)) -> Thing:  # noqa: B008
        calls.endpoint.append(f"create {thing.name} {user}")
        return thing

    @things.delete("/i/{thing_id}", operation_id="delete_thing")
    def delete_thing(user: User, thing_id: str) -> None:
        calls.endpoint.append(f"delete {thing_id} {user}")

    uploads = APIRouter(prefix="/v1/uploads", tags=["uploads"])

    @uploads.post("/upload", operation_id="upload_file", status_code=201)
    async def upload_file(user: User, file: UploadFile, board: str | None = Query(default=None)) -> dict[str, int]:  # noqa: B008
        data = await file.read()
        calls.endpoint.append(f"upload {len(data)} {user}")
        return {"bytes": len(data)}

    app = FastAPI()
    app.include_router(things, prefix="/api")
    app.include_router(uploads, prefix="/api")
    return app


def _refuse_bob(calls: Calls) -> Callable[..., None]:
    def refuse_bob(request: Request, user: User) -> None:
        calls.guard.append(f"{request.method} {user}")
        if user == "bob":
            raise HTTPException(status_code=403, detail="Not on your plan")

    return refuse_bob


GUARDED = (("GET", "/v1/things/i/{thing_id}"), ("POST", "/v1/things/"), ("POST", "/v1/uploads/upload"))


def _guarded_app(calls: Calls) -> FastAPI:
    app = _app(calls)
    apply(app, [RouteGuard(path, frozenset({method}), _refuse_bob(calls)) for method, path in GUARDED])
    return app


def test_the_schema_is_the_stock_one() -> None:
    stock = _app(Calls()).openapi()
    guarded = _guarded_app(Calls())
    assert guarded.openapi() == stock
    operations = {op["operationId"] for path in stock["paths"].values() for op in path.values()}
    assert operations == {"get_thing", "create_thing", "delete_thing", "upload_file"}


def test_a_guard_refuses_before_the_handler_and_lets_others_through() -> None:
    calls = Calls()
    client = TestClient(_guarded_app(calls))
    refused = client.post("/api/v1/things/", json={"thing": {"name": "x"}}, headers={"authorization": "bob"})
    assert (refused.status_code, refused.json()) == (403, {"detail": "Not on your plan"})
    assert calls.endpoint == []
    # A refusal comes before the body is validated: an invalid body from bob is still a 403, not a 422.
    assert client.post("/api/v1/things/", json={}, headers={"authorization": "bob"}).status_code == 403

    ok = client.post("/api/v1/things/", json={"thing": {"name": "x"}}, headers={"authorization": "alice"})
    assert (ok.status_code, ok.json()) == (201, {"name": "x"})
    got = client.get("/api/v1/things/i/t1", params={"verbose": True}, headers={"authorization": "alice"})
    assert (got.status_code, got.json()) == (200, {"name": "t1"})
    assert calls.endpoint == ["create x alice", "get t1 alice"]
    assert calls.guard == ["POST bob", "POST bob", "POST alice", "GET alice"]
    # The guard's own dependencies answer as they would for the route: anonymous is stock's 401.
    assert client.get("/api/v1/things/i/t1").status_code == 401
    # A route without a guard is untouched.
    assert client.delete("/api/v1/things/i/t1", headers={"authorization": "bob"}).status_code == 200
    assert calls.endpoint[-1] == "delete t1 bob" and len(calls.guard) == 4


class BodyReads:
    """ASGI middleware that counts the request body messages the app pulls."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.reads = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counting() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.reads += 1
            return message

        await self.app(scope, counting, send)


def test_an_upload_is_refused_before_its_body_is_read() -> None:
    calls = Calls()
    counter = BodyReads(_guarded_app(calls))
    client = TestClient(counter)  # type: ignore[arg-type]
    files = {"file": ("a.bin", b"x" * 200_000, "application/octet-stream")}
    refused = client.post("/api/v1/uploads/upload", files=files, headers={"authorization": "bob"})
    assert refused.status_code == 403 and counter.reads == 0 and calls.endpoint == []
    ok = client.post("/api/v1/uploads/upload", files=files, headers={"authorization": "alice"})
    assert (ok.status_code, ok.json()) == (201, {"bytes": 200_000}) and counter.reads > 0


def test_guards_stack_in_order_and_async_guards_run() -> None:
    calls = Calls()
    app = _app(calls)

    async def first(user: User) -> None:
        calls.guard.append(f"first {user}")

    def second(user: User) -> None:
        calls.guard.append(f"second {user}")

    path, methods = "/v1/things/i/{thing_id}", frozenset({"GET"})
    apply(app, [RouteGuard(path, methods, first)])
    apply(app, [RouteGuard(path, methods, second)])  # a second apply keeps the first guard
    client = TestClient(app)
    assert client.get("/api/v1/things/i/t", headers={"authorization": "carol"}).status_code == 200
    assert calls.guard == ["first carol", "second carol"] and calls.endpoint == ["get t carol"]


def test_the_route_is_replaced_in_place_in_the_stock_router() -> None:
    app = _app(Calls())
    router = next(e.original_router for e in app.router.routes if getattr(e, "original_router", None) is not None)
    before = [(r.path, r.methods) for r in router.routes]  # type: ignore[attr-defined]
    apply(app, [RouteGuard("/v1/things/", frozenset({"POST"}), lambda: None)])
    assert [(r.path, r.methods) for r in router.routes] == before  # type: ignore[attr-defined]
    assert [type(r) is GuardedAPIRoute for r in router.routes] == [False, True, False]


@pytest.mark.parametrize(
    "target",
    [
        ("GET", "/v1/things/"),  # no such method on that path
        ("GET", "/api/v1/things/i/{thing_id}"),  # the app's /api prefix is not part of the stock router's paths
        ("POST", "/v1/renamed/"),
    ],
)
def test_a_target_without_a_stock_route_is_refused(target: tuple[str, str]) -> None:
    calls = Calls()
    app = _app(calls)
    method, path = target
    with pytest.raises(UnmatchedRouteGuard, match="no stock route to guard"):
        apply(app, [RouteGuard("/v1/things/i/{thing_id}", frozenset({"GET"}), _refuse_bob(calls)),
                    RouteGuard(path, frozenset({method}), _refuse_bob(calls))])  # fmt: skip


STOCK_SCRIPT = """
import json, sys
sys.argv = ["invokeai-web", "--root", sys.argv[1]]
from invokeai.frontend.cli.arg_parser import InvokeAIArgs
InvokeAIArgs.parse_args()
from fastapi.routing import APIRoute
from invokeai.app.api.routers.workflows import workflows_router
from invokeai.app.api_app import app
from sqlalchemy import create_engine
from invokeai_saas.credits.access import route_guards
from invokeai_saas.patches import api_app_route_guards

stock = app.openapi()
app.openapi_schema = None
api_app_route_guards.apply(app, route_guards(create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")))
workflow_routes = sorted([m, r.path] for r in workflows_router.routes if isinstance(r, APIRoute) for m in r.methods)
print("RESULT " + json.dumps({"same": app.openapi() == stock, "workflow_routes": workflow_routes}))
"""


def test_stock_invokeai_keeps_its_schema_and_every_workflow_route_has_a_decision(tmp_path: Path) -> None:
    """On stock's own app (saas mode off, so nothing else is patched): the node-editor and upload guards leave the
    OpenAPI schema as it was, and each stock workflow route is either guarded or deliberately open."""
    from invokeai_saas.credits.access import NODE_EDITOR_ROUTES, OPEN_WORKFLOW_ROUTES

    result: dict[str, Any] = run_marked_python(["-c", STOCK_SCRIPT, str(tmp_path)], "RESULT", timeout=300)
    assert result["same"] is True
    decided = sorted([m, p] for m, p in NODE_EDITOR_ROUTES + OPEN_WORKFLOW_ROUTES)
    assert result["workflow_routes"] == decided
