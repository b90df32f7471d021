"""The shape of this package's pure ASGI middlewares: HTTP requests only.

Each wraps the whole app, which also serves lifespan events and websockets; those scopes pass straight through,
untouched, so ``handle_http`` sees only HTTP requests.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class HttpOnlyMiddleware:
    """Pass every non-HTTP scope to the app; subclasses handle the HTTP ones."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle_http(scope, receive, send)

    async def handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError
