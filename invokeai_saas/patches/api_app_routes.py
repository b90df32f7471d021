"""Upstream: ``invokeai.app.api_app.app`` — the FastAPI app, whose last route is the web UI mounted
at ``/`` (``name="ui"``), a catch-all. Checked on 6.14.2.

Routes appended after that mount can never be reached, so the overlay's routers are included and
then moved to just before it. Nothing else in the route table changes order.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, FastAPI

UI_MOUNT_NAME = "ui"


def apply(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    existing = list(app.router.routes)
    for router in routers:
        app.include_router(router)
    existing_ids = {id(r) for r in existing}
    added = [r for r in app.router.routes if id(r) not in existing_ids]
    ui_index = next((i for i, r in enumerate(existing) if getattr(r, "name", None) == UI_MOUNT_NAME), len(existing))
    app.router.routes[:] = existing[:ui_index] + added + existing[ui_index:]
    app.openapi_schema = None  # rebuild the schema with the new routes on next request
