"""Upstream: the routers ``invokeai.app.api_app`` includes (e.g. ``routers.workflows.workflows_router``,
``routers.images.images_router``), some of whose routes saas mode refuses to some users (a plan without the node
editor, a full storage quota) while answering everyone else exactly as stock does. Checked on 6.14.2 with
FastAPI 0.141.

A *filter* passes what a stock route's handler returned through a function before it is serialised (e.g. to take
a field out of every answer), wrapping the endpoint with its signature kept, so the schema stays stock's too.

A guard is a FastAPI dependency callable: it may declare stock's auth dependencies, ``Request`` and the like, and
it lets the request through by returning or refuses it by raising ``HTTPException``. Each guarded route is
rebuilt as a ``GuardedAPIRoute`` from the constructor arguments read back from the stock route object, so no stock
signature is copied here and the OpenAPI schema (operation ids, parameters, bodies, responses) stays stock's.
FastAPI 0.141 includes routers lazily (see ``api_app_route_overrides``), so the rebuilt route replaces the stock
one *inside* the stock router, at the same position, before the first request.

Guards run before stock's handler reads the request body, not as ``dependencies=[Depends(guard)]``: FastAPI reads
the whole body (a multipart upload is spooled to a temporary file) before it solves any dependency, so an upload
refused by a dependency would have been received first. Solved ahead of the handler, a refusal costs no body read,
and the guard's own parameters never reach the schema. A target without a stock route is refused, so an upstream
rename cannot leave a route silently unguarded.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant, solve_dependencies
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

Guard = Callable[..., Any]
_REBUILT_FROM_ROUTE = tuple(name for name in inspect.signature(APIRoute.__init__).parameters if name != "self")


class UnmatchedRouteGuard(RuntimeError):
    pass


@dataclass(frozen=True)
class RouteGuard:
    """Run ``guard`` before the stock route at ``path`` (the stock router's prefix included, e.g.
    ``/v1/workflows/``) answering exactly ``methods``."""

    path: str
    methods: frozenset[str]
    guard: Guard


@dataclass(frozen=True)
class RouteFilter:
    """Pass what the stock route at ``path`` answering ``methods`` returns through ``transform`` before it is
    serialised (the value the handler returned, e.g. a ``SessionQueueItem``, a list of them, or None)."""

    path: str
    methods: frozenset[str]
    transform: Callable[[Any], Any]


def _filtered(endpoint: Callable[..., Any], transforms: Sequence[Callable[[Any], Any]]) -> Callable[..., Any]:
    """``endpoint`` with its result passed through ``transforms``. The wrapper keeps the endpoint's kind (sync or
    async) and, through ``functools.wraps``, its signature: FastAPI reads both through ``__wrapped__``."""

    def transform(result: Any) -> Any:
        for each in transforms:
            result = each(result)
        return result

    if inspect.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        async def filtered_async(*args: Any, **kwargs: Any) -> Any:
            return transform(await endpoint(*args, **kwargs))

        return filtered_async

    @functools.wraps(endpoint)
    def filtered(*args: Any, **kwargs: Any) -> Any:
        return transform(endpoint(*args, **kwargs))

    return filtered


class GuardedAPIRoute(APIRoute):
    """A stock route whose guards are solved and called, in order, before its own handler runs."""

    def __init__(self, path: str, endpoint: Callable[..., Any], *, guards: Sequence[Guard], **kwargs: Any) -> None:
        self.guards = tuple(guards)
        self._guard_dependants = tuple(get_dependant(path=path, call=guard) for guard in self.guards)
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()  # per request under FastAPI 0.141: the included route's context
        dependants = self._guard_dependants
        own_overrides = self.dependency_overrides_provider

        async def guarded(request: Request) -> Response:
            # Stock routers carry no overrides provider; the app does (``app.dependency_overrides``).
            overrides = own_overrides if own_overrides is not None else request.scope.get("app")
            for dependant in dependants:
                await _run_guard(request, dependant, overrides)
            return await handler(request)

        return guarded


async def _run_guard(request: Request, dependant: Dependant, overrides: Any) -> None:
    solved = await solve_dependencies(
        request=request,
        dependant=dependant,
        dependency_overrides_provider=overrides,
        async_exit_stack=request.scope["fastapi_inner_astack"],
        embed_body_fields=False,
    )
    if solved.errors:
        raise RequestValidationError(solved.errors)
    call = dependant.call
    assert call is not None
    if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(type(call).__call__):  # a function, an object
        await call(**solved.values)
    else:
        await run_in_threadpool(call, **solved.values)


def _key(path: str, methods: Iterable[str]) -> tuple[str, frozenset[str]]:
    return path, frozenset(m.upper() for m in methods)


def _stock_routers(app: FastAPI) -> list[APIRouter]:
    return [e.original_router for e in app.router.routes if isinstance(getattr(e, "original_router", None), APIRouter)]


def _rebuild(route: APIRoute, guards: Sequence[Guard], transforms: Sequence[Callable[[Any], Any]]) -> GuardedAPIRoute:
    missing = [name for name in _REBUILT_FROM_ROUTE if not hasattr(route, name)]
    if missing:
        raise UnmatchedRouteGuard(f"cannot rebuild {route.path}: the route has no {', '.join(missing)}")
    kwargs = {name: getattr(route, name) for name in _REBUILT_FROM_ROUTE if name not in ("path", "endpoint")}
    earlier = route.guards if isinstance(route, GuardedAPIRoute) else ()
    endpoint = _filtered(route.endpoint, transforms) if transforms else route.endpoint
    return GuardedAPIRoute(route.path, endpoint, guards=[*earlier, *guards], **kwargs)


def apply(app: FastAPI, guards: Iterable[RouteGuard], filters: Iterable[RouteFilter] = ()) -> None:
    """Guard (and filter the answers of) the stock routes the targets name; call before the first request (after
    route overrides, so an overridden route is guarded too)."""
    wanted: dict[tuple[str, frozenset[str]], tuple[list[Guard], list[Callable[[Any], Any]]]] = {}
    for target in guards:
        wanted.setdefault(_key(target.path, target.methods), ([], []))[0].append(target.guard)
    for each in filters:
        wanted.setdefault(_key(each.path, each.methods), ([], []))[1].append(each.transform)
    done: set[tuple[str, frozenset[str]]] = set()
    for stock_router in _stock_routers(app):
        for index, route in enumerate(stock_router.routes):
            if not isinstance(route, APIRoute):
                continue
            key = _key(route.path, route.methods or ())
            if key in wanted:
                stock_router.routes[index] = _rebuild(route, *wanted[key])
                done.add(key)
    missing = set(wanted) - done
    if missing:
        names = sorted(f"{' '.join(sorted(methods))} {path}" for path, methods in missing)
        raise UnmatchedRouteGuard(f"no stock route to guard for {names}")
    app.openapi_schema = None
