"""Upstream: the routers ``invokeai.app.api_app`` includes (e.g. ``routers.images.images_router``), whose
routes a saas backend answers better under the same contract. Checked on 6.14.2 with FastAPI 0.141.

FastAPI 0.141 includes routers lazily: the app's route table holds one entry per included router
(with ``original_router`` and ``include_context.prefix``) and expands it on the first request. An
override therefore replaces the route object *inside* the stock router — same path, same methods,
same position — before any request has been served. Override routers use the stock router's own
prefix (``/v1/images``, not ``/api/v1/images``). An override with no stock counterpart is refused, so
an upstream rename cannot leave a stale override unnoticed.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute


class UnmatchedRouteOverride(RuntimeError):
    pass


def _key(route: APIRoute) -> tuple[str, frozenset[str]]:
    return route.path, frozenset(route.methods or ())


def _stock_routers(app: FastAPI) -> list[APIRouter]:
    routers: list[APIRouter] = []
    for entry in app.router.routes:
        original = getattr(entry, "original_router", None)
        if isinstance(original, APIRouter):
            routers.append(original)
    return routers


def apply(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    overrides = {_key(r): r for router in routers for r in router.routes if isinstance(r, APIRoute)}
    replaced: set[tuple[str, frozenset[str]]] = set()
    for stock_router in _stock_routers(app):
        for index, route in enumerate(stock_router.routes):
            if isinstance(route, APIRoute) and _key(route) in overrides:
                stock_router.routes[index] = overrides[_key(route)]
                replaced.add(_key(route))
    missing = set(overrides) - replaced
    if missing:
        raise UnmatchedRouteOverride(f"no stock route to override for {sorted(p for p, _ in missing)}")
    app.openapi_schema = None
