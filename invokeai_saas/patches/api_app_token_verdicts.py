"""Upstream: ``invokeai.app.api_app.app``'s middleware stack. Checked on 6.14.2 with Starlette as InvokeAI pins it.

Adds ``invokeai_saas.auth.sessions.RequestTokenVerdicts`` outermost, so every token check of one HTTP request —
stock's auth dependencies (a route guard's and the route's), the media-cookie route, and the sliding-window refresh
middleware, which runs inside it — shares one memo of revocation verdicts: the signed-out check costs one database
read per token per request. Added once per app, before the app has started (Starlette refuses later).
"""

from __future__ import annotations

from fastapi import FastAPI

from invokeai_saas.auth.sessions import RequestTokenVerdicts


def apply(app: FastAPI) -> None:
    if any(m.cls is RequestTokenVerdicts for m in app.user_middleware):
        return
    app.add_middleware(RequestTokenVerdicts)
