"""No answer carries a stack trace: failed queue items keep their error type and message, not the traceback.

Stock stores a failed item's ``error_traceback`` (file paths and source lines of the server included) and hands it
to the item's owner: in the queue routes that return items, and in the ``invocation_error`` and
``queue_item_status_changed`` events. In a hosted service those are the server's internals shown to users; the
traceback is in the log of the process that ran the item (stock's runner logs it), where operators read it.

The session queue keeps storing it as stock does (the PostgreSQL queue stays at parity with stock's); it is taken
out where it would leave the server:

- the queue routes that return items get a filter (``invokeai_saas.patches.api_app_route_guards.RouteFilter``):
  list all, items by ids, current, next, get and cancel; so do the model-install routes that return install jobs
  (administrators', but a traceback is no more use to them in the studio than in the log);
- events, at stock's in-process dispatch (``invokeai_saas.patches.events_fastapievents_tracebacks``), so every
  socket, on every API process, gets the event without it.

**Server errors carry no internals.** Stock answers many failures with ``HTTPException(500, f"Unexpected error ...:
{e}")``; on PostgreSQL ``{e}`` is the driver's message with the SQL statement and its parameters. Every answer
with a 5xx status gets one generic body instead, in one place: ``ServerErrorBodiesMiddleware`` (innermost, so it sees
what every route and exception handler answered before compression) replaces the body and logs the original with a
short reference that the generic body quotes, so an operator can find it from a user's report. Unhandled exceptions
are answered above all middleware (Starlette's ``ServerErrorMiddleware``), so ``generic_server_error`` is the app's
handler for them, with the same body. 501 and 503 answers pass unchanged: saas mode answers 503 on purpose (an outage
of the object store or the database, with ``Retry-After``; the health report; a feature this server does not run),
with messages written for the client; stock's only 501 ("Not implemented") and 503 ("Image move service
unavailable") are fixed texts too.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.middleware import Middleware
from starlette.types import Message, Receive, Scope, Send

from invokeai_saas.http_middleware import HttpOnlyMiddleware

logger = logging.getLogger(__name__)

SERVER_ERROR_DETAIL = "Internal server error; it has been logged (reference {reference})."
_LOGGED_BODY = 2000  # characters of an original error body written to the log

# Stock's session-queue routes (``invokeai/app/api/routers/session_queue.py``, prefix ``/v1/queue``) that return
# queue items.
QUEUE_ITEM_ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "/v1/queue/{queue_id}/list_all"),
    ("POST", "/v1/queue/{queue_id}/items_by_ids"),
    ("GET", "/v1/queue/{queue_id}/current"),
    ("GET", "/v1/queue/{queue_id}/next"),
    ("GET", "/v1/queue/{queue_id}/i/{item_id}"),
    ("PUT", "/v1/queue/{queue_id}/i/{item_id}/cancel"),
)


def without_traceback(value: Any) -> Any:
    """``value`` (a queue item, an event, a list of them, or anything else, returned as is) with every
    ``error_traceback`` emptied: None where the field is optional, "" where stock requires a string."""
    if isinstance(value, list):
        return [without_traceback(each) for each in value]
    if not isinstance(value, BaseModel) or not getattr(value, "error_traceback", None):
        return value
    field = type(value).model_fields.get("error_traceback")
    empty = "" if field is not None and field.is_required() else None
    return value.model_copy(update={"error_traceback": empty})


# Stock's model-install routes (``invokeai/app/api/routers/model_manager.py``, prefix ``/v2/models``, administrators
# only) that return install jobs, whose ``error_traceback`` is the server's traceback of a failed install.
MODEL_INSTALL_ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/v2/models/install"),
    ("GET", "/v2/models/install"),
    ("GET", "/v2/models/install/{id}"),
    ("POST", "/v2/models/install/{id}/pause"),
    ("POST", "/v2/models/install/{id}/resume"),
    ("POST", "/v2/models/install/{id}/restart_failed"),
    ("POST", "/v2/models/install/{id}/restart_file"),
)


def queue_item_route_filters() -> list[Any]:
    """The route filters for ``QUEUE_ITEM_ROUTES`` and ``MODEL_INSTALL_ROUTES``."""
    from invokeai_saas.patches.api_app_route_guards import RouteFilter

    routes = (*QUEUE_ITEM_ROUTES, *MODEL_INSTALL_ROUTES)
    return [RouteFilter(path, frozenset({method}), without_traceback) for method, path in routes]


def _reference() -> str:
    return uuid.uuid4().hex[:12]


def _generic_body(reference: str) -> bytes:
    return json.dumps({"detail": SERVER_ERROR_DETAIL.format(reference=reference)}).encode()


def _is_deliberate(status: int) -> bool:
    """501 and 503 are only ever answered on purpose, with a message written for the client (an outage with
    ``Retry-After``, the health route's report, a feature this server does not run); stock's one 501 ("Not
    implemented") and one 503 are fixed texts too."""
    return status in (501, 503)


class ServerErrorBodiesMiddleware(HttpOnlyMiddleware):
    """Replace the body of every 5xx answer but 501 and 503 with the generic one, logging the original."""

    async def handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message | None = None
        original: list[bytes] = []

        async def send_generic(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if status >= 500 and not _is_deliberate(status):
                    start = message  # held until the body is complete
                    return
                await send(message)
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            original.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            reference = _reference()
            text = b"".join(original).decode("utf-8", "replace")[:_LOGGED_BODY]
            logger.error(
                "%s %s answered %s (reference %s): %s",
                scope.get("method"),
                scope.get("path"),
                start["status"],
                reference,
                text,
            )
            body = _generic_body(reference)
            kept = [
                (name, value)
                for name, value in start.get("headers", [])
                if name.lower() not in (b"content-length", b"content-type", b"content-encoding")
            ]
            kept += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({**start, "headers": kept})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, send_generic)


async def generic_server_error(request: Request, error: Exception) -> Response:
    """The app's handler for unhandled exceptions (Starlette logs the traceback after calling it)."""
    reference = _reference()
    logger.error("%s %s raised %s (reference %s)", request.method, request.url.path, type(error).__name__, reference)
    return JSONResponse(status_code=500, content={"detail": SERVER_ERROR_DETAIL.format(reference=reference)})


def install_server_error_bodies(app: FastAPI) -> None:
    """Add the middleware innermost and the unhandled-exception handler; call before the first request, before
    other plugins wrap the handler (they fall back to it)."""
    app.user_middleware.append(Middleware(ServerErrorBodiesMiddleware))
    app.add_exception_handler(Exception, generic_server_error)
