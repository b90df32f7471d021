"""An object-store outage answers 503, whichever route met it.

Stock routes turn every exception into an ``HTTPException`` (404 for media, 500 for uploads: "Failed to
create image") or let it escape as a bare 500, so a user whose upload failed because S3 was down would
be told the image is missing or the server is broken. The cause survives in the exception chain
(``HTTPException.__context__`` → ``ImageFileSaveException.__cause__`` → ``ObjectStoreUnavailable``), so
these handlers walk the chain and answer 503 with ``Retry-After`` and a short, fixed message when an
outage is in it — nothing from the exception (keys, paths, endpoints, traces) reaches the response.
Anything else is answered exactly as before: the app's previous ``HTTPException`` handler (FastAPI's
JSON ``detail`` by default), and Starlette's plain ``Internal Server Error`` for unhandled errors.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from invokeai_saas.exception_chain import find_in_chain
from invokeai_saas.exception_handlers import answer_http_exceptions, answer_unhandled_exceptions
from invokeai_saas.storage.object_store import ObjectStoreUnavailable

logger = logging.getLogger(__name__)

UNAVAILABLE_DETAIL = "Object storage is temporarily unavailable; nothing was lost. Try again."
RETRY_AFTER_SECONDS = 5


def find_outage(error: BaseException | None) -> ObjectStoreUnavailable | None:
    """The ``ObjectStoreUnavailable`` in ``error``'s cause/context chain (and exception groups), if any."""
    return find_in_chain(error, ObjectStoreUnavailable)


def unavailable_response() -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={"detail": UNAVAILABLE_DETAIL},
        headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"},
    )


def _log(request: Request, outage: ObjectStoreUnavailable) -> None:
    logger.warning("Object storage unavailable (%s) during %s %s", outage, request.method, request.url.path)


def _outage_answer(request: Request, error: Exception) -> Response | None:
    outage = find_outage(error)
    if outage is None:
        return None
    _log(request, outage)
    return unavailable_response()


def _plain_internal_server_error() -> Response:
    return PlainTextResponse("Internal Server Error", status_code=500)


def install_object_store_error_handlers(app: FastAPI) -> None:
    """Register the handlers; call before the app serves its first request (Starlette builds its middleware
    stack, handlers included, on the first request)."""
    answer_http_exceptions(app, _outage_answer)

    async def on_outage(request: Request, error: Exception) -> Response:
        _log(request, error)  # type: ignore[arg-type]
        return unavailable_response()

    app.add_exception_handler(ObjectStoreUnavailable, on_outage)
    answer_unhandled_exceptions(app, _outage_answer, otherwise=_plain_internal_server_error)
